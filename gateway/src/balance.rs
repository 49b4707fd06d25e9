//! The board worker processes balance their keep-alive connections on: a small shared memory
//! area the supervisor creates before it starts workers (a `memfd`, inherited like the
//! listening sockets), one seat per worker with its live flag and open-connection count, and
//! the share arithmetic each worker applies to it. Without a supervisor there is no board.
//!
//! The supervisor gives each worker a free seat and clears it when it reaps the worker; a
//! worker publishes its count as connections open and close, and is live while it accepts.
//! A worker's share is the live workers' connections divided by how many they are; one
//! clearly over it (see `Tally::limit`) stops accepting and ends some keep-alive connections
//! after a response until it is back at its share (`Tally::target`).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::shared_mem;

/// How far over its share a worker may be in absolute connections before it counts as over
/// (so that 3 connections on 2 workers do not move back and forth).
const SLACK: u64 = 1;

/// The longest a first-generation worker that is ready waits for the others before it
/// accepts: long enough to cover the usual spread of app imports started together, short
/// enough that one slow import delays the server's first answer by at most this much (the
/// rebalancing moves connections to a worker that comes later).
pub const START_TOGETHER_CAP: Duration = Duration::from_secs(1);

/// One worker's place on the board (a cache line of its own: each worker writes only its own).
#[repr(C, align(64))]
pub struct Seat {
    /// Given to a worker (written by the supervisor only).
    taken: AtomicU64,
    /// Its worker accepts connections (set by the worker; cleared when it stops, and by the
    /// supervisor when it reaps it).
    live: AtomicU64,
    /// Its worker's open connections.
    open: AtomicU64,
    /// Its worker holds (takes no connection), counted in `Header::holding`.
    holding: AtomicU64,
}

#[repr(C, align(64))]
struct Header {
    /// First-generation workers not ready yet (they start accepting together).
    starting: AtomicU64,
    /// Seats holding now: always fewer than the live workers, so that one accepts at least.
    holding: AtomicU64,
}

/// A mapping of the board (never unmapped: it lives as long as the process).
#[derive(Clone, Copy)]
pub struct Board {
    header: &'static Header,
    seats: &'static [Seat],
}

/// The live workers' connections as read from the board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    pub total: u64,
    pub live: u64,
}

impl Tally {
    /// The connections at which a live worker is clearly over its share and takes no more:
    /// more than 20 % over, and at least `SLACK` over its rounded-up share. None with no
    /// live worker.
    pub fn limit(&self) -> u64 {
        if self.live == 0 {
            return u64::MAX;
        }
        let fifth_over = self.total.saturating_mul(6) / self.live.saturating_mul(5);
        fifth_over
            .saturating_add(1)
            .max(self.target().saturating_add(SLACK))
    }

    /// What a worker over its limit sheds down to: its share, rounded up.
    pub fn target(&self) -> u64 {
        if self.live == 0 {
            return u64::MAX;
        }
        self.total.div_ceil(self.live)
    }
}

/// What a live worker does about its share (`Tally::verdict`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Take no new connection (listeners unarmed).
    pub hold: bool,
    /// How many more responses end their connection.
    pub shed: u64,
    /// How many connections it may accept now (0 when holding).
    pub room: u64,
}

impl Tally {
    /// For a worker with `mine` connections that stay (`closing` more are ending after a
    /// response that said so), holding now or not. It holds from its limit on until it is
    /// back at its target with nothing closing: a worker that resumed at once would take
    /// back the clients it just sent away as they reconnect. Not holding, it has room for
    /// at least one: an accept batch that stops for want of room has a worker holding.
    pub fn verdict(&self, mine: u64, closing: u64, holding: bool) -> Verdict {
        let hold = if holding {
            mine > self.target() || closing > 0
        } else {
            mine >= self.limit()
        };
        if hold {
            let shed = mine.saturating_sub(self.target());
            return Verdict {
                hold,
                shed,
                room: 0,
            };
        }
        Verdict {
            hold,
            shed: 0,
            room: self.limit().saturating_sub(mine),
        }
    }
}

impl Board {
    /// The supervisor's board: `seats` free seats, `starting` first-generation workers to
    /// wait for. Returns the fd the workers inherit.
    pub fn create(seats: usize, starting: usize) -> io::Result<(Board, OwnedFd)> {
        let len = board_len(seats)?;
        let fd = shared_mem::create("wsgi-gateway-board", len)?;
        let board = Board::map(&fd, len)?;
        board
            .header
            .starting
            .store(starting as u64, Ordering::Release);
        Ok((board, fd))
    }

    /// A worker's mapping of the board its supervisor passed (`fd` may be closed after).
    pub fn open(fd: &OwnedFd) -> io::Result<Board> {
        let len = shared_mem::len(fd)?;
        if len < size_of::<Header>() || len % size_of::<Seat>() != 0 {
            return Err(io::ErrorKind::InvalidData.into());
        }
        Board::map(fd, len)
    }

