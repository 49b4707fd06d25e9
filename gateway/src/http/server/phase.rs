//! A connection's state between requests: `ConnState` and the phase it waits in (idle,
//! reading a head, gathering or draining a body, sending, lingering), each with its deadline.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::share::Shed;
use crate::http::body::Drain;
use crate::http::connection::{peer_text, Gathering};
use crate::http::head::HeadScan;
use crate::http::rate::RateMeter;
use crate::http::{Conn, Settings};

const LINGER: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// `--proxy-protocol`: a new connection's PROXY header is awaited (header timeout, from
    /// the accept; it goes on to bound the first request's head).
    Proxy,
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

pub(super) struct ConnState {
    pub(super) conn: Conn,
    pub(super) buf: BytesMut,
    pub(super) phase: Phase,
    pub(super) deadline: Instant,
    /// The epoll registration includes EPOLLOUT (only while `Sending`).
    pub(super) out_armed: bool,
    /// How far the head at the start of `buf` has been checked, so a head that trickles in
    /// is not parsed whole on every read (it resets itself once the head is parsed).
    pub(super) head_scan: HeadScan,
    /// `Body`: the request whose body is being gathered (`buf` holds only body bytes, so the
    /// head is parsed once, not on every read of the body).
    pub(super) gathering: Option<Box<Gathering>>,
    /// `Drain` (or `Sending` before it): the unread rest of the last request's body.
    pub(super) drain: Option<Box<Drain>>,
    /// When the current wait on the client began, for the transfer's rate meter.
    pub(super) since: Instant,
    /// Answered with `Connection: close` to bring this worker back to its share (`share`).
    pub(super) shed: Option<Shed>,
}

impl ConnState {
    /// Waiting for the next request: no buffer held, the keep-alive timeout runs.
    pub(super) fn idle(&mut self, settings: &Settings) {
        self.phase = Phase::Idle;
        self.deadline = Instant::now() + settings.keepalive_timeout;
        self.buf = BytesMut::new();
    }

    /// A head has begun to arrive: the header timeout runs from now.
    pub(super) fn reading(&mut self, settings: &Settings) {
        self.phase = Phase::Reading;
        self.deadline = Instant::now() + settings.header_timeout;
    }

    /// The head is complete and the body is awaited: its meter sets the deadline.
    pub(super) fn gather(&mut self, gathering: Box<Gathering>) {
        self.phase = Phase::Body;
        self.since = Instant::now();
        self.deadline = self.since + gathering.meter.limit().0;
        self.gathering = Some(gathering);
    }

    /// The unread rest of the body is discarded as it arrives.
    pub(super) fn drain(&mut self, drain: Box<Drain>) {
        self.phase = Phase::Drain;
        self.since = Instant::now();
        self.deadline = self.since + drain.meter.limit().0;
        self.drain = Some(drain);
    }

    /// The meter of the transfer this connection waits on (body being gathered or drained).
    pub(super) fn receive_meter(&mut self) -> Option<&mut RateMeter> {
        match self.phase {
            Phase::Body => self.gathering.as_mut().map(|g| &mut g.meter),
            Phase::Drain => self.drain.as_mut().map(|d| &mut d.meter),
            _ => None,
        }
    }

    /// `n` body bytes arrived: the wait so far counts against the client's rate, and the
    /// deadline moves by what the bytes earned (not back to a whole idle limit per byte).
    pub(super) fn received(&mut self, n: usize) {
        let (since, now) = (self.since, Instant::now());
        if let Some(meter) = self.receive_meter() {
            self.deadline = meter.waited_until(since, now, n);
            self.since = now;
        }
    }

    /// The response is queued for the reactor to send; `close`: the connection ends after it.
    pub(super) fn sending(&mut self, close: bool) {
        self.phase = Phase::Sending { close };
        self.since = Instant::now();
        self.deadline = self.since + self.conn.io.send_meter().limit().0;
    }

    /// Ends the connection once the client has the whole response: lingers now, or after the
    /// queued rest went out.
    pub(super) fn close(&mut self) {
        self.drain = None;
        if self.conn.io.spooled() {
            self.sending(true);
        } else {
            self.linger();
        }
    }

    /// Half-closes and starts discarding: the client sees our FIN after the response.
    pub(super) fn linger(&mut self) {
        self.conn.io.stream.shutdown_write();
        self.buf = BytesMut::new();
        self.phase = Phase::Linger;
        self.deadline = Instant::now() + LINGER;
    }
}

/// `METHOD target` of the request whose body is being gathered, for the log.
pub(super) fn gathered_line(state: &ConnState) -> String {
    match &state.gathering {
        Some(g) => format!(
            "{} {}",
            String::from_utf8_lossy(&g.head.method),
            String::from_utf8_lossy(&g.head.target)
        ),
        None => peer_text(&state.conn.peer),
    }
}
