//! The reactor: binds the listeners, accepts, reads request heads (outside the GIL), enforces
//! the header and keep-alive timeouts, and hands each complete head to the worker pool.
//! Idle keep-alive connections live here and never occupy a Python worker.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Socket, Type};

use super::head::parse_head;
use super::io::{ConnIo, Stream};
use super::{error_response, Conn, Job, ListenerInfo, Returned, Shared};
use crate::pool::Pool;
use crate::request::{Peer, Scheme};

enum Sock {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// A bound, listening socket and what it tells the app about itself.
pub struct Bound {
    sock: Sock,
    info: Arc<ListenerInfo>,
    /// `http://127.0.0.1:8000` or `unix:/run/app.sock`, for the log.
    pub display: String,
}

/// Binds `HOST:PORT`, `[V6]:PORT` or `unix:PATH`.
pub fn bind(addr: &str, backlog: u32) -> Result<Bound, String> {
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    if let Some(path) = addr.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                // A socket file left by a previous run; nothing can be listening on it.
                if UnixStream::connect(&path).is_ok() {
                    return Err(format!("--bind {addr}: another server is listening there"));
                }
                let _ = std::fs::remove_file(&path);
            } else {
                return Err(format!(
                    "--bind {addr}: {} exists and is not a socket",
                    path.display()
                ));
            }
        }
        let sock = Socket::new(Domain::UNIX, Type::STREAM, None)
            .map_err(|e| format!("--bind {addr}: {e}"))?;
        let sa = socket2::SockAddr::unix(&path).map_err(|e| format!("--bind {addr}: {e}"))?;
        sock.bind(&sa)
            .and_then(|_| sock.listen(backlog))
            .map_err(|e| format!("--bind {addr}: {e}"))?;
        sock.set_nonblocking(true)
            .map_err(|e| format!("--bind {addr}: {e}"))?;
        let listener: UnixListener = UnixListener::from(std::os::fd::OwnedFd::from(sock));
        return Ok(Bound {
            sock: Sock::Unix(listener, path.clone()),
            info: Arc::new(ListenerInfo {
                server_name: "localhost".into(),
                server_port: "0".into(),
                scheme: Scheme::Http,
            }),
            display: format!("unix:{}", path.display()),
        });
    }
    let sa: SocketAddr = match addr.parse() {
        Ok(sa) => sa,
        Err(_) => addr
            .to_socket_addrs()
            .map_err(|e| {
                format!("--bind {addr}: expected HOST:PORT, [V6]:PORT or unix:PATH ({e})")
            })?
            .next()
            .ok_or_else(|| format!("--bind {addr}: the host name has no address"))?,
    };
    let sock = Socket::new(Domain::for_address(sa), Type::STREAM, None)
        .map_err(|e| format!("--bind {addr}: {e}"))?;
    sock.set_reuse_address(true)
        .map_err(|e| format!("--bind {addr}: {e}"))?;
    if sa.is_ipv6() {
        let _ = sock.set_only_v6(true);
    }
    sock.bind(&sa.into())
        .map_err(|e| format!("--bind {addr}: {e}"))?;
    sock.listen(backlog)
        .map_err(|e| format!("--bind {addr}: {e}"))?;
    sock.set_nonblocking(true)
        .map_err(|e| format!("--bind {addr}: {e}"))?;
    let listener: TcpListener = sock.into();
    let local = listener
        .local_addr()
        .map_err(|e| format!("--bind {addr}: {e}"))?;
    let host = match local {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    Ok(Bound {
        sock: Sock::Tcp(listener),
        info: Arc::new(ListenerInfo {
            server_name: host.clone(),
            server_port: local.port().to_string(),
            scheme: Scheme::Http,
        }),
        display: format!("http://{host}:{}", local.port()),
    })
}

const WAKER: Token = Token(usize::MAX - 1);
const SIGNAL: Token = Token(usize::MAX - 2);
const CONN_BASE: usize = 1 << 16;
const READ_CHUNK: usize = 8 * 1024;
const LINGER: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the first byte of the next request (keep-alive timeout).
    Idle,
    /// Part of a head has arrived (header timeout).
    Reading,
    /// Closing: discard input until EOF or the linger deadline.
    Linger,
}

struct Slot {
    conn: Conn,
    buf: BytesMut,
    state: State,
    /// Deadline entries for an older state of this slot are ignored.
    gen: u64,
}

