//! The request body on an HTTP connection: Content-Length or chunked, read as the app asks,
//! never past its end (pipelined bytes after it stay for the next request). What the app left
//! unread is discarded by the reactor afterwards (`Drain`), never by a worker waiting on the
//! client.

use std::any::Any;
use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::chunked::ChunkedDecoder;
use super::io::ConnIo;
use super::rate::RateMeter;
use crate::reject::Reject;
use crate::request::{read_window, BodyFailure, BodyReader};

pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
const READ_SIZE: usize = 64 * 1024;
/// Unread body bytes we are willing to receive and discard to keep a connection alive.
const DRAIN_LIMIT: u64 = 256 * 1024;

enum Framing {
    Length { remaining: u64 },
    Chunked(Box<ChunkedDecoder>),
}

pub struct HttpBody {
    io: Arc<ConnIo>,
    /// Bytes that arrived after the head: the start of the body, maybe pipelined requests.
    buffered: Bytes,
    framing: Framing,
    /// `Expect: 100-continue` still owed to the client.
    expect_continue: bool,
    /// Decoded body bytes allowed in total (chunked bodies; 0 = no limit).
    max_body: u64,
    received: u64,
    /// Why reading failed, if the client caused it.
    failure: Option<BodyFailure>,
    /// Some of the body came from the socket, not only from the bytes read with the head.
    socket_read: bool,
    /// How long the client may keep the app waiting for body bytes.
    meter: RateMeter,
}

/// What is left to do with a connection's request body once the response is done.
pub enum Finished {
    /// The body is complete: these bytes follow it (the start of the next request).
    Next(Bytes),
    /// Some of the unread body has not arrived yet: the reactor receives and discards it.
    Drain(Box<Drain>),
    /// The connection cannot be reused.
    Close,
}

/// The unread rest of a request body, discarded as it arrives (by the reactor, no worker).
pub struct Drain {
    framing: Framing,
    /// Raw bytes still allowed before the connection is not worth keeping.
    allowance: u64,
    /// The body's meter, carried on: a client slower than the minimum rate is dropped.
    pub meter: RateMeter,
}

/// After `Drain::feed`.
pub enum Drained {
    /// The body goes on: wait for more.
    More,
    /// The body ended: these bytes follow it.
    Done(Bytes),
    /// Broken framing or too much left: close.
    Close,
}

impl Drain {
    /// Discards the body bytes at the start of `input`.
    pub fn feed(&mut self, input: Bytes) -> Drained {
        let Some(allowance) = self.allowance.checked_sub(input.len() as u64) else {
            // More than we keep a connection for may be coming: the response is out, close.
            return match discard(&mut self.framing, input) {
                Ok(Some(rest)) => Drained::Done(rest),
                _ => Drained::Close,
            };
        };
        self.allowance = allowance;
        match discard(&mut self.framing, input) {
            Ok(Some(rest)) => Drained::Done(rest),
            Ok(None) => Drained::More,
            Err(()) => Drained::Close,
        }
    }
}

/// Skips the body bytes at the start of `input` (no copy of the data); `Some(rest)` once the
/// body has ended, with the bytes that follow it.
fn discard(framing: &mut Framing, mut input: Bytes) -> Result<Option<Bytes>, ()> {
    match framing {
        Framing::Length { remaining } => {
            let n = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
            bytes::Buf::advance(&mut input, n);
            *remaining -= n as u64;
            Ok((*remaining == 0).then_some(input))
        }
        Framing::Chunked(decoder) => {
            let mut sink = [0u8; 4096];
            loop {
                if decoder.is_done() {
                    return Ok(Some(input));
                }
                let (used, produced) = decoder.decode(&input, &mut sink).map_err(|_| ())?;
                bytes::Buf::advance(&mut input, used);
                if used == 0 && produced == 0 {
                    return Ok(None);
                }
            }
        }
    }
}

impl HttpBody {
    pub fn new(
        io: Arc<ConnIo>,
        buffered: Bytes,
        framing: crate::request::Framing,
        expect_continue: bool,
        max_body: u64,
        meter: RateMeter,
    ) -> HttpBody {
        let framing = match framing {
            crate::request::Framing::None => Framing::Length { remaining: 0 },
            crate::request::Framing::Length(n) => Framing::Length { remaining: n },
            crate::request::Framing::Chunked => {
                Framing::Chunked(Box::new(ChunkedDecoder::for_requests()))
            }
        };
        let expect_continue =
            expect_continue && !matches!(framing, Framing::Length { remaining: 0 });
        HttpBody {
            io,
            buffered,
            framing,
            expect_continue,
            max_body,
            received: 0,
            failure: None,
            socket_read: false,
            meter,
        }
    }

    fn send_continue(&mut self) -> io::Result<()> {
        if !self.expect_continue {
            return Ok(());
        }
        self.expect_continue = false;
        // Never after the final response has begun (RFC 9110 §10.1.1).
        if self.buffered.is_empty() && !self.io.started() {
            self.io.write_all(&mut [io::IoSlice::new(CONTINUE)])?;
        }
        Ok(())
    }

    /// More raw bytes from the socket into `buffered` (which must be empty).
    fn fill(&mut self, want: usize) -> io::Result<usize> {
        let mut buf = BytesMut::zeroed(want.clamp(1, READ_SIZE));
        self.socket_read = true;
        let n = self.io.read(&mut buf, &mut self.meter)?;
        buf.truncate(n);
        self.buffered = buf.freeze();
        Ok(n)
    }

