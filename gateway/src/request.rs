//! The one `Request` every front end produces, and the `BodyReader` its body is read through.

use std::any::Any;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;

/// HTTP version of the request (the only two the gateway speaks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How the request body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// Where a request came from: a socket peer, or nothing the front end can name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix,
    /// A front end that reports the address as text (CGI `REMOTE_ADDR`, ISAPI server variables).
    Named {
        addr: String,
        port: Option<String>,
    },
}

/// A request head in the front end's terms, mapped once into WSGI terms by the core.
#[derive(Debug)]
pub struct Request {
    pub method: Bytes,
    /// The raw request-target (`REQUEST_URI`).
    pub target: Bytes,
    /// Still percent-encoded; the core decodes it into `PATH_INFO`.
    pub path: Bytes,
    pub query: Bytes,
    pub version: Version,
    /// In arrival order; names as sent. Values trimmed of OWS.
    pub headers: Vec<(Bytes, Bytes)>,
    pub peer: Peer,
    /// (SERVER_NAME, SERVER_PORT) when no Host header says otherwise.
    pub server_name: String,
    pub server_port: String,
    pub scheme: Scheme,
    /// Set only by a front end that authenticated the client (IIS, a CGI host); never from a header.
    pub remote_user: Option<Bytes>,
    pub auth_type: Option<Bytes>,
    /// Percent-decoded bytes of the mount point (`SCRIPT_NAME`); already removed from `path`.
    pub script_name: Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// `http`/`https` as a proxy reports it (any case, surrounding spaces allowed).
    pub fn from_proto(text: &str) -> Option<Scheme> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else if text.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else {
            None
        }
    }
}

/// Decoded request body bytes as the front end delivers them. `read` may block; the front end
/// releases the GIL around any wait (see `python::without_gil`).
pub trait BodyReader: Send + Sync {
    /// Fill `buf` with decoded body bytes; `Ok(0)` only at the end of the body.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Bytes still to come when the front end knows it (Content-Length bodies).
    fn remaining(&self) -> Option<u64>;
    /// Why reading failed, when it was the client's doing rather than the app's.
    fn failure(&self) -> Option<BodyFailure> {
        None
    }
    /// Lets the front end take its reader back after the call (to reuse the connection).
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

/// Why reading a request body failed, when the client is the cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFailure {
    /// The body broke its framing or a limit: answer this status (400, 413) and close.
    Invalid(u16),
    /// The client stopped sending for longer than the body timeout: 408 and close.
    TimedOut,
    /// The client closed the connection: there is nobody to answer.
    ClientGone,
}
