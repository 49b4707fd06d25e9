//! Keeping a supervised worker within its share of the connections, on the supervisor's board
//! (`crate::balance`): the first generation starts accepting together; a worker clearly over
//! its share stops accepting (its listeners stay unarmed) and answers the next requests on
//! some keep-alive connections with `Connection: close`, after which their clients reconnect
//! to a worker with room, until it is back at its share. Looked at on each accept batch, on
//! the main thread's tick, and as connections close while it is over. A process without a
//! supervisor has no board and none of this runs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustix::event::epoll::{self, EventData, EventFlags};

use super::phase::ConnState;
use super::{armed, Server, LISTENER_BIT};
use crate::balance::{Board, Seat, Verdict, START_TOGETHER_CAP};

/// This worker's seat on the board its supervisor passed.
#[derive(Clone, Copy)]
pub struct BoardSeat {
    board: Board,
    seat: &'static Seat,
    /// First generation: wait for the others before accepting.
    start_together: bool,
}

impl BoardSeat {
    pub fn new(board: Board, seat: usize, start_together: bool) -> Option<BoardSeat> {
        Some(BoardSeat {
            board,
            seat: board.seat(seat)?,
            start_together,
        })
    }

    /// The seat this worker publishes its connection count on.
    pub(super) fn seat(&self) -> &'static Seat {
        self.seat
    }
}

pub(super) struct Share {
    pub(super) seat: BoardSeat,
    /// Connections answered with `Connection: close` to rebalance that are not closed yet.
    closing: Arc<AtomicUsize>,
    /// How many more responses end their connection (set while over the share).
    budget: AtomicUsize,
}

impl Share {
    pub(super) fn new(seat: BoardSeat) -> Share {
        Share {
            seat,
            closing: Arc::new(AtomicUsize::new(0)),
            budget: AtomicUsize::new(0),
        }
    }
}

/// A connection answered with `Connection: close` to rebalance: counted until it is dropped
/// (closed, whichever way), so the same excess is not shed twice.
pub(super) struct Shed(Arc<AtomicUsize>);

impl Drop for Shed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A listener that reports nothing (one-shot with no event: disabled until re-armed).
pub(super) fn disarmed() -> EventFlags {
    EventFlags::ONESHOT
}

impl Server {
    /// Once the worker said it is ready: a first-generation one waits for the others (at most
    /// `START_TOGETHER_CAP`), then it is live on the board and its listeners are armed.
    /// Without a board the listeners were armed from the start.
    pub fn start_accepting(&self) {
        let Some(share) = &self.share else { return };
        if share.seat.start_together {
            share.seat.board.start_together(START_TOGETHER_CAP);
        }
        let _c = self.conns.lock();
        if self.shared.stopping.load(Ordering::Acquire) {
            return;
        }
        share.seat.seat.set_live(true);
        self.arm_listeners(armed());
    }

    /// Stops counting in the others' share (a stop began).
    pub(super) fn leave_board(&self) {
        if let Some(share) = &self.share {
            share.seat.seat.set_live(false);
            share.seat.board.release(share.seat.seat);
        }
    }

    fn arm_listeners(&self, events: EventFlags) {
        for (idx, l) in self.listeners.iter().enumerate() {
            let data = EventData::new_u64(LISTENER_BIT | idx as u64);
            let _ = epoll::modify(&self.epoll, l.fd(), data, events);
        }
    }

    /// Looks at this worker's connections against its share, holds or resumes accepting, and
    /// sets how many responses end their connection. Returns how many connections it may
    /// accept now (`usize::MAX` without a board).
    ///
    /// `tick`: the main thread's periodic look, the only one that may raise the number to
    /// shed. Between a connection sent away and its client's reconnection to another worker
    /// it is in nobody's count, so a look in that moment sees too few connections in all (a
    /// lower share) and would send more away; the other looks (accepts, closes, many per
    /// tick) only ever lower it.
    pub(super) fn rebalance(&self, tick: bool) -> usize {
        let Some(share) = &self.share else {
            return usize::MAX;
        };
        let mut c = self.conns.lock();
        if !share.seat.seat.is_live() || self.shared.stopping.load(Ordering::Acquire) {
            return usize::MAX;
        }
        let closing = share.closing.load(Ordering::Acquire) as u64;
        let mine = (c.slots.open as u64).saturating_sub(closing);
        let board = share.seat.board;
        let tally = board.tally();
        let mut v = tally.verdict(mine, closing, c.held);
        if v.hold && !board.try_hold(share.seat.seat, tally.live) {
            // Every other worker holds: this one takes what comes, and sends nobody away.
            v = Verdict {
                hold: false,
                shed: 0,
                room: u64::MAX,
            };
        }
        let shed = usize::try_from(v.shed).unwrap_or(usize::MAX);
        if tick {
            share.budget.store(shed, Ordering::Release);
        } else {
            share.budget.fetch_min(shed, Ordering::AcqRel);
        }
        if v.hold != c.held {
            c.held = v.hold;
            if !v.hold {
                // The board's hold is taken with `try_hold` above and given back only here.
                board.release(share.seat.seat);
            }
            tracing::debug!(
                "{mine} connections of {} on {} workers: {}",
                tally.total,
                tally.live,
                if v.hold {
                    "over the share, holding"
                } else {
                    "back within the share"
                }
            );
            // Under the lock, so two looks cannot leave the listeners in the older state.
            self.arm_listeners(if v.hold { disarmed() } else { armed() });
        }
        usize::try_from(v.room).unwrap_or(usize::MAX)
    }

    /// A connection closed: while holding, look again (it may be back within its share).
    pub(super) fn closed_one(&self) {
        if self.share.is_some() && self.conns.lock().held {
            self.rebalance(false);
        }
    }

    /// Whether the response to the request just read on `state` ends the connection, to
    /// bring this worker back to its share (`close`: the request asked for that anyway).
    /// Not when more than the head has arrived (`rest`: a body, or pipelined requests that
    /// closing would leave unanswered): another connection's request will do.
    pub(super) fn shed(&self, state: &mut ConnState, close: bool, rest: &[u8]) -> bool {
        let Some(share) = &self.share else {
            return false;
        };
        if close || !rest.is_empty() || state.shed.is_some() {
            return false;
        }
        let took = share
            .budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if took.is_err() {
            return false;
        }
        share.closing.fetch_add(1, Ordering::AcqRel);
        state.shed = Some(Shed(share.closing.clone()));
        true
    }
}
