//! The epoll side of the workers (leader/follower): wait for events, accept new
//! connections, take a ready connection from its slot and put it back, and the `WorkSource`
//! the worker pool runs.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parking_lot::Mutex;
use pyo3::prelude::*;
use rustix::event::epoll::{self, Event, EventData};
use rustix::net::SocketFlags;

use super::phase::{ConnState, Phase};
use super::serve::After;
use super::{armed, Conns, Server, LISTENER_BIT};
use crate::http::head::HeadScan;
use crate::http::io::ConnIo;
use crate::http::listener::Sock;
use crate::http::stream::Stream;
use crate::http::Conn;
use crate::pool::{Next, WorkSource};
use crate::request::{Peer, TcpPeer};

/// Connections one worker accepts before it re-arms the listener and lets others in.
const ACCEPT_BATCH: usize = 64;
/// Readiness events taken from the kernel in one `epoll_wait`; the rest wait in `Conns::ready`.
const EVENT_BATCH: usize = 64;
/// How long a listener rests after accept failed (out of file descriptors).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

impl Server {
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
        // Over its share of the connections: none now, and the listener stays unarmed.
        let room = self.rebalance(false);
        if room == 0 {
            return;
        }
        let _accepting = Accepting::enter(&self.conns);
        for _ in 0..ACCEPT_BATCH.min(room) {
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
                        Ok((Stream::tcp(s), Peer::Tcp(TcpPeer::new(addr))))
                    }),
                Sock::Unix(s, _) => rustix::net::accept_with(s, flags)
                    .map(|fd| (Stream::unix(fd), Peer::Unix))
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
            if s.proxy_protocol && !self.proxy_peer_trusted(&peer) {
                continue;
            }
            if self.conns.lock().slots.open >= s.max_connections {
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
                shed: None,
            });
            state.reading(s);
            if s.proxy_protocol {
                state.phase = Phase::Proxy;
            }
            self.insert(state);
        }
        // Not while holding (`share`): whoever resumes arms it. A single process never holds.
        let held = self.share.is_some() && self.conns.lock().held;
        if !held && !self.shared.stopping.load(Ordering::Acquire) {
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
        let Some((idx, grown)) = c.slots.alloc() else {
            return;
        };
        if grown {
            c.deadlines.grow();
        }
        // Armed under the lock so the entry is in place before any worker can see an event.
        c.park(&self.epoll, idx, state, true);
    }

    /// Takes a parked connection for this worker, if the event is still current.
    fn take(&self, tok: u64) -> Option<(u32, Box<ConnState>)> {
        self.conns.lock().slots.take(tok)
    }

    /// Parks a connection again or closes it.
    fn put_back(&self, idx: u32, after: After) {
        let mut c = self.conns.lock();
        c.slots.unown();
        match after {
            After::Park(state) => c.park(&self.epoll, idx, state, false),
            After::Close(state) => {
                c.slots.free_slot(idx);
                drop(c);
                // Closing the socket takes it out of the epoll set; an event already fetched
                // for it no longer matches its slot.
                drop(state);
                self.closed_one();
            }
        }
    }

    /// Frees the slot of a connection that was lost while owned.
    fn release(&self, idx: u32) {
        let mut c = self.conns.lock();
        c.slots.unown();
        c.slots.free_slot(idx);
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
