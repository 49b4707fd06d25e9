//! One connection's requests through the app: the parsed one, then any complete pipelined
//! ones behind it, each through the WSGI call. Runs on a worker holding the GIL.

use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use pyo3::prelude::*;

use super::access_log::Entry;
use super::body::HttpBody;
use super::head::{parse_head, reuse_headers, Head};
use super::response::HttpResponder;
use super::{error_response, Conn, Settings, Shared};
use crate::request::{decode_path, Framing, Peer, Request};
use crate::trust::TrustPolicy;

/// Checks that need no Python, done before a request reaches the app. `Err` = answer this
/// status and close.
pub fn precheck(
    head: &Head,
    settings: &Settings,
    policy: &TrustPolicy,
) -> Result<(), (u16, &'static str)> {
    if head.method.as_ref() == b"CONNECT" {
        return Err((501, "CONNECT is not supported by a WSGI gateway"));
    }
    if let Framing::Length(n) = head.framing {
        if settings.max_body > 0 && n > settings.max_body {
            return Err((413, "request body larger than --max-body-size"));
        }
    }
    if policy.refused_header(&head.headers).is_some() {
        return Err((
            400,
            "header name with '_' refused (--header-underscores refuse)",
        ));
    }
    if !settings.script_name.is_empty() && split_mount(&head.path, &settings.script_name).is_none()
    {
        return Err((404, "path outside --script-name"));
    }
    Ok(())
}

/// Body bytes gathered before the app is called: a client that trickles a small body holds
/// no worker; a larger body streams to the app once this much has arrived.
pub const BODY_AHEAD: usize = 64 * 1024;

/// Whether to keep waiting (parked, no worker) for more of the body before calling the app:
/// the body is neither complete nor `BODY_AHEAD` long yet. Not when the client waits for
/// `100 Continue`, nor when the request will be refused anyway.
pub fn await_body(head: &Head, rest: &[u8], shared: &Shared) -> bool {
    if head.expect_continue || rest.len() >= BODY_AHEAD {
        return false;
    }
    if precheck(head, &shared.settings, shared.app.environ.policy()).is_err() {
        return false;
    }
    match head.framing {
        Framing::None => false,
        Framing::Length(n) => (rest.len() as u64) < n,
        Framing::Chunked => {
            // Complete (or already broken) chunked framing is dispatched; the body reader
            // decodes it again for the app.
            let mut decoder = super::chunked::ChunkedDecoder::for_requests();
            let mut out = [0u8; 4096];
            let mut input = rest;
            loop {
                match decoder.decode(input, &mut out) {
                    Err(_) => return false,
                    Ok(_) if decoder.is_done() => return false,
                    Ok((0, _)) => return true,
                    Ok((used, _)) => input = &input[used..],
                }
            }
        }
    }
}

/// The path below the mount point, or `None` when the path is outside it.
fn split_mount(path: &Bytes, mount: &[u8]) -> Option<Bytes> {
    if !path.starts_with(mount) {
        return None;
    }
    let rest = path.slice(mount.len()..);
    (rest.is_empty() || rest.starts_with(b"/")).then_some(rest)
}

fn to_request(head: Head, conn: &Conn, settings: &Settings) -> Request {
    let mut headers = head.headers;
    if let Some(authority) = head.authority {
        // An absolute-form target overrides Host (RFC 9112 §3.2.2).
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(b"host"));
        headers.push((Bytes::from_static(b"Host"), authority));
    }
    let (path, script_name) = if settings.script_name.is_empty() {
        (head.path, Bytes::new())
    } else {
        let rest = split_mount(&head.path, &settings.script_name).unwrap_or_default();
        (rest, settings.script_name.clone())
    };
    // `OPTIONS *` names the server, not a resource: PATH_INFO is empty (REQUEST_URI says `*`).
    let path = if path.as_ref() == b"*" {
        Bytes::new()
    } else {
        decode_path(&path)
    };
    Request {
        method: head.method,
        target: head.target,
        path,
        query: head.query,
        version: head.version,
        headers,
        peer: conn.peer.clone(),
        server_name: conn.listener.server_name.clone(),
        server_port: conn.listener.server_port.clone(),
        scheme: conn.listener.scheme,
        remote_user: None,
        auth_type: None,
        script_name,
        extra: Vec::new(),
    }
}

