//! The HTTP front end's work source: one epoll set shared by all workers (leader/follower).
//! Connections are registered once, edge-triggered; only the worker holding the poller role
//! waits on the set, and a connection's events go to whoever takes it from its slot, so a ready
//! connection is served by exactly one worker, which reads, parses and runs the app inline,
//! then parks it (no system call). An event for a connection a worker is still serving is
//! remembered and served when the worker parks it. Idle connections sit parked in the set and
//! cost no worker; a worker stuck in a slow app holds only its own connection. The main
//! thread keeps time: header, keep-alive and linger deadlines, and the graceful stop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use pyo3::prelude::*;
use rustix::event::epoll::{self, Event, EventData, EventFlags};
use rustix::net::SocketFlags;

use super::body::{Drain, Drained, CONTINUE};
use super::connection::{self, peer_text, Gathering, Served, Start};
use super::head::{parse_head_incremental, HeadScan};
use super::io::{ConnIo, SendLimits, Stream};
use super::listener::{Bound, Sock};
use super::rate::{RateMeter, TooSlow};
use super::spool::SpoolBudget;
use super::{error_response, Conn, Settings, Shared};
use crate::pool::{Next, WorkSource};
use crate::request::{Peer, TcpPeer};

const LISTENER_BIT: u64 = 1 << 63;
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_CHUNK]);
    /// The buffer of the last request this thread finished, for its next read: the allocation
    /// and its shared-ownership header are reused instead of made for every request.
    static SPARE: std::cell::Cell<BytesMut> = std::cell::Cell::new(BytesMut::new());
}
/// A read buffer that grew past this (a huge head, a body read ahead) is freed, not kept.
const SPARE_MAX: usize = 64 * 1024;

const LINGER: Duration = Duration::from_secs(2);
/// Connections one worker accepts before it re-arms the listener and lets others in.
const ACCEPT_BATCH: usize = 64;
/// Readiness events taken from the kernel in one `epoll_wait`; the rest wait in `Conns::ready`.
const EVENT_BATCH: usize = 64;
/// On a graceful stop, how long a just-accepted connection that has sent nothing yet may take
/// to start its request.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// How soon a connection past its deadline whose bytes no worker has read yet is looked at
/// again.
const RECHECK: Duration = Duration::from_millis(500);
/// How long a listener rests after accept failed (out of file descriptors).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of the next request (keep-alive timeout).
    Idle,
    /// Part of a head has arrived (header timeout, counted from its first byte).
    Reading,
    /// The head is in; the start of the body is still arriving (`ConnState::gathering`; its
    /// meter bounds the wait). No worker is held meanwhile.
    Body,
    /// The response is out but the app left part of the body unread, and it has not all
    /// arrived: received and discarded (`ConnState::drain`), then the next request is read.
    Drain,
    /// The response is written but the client has not taken all of it: the reactor sends the
    /// rest as it reads (write timeout, from the last progress). No worker is held meanwhile.
    /// `close`: then linger and close instead of serving the next request.
    Sending { close: bool },
    /// Closing: discard what the client still sends, then close, so an RST cannot destroy the
    /// response just written.
    Linger,
}

struct ConnState {
    conn: Conn,
    buf: BytesMut,
    phase: Phase,
    deadline: Instant,
    /// The epoll registration includes EPOLLOUT (only while `Sending`).
    out_armed: bool,
    /// How far the head at the start of `buf` has been checked, so a head that trickles in
    /// is not parsed whole on every read (it resets itself once the head is parsed).
    head_scan: HeadScan,
    /// `Body`: the request whose body is being gathered (`buf` holds only body bytes, so the
    /// head is parsed once, not on every read of the body).
    gathering: Option<Box<Gathering>>,
    /// `Drain` (or `Sending` before it): the unread rest of the last request's body.
    drain: Option<Box<Drain>>,
    /// When the current wait on the client began, for the transfer's rate meter.
    since: Instant,
}

impl ConnState {
    /// Waiting for the next request: no buffer held, the keep-alive timeout runs.
    fn idle(&mut self, settings: &Settings) {
        self.phase = Phase::Idle;
        self.deadline = Instant::now() + settings.keepalive_timeout;
        self.buf = BytesMut::new();
    }

    /// A head has begun to arrive: the header timeout runs from now.
    fn reading(&mut self, settings: &Settings) {
        self.phase = Phase::Reading;
        self.deadline = Instant::now() + settings.header_timeout;
    }