    fn read_inner(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.send_continue()?;
        match &mut self.framing {
            Framing::Length { remaining } => {
                let want = read_window(Some(*remaining), out.len());
                if want == 0 {
                    return Ok(0);
                }
                let n = if !self.buffered.is_empty() {
                    let n = want.min(self.buffered.len());
                    out[..n].copy_from_slice(&self.buffered.split_to(n));
                    n
                } else {
                    // Straight from the socket into the caller's buffer: no intermediate copy.
                    self.socket_read = true;
                    let n = self.io.read(&mut out[..want], &mut self.meter)?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "client closed the connection mid-body",
                        ));
                    }
                    n
                };
                if let Framing::Length { remaining } = &mut self.framing {
                    *remaining -= n as u64;
                }
                Ok(n)
            }
            Framing::Chunked(_) => loop {
                let Framing::Chunked(decoder) = &mut self.framing else {
                    return Ok(0);
                };
                if decoder.is_done() {
                    return Ok(0);
                }
                let (consumed, produced) = match decoder.decode(&self.buffered, out) {
                    Ok(done) => done,
                    Err(e) => {
                        let text = format!("bad chunked body: {}", e.reason);
                        self.failure = Some(BodyFailure::Invalid(e));
                        return Err(io::Error::new(io::ErrorKind::InvalidData, text));
                    }
                };
                let _ = self.buffered.split_to(consumed);
                if produced > 0 {
                    self.received = self.received.saturating_add(produced as u64);
                    if self.max_body > 0 && self.received > self.max_body {
                        let reject = Reject::new(413, "request body exceeds --max-body-size");
                        let e = io::Error::new(io::ErrorKind::InvalidData, reject.reason.clone());
                        self.failure = Some(BodyFailure::Invalid(reject));
                        return Err(e);
                    }
                    return Ok(produced);
                }
                let Framing::Chunked(decoder) = &self.framing else {
                    return Ok(0);
                };
                if decoder.is_done() {
                    return Ok(0);
                }
                if self.buffered.is_empty() && self.fill(READ_SIZE)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "client closed the connection mid-body",
                    ));
                }
            },
        }
    }

    fn complete(&self) -> bool {
        match &self.framing {
            Framing::Length { remaining } => *remaining == 0,
            Framing::Chunked(d) => d.is_done(),
        }
    }

    /// Whether any of the body was read from the socket (`finish` may read too): if not, the
    /// socket is as its last read left it.
    pub fn socket_read(&self) -> bool {
        self.socket_read
    }

    /// After the response: what follows the body, without waiting for the client. The unread
    /// body already here is skipped; a rest still to come is left for the reactor to drain.
    pub fn finish(&mut self) -> Finished {
        // A failed read leaves the connection's framing unknown.
        if self.failure.is_some() {
            return Finished::Close;
        }
        if self.complete() {
            return Finished::Next(std::mem::take(&mut self.buffered));
        }
        // The client is still waiting for our 100-continue: it may never send the body.
        if self.expect_continue {
            return Finished::Close;
        }
        if let Framing::Length { remaining } = self.framing {
            if remaining > DRAIN_LIMIT.saturating_add(self.buffered.len() as u64) {
                return Finished::Close;
            }
        }
        let buffered = std::mem::take(&mut self.buffered);
        let mut drain = Drain {
            framing: std::mem::replace(&mut self.framing, Framing::Length { remaining: 0 }),
            allowance: DRAIN_LIMIT.saturating_add(buffered.len() as u64),
            meter: self.meter,
        };
        match drain.feed(buffered) {
            Drained::Done(next) => Finished::Next(next),
            Drained::More => Finished::Drain(Box::new(drain)),
            Drained::Close => Finished::Close,
        }
    }
}

impl BodyReader for HttpBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.read_inner(buf);
        if let Err(e) = &r {
            if self.failure.is_none() {
                self.failure = Some(if e.kind() == io::ErrorKind::TimedOut {
                    BodyFailure::TimedOut
                } else {
                    BodyFailure::ClientGone
                });
            }
        }
        r
    }

    fn remaining(&self) -> Option<u64> {
        match &self.framing {
            Framing::Length { remaining } => Some(*remaining),
            Framing::Chunked(d) if d.is_done() => Some(0),
            Framing::Chunked(_) => None,
        }
    }

    fn failure(&self) -> Option<BodyFailure> {
        self.failure.clone()
    }

    fn in_memory(&self) -> &[u8] {
        match self.framing {
            // Bytes past the body belong to the next request.
            Framing::Length { remaining } => {
                let n = usize::try_from(remaining)
                    .map_or(self.buffered.len(), |r| r.min(self.buffered.len()));
                &self.buffered[..n]
            }
            Framing::Chunked(_) => &[],
        }
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.in_memory().len());
        if n == 0 {
            return;
        }
        // The body is on its way: no 100-continue is owed any more (as in `send_continue`).
        self.expect_continue = false;
        bytes::Buf::advance(&mut self.buffered, n);
        if let Framing::Length { remaining } = &mut self.framing {
            *remaining -= n as u64;
        }
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}