/// Deadlines of one fixed duration: pushed in time order, so a queue is enough.
struct Deadlines {
    after: Duration,
    queue: VecDeque<(Instant, usize, u64)>,
}

impl Deadlines {
    fn new(after: Duration) -> Deadlines {
        Deadlines {
            after,
            queue: VecDeque::new(),
        }
    }
    fn push(&mut self, slot: usize, gen: u64) {
        self.queue
            .push_back((Instant::now() + self.after, slot, gen));
    }
    fn next(&self) -> Option<Instant> {
        self.queue.front().map(|e| e.0)
    }
}

pub struct Reactor {
    poll: Poll,
    listeners: Vec<Bound>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    open: usize,
    gen: u64,
    header_q: Deadlines,
    idle_q: Deadlines,
    linger_q: Deadlines,
    shared: Arc<Shared>,
    returns: crossbeam_channel::Receiver<Returned>,
    signals: UnixStream,
}

impl Reactor {
    pub fn new(
        poll: Poll,
        listeners: Vec<Bound>,
        shared: Arc<Shared>,
        returns: crossbeam_channel::Receiver<Returned>,
        signals: UnixStream,
    ) -> io::Result<Reactor> {
        for (i, l) in listeners.iter().enumerate() {
            let fd = match &l.sock {
                Sock::Tcp(s) => s.as_raw_fd(),
                Sock::Unix(s, _) => s.as_raw_fd(),
            };
            poll.registry()
                .register(&mut SourceFd(&fd), Token(i), Interest::READABLE)?;
        }
        signals.set_nonblocking(true)?;
        poll.registry().register(
            &mut SourceFd(&signals.as_raw_fd()),
            SIGNAL,
            Interest::READABLE,
        )?;
        let s = &shared.settings;
        Ok(Reactor {
            header_q: Deadlines::new(s.header_timeout),
            idle_q: Deadlines::new(s.keepalive_timeout),
            linger_q: Deadlines::new(LINGER),
            poll,
            listeners,
            slots: Vec::new(),
            free: Vec::new(),
            open: 0,
            gen: 0,
            shared,
            returns,
            signals,
        })
    }