    /// The head is complete and the body is awaited: its meter sets the deadline.
    fn gather(&mut self, gathering: Box<Gathering>) {
        self.phase = Phase::Body;
        self.since = Instant::now();
        self.deadline = self.since + gathering.meter.limit().0;
        self.gathering = Some(gathering);
    }

    /// The unread rest of the body is discarded as it arrives.
    fn drain(&mut self, drain: Box<Drain>) {
        self.phase = Phase::Drain;
        self.since = Instant::now();
        self.deadline = self.since + drain.meter.limit().0;
        self.drain = Some(drain);
    }

    /// The meter of the transfer this connection waits on (body being gathered or drained).
    fn receive_meter(&mut self) -> Option<&mut RateMeter> {
        match self.phase {
            Phase::Body => self.gathering.as_mut().map(|g| &mut g.meter),
            Phase::Drain => self.drain.as_mut().map(|d| &mut d.meter),
            _ => None,
        }
    }

    /// `n` body bytes arrived: the wait so far counts against the client's rate, and the
    /// deadline moves by what the bytes earned (not back to a whole idle limit per byte).
    fn received(&mut self, n: usize) {
        let (since, now) = (self.since, Instant::now());
        if let Some(meter) = self.receive_meter() {
            self.deadline = meter.waited_until(since, now, n);
            self.since = now;
        }
    }

    /// The response is queued for the reactor to send; `close`: the connection ends after it.
    fn sending(&mut self, close: bool) {
        self.phase = Phase::Sending { close };
        self.since = Instant::now();
        self.deadline = self.since + self.conn.io.send_meter().limit().0;
    }

    /// Ends the connection once the client has the whole response: lingers now, or after the
    /// queued rest went out.
    fn close(&mut self) {
        self.drain = None;
        if self.conn.io.spooled() {
            self.sending(true);
        } else {
            self.linger();
        }
    }

    /// Half-closes and starts discarding: the client sees our FIN after the response.
    fn linger(&mut self) {
        self.conn.io.stream.shutdown_write();
        self.buf = BytesMut::new();
        self.phase = Phase::Linger;
        self.deadline = Instant::now() + LINGER;
    }
}

enum Entry {
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
        state: Box<ConnState>,
    },
}

struct Conns {
    slots: Vec<Entry>,
    free: Vec<u32>,
    gen: u32,
    open: usize,
    owned: usize,
    /// Threads inside `accept`: a connection they took is in neither `owned` nor `slots`
    /// until it is inserted, so a stop waits for them (`busy`).
    accepting: usize,
    /// When to look at a slot's deadline: at most one live entry per slot (see `queued`), so
    /// the heap holds as many entries as connections, not one per request served.
    deadlines: BinaryHeap<Reverse<(Instant, u32)>>,
    /// Per slot: the time of its live entry in `deadlines`. A connection parked with a later
    /// deadline keeps the earlier entry; `expire` re-queues it when that entry comes due.
    queued: Vec<Option<Instant>>,
    /// Listeners resting after a failed accept, and until when.
    paused: Vec<(Instant, usize)>,
    /// A stop began: until then idle connections may still bring a request (`busy`).
    draining_until: Option<Instant>,
    /// Events fetched in a batch and not yet served: whoever holds the poller role next takes
    /// them, so a worker stuck in a slow app strands none of them.
    ready: std::collections::VecDeque<u64>,
}

impl Conns {
    /// Parks `state` in slot `idx` with its deadline queued. A `new` connection gets a new
    /// generation and joins the epoll set (dropped if it cannot); a known one keeps both, and
    /// goes straight back to the ready queue if readiness was reported while it was served.
    fn park(&mut self, epoll: &OwnedFd, idx: u32, state: Box<ConnState>, new: bool) {
        let mut state = state;
        let (gen, pending) = match self.slots.get(idx as usize) {
            Some(Entry::Owned { gen, pending }) if !new => (*gen, *pending),
            _ => {
                self.gen = self.gen.wrapping_add(1);
                let data = EventData::new_u64(token(idx, self.gen));
                let fd = state.conn.io.stream.as_fd();
                if epoll::add(epoll, fd, data, conn_events()).is_err() {
                    self.free_slot(idx);
                    return;
                }
                (self.gen, false)
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
                self.free_slot(idx);
                return;
            }
            state.out_armed = want_out;
        }
        self.queue_deadline(idx, state.deadline);
        if let Some(slot) = self.slots.get_mut(idx as usize) {
            *slot = Entry::Parked { gen, state };
        }
        if pending {
            self.ready.push_back(token(idx, gen));
        }
    }

