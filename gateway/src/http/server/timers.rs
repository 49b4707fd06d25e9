//! Time on the main thread's side: the deadline heap (one live entry per slot), closing
//! parked connections past their deadline, and resuming listeners after a failed accept.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustix::event::epoll::{self, EventData};

use super::phase::{gathered_line, Phase};
use super::slots::Entry;
use super::{armed, ConnState, Server, LISTENER_BIT};
use crate::http::connection::peer_text;
use crate::http::error_response;
use crate::http::rate::TooSlow;

/// How soon a connection past its deadline whose bytes no worker has read yet is looked at
/// again.
const RECHECK: Duration = Duration::from_millis(500);

/// When to look at a slot's deadline: at most one live entry per slot (see `queued`), so the
/// heap holds as many entries as connections, not one per request served.
pub(super) struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, u32)>>,
    /// Per slot: the time of its live entry in `heap`. A connection parked with a later
    /// deadline keeps the earlier entry; `expire` re-queues it when that entry comes due.
    queued: Vec<Option<Instant>>,
}

impl Deadlines {
    pub(super) fn new() -> Deadlines {
        Deadlines {
            heap: BinaryHeap::new(),
            queued: Vec::new(),
        }
    }

    /// The slot table grew by one slot.
    pub(super) fn grow(&mut self) {
        self.queued.push(None);
    }

    /// Makes sure slot `idx` is looked at by `at`: a new heap entry only when the slot has
    /// none that early already.
    pub(super) fn queue(&mut self, idx: u32, at: Instant) {
        let Some(queued) = self.queued.get_mut(idx as usize) else {
            return;
        };
        if queued.is_none_or(|q| q > at) {
            *queued = Some(at);
            self.heap.push(Reverse((at, idx)));
        }
    }

    /// The earliest entry's time.
    pub(super) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The next slot whose live entry is due by `now`, taken off the heap (entries superseded
    /// by an earlier one for the same slot are dropped on the way).
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<u32> {
        while let Some(Reverse((at, idx))) = self.heap.peek().copied() {
            if at > now {
                return None;
            }
            self.heap.pop();
            match self.queued.get_mut(idx as usize) {
                Some(q) if *q == Some(at) => {
                    *q = None;
                    return Some(idx);
                }
                // Superseded by an earlier entry for the same slot.
                _ => continue,
            }
        }
        None
    }
}

impl Server {
    /// The time until the next deadline (for the main thread's sleep).
    pub fn next_deadline(&self) -> Option<Instant> {
        let c = self.conns.lock();
        let conn = c.deadlines.next();
        let listener = c.paused.iter().map(|(at, _)| *at).min();
        conn.into_iter().chain(listener).min()
    }

    /// Re-arms listeners whose rest after a failed accept is over.
    pub(super) fn resume_listeners(&self) {
        let now = Instant::now();
        let due: Vec<usize> = {
            let mut c = self.conns.lock();
            let (due, rest): (Vec<_>, Vec<_>) = c.paused.drain(..).partition(|(at, _)| *at <= now);
            c.paused = rest;
            due.into_iter().map(|(_, idx)| idx).collect()
        };
        let held = self.share.is_some() && self.conns.lock().held;
        if self.shared.stopping.load(Ordering::Acquire) || held {
            return;
        }
        for idx in due {
            if let Some(l) = self.listeners.get(idx) {
                let data = EventData::new_u64(LISTENER_BIT | idx as u64);
                let _ = epoll::modify(&self.epoll, l.fd(), data, armed());
            }
        }
    }

