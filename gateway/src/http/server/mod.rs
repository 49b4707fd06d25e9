//! The HTTP front end's work source: one epoll set shared by all workers (leader/follower).
//! Connections are registered once, edge-triggered; only the worker holding the poller role
//! waits on the set, and a connection's events go to whoever takes it from its slot, so a ready
//! connection is served by exactly one worker, which reads, parses and runs the app inline,
//! then parks it (no system call). An event for a connection a worker is still serving is
//! remembered and served when the worker parks it. Idle connections sit parked in the set and
//! cost no worker; a worker stuck in a slow app holds only its own connection. The main
//! thread keeps time: header, keep-alive and linger deadlines, and the graceful stop.
//!
//! This file: `Server` and the connection table all threads share under one lock (`Conns`),
//! and parking a connection in it. The rest, one job a file: `slots` (the slot table and its
//! generation tokens), `phase` (a connection's state between requests), `reactor` (epoll wait,
//! accept, take and put back: the `WorkSource`), `serve` (one worker's turn on a connection),
//! `timers` (deadlines and expiry), `stop` (the graceful stop and the main thread's loop),
//! `proxied` (`--proxy-protocol`: the trusted peer check and the PROXY header),
//! `share` (a supervised worker keeping within its share of the connections).

mod phase;
mod proxied;
mod reactor;
mod serve;
mod share;
mod slots;
mod stop;
mod timers;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use rustix::event::epoll::{self, EventData, EventFlags};

use super::io::SendLimits;
use super::listener::Bound;
use super::spool::SpoolBudget;
use super::Shared;
pub use share::BoardSeat;

use phase::{ConnState, Phase};
use share::Share;
use slots::{token, Entry, Slots};
use timers::Deadlines;

/// Set in a listener's epoll token (its index below it); connection tokens are `slots::token`.
const LISTENER_BIT: u64 = 1 << 63;

/// Everything the workers and the main thread share about connections, under one lock.
struct Conns {
    slots: Slots<ConnState>,
    /// Threads inside `accept`: a connection they took is in neither `owned` nor `slots`
    /// until it is inserted, so a stop waits for them (`busy`).
    accepting: usize,
    deadlines: Deadlines,
    /// Listeners resting after a failed accept, and until when.
    paused: Vec<(Instant, usize)>,
    /// A stop began: until then idle connections may still bring a request (`busy`).
    draining_until: Option<Instant>,
    /// Events fetched in a batch and not yet served: whoever holds the poller role next takes
    /// them, so a worker stuck in a slow app strands none of them.
    ready: VecDeque<u64>,
    /// Over its share of the connections (`share`): the listeners stay unarmed.
    held: bool,
}

impl Conns {
    /// Parks `state` in slot `idx` with its deadline queued. A `new` connection gets a new
    /// generation and joins the epoll set (dropped if it cannot); a known one keeps both, and
    /// goes straight back to the ready queue if readiness was reported while it was served.
    fn park(&mut self, epoll: &OwnedFd, idx: u32, state: Box<ConnState>, new: bool) {
        let mut state = state;
        let (gen, pending) = match self.slots.get(idx) {
            Some(Entry::Owned { gen, pending }) if !new => (*gen, *pending),
            _ => {
                let gen = self.slots.next_gen();
                let data = EventData::new_u64(token(idx, gen));
                let fd = state.conn.io.stream.as_fd();
                if epoll::add(epoll, fd, data, conn_events()).is_err() {
                    self.slots.free_slot(idx);
                    return;
                }
                (gen, false)
            }
        };
        let want_out = matches!(state.phase, Phase::Sending { .. });
        if want_out != state.out_armed {
            // Modifying re-checks readiness: a socket that drained meanwhile still reports.
            let data = EventData::new_u64(token(idx, gen));
            let events = if want_out {
                conn_events() | EventFlags::OUT
            } else {
                conn_events()
            };
            if epoll::modify(epoll, state.conn.io.stream.as_fd(), data, events).is_err() {
                self.slots.free_slot(idx);
                return;
            }
            state.out_armed = want_out;
        }
        self.deadlines.queue(idx, state.deadline);
        if let Some(slot) = self.slots.get_mut(idx) {
            *slot = Entry::Parked { gen, state };
        }
        if pending {
            self.ready.push_back(token(idx, gen));
        }
    }
}

pub struct Server {
    epoll: OwnedFd,
    listeners: Vec<Bound>,
    conns: Mutex<Conns>,
    pub shared: Arc<Shared>,
    /// What every connection's sending side is bounded by, the spool budget included.
    send_limits: SendLimits,
    /// A supervised worker's seat on the board (none in a single process).
    share: Option<Share>,
}

impl Server {
    /// `seat`: a supervised worker's place on the board; its listeners are armed by
    /// `start_accepting`, not here.
    pub fn new(
        listeners: Vec<Bound>,
        shared: Arc<Shared>,
        seat: Option<BoardSeat>,
    ) -> io::Result<Server> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let events = match seat {
            Some(_) => share::disarmed(),
            None => armed(),
        };
        for (i, l) in listeners.iter().enumerate() {
            epoll::add(
                &epoll,
                l.fd(),
                EventData::new_u64(LISTENER_BIT | i as u64),
                events,
            )?;
        }
        let mut slots = Slots::new();
        slots.seat = seat.map(|s| s.seat());
        let s = &shared.settings;
        let send_limits = SendLimits {
            idle: s.write_timeout,
            min_rate: s.min_response_rate,
            write_buffer: s.write_buffer,
            budget: SpoolBudget::new(s.write_buffer_total),
        };
        Ok(Server {
            send_limits,
            epoll,
            listeners,
            conns: Mutex::new(Conns {
                slots,
                accepting: 0,
                deadlines: Deadlines::new(),
                paused: Vec::new(),
                draining_until: None,
                ready: VecDeque::new(),
                held: false,
            }),
            shared,
            share: seat.map(Share::new),
        })
    }

    pub fn listeners(&self) -> &[Bound] {
        &self.listeners
    }
}

/// Connections: registered once, edge-triggered (see the module comment).
fn conn_events() -> EventFlags {
    EventFlags::IN | EventFlags::RDHUP | EventFlags::ET
}

/// Listeners: one-shot, re-armed after each accept batch, so one worker accepts at a time.
fn armed() -> EventFlags {
    EventFlags::IN | EventFlags::RDHUP | EventFlags::ONESHOT
}