    /// Makes sure slot `idx` is looked at by `at`: a new heap entry only when the slot has
    /// none that early already.
    fn queue_deadline(&mut self, idx: u32, at: Instant) {
        let Some(queued) = self.queued.get_mut(idx as usize) else {
            return;
        };
        if queued.is_none_or(|q| q > at) {
            *queued = Some(at);
            self.deadlines.push(Reverse((at, idx)));
        }
    }

    /// Frees slot `idx` (its connection is gone) and returns what it held.
    fn free_slot(&mut self, idx: u32) -> Entry {
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return Entry::Free;
        };
        let old = std::mem::replace(slot, Entry::Free);
        self.free.push(idx);
        self.open -= 1;
        old
    }
}

pub struct Server {
    epoll: OwnedFd,
    listeners: Vec<Bound>,
    conns: Mutex<Conns>,
    pub shared: Arc<Shared>,
    /// What every connection's sending side is bounded by, the spool budget included.
    send_limits: SendLimits,
}

fn token(idx: u32, gen: u32) -> u64 {
    (u64::from(gen) << 32) | u64::from(idx)
}

/// After `Server::handle`: read the socket again, or park the connection now.
enum Step {
    Read,
    Park,
}

/// After `Server::send_rest`: all sent, more to send when the client reads, or client gone.
enum Sent {
    Done,
    Wait,
    Gone,
}

/// What a worker does with a connection when it is done with it for now.
enum After {
    Park(Box<ConnState>),
    Close(Box<ConnState>),
}