    /// Closes parked connections whose deadline passed (408 for a half-received head).
    pub fn expire(&self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut c = self.conns.lock();
            while let Some(idx) = c.deadlines.pop_due(now) {
                let deadline = match c.slots.get(idx) {
                    Some(Entry::Parked { state, .. }) => state.deadline,
                    // Being served (it queues itself again when parked) or gone.
                    _ => continue,
                };
                if deadline > now {
                    // Served and parked again since this entry was queued.
                    c.deadlines.queue(idx, deadline);
                } else if waiting_for_us(c.slots.get(idx)) {
                    // Its bytes are here but every worker was busy: the wait is ours, not the
                    // client's (back-pressure, not a refusal). Look again soon.
                    tracing::debug!("connection {idx}: request bytes unread past the deadline (every worker busy); kept");
                    c.deadlines.queue(idx, now + RECHECK);
                } else if let Entry::Parked { state, .. } = c.slots.free_slot(idx) {
                    expired.push(state);
                }
            }
        }
        for mut state in expired {
            let _ = epoll::delete(&self.epoll, state.conn.io.stream.as_fd());
            let slow = state.receive_meter().map(|m| m.limit().1);
            let why = match state.phase {
                // A silent one closed by a graceful stop (`STOP_GRACE`) is not the proxy's fault.
                Phase::Proxy
                    if state.buf.is_empty() && self.shared.stopping.load(Ordering::Acquire) =>
                {
                    None
                }
                Phase::Proxy => {
                    let what = match state.buf.is_empty() {
                        true => "sent no PROXY header",
                        false => "sent an incomplete PROXY header",
                    };
                    tracing::warn!(
                        "{}: {what} within --header-timeout; connection closed",
                        super::proxied::real_peer(&state.conn.peer)
                    );
                    None
                }
                Phase::Reading if !state.buf.is_empty() => {
                    Some("request head not received within --header-timeout")
                }
                Phase::Body if slow == Some(TooSlow::Rate) => {
                    Some("request body arrived slower than --min-request-body-rate")
                }
                Phase::Body => Some("request body not received within --body-timeout"),
                Phase::Drain => {
                    let limit = match slow {
                        Some(TooSlow::Rate) => "--min-request-body-rate",
                        _ => "--body-timeout",
                    };
                    tracing::info!(
                        "{}: the unread rest of a request body did not arrive ({limit}); connection closed",
                        peer_text(&state.conn.peer)
                    );
                    None
                }
                Phase::Sending { .. } => {
                    let limit = match state.conn.io.send_meter().limit().1 {
                        TooSlow::Rate => "read its response slower than --min-response-rate",
                        TooSlow::Idle => "stopped reading its response (--write-timeout)",
                    };
                    tracing::info!(
                        "{}: client {limit}; connection closed",
                        peer_text(&state.conn.peer)
                    );
                    None
                }
                _ => None,
            };
            if let Some(why) = why {
                let what = match state.phase {
                    Phase::Body => gathered_line(&state),
                    _ => peer_text(&state.conn.peer),
                };
                tracing::info!("408 for {what}: {why}");
                let resp = error_response(408);
                let _ = state.conn.io.stream.write_nb(&resp);
            }
        }
    }
}

/// Whether a parked connection past its deadline has unread bytes in its socket: it sent
/// (more of) a request that no worker has read yet. Not for a response being sent or a
/// lingering close, which wait on the client alone.
fn waiting_for_us(entry: Option<&Entry<ConnState>>) -> bool {
    let Some(Entry::Parked { state, .. }) = entry else {
        return false;
    };
    if matches!(state.phase, Phase::Sending { .. } | Phase::Linger) {
        return false;
    }
    let mut byte = [0u8; 1];
    let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
    matches!(
        rustix::net::recv(&state.conn.io.stream, &mut byte, flags),
        Ok((n, _)) if n > 0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(slots: usize) -> Deadlines {
        let mut d = Deadlines::new();
        for _ in 0..slots {
            d.grow();
        }
        d
    }

    #[test]
    fn due_slots_come_out_earliest_first() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut d = table(3);
        d.queue(0, at(30));
        d.queue(1, at(10));
        d.queue(2, at(20));
        assert_eq!(d.next(), Some(at(10)));
        assert_eq!(d.pop_due(at(25)), Some(1));
        assert_eq!(d.pop_due(at(25)), Some(2));
        // Not due yet: stays queued.
        assert_eq!(d.pop_due(at(25)), None);
        assert_eq!(d.next(), Some(at(30)));
        assert_eq!(d.pop_due(at(30)), Some(0));
        assert_eq!(d.pop_due(at(1000)), None);
        assert_eq!(d.next(), None);
    }

    #[test]
    fn a_later_deadline_keeps_the_earlier_entry() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut d = table(1);
        d.queue(0, at(10));
        // A connection parked again with a later deadline adds no entry: the earlier one
        // comes due, and `expire` re-queues it.
        d.queue(0, at(50));
        assert_eq!(d.heap.len(), 1);
        assert_eq!(d.pop_due(at(10)), Some(0));
        assert_eq!(d.pop_due(at(100)), None);
        d.queue(0, at(50));
        assert_eq!(d.pop_due(at(50)), Some(0));
    }

    #[test]
    fn an_earlier_deadline_supersedes_the_queued_one() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut d = table(2);
        d.queue(0, at(50));
        d.queue(1, at(40));
        d.queue(0, at(10));
        assert_eq!(d.heap.len(), 3);
        assert_eq!(d.pop_due(at(10)), Some(0));
        // Slot 0's old entry (50) is dropped on the way, not reported again.
        assert_eq!(d.pop_due(at(100)), Some(1));
        assert_eq!(d.pop_due(at(100)), None);
        assert!(d.heap.is_empty());
    }

    #[test]
    fn slots_not_in_the_table_are_ignored() {
        let t0 = Instant::now();
        let mut d = table(1);
        d.queue(5, t0);
        assert_eq!(d.next(), None);
        assert_eq!(d.pop_due(t0), None);
    }
}