    /// Runs until a stop signal, then drains in-flight requests within the graceful timeout.
    pub fn run(mut self, pool: &dyn Submit) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut stop_deadline: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let mut timeout = [
                self.header_q.next(),
                self.idle_q.next(),
                self.linger_q.next(),
            ]
            .into_iter()
            .flatten()
            .min()
            .map(|d| d.saturating_duration_since(now));
            if stop_deadline.is_some() {
                // While stopping, look at the in-flight count regularly.
                timeout = Some(timeout.map_or(Duration::from_millis(20), |t| {
                    t.min(Duration::from_millis(20))
                }));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    SIGNAL if self.take_signal() => {
                        if stop_deadline.is_some() {
                            tracing::warn!("second stop signal: exiting now");
                            return Ok(());
                        }
                        tracing::info!(
                            "stopping: no new connections; finishing in-flight requests"
                        );
                        stop_deadline =
                            Some(Instant::now() + self.shared.settings.graceful_timeout);
                        self.begin_stop();
                    }
                    Token(i) if i < self.listeners.len() => self.accept(i),
                    Token(t) if t >= CONN_BASE => self.readable(t - CONN_BASE, pool),
                    _ => {}
                }
            }
            while let Ok(r) = self.returns.try_recv() {
                self.take_back(r);
            }
            self.expire();
            if let Some(deadline) = stop_deadline {
                let busy = self.shared.in_flight.load(Ordering::Acquire);
                let lingering = self
                    .slots
                    .iter()
                    .flatten()
                    .any(|s| s.state == State::Linger);
                if busy == 0 && !lingering {
                    tracing::info!("stopped cleanly");
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        "--graceful-timeout reached with {busy} request(s) still running; exiting"
                    );
                    return Ok(());
                }
            }
        }
    }

    fn take_signal(&mut self) -> bool {
        let mut buf = [0u8; 64];
        let mut got = false;
        while let Ok(n) = self.signals.read(&mut buf) {
            if n == 0 {
                break;
            }
            got = true;
        }
        got
    }

    fn begin_stop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        for l in self.listeners.drain(..) {
            if let Sock::Unix(_, path) = &l.sock {
                let _ = std::fs::remove_file(path);
            }
        }
        for i in 0..self.slots.len() {
            if self.slots[i]
                .as_ref()
                .is_some_and(|s| s.state != State::Linger)
            {
                self.close(i);
            }
        }
    }

    fn accept(&mut self, i: usize) {
        loop {
            let Some(l) = self.listeners.get(i) else {
                return;
            };
            let accepted = match &l.sock {
                Sock::Tcp(s) => s.accept().map(|(s, a)| {
                    let _ = s.set_nodelay(true);
                    (Stream::Tcp(s), Peer::Tcp(a))
                }),
                Sock::Unix(s, _) => s.accept().map(|(s, _)| (Stream::Unix(s), Peer::Unix)),
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: keep serving what we have; the listener stays armed.
                    tracing::warn!("accept failed: {e}");
                    return;
                }
            };
            let total = self.open + self.shared.in_flight.load(Ordering::Acquire);
            if total >= self.shared.settings.max_connections {
                tracing::warn!(
                    "--max-connections ({}) reached; refusing a connection",
                    self.shared.settings.max_connections
                );
                continue;
            }
            let s = &self.shared.settings;
            if stream.set_nonblocking(true).is_err()
                || stream
                    .set_timeouts(s.body_timeout, s.write_timeout)
                    .is_err()
            {
                continue;
            }
            let conn = Conn {
                io: Arc::new(ConnIo::new(stream)),
                peer,
                listener: l.info.clone(),
            };
            // A new connection must send its head within the header timeout. Registering a
            // socket that already has data pending reports it on the next poll.
            self.insert(conn, BytesMut::new(), State::Reading);
        }
    }

    fn insert(&mut self, conn: Conn, buf: BytesMut, state: State) -> Option<usize> {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let fd = conn.io.stream.as_raw_fd();
        if self
            .poll
            .registry()
            .register(
                &mut SourceFd(&fd),
                Token(CONN_BASE + idx),
                Interest::READABLE,
            )
            .is_err()
        {
            self.free.push(idx);
            return None;
        }
        self.gen += 1;
        let gen = self.gen;
        match state {
            State::Idle => self.idle_q.push(idx, gen),
            State::Reading => self.header_q.push(idx, gen),
            State::Linger => self.linger_q.push(idx, gen),
        }
        self.slots[idx] = Some(Slot {
            conn,
            buf,
            state,
            gen,
        });
        self.open += 1;
        Some(idx)
    }

    fn remove(&mut self, idx: usize) -> Option<Slot> {
        let slot = self.slots.get_mut(idx)?.take()?;
        let fd = slot.conn.io.stream.as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        self.free.push(idx);
        self.open -= 1;
        Some(slot)
    }

    fn close(&mut self, idx: usize) {
        drop(self.remove(idx));
    }

    fn set_state(&mut self, idx: usize, state: State) {
        self.gen += 1;
        let gen = self.gen;
        if let Some(Some(slot)) = self.slots.get_mut(idx) {
            slot.state = state;
            slot.gen = gen;
            match state {
                State::Idle => self.idle_q.push(idx, gen),
                State::Reading => self.header_q.push(idx, gen),
                State::Linger => self.linger_q.push(idx, gen),
            }
        }
    }

    /// Answers `status` and starts a lingering close.
    fn reject(&mut self, idx: usize, status: u16, why: &str) {
        let Some(Some(slot)) = self.slots.get_mut(idx) else {
            return;
        };
        tracing::info!(
            "{status} for {}: {why}",
            super::connection::peer_text(&slot.conn.peer)
        );
        let resp = error_response(status);
        let _ = match &slot.conn.io.stream {
            Stream::Tcp(s) => (&*s).write(&resp),
            Stream::Unix(s) => (&*s).write(&resp),
        };
        slot.conn.io.stream.shutdown_write();
        slot.buf = BytesMut::new();
        self.set_state(idx, State::Linger);
    }

    fn readable(&mut self, idx: usize, pool: &dyn Submit) {
        loop {
            let Some(Some(slot)) = self.slots.get_mut(idx) else {
                return;
            };
            if slot.state == State::Linger {
                let mut sink = [0u8; READ_CHUNK];
                loop {
                    match slot.conn.io.stream.read_nb(&mut sink) {
                        Ok(0) => return self.close(idx),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return self.close(idx),
                    }
                }
            }
            let old = slot.buf.len();
            slot.buf.resize(old + READ_CHUNK, 0);
            let n = match slot.conn.io.stream.read_nb(&mut slot.buf[old..]) {
                Ok(n) => n,
                Err(e) => {
                    slot.buf.truncate(old);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => {
                            if slot.buf.is_empty() {
                                // Idle connections hold no buffer memory.
                                slot.buf = BytesMut::new();
                            }
                            return;
                        }
                        io::ErrorKind::Interrupted => continue,
                        _ => return self.close(idx),
                    }
                }
            };
            slot.buf.truncate(old + n);
            if n == 0 {
                // The client closed; a half-sent head gets no answer anyone could read.
                return self.close(idx);
            }
            if slot.state == State::Idle {
                self.set_state(idx, State::Reading);
            }
            if !self.try_dispatch(idx, pool) {
                return;
            }
        }
    }

    /// Parses what has arrived; a complete head goes to the pool. Returns whether to keep
    /// reading this connection here.
    fn try_dispatch(&mut self, idx: usize, pool: &dyn Submit) -> bool {
        let Some(Some(slot)) = self.slots.get_mut(idx) else {
            return false;
        };
        if slot.buf.is_empty() {
            return true;
        }
        let frozen = std::mem::take(&mut slot.buf).freeze();
        match parse_head(&frozen, &self.shared.settings.limits) {
            Ok(None) => {
                slot.buf = frozen
                    .try_into_mut()
                    .unwrap_or_else(|b| BytesMut::from(&b[..]));
                true
            }
            Err(e) => {
                self.reject(idx, e.status, e.reason);
                false
            }
            Ok(Some(head)) => {
                let rest = frozen.slice(head.head_len..);
                if let Err((status, why)) = super::connection::precheck(
                    &head,
                    &self.shared.settings,
                    self.shared.app.environ.policy(),
                ) {
                    self.reject(idx, status, why);
                    return false;
                }
                let Some(slot) = self.remove(idx) else {
                    return false;
                };
                self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
                let job = Box::new(Job {
                    conn: slot.conn,
                    head,
                    rest,
                    received: Instant::now(),
                });
                if let Err(job) = pool.submit(job) {
                    self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
                    tracing::warn!("all workers busy and --queue-size full: 503");
                    if let Some(i) = self.insert(job.conn, BytesMut::new(), State::Reading) {
                        self.reject(i, 503, "queue full");
                    }
                }
                false
            }
        }
    }

    fn take_back(&mut self, r: Returned) {
        let stopping = self.shared.stopping.load(Ordering::Acquire);
        match r {
            Returned::Linger(conn) => {
                self.insert(conn, BytesMut::new(), State::Linger);
            }
            Returned::KeepAlive(conn, _) if stopping => drop(conn),
            Returned::KeepAlive(conn, rest) => {
                let (buf, state) = if rest.is_empty() {
                    (BytesMut::new(), State::Idle)
                } else {
                    (BytesMut::from(&rest[..]), State::Reading)
                };
                // Registering an fd that already has data pending reports it at once.
                self.insert(conn, buf, state);
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        for which in 0..3 {
            loop {
                let q = match which {
                    0 => &mut self.header_q,
                    1 => &mut self.idle_q,
                    _ => &mut self.linger_q,
                };
                let Some(&(at, idx, gen)) = q.queue.front() else {
                    break;
                };
                if at > now {
                    break;
                }
                q.queue.pop_front();
                let Some(Some(slot)) = self.slots.get(idx) else {
                    continue;
                };
                if slot.gen != gen {
                    continue;
                }
                match slot.state {
                    State::Reading if !slot.buf.is_empty() => self.reject(
                        idx,
                        408,
                        "request head not received within --header-timeout",
                    ),
                    _ => self.close(idx),
                }
            }
        }
    }
}

/// Where complete heads go (the pool; a trait so the reactor can be driven without Python).
pub trait Submit {
    fn submit(&self, job: Box<Job>) -> Result<(), Box<Job>>;
}

impl Submit for Pool<Box<Job>> {
    fn submit(&self, job: Box<Job>) -> Result<(), Box<Job>> {
        self.try_submit(job)
    }
}
