//! One HTTP connection's request loop on an arbitrary byte stream, without Python.
//!
//! A socketpair stands in for the client: a writer thread sends the input (once in one write,
//! once in pieces whose sizes a generator seeded by the input picks) and then shuts down its
//! side. The reader side runs what the server does between the socket and the app: read and
//! `parse_head` the buffered bytes (growing as more arrives), `precheck`, the body through
//! `HttpBody` (the real `BodyReader`) read by a pretend app, then `HttpBody::finish()` for the
//! leftover that starts the next pipelined request; it stops at an error, a close or EOF.
//!
//! Checked: no panic; the head buffer never exceeds the head limit plus one read; a body is
//! exactly what its framing says (the Content-Length bytes that follow the head, or the chunk
//! data of a simple independent chunked reading), and `finish()` hands back exactly the bytes
//! after it; and the record of (method, target, body, error) is the same for both deliveries.
//!
//! Python: `HttpBody` reaches Python only when `ConnIo` waits for the socket (it releases the
//! GIL around the poll), and only when a non-blocking attempt would block. Our socket is left
//! in blocking mode, so `ConnIo::read` waits in its first attempt and that path is not taken;
//! the interpreter is never needed. Production sockets are non-blocking: the GIL release
//! around the wait is a part of the read path this target does not run.
//!
//! An unread body rest that `finish()` leaves to the reactor (`Finished::Drain`) is fed to
//! its `Drain` from blocking reads here, as the reactor feeds it from its reads.
//!
//! Not mirrored: the reactor's `connection::await_body`, which keeps reading (up to
//! `BODY_AHEAD`) before the app is called when a head came from a read. Here every body is
//! read by `HttpBody` as it arrives, which is what the server does for a pipelined request
//! whose head was already in the leftover; so the head buffer's bound below is the head phase's
//! (the reactor's buffer may also hold up to `BODY_AHEAD` of body).

#![no_main]

#[path = "common.rs"]
mod common;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use wsgi_gateway::internals::{
    parse_head, precheck, BodyFailure, BodyReader, ConnIo, Drained, Finished, Framing, HeadLimits,
    HttpBody, MinRate, RateMeter, Reject, SendLimits, Settings, Stream, TrustPolicy,
};

/// What the server reads per head read (server/serve.rs `READ_CHUNK`).
const READ_CHUNK: usize = 16 * 1024;
/// The most `HttpBody` reads from the socket at once (body.rs `READ_SIZE`).
const BODY_READ: usize = 64 * 1024;
/// Inputs are kept well below body.rs's 256 KiB drain limit: whether an unread body that large
/// is drained depends on how much of it is already buffered, a deliberate policy that would
/// make the record depend on the delivery.
const MAX_INPUT: usize = 64 * 1024;

/// Small limits reach the 414/431 paths with short inputs (as in the `head` target).
const SMALL: HeadLimits = HeadLimits {
    max_request_line: 64,
    max_headers: 6,
    max_field_size: 48,
    max_head_size: 256,
};

/// How the pretend app reads each body.
#[derive(Clone, Copy, Debug)]
enum AppReads {
    /// To the end (or the error), in calls of `out` bytes.
    All { out: usize },
    /// At most `limit` bytes, then it answers: `finish()` drains the rest.
    Upto { limit: usize, out: usize },
}

/// What one connection did, request by request. Compared between the two deliveries.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Request {
        method: Vec<u8>,
        target: Vec<u8>,
    },
    /// The app read the whole body (`AppReads::All`) or its first part (`Upto`).
    Body(Vec<u8>),
    /// Reading the body failed: `Invalid` (400 or 413, which of the two can depend on where a
    /// read boundary falls when a body is both too long and malformed) or the client left.
    BodyFailed {
        client_left: bool,
    },
    /// The head or `precheck` was refused with this status.
    Refused(u16),
    /// The connection ends after this request (close requested, or `finish()` gave `None`).
    /// With `Upto`, a body that fails after the app stopped reading may or may not have shown
    /// the failure to the app (that depends on where reads end), so the request's body record
    /// is replaced by this.
    Ended,
    /// EOF while waiting for a head, with this many bytes of an incomplete head buffered.
    Eof(usize),
}