impl Server {
    pub fn new(listeners: Vec<Bound>, shared: Arc<Shared>) -> io::Result<Server> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        for (i, l) in listeners.iter().enumerate() {
            epoll::add(
                &epoll,
                l.fd(),
                EventData::new_u64(LISTENER_BIT | i as u64),
                armed(),
            )?;
        }
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
                slots: Vec::new(),
                free: Vec::new(),
                gen: 0,
                open: 0,
                owned: 0,
                accepting: 0,
                deadlines: BinaryHeap::new(),
                queued: Vec::new(),
                paused: Vec::new(),
                draining_until: None,
                ready: std::collections::VecDeque::new(),
            }),
            shared,
        })
    }

    pub fn listeners(&self) -> &[Bound] {
        &self.listeners
    }

    /// The next ready event: one left from the last batch, else a new batch from the kernel
    /// (one system call for up to `EVENT_BATCH` requests under load).
    fn wait(&self, timeout: Option<&rustix::event::Timespec>) -> Next<u64> {
        if let Some(tok) = self.conns.lock().ready.pop_front() {
            return Next::Ready(tok);
        }
        let mut buf = [MaybeUninit::<Event>::uninit(); EVENT_BATCH];
        match epoll::wait(&self.epoll, &mut buf, timeout) {
            Ok((ready, _)) => {
                let mut toks = ready.iter().map(|ev| ev.data.u64());
                match toks.next() {
                    Some(first) => {
                        self.conns.lock().ready.extend(toks);
                        Next::Ready(first)
                    }
                    None => Next::Empty,
                }
            }
            Err(e) if e == rustix::io::Errno::INTR => Next::Empty,
            Err(e) => {
                tracing::error!("epoll_wait failed: {e}");
                Next::Closed
            }
        }
    }

    fn accept(&self, idx: usize) {
        let Some(l) = self.listeners.get(idx) else {
            return;
        };
        // A retiring worker (--max-requests) takes no new connection: they stay queued on the
        // shared socket for the other workers and its replacement. The listener stays unarmed.
        if self.shared.retiring.load(Ordering::Acquire) {
            return;
        }
        let _accepting = Accepting::enter(&self.conns);
        for _ in 0..ACCEPT_BATCH {
            // Once a stop began, the rest of the queue is for the other workers: a connection
            // taken now could be left unserved when this process finds itself idle and exits.
            // Checked after `enter`, so a stop that saw no thread here sees this flag set.
            if self.shared.stopping.load(Ordering::Acquire) {
                break;
            }
            // Non-blocking and close-on-exec from accept4 itself: no extra call per connection.
            let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
            let accepted = match &l.sock {
                Sock::Tcp(s) => rustix::net::acceptfrom_with(s, flags)
                    .map_err(io::Error::from)
                    .and_then(|(fd, addr)| {
                        let s = std::net::TcpStream::from(fd);
                        let addr = match addr.and_then(|a| SocketAddr::try_from(a).ok()) {
                            Some(a) => a,
                            None => s.peer_addr()?,
                        };
                        let _ = s.set_nodelay(true);
                        Ok((Stream::Tcp(s), Peer::Tcp(TcpPeer::new(addr))))
                    }),
                Sock::Unix(s, _) => rustix::net::accept_with(s, flags)
                    .map(|fd| (Stream::Unix(UnixStream::from(fd)), Peer::Unix))
                    .map_err(io::Error::from),
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors (EMFILE/ENFILE) and the like: keep serving the
                    // connections we have, and leave the listener alone for a moment rather
                    // than spin on a backlog we cannot take from.
                    tracing::warn!(
                        "accept failed on {}: {e}; pausing accepts for {ACCEPT_PAUSE:?}",
                        l.display
                    );
                    self.conns
                        .lock()
                        .paused
                        .push((Instant::now() + ACCEPT_PAUSE, idx));
                    return;
                }
            };
            let s = &self.shared.settings;
            if self.conns.lock().open >= s.max_connections {
                tracing::warn!(
                    "--max-connections ({}) reached; refusing a connection",
                    s.max_connections
                );
                continue;
            }
            let conn = Conn {
                io: Arc::new(
                    ConnIo::new(stream, &self.send_limits).allow_merging(!s.stream_nodelay),
                ),
                peer,
                listener: l.info.clone(),
            };
            let mut state = Box::new(ConnState {
                conn,
                buf: BytesMut::new(),
                phase: Phase::Reading,
                deadline: Instant::now(),
                out_armed: false,
                head_scan: HeadScan::default(),
                gathering: None,
                drain: None,
                since: Instant::now(),
            });
            state.reading(s);
            self.insert(state);
        }
        if !self.shared.stopping.load(Ordering::Acquire) {
            let _ = epoll::modify(
                &self.epoll,
                l.fd(),
                EventData::new_u64(LISTENER_BIT | idx as u64),
                armed(),
            );
        }
    }

    /// Adds a new connection to the set, parked and armed.
    fn insert(&self, state: Box<ConnState>) {
        let mut c = self.conns.lock();
        let idx = match c.free.pop() {
            Some(i) => i,
            None => {
                let Ok(i) = u32::try_from(c.slots.len()) else {
                    return;
                };
                c.slots.push(Entry::Free);
                c.queued.push(None);
                i
            }
        };
        c.open += 1;
        // Armed under the lock so the entry is in place before any worker can see an event.
        c.park(&self.epoll, idx, state, true);
    }

    /// Takes a parked connection for this worker, if the event is still current.
    fn take(&self, tok: u64) -> Option<(u32, Box<ConnState>)> {
        let idx = (tok & 0xFFFF_FFFF) as u32;
        let gen = (tok >> 32) as u32;
        let mut c = self.conns.lock();
        let slot = c.slots.get_mut(idx as usize)?;
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
        c.owned += 1;
        Some((idx, state))
    }

    /// Parks a connection again or closes it.
    fn put_back(&self, idx: u32, after: After) {
        let mut c = self.conns.lock();
        c.owned -= 1;
        match after {
            After::Park(state) => c.park(&self.epoll, idx, state, false),
            After::Close(state) => {
                c.free_slot(idx);
                drop(c);
                // Closing the socket takes it out of the epoll set; an event already fetched
                // for it no longer matches its slot.
                drop(state);
            }
        }
    }

    /// Frees the slot of a connection that was lost while owned.
    fn release(&self, idx: u32) {
        let mut c = self.conns.lock();
        c.owned -= 1;
        c.free_slot(idx);
    }

    /// Reads what the client sent; serves every complete request inline.
    fn serve(&self, py: Python<'_>, mut state: Box<ConnState>) -> After {
        let settings = &self.shared.settings;
        loop {
            if let Phase::Sending { close } = state.phase {
                match self.send_rest(&mut state, close) {
                    Sent::Wait => return After::Park(state),
                    Sent::Gone => return After::Close(state),
                    Sent::Done if state.phase == Phase::Reading => {
                        // A pipelined request arrived behind the response: look at it before
                        // reading, as the socket may hold nothing more to raise an edge.
                        if let Step::Park = self.handle(py, &mut state, false) {
                            return After::Park(state);
                        }
                        continue;
                    }
                    Sent::Done => {}
                }
            }
            // Read into a reused per-thread buffer and keep only what arrived: no per-read
            // zeroing, and idle connections hold no buffer at all. Lingering discards.
            if state.buf.capacity() == 0 {
                state.buf = SPARE.take();
            }
            let got = SCRATCH.with(|s| {
                let mut scratch = s.borrow_mut();
                let r = state.conn.io.stream.read_nb(&mut scratch[..]);
                if let (Ok(n), false) = (&r, state.phase == Phase::Linger) {
                    state.buf.extend_from_slice(&scratch[..*n]);
                }
                r
            });
            // A short read means the socket was empty then: anything later raises a new edge.
            let drained = match got {
                // The client closed: a half-sent head gets no answer anyone could read.
                Ok(0) => {
                    if state.phase == Phase::Body {
                        tracing::info!(
                            "{}: request body: the client went away before sending it; connection closed",
                            gathered_line(&state)
                        );
                    }
                    return After::Close(state);
                }
                Ok(n) => n < READ_CHUNK,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if state.buf.is_empty() {
                        // Idle connections hold no buffer memory.
                        keep_spare(std::mem::take(&mut state.buf));
                    }
                    return After::Park(state);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return After::Close(state),
            };
            match state.phase {
                Phase::Linger => continue,
                Phase::Idle => state.reading(settings),
                Phase::Reading | Phase::Sending { .. } => {}
                Phase::Body | Phase::Drain => {
                    if let Ok(n) = got {
                        state.received(n);
                    }
                }
            }
            if let Step::Park = self.handle(py, &mut state, drained) {
                return After::Park(state);
            }
        }
    }

    /// Parses what is buffered and serves every complete request in it. `drained`: the last
    /// read found the socket empty, so a connection left with nothing buffered may park
    /// without reading again.
    fn handle(&self, py: Python<'_>, state: &mut ConnState, drained: bool) -> Step {
        let settings = &self.shared.settings;
        if state.phase == Phase::Drain && !self.drain(state) {
            return Step::Read;
        }
        if let Some(mut gathering) = state.gathering.take() {
            // Only body bytes are buffered: look at the new ones.
            if !gathering.ready(&state.buf) {
                state.gathering = Some(gathering);
                return Step::Read;
            }
            let rest = state.buf.split().freeze();
            let served = connection::serve(
                py,
                &self.shared,
                &state.conn,
                (gathering.head, gathering.meter),
                rest,
            );
            return self.after_serve(state, served, drained, false);
        }
        // `split` leaves `state.buf` empty but sharing the allocation, and the request's
        // slices share it too: once they are dropped it is this thread's next read buffer.
        let frozen = state.buf.split().freeze();
        let small = frozen.len().saturating_add(state.buf.capacity()) <= SPARE_MAX;
        let head = match parse_head_incremental(&frozen, &settings.limits, &mut state.head_scan) {
            Ok(None) => {
                unsplit(&mut state.buf, frozen);
                return Step::Read;
            }
            Err(e) => {
                connection::reject(&state.conn, e.status, e.reason);
                state.close();
                return Step::Read;
            }
            Ok(Some(head)) => head,
        };
        let rest = frozen.slice(head.head_len..);
        let (head, meter) = match Start::new(head, &rest, &self.shared) {
            Start::Call(head, meter) => (head, meter),
            Start::Gather(mut gathering) => {
                // A slow client's body must not hold a worker: wait here, parked, until the
                // body (or its first BODY_AHEAD bytes) has arrived. The body is kept apart
                // from the head, so each read looks at its new bytes only.
                if gathering.continue_owed && !self.send_continue(state) {
                    return Step::Read;
                }
                gathering.continue_owed = false;
                gathering.head.expect_continue = false;
                state.buf = BytesMut::from(&rest[..]);
                state.gather(gathering);
                return Step::Read;
            }
        };
        let served = connection::serve(py, &self.shared, &state.conn, (head, meter), rest);
        drop(frozen);
        self.after_serve(state, served, drained, small)
    }

    /// Where a connection goes once `connection::serve` is done with it.
    fn after_serve(
        &self,
        state: &mut ConnState,
        served: Option<Served>,
        drained: bool,
        small: bool,
    ) -> Step {
        let settings = &self.shared.settings;
        match served {
            // Discard what the client still sends until EAGAIN, then park.
            None => state.close(),
            Some(Served {
                leftover, drain, ..
            }) if state.conn.io.spooled() => {
                // The client has not taken the whole response: the rest goes out as it reads,
                // and what it sent meanwhile waits until then (an unread body's rest too).
                unsplit(&mut state.buf, leftover);
                state.drain = drain;
                state.sending(false);
                return Step::Park;
            }
            Some(Served {
                drain: Some(drain), ..
            }) => {
                // The app left part of the body unread and it is still arriving: discard it
                // here, with no worker waiting on the client.
                state.buf.clear();
                state.drain(drain);
            }
            Some(Served {
                leftover,
                socket_read,
                ..
            }) if leftover.is_empty() => {
                drop(leftover);
                let buf = std::mem::take(&mut state.buf);
                if small {
                    keep_spare(buf);
                }
                state.idle(settings);
                if drained && !socket_read {
                    // Keep-alive, nothing buffered, socket empty at the last read (a body
                    // read from it since may have ended just before more): park without a
                    // read that would only find nothing.
                    return Step::Park;
                }
            }
            Some(Served { leftover, .. }) => {
                // Keep-alive: what follows is the start of the next request.
                state.reading(settings);
                unsplit(&mut state.buf, leftover);
            }
        }
        Step::Read
    }

    /// Discards the unread body bytes buffered; `true` once the body has ended and what
    /// follows it (buffered, maybe nothing yet) is the next request.
    fn drain(&self, state: &mut ConnState) -> bool {
        let Some(mut drain) = state.drain.take() else {
            return true;
        };
        let input = state.buf.split().freeze();
        match drain.feed(input) {
            Drained::More => {
                state.buf.clear();
                state.drain = Some(drain);
                false
            }
            Drained::Done(next) => {
                let settings = &self.shared.settings;
                if next.is_empty() {
                    state.idle(settings);
                } else {
                    state.reading(settings);
                    unsplit(&mut state.buf, next);
                }
                true
            }
            Drained::Close => {
                tracing::info!(
                    "{}: the unread rest of a request body is too long or badly framed; connection closed",
                    peer_text(&state.conn.peer)
                );
                state.close();
                false
            }
        }
    }

    /// Answers `Expect: 100-continue` for a body the server gathers; `false` (the connection
    /// is closing) if the socket did not take the few bytes at once.
    fn send_continue(&self, state: &mut ConnState) -> bool {
        match state.conn.io.stream.write_nb(CONTINUE) {
            Ok(n) if n == CONTINUE.len() => true,
            _ => {
                tracing::info!(
                    "{}: could not send 100 Continue; connection closed",
                    peer_text(&state.conn.peer)
                );
                state.close();
                false
            }
        }
    }

    /// Sends more of a queued response. When all of it is out, the connection lingers to its
    /// close (`close`), discards the unread rest of the body, waits for its next request, or
    /// (`Reading`) has one buffered already.
    fn send_rest(&self, state: &mut ConnState, close: bool) -> Sent {
        let settings = &self.shared.settings;
        let flushed = state.conn.io.flush_spool();
        if let Ok(f) = &flushed {
            // The wait since the last look counts against the client's minimum rate.
            let now = Instant::now();
            state.deadline = state
                .conn
                .io
                .send_meter()
                .waited_until(state.since, now, f.sent);
            state.since = now;
        }
        match flushed {
            Ok(f) if !f.done => Sent::Wait,
            Ok(_) if close => {
                state.linger();
                Sent::Done
            }
            Ok(_) if state.drain.is_some() => {
                if let Some(drain) = state.drain.take() {
                    state.drain(drain);
                }
                Sent::Done
            }
            Ok(_) if state.buf.is_empty() => {
                state.idle(settings);
                Sent::Done
            }
            Ok(_) => {
                state.reading(settings);
                Sent::Done
            }
            Err(e) => {
                tracing::info!(
                    "{}: connection closed while its response was being sent: {e}",
                    peer_text(&state.conn.peer)
                );
                Sent::Gone
            }
        }
    }

    /// The time until the next deadline (for the main thread's sleep).
    pub fn next_deadline(&self) -> Option<Instant> {
        let c = self.conns.lock();
        let conn = c.deadlines.peek().map(|Reverse((at, _))| *at);
        let listener = c.paused.iter().map(|(at, _)| *at).min();
        conn.into_iter().chain(listener).min()
    }

    /// Re-arms listeners whose rest after a failed accept is over.
    fn resume_listeners(&self) {
        let now = Instant::now();
        let due: Vec<usize> = {
            let mut c = self.conns.lock();
            let (due, rest): (Vec<_>, Vec<_>) = c.paused.drain(..).partition(|(at, _)| *at <= now);
            c.paused = rest;
            due.into_iter().map(|(_, idx)| idx).collect()
        };
        if self.shared.stopping.load(Ordering::Acquire) {
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
            while let Some(Reverse((at, idx))) = c.deadlines.peek().copied() {
                if at > now {
                    break;
                }
                c.deadlines.pop();
                match c.queued.get_mut(idx as usize) {
                    Some(q) if *q == Some(at) => *q = None,
                    // Superseded by an earlier entry for the same slot.
                    _ => continue,
                }
                let deadline = match c.slots.get(idx as usize) {
                    Some(Entry::Parked { state, .. }) => state.deadline,
                    // Being served (it queues itself again when parked) or gone.
                    _ => continue,
                };
                if deadline > now {
                    // Served and parked again since this entry was queued.
                    c.queue_deadline(idx, deadline);
                } else if waiting_for_us(c.slots.get(idx as usize)) {
                    // Its bytes are here but every worker was busy: the wait is ours, not the
                    // client's (back-pressure, not a refusal). Look again soon.
                    tracing::debug!("connection {idx}: request bytes unread past the deadline (every worker busy); kept");
                    c.queue_deadline(idx, now + RECHECK);
                } else if let Entry::Parked { state, .. } = c.free_slot(idx) {
                    expired.push(state);
                }
            }
        }
        for mut state in expired {
            let _ = epoll::delete(&self.epoll, state.conn.io.stream.as_fd());
            let slow = state.receive_meter().map(|m| m.limit().1);
            let why = match state.phase {
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

    /// Graceful stop, part one: no new connections; idle ones are closed.
    pub fn begin_stop(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        for l in &self.listeners {
            let _ = epoll::delete(&self.epoll, l.fd());
            if let Sock::Unix(_, path) = &l.sock {
                let _ = std::fs::remove_file(path);
            }
        }
        {
            let mut c = self.conns.lock();
            // No connection is closed under a client that may be sending a request right now:
            // one whose request is arriving is served, and a silent new one and an idle
            // keep-alive one get `STOP_GRACE` to start a request (answered with
            // `Connection: close`). Closing an idle keep-alive connection at once would lose the
            // request its client sent meanwhile. Slot indices fit in u32 (see `insert`).
            let mut silent = Vec::new();
            for (i, e) in (0u32..).zip(&c.slots) {
                if let Entry::Parked { state, .. } = e {
                    match state.phase {
                        Phase::Idle => silent.push(i),
                        Phase::Reading if state.buf.is_empty() => silent.push(i),
                        _ => {}
                    }
                }
            }
            let grace = Instant::now() + STOP_GRACE;
            c.draining_until = Some(grace);
            for i in silent {
                if let Some(Entry::Parked { state, .. }) = c.slots.get_mut(i as usize) {
                    if state.deadline > grace {
                        state.deadline = grace;
                        c.queue_deadline(i, grace);
                    }
                }
            }
        }
    }

    /// Connections still being served, with a request arriving, or lingering; while a stop
    /// drains (`STOP_GRACE`), idle keep-alive ones too (they may still send a request).
    pub fn busy(&self) -> usize {
        let c = self.conns.lock();
        let draining = c.draining_until.is_some_and(|t| Instant::now() < t);
        c.owned
            + c.accepting
            + c.slots
                .iter()
                .filter(|e| {
                    matches!(e, Entry::Parked { state, .. } if draining || state.phase != Phase::Idle)
                })
                .count()
    }

    /// Runs the main thread's side: deadlines, and the stop signal. Returns when stopped, with
    /// the access log written out.
    pub fn keep_time(&self, signals: UnixStream) -> io::Result<()> {
        let result = self.keep_time_until_stopped(signals);
        if let Some(log) = &self.shared.access_log {
            log.flush(Duration::from_secs(2));
        }
        result
    }

    fn keep_time_until_stopped(&self, mut signals: UnixStream) -> io::Result<()> {
        let mut stop_deadline: Option<Instant> = None;
        let mut buf = [0u8; 64];
        loop {
            let now = Instant::now();
            let mut sleep = self
                .next_deadline()
                .map_or(Duration::from_millis(250), |d| {
                    d.saturating_duration_since(now)
                });
            sleep = sleep.clamp(
                Duration::from_millis(1),
                Duration::from_millis(if stop_deadline.is_some() { 20 } else { 250 }),
            );
            signals.set_read_timeout(Some(sleep))?;
            match signals.read(&mut buf) {
                Ok(n) if n > 0 => {
                    if stop_deadline.is_some() {
                        tracing::warn!("second stop signal: exiting now");
                        return Ok(());
                    }
                    tracing::info!("stopping: no new connections; finishing in-flight requests");
                    stop_deadline = Some(Instant::now() + self.shared.settings.graceful_timeout);
                    self.begin_stop();
                }
                Ok(_) => return Ok(()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
            if stop_deadline.is_none() && self.shared.retiring.load(Ordering::Acquire) {
                stop_deadline = Some(Instant::now() + self.shared.settings.graceful_timeout);
                self.begin_stop();
            }
            self.expire();
            self.resume_listeners();
            if let Some(deadline) = stop_deadline {
                let busy = self.busy();
                if busy == 0 {
                    tracing::info!("stopped cleanly");
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        "--graceful-timeout reached with {busy} connection(s) still busy; exiting"
                    );
                    return Ok(());
                }
            }
        }
    }
}

/// A thread inside `accept`, counted in `Conns::accepting` while it lives.
struct Accepting<'a>(&'a Mutex<Conns>);

impl<'a> Accepting<'a> {
    fn enter(conns: &'a Mutex<Conns>) -> Accepting<'a> {
        conns.lock().accepting += 1;
        Accepting(conns)
    }
}

impl Drop for Accepting<'_> {
    fn drop(&mut self) {
        self.0.lock().accepting -= 1;
    }
}

/// Whether a parked connection past its deadline has unread bytes in its socket: it sent
/// (more of) a request that no worker has read yet. Not for a response being sent or a
/// lingering close, which wait on the client alone.
fn waiting_for_us(entry: Option<&Entry>) -> bool {
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

/// `METHOD target` of the request whose body is being gathered, for the log.
fn gathered_line(state: &ConnState) -> String {
    match &state.gathering {
        Some(g) => format!(
            "{} {}",
            String::from_utf8_lossy(&g.head.method),
            String::from_utf8_lossy(&g.head.target)
        ),
        None => peer_text(&state.conn.peer),
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

/// Keeps an emptied read buffer as this thread's next one, unless it grew large.
fn keep_spare(buf: BytesMut) {
    if buf.capacity() <= SPARE_MAX {
        SPARE.set(buf);
    }
}

/// Makes `bytes`, split off `buf`, the buffer to append to again. `buf`'s empty rest shares
/// their allocation and is let go first, so that they are not copied.
fn unsplit(buf: &mut BytesMut, bytes: Bytes) {
    *buf = BytesMut::new();
    *buf = into_mut(bytes);
}

/// The bytes as a buffer to append to, without a copy when nothing else shares them.
fn into_mut(bytes: Bytes) -> BytesMut {
    bytes
        .try_into_mut()
        .unwrap_or_else(|b| BytesMut::from(&b[..]))
}

impl WorkSource for Server {
    type Work = u64;

    fn try_next(&self) -> Next<u64> {
        self.wait(Some(&rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        }))
    }

    fn wait_next(&self) -> Next<u64> {
        self.wait(None)
    }

    fn run(&self, py: Python<'_>, tok: u64) {
        if tok & LISTENER_BIT != 0 {
            return self.accept((tok & !LISTENER_BIT) as usize);
        }
        let Some((idx, state)) = self.take(tok) else {
            return;
        };
        // Whatever happens while serving, the slot must be released (a panic drops the
        // connection, which closes its socket and takes it out of the epoll set).
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve(py, state))) {
            Ok(after) => self.put_back(idx, after),
            Err(_) => {
                tracing::error!("a request handler panicked; its connection was closed");
                self.release(idx);
            }
        }
    }
}