    fn map(fd: &OwnedFd, len: usize) -> io::Result<Board> {
        let seats = (len - size_of::<Header>()) / size_of::<Seat>();
        let base = shared_mem::map(fd, len)?;
        // SAFETY: the mapping is page-aligned (so 64-aligned), `len` bytes long (the header
        // then `seats` seats fit), zero-filled or written only through these atomics (every
        // bit pattern is a valid `AtomicU64`), and never unmapped: 'static is true.
        let (header, seats) = unsafe {
            let header = &*(base as *const Header);
            let first = base.add(size_of::<Header>()) as *const Seat;
            (header, std::slice::from_raw_parts(first, seats))
        };
        Ok(Board { header, seats })
    }

    /// The supervisor takes a free seat for a worker it starts (clearing what a worker that
    /// ended left there).
    pub fn take_seat(&self) -> Option<usize> {
        let i = self
            .seats
            .iter()
            .position(|s| s.taken.load(Ordering::Acquire) == 0)?;
        let seat = &self.seats[i];
        seat.live.store(0, Ordering::Release);
        seat.open.store(0, Ordering::Release);
        self.release(seat);
        seat.taken.store(1, Ordering::Release);
        Some(i)
    }

    /// The supervisor frees the seat of a worker it reaped (the process is gone, so nothing
    /// writes to the seat any more).
    pub fn free_seat(&self, i: usize) {
        if let Some(seat) = self.seats.get(i) {
            seat.live.store(0, Ordering::Release);
            seat.open.store(0, Ordering::Release);
            self.release(seat);
            seat.taken.store(0, Ordering::Release);
        }
    }

    /// `seat` stops accepting, unless every other of the `live` workers holds already: each
    /// decides on its own view of the counts, and two views taken at different moments can
    /// both say "over", which would leave new connections in the queue until a tick.
    pub fn try_hold(&self, seat: &Seat, live: u64) -> bool {
        if seat.holding.load(Ordering::Acquire) != 0 {
            return true;
        }
        let held = self
            .header
            .holding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                (h.saturating_add(1) < live).then_some(h.saturating_add(1))
            })
            .is_ok();
        if held {
            seat.holding.store(1, Ordering::Release);
        }
        held
    }

    /// `seat` accepts again (or its worker is gone).
    pub fn release(&self, seat: &Seat) {
        if seat.holding.swap(0, Ordering::AcqRel) != 0 {
            let _ = self
                .header
                .holding
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| h.checked_sub(1));
        }
    }

    pub fn seat(&self, i: usize) -> Option<&'static Seat> {
        self.seats.get(i)
    }

    /// The live workers' connections, now.
    pub fn tally(&self) -> Tally {
        let mut t = Tally { total: 0, live: 0 };
        for seat in self.seats {
            if seat.live.load(Ordering::Acquire) != 0 {
                t.live = t.live.saturating_add(1);
                t.total = t.total.saturating_add(seat.open.load(Ordering::Relaxed));
            }
        }
        t
    }

    /// A first-generation worker is ready: it waits until every one is (or `cap` passed), so
    /// that they start accepting together. Polled: it happens once per worker, at start.
    pub fn start_together(&self, cap: Duration) {
        let starting = &self.header.starting;
        let _ = starting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        let until = Instant::now() + cap;
        while starting.load(Ordering::Acquire) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Seat {
    /// This worker's open connections (stored under the lock of its connection table).
    pub fn publish(&self, open: usize) {
        self.open.store(open as u64, Ordering::Relaxed);
    }

    pub fn set_live(&self, live: bool) {
        self.live.store(u64::from(live), Ordering::Release);
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire) != 0
    }
}

