//! HTTP/1.1 response framing: status line, the app's headers, Date/Server, then
//! Content-Length, chunked or close-delimited bodies. The head goes out with the first chunk
//! in one vectored write, and a chunk is written straight from the app's `bytes`.

use std::io::{self, IoSlice, Write};
use std::os::fd::RawFd;
use std::sync::Arc;

use super::date::push_date;
use super::io::ConnIo;
use crate::request::Version;
use crate::responder::{computed_length, BodyLength, Responder, ResponseHead};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Length,
    Chunked,
    /// HTTP/1.0 without a known length: the body ends when the connection closes.
    Close,
    NoBody,
}

pub struct HttpResponder {
    io: Arc<ConnIo>,
    version: Version,
    /// The request asked to close (or the server is stopping).
    client_close: bool,
    head: Vec<u8>,
    head_pending: bool,
    mode: Mode,
    sent: u64,
}

thread_local! {
    /// The response head buffer, handed from one response to the next on this thread.
    static HEAD_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Drop for HttpResponder {
    fn drop(&mut self) {
        let mut head = std::mem::take(&mut self.head);
        head.clear();
        HEAD_BUF.set(head);
    }
}

impl HttpResponder {
    pub fn new(io: Arc<ConnIo>, version: Version, client_close: bool) -> HttpResponder {
        let mut head = HEAD_BUF.take();
        head.reserve(256);
        HttpResponder {
            io,
            version,
            client_close,
            head,
            head_pending: false,
            mode: Mode::NoBody,
            sent: 0,
        }
    }

    /// What goes before and after `len` body bytes: a chunk's size line and CRLF when the
    /// body is chunked, nothing otherwise.
    fn frame<'a>(&self, len: usize, size: &'a mut [u8; 18]) -> (&'a [u8], &'static [u8]) {
        if self.mode == Mode::Chunked {
            (hex(len, size), b"\r\n")
        } else {
            (b"", b"")
        }
    }

    /// Writes the head if it is still pending, then `parts`, in one vectored write.
    fn send(&mut self, parts: [&[u8]; 3]) -> io::Result<()> {
        let head: &[u8] = if std::mem::take(&mut self.head_pending) {
            &self.head
        } else {
            &[]
        };
        self.io.mark_started();
        let [a, b, c] = parts;
        self.io.write_all(&mut [
            IoSlice::new(head),
            IoSlice::new(a),
            IoSlice::new(b),
            IoSlice::new(c),
        ])
    }
}

/// Writes `n` as lower-case hex into `out`, returning the used tail.
fn hex(n: usize, out: &mut [u8; 18]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut i = out.len() - 2;
    out[16] = b'\r';
    out[17] = b'\n';
    let mut n = n;
    loop {
        i -= 1;
        out[i] = DIGITS[n & 15];
        n >>= 4;
        if n == 0 || i == 0 {
            break;
        }
    }
    &out[i..]
}

impl Responder for HttpResponder {
    fn start(&mut self, head: &ResponseHead<'_>) -> io::Result<()> {
        let h = &mut self.head;
        h.clear();
        h.extend_from_slice(self.version.as_str().as_bytes());
        h.push(b' ');
        h.extend_from_slice(head.status);
        if head.status.len() == 3 {
            h.extend_from_slice(b" ");
        }
        h.extend_from_slice(b"\r\n");
        h.extend_from_slice(head.header_block);
        if !head.has_server {
            h.extend_from_slice(b"Server: wsgi-gateway\r\n");
        }
        if !head.has_date {
            h.extend_from_slice(b"Date: ");
            push_date(h);
            h.extend_from_slice(b"\r\n");
        }
        if let Some(n) = computed_length(head) {
            // Formatted in place: no allocation per response.
            let _ = write!(h, "Content-Length: {n}\r\n");
        }
        self.mode = if !head.body_allowed {
            Mode::NoBody
        } else {
            match head.length {
                BodyLength::Known(_) => Mode::Length,
                BodyLength::Unknown if self.version == Version::Http11 => {
                    h.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                    Mode::Chunked
                }
                BodyLength::Unknown => Mode::Close,
            }
        };
        let keep_alive = !self.client_close && !head.close && self.mode != Mode::Close;
        self.io.set_close_after(!keep_alive);
        if !keep_alive {
            h.extend_from_slice(b"Connection: close\r\n");
        } else if self.version == Version::Http10 {
            h.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        h.extend_from_slice(b"\r\n");
        self.head_pending = true;
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if chunk.is_empty() || self.mode == Mode::NoBody {
            return Ok(());
        }
        self.sent = self.sent.saturating_add(chunk.len() as u64);
        let mut size = [0u8; 18];
        let (open, close) = self.frame(chunk.len(), &mut size);
        self.send([open, chunk, close])
    }

    fn write_many(&mut self, chunks: &[&[u8]]) -> io::Result<()> {
        let total = chunks
            .iter()
            .map(|c| c.len())
            .fold(0usize, usize::saturating_add);
        if total == 0 || self.mode == Mode::NoBody {
            return Ok(());
        }
        self.sent = self.sent.saturating_add(total as u64);
        // Chunked: one frame around all of them (chunk boundaries carry no meaning).
        let mut size = [0u8; 18];
        let (open, close) = self.frame(total, &mut size);
        let head: &[u8] = if std::mem::take(&mut self.head_pending) {
            &self.head
        } else {
            &[]
        };
        let mut slices = Vec::with_capacity(chunks.len() + 3);
        slices.push(IoSlice::new(head));
        slices.push(IoSlice::new(open));
        slices.extend(chunks.iter().map(|c| IoSlice::new(c)));
        slices.push(IoSlice::new(close));
        self.io.mark_started();
        self.io.write_all(&mut slices)
    }

    fn send_file(&mut self, fd: RawFd, offset: u64, len: u64) -> io::Result<bool> {
        if self.mode != Mode::Length {
            return Ok(false);
        }
        self.send([b"", b"", b""])?;
        // SAFETY: the caller keeps `fd` open for the duration of this call.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        self.io.send_file(fd, offset, len)?;
        self.sent = len;
        Ok(true)
    }

    fn finish(&mut self) -> io::Result<()> {
        let tail: &[u8] = if self.mode == Mode::Chunked {
            b"0\r\n\r\n"
        } else {
            b""
        };
        self.send([tail, b"", b""])
    }

    fn abort(&mut self) {
        self.io.set_close_after(true);
        self.head_pending = false;
        self.io.mark_started();
    }

    fn body_bytes_sent(&self) -> u64 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_sizes() {
        let mut b = [0u8; 18];
        assert_eq!(super::hex(0, &mut b), b"0\r\n");
        assert_eq!(super::hex(255, &mut b), b"ff\r\n");
        assert_eq!(super::hex(65536, &mut b), b"10000\r\n");
    }
}
