//! One connection's requests through the app: the parsed one, then any complete pipelined
//! ones behind it, each through the WSGI call. Runs on a worker holding the GIL.

use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use pyo3::prelude::*;

use super::access_log::Entry;
use super::body::{Drain, Finished, HttpBody};
use super::chunked::ChunkedDecoder;
use super::head::{parse_head, reuse_headers, Head};
use super::rate::RateMeter;
use super::response::HttpResponder;
use super::{error_response, Conn, Settings, Shared};
use crate::admit;
use crate::reject::Reject;
use crate::request::{decode_path, split_mount, Framing, MountCase, Peer, Request};
use crate::trust::TrustPolicy;

/// Checks that need no Python, done before a request reaches the app. CONNECT and the mount
/// are this front end's own; the body size and header names are `admit::check`'s, shared with IIS.
/// `Err` = answer its status and close.
pub fn precheck(head: &Head, settings: &Settings, policy: &TrustPolicy) -> Result<(), Reject> {
    if head.method.as_ref() == b"CONNECT" {
        return Err(Reject::new(
            501,
            "CONNECT is not supported by a WSGI gateway",
        ));
    }
    let declared = match head.framing {
        Framing::Length(n) => Some(n),
        Framing::None | Framing::Chunked => None,
    };
    admit::check(settings.max_body, policy, declared, &head.headers)?;
    if !settings.script_name.is_empty()
        && split_mount(&head.path, &settings.script_name, MountCase::Exact).is_none()
    {
        return Err(Reject::new(404, "path outside --script-name"));
    }
    Ok(())
}

/// Body bytes gathered before the app is called: a client that trickles a small body holds
/// no worker; a larger body streams to the app once this much has arrived.
pub const BODY_AHEAD: usize = 64 * 1024;

/// A request whose head is in and whose body the reactor gathers (parked, no worker) before
/// the app is called: until the body is complete or `BODY_AHEAD` long.
pub struct Gathering {
    pub head: Head,
    /// Body bytes looked at so far: chunked framing is decoded once, as bytes arrive.
    scanned: usize,
    decoder: Option<Box<ChunkedDecoder>>,
    /// The client waits for `100 Continue` before it sends the body: the reactor owes it.
    pub continue_owed: bool,
    /// How long the client may take to send the body (idle limit and minimum rate).
    pub meter: RateMeter,
}

/// What to do with a request whose head just arrived.
// Matched at once where it is made; boxing the common `Call` would allocate per request.
#[allow(clippy::large_enum_variant)]
pub enum Start {
    /// Call the app now.
    Call(Head, RateMeter),
    /// Wait for (more of) the body first.
    Gather(Box<Gathering>),
}

impl Start {
    /// Decides for `head`, with `rest` the bytes that came after it. A request that will be
    /// refused, or has no body, goes on at once. With `Expect: 100-continue` the server
    /// answers `100 Continue` itself for a small declared body (it passed every check the
    /// server can make) and gathers it like any other; a large or unsized one goes to the app
    /// at once, which may refuse it before the client sends it.
    pub fn new(head: Head, rest: &[u8], shared: &Shared) -> Start {
        let settings = &shared.settings;
        let meter = RateMeter::new(settings.min_body_rate, settings.body_timeout);
        let small = match head.framing {
            // The common case (no body) goes on without a look at anything else.
            Framing::None => return Start::Call(head, meter),
            Framing::Length(n) => n <= BODY_AHEAD as u64,
            Framing::Chunked => false,
        };
        if precheck(&head, settings, shared.app.environ.policy()).is_err() {
            return Start::Call(head, meter);
        }
        if head.expect_continue && !small {
            return Start::Call(head, meter);
        }
        let chunked = head.framing == Framing::Chunked;
        let mut gathering = Gathering {
            continue_owed: head.expect_continue,
            head,
            scanned: 0,
            decoder: chunked.then(|| Box::new(ChunkedDecoder::for_requests())),
            meter,
        };
        if gathering.ready(rest) {
            Start::Call(gathering.head, gathering.meter)
        } else {
            Start::Gather(Box::new(gathering))
        }
    }
}

