//! The standalone HTTP/1.1 front end: sockets (`listener`; a client's: `stream`, `io`), the
//! shared readiness set the workers serve from (`server`), request parsing (`head`, `chunked`), one request through the
//! app (`connection`, `body`), and response framing (`response`,
//! `merge`).

pub(crate) mod access_format;
pub(crate) mod access_log;
pub(crate) mod body;
pub(crate) mod chunked;
pub(crate) mod connection;
mod date;
mod grammar;
pub(crate) mod head;
pub(crate) mod io;
pub(crate) mod listener;
mod merge;
pub(crate) mod proxy_protocol;
pub(crate) mod rate;
pub(crate) mod response;
pub(crate) mod server;
mod spool;
pub(crate) mod stream;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::python::call::WsgiApp;
use crate::reject::ErrorDocument;
use crate::request::{Peer, Scheme};
use head::HeadLimits;
use io::ConnIo;

/// HTTP front-end settings (from `config::ServeArgs`).
#[derive(Clone, Debug)]
pub struct Settings {
    pub limits: HeadLimits,
    /// 0 = unlimited.
    pub max_body: u64,
    pub header_timeout: Duration,
    /// --proxy-protocol: every connection starts with a PROXY header (see `proxy_protocol`).
    pub proxy_protocol: bool,
    pub keepalive_timeout: Duration,
    pub body_timeout: Duration,
    pub write_timeout: Duration,
    /// --min-request-body-rate after --min-rate-grace (see `rate`).
    pub min_body_rate: rate::MinRate,
    /// --min-response-rate after --min-rate-grace.
    pub min_response_rate: rate::MinRate,
    /// --write-buffer (see `spool`).
    pub write_buffer: u64,
    /// --write-buffer-total: every connection's queued response bytes together.
    pub write_buffer_total: u64,
    /// --stream-nodelay: every block of a response goes out in its own segment at once.
    pub stream_nodelay: bool,
    pub graceful_timeout: Duration,
    pub max_connections: usize,
    pub threads: usize,
    /// Mount point, e.g. `/app` (empty for the root).
    pub script_name: bytes::Bytes,
    /// Requests this process serves before it retires (a supervised worker); 0 = no limit.
    pub max_requests: u64,
}

/// What a listener tells the app about itself.
#[derive(Debug)]
pub struct ListenerInfo {
    pub server_name: Arc<str>,
    pub server_port: Arc<str>,
    pub scheme: Scheme,
    /// `SERVER_ADDR`: only from a PROXY header (the address the client connected to).
    pub server_addr: Option<bytes::Bytes>,
}

/// A client connection, owned by the reactor or by one worker at a time.
pub struct Conn {
    pub io: Arc<ConnIo>,
    pub peer: Peer,
    pub listener: Arc<ListenerInfo>,
}

/// Everything the workers share.
pub struct Shared {
    pub app: WsgiApp,
    pub settings: Settings,
    pub stopping: AtomicBool,
    pub access_log: Option<access_log::AccessLog>,
    /// Requests served, for `max_requests`.
    pub served: std::sync::atomic::AtomicU64,
    /// `max_requests` was reached: stop gracefully (the supervisor starts a replacement).
    pub retiring: AtomicBool,
}

/// A complete error response from the server itself; it always closes the connection.
pub fn error_response(status: u16) -> Vec<u8> {
    let doc = ErrorDocument::new(status, None);
    let mut out = Vec::with_capacity(200);
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nServer: wsgi-gateway\r\nDate: ",
            doc.status_line,
            ErrorDocument::CONTENT_TYPE,
            doc.body.len()
        )
        .as_bytes(),
    );
    date::push_date(&mut out);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&doc.body);
    out
}