struct Setup {
    limits: HeadLimits,
    settings: Settings,
    policy: TrustPolicy,
    app: AppReads,
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    // Everything that is not the byte stream comes from a generator seeded by the input, so
    // seeds stay plain requests.
    let mut next = common::seeded(data);
    // Knobs that end a connection early (a mount, a body limit) are rarer, so most runs go
    // through several pipelined requests.
    let knobs = next();
    let limits = if knobs & 1 == 0 {
        HeadLimits::default()
    } else {
        SMALL
    };
    let out = if knobs & 2 == 0 {
        8192
    } else {
        1 + (knobs >> 16) as usize % 17
    };
    let app = if knobs & 0b1100 == 0 {
        AppReads::Upto {
            limit: (knobs >> 24) as usize % 64,
            out,
        }
    } else {
        AppReads::All { out }
    };
    let setup = Setup {
        limits,
        settings: Settings {
            limits,
            max_body: if knobs & 0b11_0000 == 0 { 48 } else { 0 },
            header_timeout: Duration::from_secs(5),
            proxy_protocol: false,
            keepalive_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            min_body_rate: MinRate::OFF,
            min_response_rate: MinRate::OFF,
            write_buffer: 0,
            write_buffer_total: u64::MAX,
            stream_nodelay: true,
            graceful_timeout: Duration::from_secs(5),
            max_connections: 1,
            threads: 1,
            script_name: if knobs & 0b1_1100_0000 == 0 {
                Bytes::from_static(b"/a")
            } else {
                Bytes::new()
            },
            max_requests: 0,
        },
        policy: TrustPolicy {
            refuse_underscores: knobs & 0b110_0000_0000 == 0,
            ..TrustPolicy::default()
        },
        app,
    };

    let whole = run(data, &setup, &[data.len()]);
    let max_piece = 1 + (next() % 40) as usize;
    let mut pieces = Vec::new();
    let mut left = data.len();
    while left > 0 {
        let n = (1 + next() as usize % max_piece).min(left);
        pieces.push(n);
        left -= n;
    }
    let split = run(data, &setup, &pieces);
    assert_eq!(whole, split, "pieces {pieces:?}, {:?}", setup.app);
});

/// Sends `data` in `pieces` through a socketpair and serves it; returns the connection's record.
fn run(data: &[u8], setup: &Setup, pieces: &[usize]) -> Vec<Event> {
    let (client, server) = UnixStream::pair().expect("socketpair");
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let data = data.to_vec();
        let pieces = pieces.to_vec();
        let done = done.clone();
        std::thread::spawn(move || {
            send_pieces(&client, &data, &pieces, &done);
            // Kept open until the reader is done, so its `100 Continue` never meets a closed
            // peer (no SIGPIPE); handed back to be dropped after the join.
            client
        })
    };
    let io = Arc::new(ConnIo::new(
        Stream::unix(server),
        &SendLimits::unqueued(Duration::from_secs(5)),
    ));
    let events = serve(data, setup, io);
    // The server side is closed by now (`serve` owned the last reference), so a writer blocked
    // on a full socket gets an error instead of waiting.
    done.store(true, Ordering::Release);
    let client = writer.join().expect("writer thread");
    drop(client);
    events
}

/// Writes each piece, then waits until the reader has taken all of it, so every piece reaches
/// the reader as a read of its own (unless the reader stopped); then half-closes.
fn send_pieces(client: &UnixStream, data: &[u8], pieces: &[usize], done: &AtomicBool) {
    let fd = client.as_raw_fd();
    let mut at = 0;
    'pieces: for &n in pieces {
        let piece = &data[at..at + n];
        at += n;
        let mut sent = 0;
        while sent < piece.len() {
            // MSG_NOSIGNAL: the reader may close early; that must be an error, not a SIGPIPE.
            // SAFETY: the pointer and length describe the live `piece` slice.
            let r = unsafe {
                libc::send(
                    fd,
                    piece[sent..].as_ptr().cast(),
                    piece.len() - sent,
                    libc::MSG_NOSIGNAL,
                )
            };
            if r <= 0 {
                break 'pieces;
            }
            sent += r as usize;
        }
        // SIOCOUTQ on a Unix socket: bytes sent and not yet read by the peer.
        loop {
            let mut queued: libc::c_int = 0;
            // SAFETY: SIOCOUTQ writes one c_int through the pointer.
            let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
            if r != 0 || queued == 0 || done.load(Ordering::Acquire) {
                break;
            }
            std::thread::yield_now();
        }
    }
    let _ = client.shutdown(std::net::Shutdown::Write);
}