impl Gathering {
    /// Whether the body gathered so far (`body`, which only grows) lets the app be called:
    /// complete, `BODY_AHEAD` long, or broken (the body reader then reports it).
    pub fn ready(&mut self, body: &[u8]) -> bool {
        if body.len() >= BODY_AHEAD {
            return true;
        }
        match (self.head.framing, &mut self.decoder) {
            (Framing::Length(n), _) => body.len() as u64 >= n,
            (Framing::Chunked, Some(decoder)) => {
                let mut sink = [0u8; 4096];
                let mut input = body.get(self.scanned..).unwrap_or_default();
                self.scanned = body.len();
                loop {
                    match decoder.decode(input, &mut sink) {
                        Err(_) => return true,
                        Ok(_) if decoder.is_done() => return true,
                        Ok((0, _)) => return false,
                        Ok((used, _)) => input = input.get(used..).unwrap_or_default(),
                    }
                }
            }
            _ => true,
        }
    }
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
        let rest = split_mount(&head.path, &settings.script_name, MountCase::Exact)
            .map(|(_, rest)| rest)
            .unwrap_or_default();
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
        extra: match &conn.listener.server_addr {
            None => Vec::new(),
            Some(addr) => vec![(Bytes::from_static(b"SERVER_ADDR"), addr.clone())],
        },
    }
}

/// Writes a server-generated error response; the caller then closes the connection.
pub fn reject(conn: &Conn, refused: &Reject) {
    let (status, why) = (refused.status, &refused.reason);
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
    if crate::retire::retire(&shared.retiring, crate::retire::Reason::MaxRequests) {
        tracing::info!("max-requests reached ({served} requests); retiring");
    }
    true
}

/// What a connection that stays open is left with after `serve`.
pub struct Served {
    /// The bytes after the last request served: the start of the next one.
    pub leftover: Bytes,
    /// The last request's body has not all arrived: the reactor discards the rest first
    /// (`leftover` is then empty).
    pub drain: Option<Box<Drain>>,
    /// A request body was read from the socket, not only from the bytes that came with its
    /// head: the socket may hold more, so it must be read again before the connection parks.
    pub socket_read: bool,
}

/// Serves `head` and any complete pipelined requests behind it. Returns what is left when
/// the connection stays open, `None` to close. `close`: the server ends the connection after
/// this response (`Connection: close`; a worker over its share of connections).
pub fn serve(
    py: Python<'_>,
    shared: &Shared,
    conn: &Conn,
    (head, meter): (Head, RateMeter),
    rest: Bytes,
    close: bool,
) -> Option<Served> {
    let settings = &shared.settings;
    // When the request arrived, for the access log's duration (no clock read without one).
    let clock = || shared.access_log.as_ref().map(|_| Instant::now());
    let (mut head, mut meter, mut rest, mut received) = (head, meter, rest, clock());
    let mut socket_read = false;
    loop {
        if let Err(e) = precheck(&head, settings, shared.app.environ.policy()) {
            reject(conn, &e);
            return None;
        }
        conn.io.next_request();
        let close_requested = head.close || close || shared.stopping.load(Ordering::Acquire);
        let framing = head.framing;
        let expect = head.expect_continue;
        let req = to_request(head, conn, settings);
        let body = HttpBody::new(
            conn.io.clone(),
            rest,
            framing,
            expect,
            settings.max_body,
            meter,
        );
        let responder = HttpResponder::new(conn.io.clone(), req.version, close_requested);
        let outcome = shared
            .app
            .call(py, &req, Box::new(body), Box::new(responder));

        if let Some(log) = &shared.access_log {
            log.log(&Entry {
                req: &req,
                policy: shared.app.environ.policy(),
                status: outcome.status,
                bytes: outcome.body_bytes,
                duration: received.map(|t| t.elapsed()).unwrap_or_default(),
                captured: outcome.captured.as_deref(),
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
                let finished = b.finish();
                socket_read |= b.socket_read();
                match finished {
                    Finished::Next(next) => next,
                    Finished::Drain(drain) => {
                        return Some(Served {
                            leftover: Bytes::new(),
                            drain: Some(drain),
                            socket_read,
                        })
                    }
                    Finished::Close => return None,
                }
            }
            _ => return None,
        };
        // A complete pipelined request is served at once; one whose body is still arriving,
        // or a partial head, waits parked (the reactor looks at `leftover` again).
        let parked = Served {
            leftover: leftover.clone(),
            drain: None,
            socket_read,
        };
        match parse_head(&leftover, &settings.limits) {
            Ok(Some(next)) => {
                let body_here = leftover.slice(next.head_len..);
                match Start::new(next, &body_here, shared) {
                    Start::Call(next, next_meter) => {
                        head = next;
                        meter = next_meter;
                        rest = body_here;
                        received = clock();
                    }
                    // Its body is still arriving: the reactor gathers it, parked.
                    Start::Gather(_) => return Some(parked),
                }
            }
            Ok(None) => return Some(parked),
            Err(e) => {
                reject(conn, &e);
                return None;
            }
        }
    }
}