/// Writes a server-generated error response; the caller then closes the connection.
pub fn reject(conn: &Conn, status: u16, why: &str) {
    tracing::info!("{status} for {}: {why}", peer_text(&conn.peer));
    let resp = error_response(status);
    let _ = conn.io.write_all(&mut [IoSlice::new(&resp)]);
}

pub fn peer_text(peer: &Peer) -> String {
    match peer {
        Peer::Tcp(p) => p.ip.to_string(),
        Peer::Unix => "unix".to_string(),
        Peer::Named { addr, .. } => addr.clone(),
    }
}

fn header<'a>(req: &'a Request, name: &[u8]) -> Option<&'a [u8]> {
    req.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}

/// Counts a served request; true when this one reached `max_requests` (the connection then
/// closes and the process stops gracefully).
fn retire_now(shared: &Shared) -> bool {
    let limit = shared.settings.max_requests;
    if limit == 0 {
        return false;
    }
    let served = shared.served.fetch_add(1, Ordering::Relaxed) + 1;
    if served < limit {
        return false;
    }
    if !shared.retiring.swap(true, Ordering::AcqRel) {
        tracing::info!("max-requests reached ({served} requests); retiring");
    }
    true
}

/// What a connection that stays open is left with after `serve`.
pub struct Served {
    /// The bytes after the last request served: the start of the next one.
    pub leftover: Bytes,
    /// A request body was read from the socket, not only from the bytes that came with its
    /// head: the socket may hold more, so it must be read again before the connection parks.
    pub socket_read: bool,
}

/// Serves `head` and any complete pipelined requests behind it. Returns what is left when
/// the connection stays open, `None` to close.
pub fn serve(
    py: Python<'_>,
    shared: &Shared,
    conn: &Conn,
    head: Head,
    rest: Bytes,
) -> Option<Served> {
    let settings = &shared.settings;
    // When the request arrived, for the access log's duration (no clock read without one).
    let clock = || shared.access_log.as_ref().map(|_| Instant::now());
    let (mut head, mut rest, mut received) = (head, rest, clock());
    let mut socket_read = false;
    loop {
        if let Err((status, why)) = precheck(&head, settings, shared.app.environ.policy()) {
            reject(conn, status, why);
            return None;
        }
        conn.io.next_request();
        let close_requested = head.close || shared.stopping.load(Ordering::Acquire);
        let framing = head.framing;
        let expect = head.expect_continue;
        let req = to_request(head, conn, settings);
        let body = HttpBody::new(conn.io.clone(), rest, framing, expect, settings.max_body);
        let responder = HttpResponder::new(conn.io.clone(), req.version, close_requested);
        let outcome = shared
            .app
            .call(py, &req, Box::new(body), Box::new(responder));

        if let Some(log) = &shared.access_log {
            log.log(&Entry {
                remote: &peer_text(&req.peer),
                method: &req.method,
                target: &req.target,
                version: req.version.as_str(),
                status: outcome.status,
                bytes: outcome.body_bytes,
                referer: header(&req, b"referer"),
                user_agent: header(&req, b"user-agent"),
                duration: received.map(|t| t.elapsed()).unwrap_or_default(),
            });
        }

        reuse_headers(req.headers);
        if retire_now(shared) {
            return None;
        }
        let body = outcome
            .reader
            .and_then(|r| r.into_any().downcast::<HttpBody>().ok());
        let reusable = outcome.reusable && !conn.io.close_after() && !close_requested;
        let leftover = match body {
            Some(mut b) if reusable => {
                let next = b.finish();
                socket_read |= b.socket_read();
                next?
            }
            _ => return None,
        };
        // A complete pipelined request is served at once; a partial one waits parked.
        match parse_head(&leftover, &settings.limits) {
            // A pipelined request whose body is still arriving waits parked, like any other.
            Ok(Some(next)) if await_body(&next, &leftover[next.head_len..], shared) => {
                return Some(Served {
                    leftover,
                    socket_read,
                });
            }
            Ok(Some(next)) => {
                rest = leftover.slice(next.head_len..);
                head = next;
                received = clock();
            }
            Ok(None) => {
                return Some(Served {
                    leftover,
                    socket_read,
                })
            }
            Err(e) => {
                reject(conn, e.status, e.reason);
                return None;
            }
        }
    }
}