/// The server's side: heads, bodies and leftovers until the connection ends.
fn serve(data: &[u8], setup: &Setup, io: Arc<ConnIo>) -> Vec<Event> {
    let limits = &setup.limits;
    let mut events = Vec::new();
    // `buf` holds the stream from offset `off` on.
    let mut buf = BytesMut::new();
    let mut off = 0usize;
    let mut scratch = vec![0u8; READ_CHUNK];
    loop {
        let frozen = buf.freeze();
        let head = match parse_head(&frozen, limits) {
            Ok(Some(head)) => head,
            Ok(None) => {
                // As the server does: read what arrived and parse the grown buffer again.
                let n = io
                    .read(&mut scratch, &mut meter())
                    .expect("read from the socketpair");
                if n == 0 {
                    events.push(Event::Eof(frozen.len()));
                    assert_eq!(
                        off + frozen.len(),
                        data.len(),
                        "EOF before the end of input"
                    );
                    return events;
                }
                buf = BytesMut::from(&frozen[..]);
                buf.extend_from_slice(&scratch[..n]);
                // Ok(None) promises fewer bytes than the head limit, and one read follows.
                assert!(
                    buf.len() < limits.max_head_size + READ_CHUNK,
                    "head buffer {} bytes",
                    buf.len()
                );
                assert_eq!(&buf[..], &data[off..off + buf.len()], "head buffer");
                continue;
            }
            Err(e) => {
                events.push(Event::Refused(e.status));
                return events;
            }
        };
        if let Err(refused) = precheck(&head, &setup.settings, &setup.policy) {
            events.push(Event::Refused(refused.status));
            return events;
        }
        events.push(Event::Request {
            method: head.method.to_vec(),
            target: head.target.to_vec(),
        });
        let body_start = off + head.head_len;
        let rest = frozen.slice(head.head_len..);
        let mut body = HttpBody::new(
            io.clone(),
            rest,
            head.framing,
            head.expect_continue,
            setup.settings.max_body,
            meter(),
        );
        let outcome = read_body(&mut body, setup.app, head.framing);
        // The body the app saw is what the framing says, or (after a failure) a prefix of it.
        let (want, raw_len) = expected_body(&data[body_start..], head.framing);
        let got = match &outcome {
            Ok(got) | Err((got, _)) => got,
        };
        assert!(want.starts_with(got), "body {got:?}, framing says {want:?}");
        if outcome.is_ok() && matches!(setup.app, AppReads::All { .. }) {
            assert!(raw_len.is_some(), "a body read to its end is well framed");
            assert_eq!(got.len(), want.len(), "whole body");
        }
        let upto = matches!(setup.app, AppReads::Upto { .. });
        if head.close {
            // The server closes after answering; it does not look at the body again.
            push_outcome(&mut events, &outcome, upto, true);
            return events;
        }
        if outcome.is_err() {
            push_outcome(&mut events, &outcome, upto, true);
            return events;
        }
        let Some(leftover) = finish(&mut body, &io, &mut scratch) else {
            push_outcome(&mut events, &outcome, upto, true);
            return events;
        };
        push_outcome(&mut events, &outcome, upto, false);
        // Reused: the framing was complete, so the body's raw length is known.
        let raw_len = raw_len.expect("finish() kept a connection whose body is not well framed");
        off = body_start + raw_len;
        assert!(
            leftover.len() <= BODY_READ.max(limits.max_head_size + READ_CHUNK),
            "leftover {} bytes",
            leftover.len()
        );
        assert_eq!(
            &leftover[..],
            &data[off..off + leftover.len()],
            "finish() must give exactly the bytes after the body"
        );
        buf = BytesMut::from(&leftover[..]);
    }
}

/// No rate, and an idle limit no test input reaches.
fn meter() -> RateMeter {
    RateMeter::new(MinRate::OFF, Duration::from_secs(5))
}

/// `finish()`, with an unread rest still to come received and discarded as the reactor does:
/// the bytes after the body, or `None` when the connection ends.
fn finish(body: &mut HttpBody, io: &ConnIo, scratch: &mut [u8]) -> Option<Bytes> {
    let mut drain = match body.finish() {
        Finished::Next(leftover) => return Some(leftover),
        Finished::Close => return None,
        Finished::Drain(drain) => drain,
    };
    loop {
        let n = io.read(scratch, &mut meter()).ok()?;
        if n == 0 {
            return None;
        }
        match drain.feed(Bytes::copy_from_slice(&scratch[..n])) {
            Drained::More => {}
            Drained::Done(next) => return Some(next),
            Drained::Close => return None,
        }
    }
}

