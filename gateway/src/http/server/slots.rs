//! The slot table: which worker, if any, holds each connection. Plain data (no sockets, no
//! epoll): slots with generation tokens, the free list, and the open and owned counts.

use crate::balance::Seat;

/// The epoll token of slot `idx` in generation `gen`: an event fetched for an earlier
/// connection in the same slot no longer matches it.
pub(super) fn token(idx: u32, gen: u32) -> u64 {
    (u64::from(gen) << 32) | u64::from(idx)
}

/// Slot index and generation of a token.
fn untoken(tok: u64) -> (u32, u32) {
    ((tok & 0xFFFF_FFFF) as u32, (tok >> 32) as u32)
}

pub(super) enum Entry<S> {
    Free,
    /// A worker is serving it right now; `pending`: readiness was reported meanwhile (an edge
    /// that must not be lost), so it is served again once parked.
    Owned {
        gen: u32,
        pending: bool,
    },
    /// Boxed: a connection changes hands (slot, worker, slot) on every request, and moving a
    /// pointer is cheaper than moving the state.
    Parked {
        gen: u32,
        state: Box<S>,
    },
}

pub(super) struct Slots<S> {
    slots: Vec<Entry<S>>,
    free: Vec<u32>,
    gen: u32,
    /// Slots in use (parked or owned).
    pub(super) open: usize,
    /// Slots a worker holds (`Owned`).
    pub(super) owned: usize,
    /// Where a supervised worker publishes `open` for the others (`crate::balance`).
    pub(super) seat: Option<&'static Seat>,
}

impl<S> Slots<S> {
    pub(super) fn new() -> Slots<S> {
        Slots {
            slots: Vec::new(),
            free: Vec::new(),
            gen: 0,
            open: 0,
            owned: 0,
            seat: None,
        }
    }

    /// A slot for a new connection (counted open, still `Free` until parked), and whether it
    /// is a new one at the end of the table; `None` if the table cannot grow.
    pub(super) fn alloc(&mut self) -> Option<(u32, bool)> {
        let (idx, grown) = match self.free.pop() {
            Some(i) => (i, false),
            None => {
                let i = u32::try_from(self.slots.len()).ok()?;
                self.slots.push(Entry::Free);
                (i, true)
            }
        };
        self.open += 1;
        if let Some(seat) = self.seat {
            seat.publish(self.open);
        }
        if let Some(m) = crate::metrics::counters() {
            m.set_open(self.open);
        }
        Some((idx, grown))
    }

    /// The next generation, for a connection joining the epoll set.
    pub(super) fn next_gen(&mut self) -> u32 {
        self.gen = self.gen.wrapping_add(1);
        self.gen
    }

    pub(super) fn get(&self, idx: u32) -> Option<&Entry<S>> {
        self.slots.get(idx as usize)
    }

    pub(super) fn get_mut(&mut self, idx: u32) -> Option<&mut Entry<S>> {
        self.slots.get_mut(idx as usize)
    }

    /// Every slot with its index (indices fit in u32, see `alloc`).
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &Entry<S>)> {
        (0u32..).zip(&self.slots)
    }

    /// Takes a parked connection for a worker, if `tok` is still current. If its worker is
    /// still on it, marks it pending so it is looked at again when parked.
    pub(super) fn take(&mut self, tok: u64) -> Option<(u32, Box<S>)> {
        let (idx, gen) = untoken(tok);
        let slot = self.slots.get_mut(idx as usize)?;
        match slot {
            Entry::Parked { gen: g, .. } if *g == gen => {}
            Entry::Owned { gen: g, pending } if *g == gen => {
                // Its worker is still on it: tell it to look again when it parks.
                *pending = true;
                return None;
            }
            _ => return None,
        }
        let owned = Entry::Owned {
            gen,
            pending: false,
        };
        let Entry::Parked { state, .. } = std::mem::replace(slot, owned) else {
            return None;
        };
        self.owned += 1;
        Some((idx, state))
    }

    /// A worker gave its connection back (parked again or closed next).
    pub(super) fn unown(&mut self) {
        self.owned -= 1;
    }

    /// Frees slot `idx` (its connection is gone) and returns what it held.
    pub(super) fn free_slot(&mut self, idx: u32) -> Entry<S> {
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return Entry::Free;
        };
        let old = std::mem::replace(slot, Entry::Free);
        self.free.push(idx);
        self.open -= 1;
        if let Some(seat) = self.seat {
            seat.publish(self.open);
        }
        if let Some(m) = crate::metrics::counters() {
            m.set_open(self.open);
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(s: &mut Slots<&'static str>, state: &'static str) -> u64 {
        let (idx, _) = s.alloc().unwrap();
        let gen = s.next_gen();
        *s.get_mut(idx).unwrap() = Entry::Parked {
            gen,
            state: Box::new(state),
        };
        token(idx, gen)
    }

    #[test]
    fn token_round_trips() {
        assert_eq!(untoken(token(7, 0xDEAD_BEEF)), (7, 0xDEAD_BEEF));
        assert_eq!(untoken(token(u32::MAX, 1)), (u32::MAX, 1));
    }

    #[test]
    fn take_gives_a_parked_connection_once() {
        let mut s = Slots::new();
        let tok = parked(&mut s, "a");
        assert_eq!(s.open, 1);
        let (idx, state) = s.take(tok).unwrap();
        assert_eq!((idx, *state), (0, "a"));
        assert_eq!(s.owned, 1);
        // A second event while it is owned marks it pending instead.
        assert!(s.take(tok).is_none());
        assert!(matches!(
            s.get(idx),
            Some(Entry::Owned { pending: true, .. })
        ));
        s.unown();
        assert_eq!(s.owned, 0);
    }

    #[test]
    fn a_stale_token_takes_nothing() {
        let mut s = Slots::new();
        let old = parked(&mut s, "a");
        let (idx, _) = untoken(old);
        s.free_slot(idx);
        assert_eq!(s.open, 0);
        assert!(s.take(old).is_none());
        // The slot is reused by the next connection, under a new generation.
        let new = parked(&mut s, "b");
        assert_eq!(untoken(new).0, idx);
        assert_ne!(new, old);
        assert!(s.take(old).is_none());
        assert_eq!(s.take(new).map(|(_, st)| *st), Some("b"));
    }

    #[test]
    fn free_slots_are_reused_before_the_table_grows() {
        let mut s: Slots<()> = Slots::new();
        assert_eq!(s.alloc(), Some((0, true)));
        assert_eq!(s.alloc(), Some((1, true)));
        assert!(matches!(s.free_slot(0), Entry::Free));
        assert_eq!(s.alloc(), Some((0, false)));
        assert_eq!(s.alloc(), Some((2, true)));
        assert_eq!(s.open, 3);
        assert_eq!(s.iter().count(), 3);
        // Out of range: nothing to free, nothing counted.
        assert!(matches!(s.free_slot(9), Entry::Free));
        assert_eq!(s.open, 3);
    }
}
