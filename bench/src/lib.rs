//! Benchmarks for wsgi-gateway live in benches/ and compare.sh. This library holds what the
//! criterion benches share: Python start-up, sample requests, and a body reader and responder
//! that touch no socket.

use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wsgi_gateway::internals::{
    decode_path, parse_head, BodyReader, HeadLimits, Peer, Request, Responder, ResponseHead,
    Scheme, TcpPeer,
};

/// A typical browser GET: 10 headers, a query string, a cookie.
pub const BROWSER_GET: &[u8] =
    b"GET /articles/2024/rust-http-parsing?utm_source=feed&page=2 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/articles/\r\n\
Connection: keep-alive\r\n\
Cookie: session=4f6e2a9c1b7d; theme=dark; consent=1\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
\r\n";

/// What `wrk` sends for compare.sh's `hello` scenario.
pub const WRK_HELLO: &[u8] = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n";

/// The head of compare.sh's `echo` scenario (a 4 KiB POST), body not included.
pub const WRK_ECHO_4K: &[u8] = b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/octet-stream\r\nContent-Length: 4096\r\n\r\n";

/// Starts the embedded interpreter the way the binary does (`sys.executable` etc.); call before
/// any `Python::attach`.
pub fn start_python() {
    wsgi_gateway::internals::start_interpreter(None).expect("starting Python");
}

/// The environ builder of the HTTP front end, made as the binary's `load()` makes it.
pub fn http_environ_builder(py: pyo3::Python<'_>) -> wsgi_gateway::internals::EnvironBuilder {
    use pyo3::prelude::*;
    use wsgi_gateway::internals::{EnvironBuilder, FrontEndKind};
    let errors = Bound::new(py, wsgi_gateway::internals::WsgiErrors::new())
        .expect("wsgi.errors")
        .into_any();
    let wrapper = py
        .get_type::<wsgi_gateway::internals::FileWrapper>()
        .into_any();
    let kind = FrontEndKind {
        multithread: true,
        multiprocess: false,
        run_once: false,
    };
    EnvironBuilder::new(py, kind, Default::default(), errors, wrapper).expect("environ builder")
}

/// Parses `raw` (a complete head, kept in a refcounted buffer as the server's read buffer is)
/// and maps it to a `Request` the way the HTTP front end does for a TCP client at the root
/// mount point.
pub fn request_from(raw: &Bytes) -> Request {
    let head = parse_head(raw, &HeadLimits::default())
        .expect("valid head")
        .expect("complete head");
    Request {
        method: head.method,
        target: head.target,
        path: decode_path(&head.path),
        query: head.query,
        version: head.version,
        headers: head.headers,
        peer: Peer::Tcp(TcpPeer::new(SocketAddr::from(([203, 0, 113, 7], 54_321)))),
        server_name: "127.0.0.1".into(),
        server_port: "8000".into(),
        scheme: Scheme::Http,
        remote_user: None,
        auth_type: None,
        script_name: Bytes::new(),
        extra: Vec::new(),
    }
}

/// A request body already in memory, read as a Content-Length body would be.
pub struct MemBody {
    data: Bytes,
    pos: usize,
}

impl MemBody {
    pub fn new(data: Bytes) -> MemBody {
        MemBody { data, pos: 0 }
    }

    pub fn empty() -> MemBody {
        MemBody::new(Bytes::new())
    }
}

impl BodyReader for MemBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.data[self.pos..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }

    fn remaining(&self) -> Option<u64> {
        Some((self.data.len() - self.pos) as u64)
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// Counts body bytes and discards them (and the head). With `capture`, keeps the body too,
/// for checking a bench's app really answered what it should.
#[derive(Default)]
pub struct NullResponder {
    sent: u64,
    capture: Option<Arc<Mutex<Vec<u8>>>>,
}

impl NullResponder {
    /// A responder that also appends every body byte to `into`.
    pub fn capturing(into: Arc<Mutex<Vec<u8>>>) -> NullResponder {
        NullResponder {
            sent: 0,
            capture: Some(into),
        }
    }
}

impl Responder for NullResponder {
    fn start(&mut self, _head: &ResponseHead<'_>) -> io::Result<()> {
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.sent += chunk.len() as u64;
        if let Some(c) = &self.capture {
            c.lock().expect("capture lock").extend_from_slice(chunk);
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn abort(&mut self) {}

    fn body_bytes_sent(&self) -> u64 {
        self.sent
    }
}