/// Records a request's body outcome; `last`: the connection ends after it.
fn push_outcome(
    events: &mut Vec<Event>,
    outcome: &Result<Vec<u8>, (Vec<u8>, BodyFailure)>,
    upto: bool,
    last: bool,
) {
    if last && upto {
        events.push(Event::Ended);
        return;
    }
    match outcome {
        Ok(got) => events.push(Event::Body(got.clone())),
        Err((_, failure)) => events.push(Event::BodyFailed {
            client_left: *failure == BodyFailure::ClientGone,
        }),
    }
    if last {
        events.push(Event::Ended);
    }
}

/// The pretend app: reads per `app`; `Err` carries what it got before the failure.
fn read_body(
    body: &mut HttpBody,
    app: AppReads,
    framing: Framing,
) -> Result<Vec<u8>, (Vec<u8>, BodyFailure)> {
    let (limit, out_len) = match app {
        AppReads::All { out } => (usize::MAX, out),
        AppReads::Upto { limit, out } => (limit, out),
    };
    let mut out = vec![0u8; out_len];
    let mut got = Vec::new();
    while got.len() < limit {
        // Never past the limit, so how much the app read does not depend on read sizes.
        let want = out_len.min(limit - got.len());
        match body.read(&mut out[..want]) {
            Ok(0) => {
                assert_eq!(body.remaining().unwrap_or(0), 0, "EOF with a body left");
                break;
            }
            Ok(n) => {
                assert!(n <= want);
                got.extend_from_slice(&out[..n]);
                if let Framing::Length(total) = framing {
                    assert_eq!(body.remaining(), Some(total - got.len() as u64));
                }
            }
            Err(e) => {
                let failure = body.failure().expect("a failed read names its failure");
                match failure {
                    BodyFailure::Invalid(Reject {
                        status: 400 | 413, ..
                    })
                    | BodyFailure::ClientGone => {}
                    other => panic!("unexpected body failure {other:?}: {e}"),
                }
                return Err((got, failure));
            }
        }
    }
    Ok(got)
}

/// The body the framing describes at the start of `raw`: its data as far as `raw` holds it,
/// and the raw bytes the whole body spans (`None` while it is incomplete or when the framing
/// breaks). Chunked bodies get a lenient reading written from RFC 9112 §7.1 (extensions and
/// trailers are skipped unchecked), so it accepts everything the strict decoder accepts and
/// gives the same data for it, and its data is never shorter than what the strict decoder
/// delivers before an error.
fn expected_body(raw: &[u8], framing: Framing) -> (Vec<u8>, Option<usize>) {
    match framing {
        Framing::None => (Vec::new(), Some(0)),
        Framing::Length(n) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            let have = n.min(raw.len());
            (raw[..have].to_vec(), (have == n).then_some(n))
        }
        Framing::Chunked => {
            let mut body = Vec::new();
            let end = read_chunks(raw, &mut body);
            (body, end)
        }
    }
}

/// Appends the chunk data in `raw` to `body`; the offset after the final CRLF, if reached.
fn read_chunks(raw: &[u8], body: &mut Vec<u8>) -> Option<usize> {
    let mut at = 0;
    loop {
        let digits = raw[at..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits == 0 {
            return None;
        }
        let mut size: u64 = 0;
        for &d in &raw[at..at + digits] {
            size = size
                .checked_mul(16)?
                .checked_add(u64::from(char::from(d).to_digit(16)?))?;
        }
        at = after_crlf(raw, at + digits)?;
        if size == 0 {
            // Trailer lines until the empty line.
            loop {
                if raw.get(at..at + 2)? == b"\r\n" {
                    return Some(at + 2);
                }
                at = after_crlf(raw, at)?;
            }
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let have = size.min(raw.len() - at);
        body.extend_from_slice(&raw[at..at + have]);
        if have < size {
            return None;
        }
        at += size;
        if raw.get(at..at + 2)? != b"\r\n" {
            return None;
        }
        at += 2;
    }
}

/// The offset just past the first CRLF at or after `from`.
fn after_crlf(raw: &[u8], from: usize) -> Option<usize> {
    raw.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p + 2)
}
