//! Serving a connection a worker took: read what the client sent, run every complete
//! request in it through the app, send what the socket takes, and say where the connection
//! goes next (parked in a phase, or closed).

use std::io;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use pyo3::prelude::*;

use super::phase::{gathered_line, ConnState, Phase};
use super::proxied::{self, Taken};
use super::Server;
use crate::http::body::{Drained, CONTINUE};
use crate::http::connection::{self, peer_text, Served, Start};
use crate::http::head::parse_head_incremental;

const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_CHUNK]);
    /// The buffer of the last request this thread finished, for its next read: the allocation
    /// and its shared-ownership header are reused instead of made for every request.
    static SPARE: std::cell::Cell<BytesMut> = std::cell::Cell::new(BytesMut::new());
}
/// A read buffer that grew past this (a huge head, a body read ahead) is freed, not kept.
const SPARE_MAX: usize = 64 * 1024;

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
pub(super) enum After {
    Park(Box<ConnState>),
    Close(Box<ConnState>),
}

impl Server {
    /// Reads what the client sent; serves every complete request inline.
    pub(super) fn serve(&self, py: Python<'_>, mut state: Box<ConnState>) -> After {
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
                    if state.phase == Phase::Proxy && !state.buf.is_empty() {
                        tracing::warn!(
                            "{}: the proxy closed the connection inside its PROXY header",
                            proxied::real_peer(&state.conn.peer)
                        );
                    }
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
                Phase::Proxy => match self.take_proxy_header(&mut state) {
                    Taken::More => continue,
                    Taken::Refused => return After::Close(state),
                    Taken::Done => {}
                },
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
            let shed = self.shed(state, gathering.head.close, &rest);
            let served = connection::serve(
                py,
                &self.shared,
                &state.conn,
                (gathering.head, gathering.meter),
                rest,
                shed,
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
                connection::reject(&state.conn, &e);
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
        let shed = self.shed(state, head.close, &rest);
        let served = connection::serve(py, &self.shared, &state.conn, (head, meter), rest, shed);
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
