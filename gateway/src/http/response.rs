//! HTTP/1.1 response framing: status line, the app's headers, Date/Server, then
//! Content-Length, chunked or close-delimited bodies. The head goes out with the first chunk
//! in one vectored write, and a chunk is written straight from the app's `bytes`.

use std::io::{self, IoSlice, Write};
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use super::date::push_date;
use super::io::ConnIo;
use super::merge;
use crate::chunk_frame::{ChunkSize, CHUNK_END, LAST_CHUNK};
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
        merge::end(&self.io);
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

    /// Before each body write: the first goes out with the head at once, later ones may be
    /// merged into fewer segments (see `merge`).
    fn later_block(&self, len: usize) {
        if !self.head_pending {
            merge::later_write(&self.io, len);
        }
    }

    /// What goes before and after `len` body bytes: a chunk's size line and CRLF when the
    /// body is chunked, nothing otherwise.
    fn frame<'a>(&self, len: usize, size: &'a mut Option<ChunkSize>) -> (&'a [u8], &'static [u8]) {
        if self.mode == Mode::Chunked {
            (size.insert(ChunkSize::new(len)).as_bytes(), CHUNK_END)
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

impl Responder for HttpResponder {
    fn start(&mut self, head: &ResponseHead<'_>) -> io::Result<()> {
        let h = &mut self.head;
        h.clear();
        h.extend_from_slice(self.version.as_str().as_bytes());
        h.push(b' ');
        h.extend_from_slice(head.status);
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
        self.later_block(chunk.len());
        let mut size = None;
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
        self.later_block(total);
        // Chunked: one frame around all of them (chunk boundaries carry no meaning).
        let mut size = None;
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

    fn send_file(&mut self, fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<bool> {
        if self.mode != Mode::Length {
            return Ok(false);
        }
        self.send([b"", b"", b""])?;
        self.io.send_file(fd, offset, len)?;
        self.sent = len;
        Ok(true)
    }

    fn finish(&mut self) -> io::Result<()> {
        let tail: &[u8] = if self.mode == Mode::Chunked {
            LAST_CHUNK
        } else {
            b""
        };
        let sent = self.send([tail, b"", b""]);
        merge::end(&self.io);
        sent
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
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;

    use super::{ConnIo, HttpResponder};
    use crate::http::io::SendLimits;
    use crate::http::stream::Stream;
    use crate::request::Version;
    use crate::responder::{BodyLength, Responder, ResponseHead};

    fn nodelay(io: &ConnIo) -> bool {
        io.stream.nodelay().unwrap()
    }

    /// The first block goes out under TCP_NODELAY; later blocks may be merged (Nagle) and the
    /// end of the response restores TCP_NODELAY, so the next response is not held back.
    #[test]
    fn later_blocks_of_a_response_may_merge_until_it_ends() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut client, server) = pair(&listener);
        let limits = SendLimits::unqueued(std::time::Duration::from_secs(5));
        let io = Arc::new(ConnIo::new(Stream::tcp(server), &limits).allow_merging(true));
        let head = ResponseHead {
            code: 200,
            status: b"200 OK",
            header_block: b"",
            length: BodyLength::Unknown,
            app_content_length: false,
            body_allowed: true,
            has_date: true,
            has_server: true,
            close: false,
        };
        for _ in 0..2 {
            let mut r = HttpResponder::new(io.clone(), Version::Http11, false);
            r.start(&head).unwrap();
            r.write(b"first").unwrap();
            assert!(nodelay(&io), "the first block must not wait");
            r.write(b"second").unwrap();
            assert!(!nodelay(&io), "later blocks may be merged");
            r.write(b"third").unwrap();
            r.finish().unwrap();
            assert!(nodelay(&io), "the end of a response restores TCP_NODELAY");
        }
        // A response that pauses: the pusher sends what is held (TCP_NODELAY on) within a few
        // intervals, and the next write merges again.
        let mut r = HttpResponder::new(io.clone(), Version::Http11, false);
        r.start(&head).unwrap();
        r.write(b"first").unwrap();
        r.write(b"second").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !nodelay(&io) {
            assert!(
                std::time::Instant::now() < deadline,
                "a paused response was never pushed"
            );
            std::thread::yield_now();
        }
        r.write(b"third").unwrap();
        assert!(!nodelay(&io), "merging resumes with the next write");
        r.finish().unwrap();
        assert!(nodelay(&io));
        drop(r);
        // A response dropped half-way (an app error) restores it too.
        let mut r = HttpResponder::new(io.clone(), Version::Http11, false);
        r.start(&head).unwrap();
        r.write(b"a").unwrap();
        r.write(b"b").unwrap();
        drop(r);
        assert!(nodelay(&io));
        // --stream-nodelay: never off.
        let (_peer, server) = pair(&listener);
        let plain = Arc::new(ConnIo::new(Stream::tcp(server), &limits));
        let mut r = HttpResponder::new(plain.clone(), Version::Http11, false);
        r.start(&head).unwrap();
        r.write(b"a").unwrap();
        r.write(b"b").unwrap();
        assert!(nodelay(&plain));
        // Every block arrived, in order.
        drop(io);
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        let body = String::from_utf8_lossy(&got);
        assert_eq!(
            body.matches("5\r\nfirst\r\n6\r\nsecond\r\n5\r\nthird\r\n0\r\n\r\n")
                .count(),
            3
        );
    }

    /// A connected server-side socket with TCP_NODELAY on, as the listener makes them.
    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nodelay(true).unwrap();
        (client, server)
    }
}
