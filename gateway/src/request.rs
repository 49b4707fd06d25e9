//! The one `Request` every front end produces, and the `BodyReader` its body is read through.

use std::any::Any;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::reject::Reject;

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
    Tcp(TcpPeer),
    Unix,
    /// A front end that reports the address as text (CGI `REMOTE_ADDR`, ISAPI server variables).
    Named {
        addr: String,
        port: Option<String>,
    },
}

/// A TCP peer, with its address as text made once per connection (not once per request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpPeer {
    pub addr: SocketAddr,
    pub ip: std::sync::Arc<str>,
    pub port: std::sync::Arc<str>,
}

impl TcpPeer {
    pub fn new(addr: SocketAddr) -> TcpPeer {
        TcpPeer {
            addr,
            ip: addr.ip().to_string().into(),
            port: addr.port().to_string().into(),
        }
    }
}

/// A request head in the front end's terms, mapped once into WSGI terms by the core.
#[derive(Debug)]
pub struct Request {
    pub method: Bytes,
    /// The raw request-target (`REQUEST_URI`).
    pub target: Bytes,
    /// `PATH_INFO`: decoded bytes below the mount point (the front end decodes, see
    /// `decode_path`; a CGI host hands it over decoded already).
    pub path: Bytes,
    pub query: Bytes,
    pub version: Version,
    /// In arrival order; names as sent. Values trimmed of OWS.
    pub headers: Vec<(Bytes, Bytes)>,
    pub peer: Peer,
    /// (SERVER_NAME, SERVER_PORT) when no Host header says otherwise.
    /// Shared with the listener (or made once by the front end): no copy per request.
    pub server_name: std::sync::Arc<str>,
    pub server_port: std::sync::Arc<str>,
    pub scheme: Scheme,
    /// Set only by a front end that authenticated the client (IIS, a CGI host); never from a header.
    pub remote_user: Option<Bytes>,
    pub auth_type: Option<Bytes>,
    /// Percent-decoded bytes of the mount point (`SCRIPT_NAME`); already removed from `path`.
    pub script_name: Bytes,
    /// Variables the front end's host defined (a CGI host's `DOCUMENT_ROOT`, `SSL_*`, …), put
    /// into the environ as they are, after the standard keys. Never identity or `HTTP_*`.
    pub extra: Vec<(Bytes, Bytes)>,
}

/// Percent-decodes a request path to bytes (`%2F` included); malformed escapes stay as they
/// are. Borrows `raw` when there is nothing to decode.
pub fn decode_path(raw: &Bytes) -> Bytes {
    if !raw.contains(&b'%') {
        return raw.clone();
    }
    Bytes::from(percent_encoding::percent_decode(raw).collect::<Vec<u8>>())
}

/// How a mount point matches the start of a request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountCase {
    /// Byte for byte: URL paths are case-sensitive (RFC 3986 §6.2.2.1), as `serve` matches.
    #[cfg_attr(not(unix), expect(dead_code, reason = "serve is built for Unix only"))]
    Exact,
    /// ASCII case ignored: IIS matches an application's URL so, and its app must see the
    /// requests IIS sends it.
    AsciiInsensitive,
}

/// (SCRIPT_NAME, PATH_INFO) when `path` is `mount` or below it (`mount` is decoded, without a
/// trailing `/`; empty = the root). SCRIPT_NAME keeps the request's spelling.
pub fn split_mount(path: &Bytes, mount: &[u8], case: MountCase) -> Option<(Bytes, Bytes)> {
    let head = path.get(..mount.len())?;
    let same = match case {
        MountCase::Exact => head == mount,
        MountCase::AsciiInsensitive => head.eq_ignore_ascii_case(mount),
    };
    if !same {
        return None;
    }
    let rest = path.slice(mount.len()..);
    (rest.is_empty() || rest.starts_with(b"/")).then(|| (path.slice(..mount.len()), rest))
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

/// How much of a `len`-byte buffer a read may fill from a body with `remaining` bytes still
/// due (`None`: no declared length, read to the end). 0: nothing to read.
pub fn read_window(remaining: Option<u64>, len: usize) -> usize {
    match remaining {
        Some(n) => len.min(usize::try_from(n).unwrap_or(usize::MAX)),
        None => len,
    }
}

/// Decoded request body bytes as the front end delivers them. `read` may block; the front end
/// releases the GIL around any wait (see `python::without_gil`).
pub trait BodyReader: Send + Sync {
    /// Fill `buf` with decoded body bytes; `Ok(0)` only at the end of the body.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Bytes still to come when the front end knows it (Content-Length bodies).
    fn remaining(&self) -> Option<u64>;
    /// Body bytes already in memory that the next `read` would return first (may be empty),
    /// so `wsgi.input` can copy them once, straight into the app's `bytes`.
    fn in_memory(&self) -> &[u8] {
        &[]
    }
    /// Takes the first `n` bytes of `in_memory` as read.
    fn consume(&mut self, _n: usize) {}
    /// Why reading failed, when it was the client's doing rather than the app's.
    fn failure(&self) -> Option<BodyFailure> {
        None
    }
    /// Lets the front end take its reader back after the call (to reuse the connection).
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

/// Why reading a request body failed, when the client is the cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyFailure {
    /// The body broke its framing or a limit: answer its status (400, 413) and close.
    Invalid(Reject),
    /// The client stopped sending for longer than the body timeout: 408 and close.
    TimedOut,
    /// The client closed the connection: there is nobody to answer.
    ClientGone,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(raw: &'static [u8]) -> Bytes {
        decode_path(&Bytes::from_static(raw))
    }

    #[test]
    fn a_read_takes_no_more_than_is_due() {
        assert_eq!(read_window(Some(10), 4096), 10);
        assert_eq!(read_window(Some(1 << 40), 4096), 4096);
        assert_eq!(read_window(Some(0), 4096), 0);
        assert_eq!(read_window(None, 4096), 4096);
        assert_eq!(read_window(Some(5), 0), 0);
    }

    #[test]
    fn mounts_match_whole_segments_in_their_case_rule() {
        let p = |s: &'static [u8]| Bytes::from_static(s);
        let split = |path, mount, case| {
            split_mount(&p(path), mount, case).map(|(a, b)| (a.to_vec(), b.to_vec()))
        };
        use MountCase::*;
        assert_eq!(
            split(b"/app/x", b"/app", Exact),
            Some((b"/app".to_vec(), b"/x".to_vec()))
        );
        assert_eq!(
            split(b"/app", b"/app", Exact),
            Some((b"/app".to_vec(), b"".to_vec()))
        );
        assert_eq!(split(b"/apple", b"/app", Exact), None);
        assert_eq!(split(b"/APP/x", b"/app", Exact), None);
        assert_eq!(
            split(b"/APP/x", b"/app", AsciiInsensitive),
            Some((b"/APP".to_vec(), b"/x".to_vec()))
        );
        assert_eq!(
            split(b"/x", b"", Exact),
            Some((b"".to_vec(), b"/x".to_vec()))
        );
        assert_eq!(split(b"/a", b"/app", Exact), None);
    }

    #[test]
    fn decodes_paths_to_bytes() {
        assert_eq!(&dec(b"/a%2Fb")[..], b"/a/b");
        assert_eq!(&dec(b"/caf%C3%A9")[..], b"/caf\xc3\xa9");
        assert_eq!(&dec(b"/100%")[..], b"/100%");
        assert_eq!(&dec(b"/%zz%4")[..], b"/%zz%4");
        assert_eq!(&dec(b"/%41%")[..], b"/A%");
        assert_eq!(&dec(b"/plain")[..], b"/plain");
    }
}