fn board_len(seats: usize) -> io::Result<usize> {
    seats
        .checked_mul(size_of::<Seat>())
        .and_then(|n| n.checked_add(size_of::<Header>()))
        .ok_or_else(|| io::ErrorKind::InvalidInput.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(total: u64, live: u64) -> Tally {
        Tally { total, live }
    }

    #[test]
    fn one_live_worker_always_accepts() {
        let (board, _fd) = Board::create(3, 0).expect("board");
        let seats: Vec<&Seat> = (0..3)
            .map(|_| board.seat(board.take_seat().expect("seat")).expect("seat"))
            .collect();
        // Two live: the first may hold, the second may not while the first does.
        assert!(board.try_hold(seats[0], 2));
        assert!(
            board.try_hold(seats[0], 2),
            "holding again is still holding"
        );
        assert!(!board.try_hold(seats[1], 2));
        // Three live: a second may hold, not a third.
        assert!(board.try_hold(seats[1], 3));
        assert!(!board.try_hold(seats[2], 3));
        // A worker that resumes, or whose seat is freed, lets another hold.
        board.release(seats[0]);
        assert!(board.try_hold(seats[2], 3));
        board.free_seat(1);
        assert!(board.try_hold(seats[0], 3));
    }

    #[test]
    fn fifty_connections_on_two_workers_allow_twenty_to_thirty() {
        let t = tally(50, 2);
        assert_eq!(t.target(), 25);
        // 30 is 20 % over: still within; 31 is over.
        assert_eq!(t.limit(), 31);
    }

    #[test]
    fn small_numbers_get_the_slack() {
        // 5 on 2: more than a fifth over is 4, as is the rounded-up share (3) plus slack.
        assert_eq!(tally(5, 2).target(), 3);
        assert_eq!(tally(5, 2).limit(), 4);
        // 3 on 2: a worker holding all three is over; two of three is its share.
        assert_eq!(tally(3, 2).limit(), 3);
        assert_eq!(tally(0, 2).limit(), 1);
        assert_eq!(tally(0, 2).target(), 0);
    }

    #[test]
    fn the_limit_is_never_below_the_target() {
        // Shedding stops at the target; were the limit below it, a worker would flap.
        for live in 1..=16 {
            for total in 0..=500 {
                let t = tally(total, live);
                assert!(t.limit() > t.target(), "{t:?}");
                assert!(t.target().saturating_mul(live) >= total, "{t:?}");
            }
        }
    }

    #[test]
    fn one_live_worker_is_never_over() {
        for total in 0..100 {
            assert!(tally(total, 1).limit() > total);
        }
        assert_eq!(tally(7, 0).limit(), u64::MAX);
        assert_eq!(tally(u64::MAX, 3).target(), u64::MAX.div_ceil(3));
    }

    fn verdict(hold: bool, shed: u64, room: u64) -> Verdict {
        Verdict { hold, shed, room }
    }

    #[test]
    fn a_worker_holding_every_connection_sheds_half_when_a_second_one_is_live() {
        let t = tally(50, 2);
        assert_eq!(t.verdict(50, 0, false), verdict(true, 25, 0));
        // Half-way: 20 answered with `close` and still closing.
        assert_eq!(t.verdict(30, 20, true), verdict(true, 5, 0));
        // At its share but clients still reconnecting: still holding, nothing more to shed.
        assert_eq!(t.verdict(25, 5, true), verdict(true, 0, 0));
        // Done: accepts again, up to its limit.
        assert_eq!(t.verdict(25, 0, true), verdict(false, 0, 6));
    }

    #[test]
    fn a_worker_within_its_share_accepts_up_to_the_limit() {
        let t = tally(50, 2);
        assert_eq!(t.verdict(30, 0, false), verdict(false, 0, 1));
        assert_eq!(t.verdict(31, 0, false), verdict(true, 6, 0));
        assert_eq!(t.verdict(20, 0, false), verdict(false, 0, 11));
        // Holding, it stays so above its target (no flapping at the limit).
        assert_eq!(t.verdict(28, 0, true), verdict(true, 3, 0));
    }

    #[test]
    fn a_lone_live_worker_never_holds() {
        for mine in 0..200 {
            let v = tally(mine, 1).verdict(mine, 0, false);
            assert!(!v.hold && v.room > 0, "{mine}: {v:?}");
        }
        // Before any worker is live (its own seat not yet either): no limit at all.
        assert_eq!(tally(0, 0).verdict(5, 0, false).room, u64::MAX - 5);
    }

    #[test]
    fn two_mappings_share_seats_and_the_tally_counts_live_ones() {
        let (sup, fd) = Board::create(4, 2).expect("board");
        let worker = Board::open(&fd).expect("mapped again");
        assert_eq!(worker.seats.len(), 4);
        let (a, b) = (sup.take_seat().unwrap(), sup.take_seat().unwrap());
        assert_ne!(a, b);
        worker.seat(a).unwrap().publish(30);
        worker.seat(b).unwrap().publish(20);
        // Not live yet: not counted.
        assert_eq!(sup.tally(), tally(0, 0));
        worker.seat(a).unwrap().set_live(true);
        worker.seat(b).unwrap().set_live(true);
        assert_eq!(sup.tally(), tally(50, 2));
        // A reaped worker's seat is cleared and given to the next one.
        sup.free_seat(a);
        assert_eq!(worker.tally(), tally(20, 1));
        assert_eq!(sup.take_seat(), Some(a));
        assert_eq!(sup.take_seat().map(|i| i != a && i != b), Some(true));
        assert!(sup.take_seat().is_some());
        assert_eq!(sup.take_seat(), None);
    }

    #[test]
    fn the_first_generation_waits_for_the_last_one_ready() {
        let (board, _fd) = Board::create(2, 2).expect("board");
        // One ready of two: returns once the cap passed, the other still starting.
        board.start_together(Duration::from_millis(50));
        assert_eq!(board.header.starting.load(Ordering::Acquire), 1);
        // The last one: no wait at all (the cap is far off), and the count stays at zero.
        board.start_together(Duration::from_secs(3600));
        board.start_together(Duration::from_secs(3600));
        assert_eq!(board.header.starting.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_file_of_the_wrong_size_is_refused() {
        let fd = shared_mem::create("test", 10).unwrap();
        assert!(Board::open(&fd).is_err());
    }
}
