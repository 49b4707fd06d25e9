//! The request body on an HTTP connection: Content-Length or chunked, read as the app asks,
//! never past its end (pipelined bytes after it stay for the next request).

use std::any::Any;
use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::chunked::ChunkedDecoder;
use super::io::ConnIo;
use crate::request::{BodyFailure, BodyReader};

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
const READ_SIZE: usize = 64 * 1024;
/// Unread body bytes we are willing to read and discard to keep a connection alive.
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
}

impl HttpBody {
    pub fn new(
        io: Arc<ConnIo>,
        buffered: Bytes,
        framing: crate::request::Framing,
        expect_continue: bool,
        max_body: u64,
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
        let n = self.io.read(&mut buf)?;
        buf.truncate(n);
        self.buffered = buf.freeze();
        Ok(n)
    }

    fn read_inner(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.send_continue()?;
        match &mut self.framing {
            Framing::Length { remaining } => {
                let want = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(out.len());
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
                    let n = self.io.read(&mut out[..want])?;
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
                let decoded = decoder.decode(&self.buffered, out);
                if decoded.is_err() {
                    self.failure = Some(BodyFailure::Invalid(400));
                }
                let (consumed, produced) = decoded.map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad chunked body: {}", e.reason),
                    )
                })?;
                let _ = self.buffered.split_to(consumed);
                if produced > 0 {
                    self.received = self.received.saturating_add(produced as u64);
                    if self.max_body > 0 && self.received > self.max_body {
                        self.failure = Some(BodyFailure::Invalid(413));
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "request body exceeds --max-body-size",
                        ));
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

    /// After the response: the bytes that follow the body (the next pipelined request), or
    /// `None` when the connection cannot be reused. A small unread remainder is drained.
    pub fn finish(&mut self) -> Option<Bytes> {
        // A failed read leaves the connection's framing unknown.
        if self.failure.is_some() {
            return None;
        }
        if !self.complete() {
            // The client is still waiting for our 100-continue: it may never send the body.
            if self.expect_continue {
                return None;
            }
            if let Framing::Length { remaining } = self.framing {
                if remaining > DRAIN_LIMIT + self.buffered.len() as u64 {
                    return None;
                }
            }
            let mut sink = vec![0u8; 16 * 1024];
            let mut drained = 0u64;
            while !self.complete() {
                match self.read_inner(&mut sink) {
                    Ok(0) => break,
                    Ok(n) => drained += n as u64,
                    Err(_) => return None,
                }
                if drained > DRAIN_LIMIT {
                    return None;
                }
            }
        }
        Some(std::mem::take(&mut self.buffered))
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
        self.failure
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
