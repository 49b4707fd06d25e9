//! parse_head against httparse on the same bytes.
//!
//! The two must agree on what is a well-formed head. Where they differ, the difference must be
//! one we chose, each listed below with the rule behind it:
//!
//! - httparse accepts a head that we refuse only when (a) it used a leniency our parser
//!   deliberately lacks (`Leniency`), or (b) our refusal is a framing or semantic decision
//!   httparse does not make (`semantic_reason_holds`: Host, Content-Length, Transfer-Encoding,
//!   Expect, request-target form, our size limits), and the reason we give is borne out by what
//!   httparse parsed. Any other refusal of a head httparse accepts fails the target.
//! - httparse rejecting a complete head that we accept always fails the target: we are never
//!   more lenient on syntax.
//! - When both accept: same method, target, version, header names and values (in order), and
//!   the same head length.
//!
//! Verdicts on incomplete input are not compared (httparse reports some errors earlier, e.g. a
//! bad version byte before the CR, and we report size limits before the head ends); the `head`
//! target checks that our partial verdicts agree with the whole input's.

#![no_main]

#[path = "common.rs"]
mod common;

use bytes::Bytes;
use common::SMALL;
use libfuzzer_sys::fuzz_target;
use wsgi_gateway::internals::{parse_head, Head, HeadLimits, Reject, Version};

fuzz_target!(|data: &[u8]| {
    compare(data, &SMALL);
    compare(data, &HeadLimits::default());
});

fn compare(data: &[u8], limits: &HeadLimits) {
    let ours = parse_head(&Bytes::copy_from_slice(data), limits);
    // One slot more than our limit: a head we accept never runs httparse out of slots, so its
    // TooManyHeaders can only meet a head we refuse too.
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers + 1];
    let mut req = httparse::Request::new(&mut slots);
    let theirs = req.parse(data);
    match (&ours, theirs) {
        (Ok(Some(h)), Ok(httparse::Status::Complete(n))) => same_head(h, &req, n),
        (Ok(Some(h)), Ok(httparse::Status::Partial)) => {
            panic!("we accept a head httparse finds incomplete: {h:?}")
        }
        (Ok(Some(h)), Err(e)) => panic!("we accept a head httparse rejects ({e}): {h:?}"),
        (Err(e), Ok(httparse::Status::Complete(n))) => {
            let head = Parsed::new(data, &req, n);
            if head.leniency().is_some() {
                // Outside our grammar: any refusal is right; which one comes first is the
                // `head` target's business.
                return;
            }
            assert!(
                semantic_reason_holds(e, &head, limits),
                "we refuse ({e}) a head httparse accepts, for no documented reason: {:?}",
                String::from_utf8_lossy(&data[..n])
            );
        }
        (Ok(None), Ok(httparse::Status::Complete(n))) => panic!(
            "httparse completes a head at {n} that we still wait on: {:?}",
            String::from_utf8_lossy(&data[..n])
        ),
        // Both refuse; or one of them has not seen the whole head yet.
        (Err(_), Err(_)) | (_, Ok(httparse::Status::Partial)) | (Ok(None), Err(_)) => {}
    }
}

fn same_head(h: &Head, req: &httparse::Request<'_, '_>, n: usize) {
    assert_eq!(Some(&h.method[..]), req.method.map(str::as_bytes), "method");
    assert_eq!(Some(&h.target[..]), req.path.map(str::as_bytes), "target");
    let version = match h.version {
        Version::Http10 => 0,
        Version::Http11 => 1,
    };
    assert_eq!(Some(version), req.version, "version");
    assert_eq!(h.headers.len(), req.headers.len(), "header count");
    for ((name, value), theirs) in h.headers.iter().zip(req.headers.iter()) {
        assert_eq!(&name[..], theirs.name.as_bytes(), "header name");
        assert_eq!(&value[..], theirs.value, "value of {:?}", theirs.name);
    }
    assert_eq!(h.head_len, n, "head length");
}

/// What httparse parsed, with the positions our limits are about.
struct Parsed<'a> {
    head: &'a [u8],
    method: &'a [u8],
    target: &'a [u8],
    version: u8,
    headers: Vec<(&'a [u8], &'a [u8])>,
    /// Offset of the method: everything before it is empty lines httparse skipped.
    line_start: usize,
    /// Length of the request line without its line end.
    line_len: usize,
    /// Length of each field line without its line end.
    field_lens: Vec<usize>,
}

impl<'a> Parsed<'a> {
    fn new(data: &'a [u8], req: &httparse::Request<'_, 'a>, n: usize) -> Parsed<'a> {
        let head = &data[..n];
        // httparse hands out slices of `data`, so their addresses give the positions.
        let at = |s: &[u8]| s.as_ptr() as usize - data.as_ptr() as usize;
        let line_end = |from: usize| {
            head[from..]
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .map_or(n, |p| from + p)
        };
        let method = req.method.unwrap_or_default().as_bytes();
        let line_start = at(method);
        let headers: Vec<(&[u8], &[u8])> = req
            .headers
            .iter()
            .map(|h| (h.name.as_bytes(), h.value))
            .collect();
        // Names and values hold no CR or LF, so a field line ends at the first one after its
        // name.
        let field_lens = headers
            .iter()
            .map(|(name, _)| line_end(at(name)) - at(name))
            .collect();
        Parsed {
            head,
            method,
            target: req.path.unwrap_or_default().as_bytes(),
            version: req.version.unwrap_or_default(),
            headers,
            line_start,
            line_len: line_end(line_start) - line_start,
            field_lens,
        }
    }

    /// The httparse leniency this head relies on, if any. Each is a documented refusal of
    /// ours (head.rs): these are not bugs in either parser.
    fn leniency(&self) -> Option<&'static str> {
        let lead = &self.head[..self.line_start];
        if !lead.is_empty() && lead != b"\r\n" {
            // RFC 9112 §2.2 lets a server skip empty lines; we skip exactly one CRLF (what a
            // previous body's stray CRLF explains) and refuse the rest.
            return Some("empty lines other than one CRLF before the request line");
        }
        let bare_lf = self
            .head
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'\n' && (i == 0 || self.head[i - 1] != b'\r'));
        if bare_lf {
            // httparse ends lines at a bare LF; we refuse it (a classic smuggling vector).
            return Some("bare LF line end");
        }
        if !self.target.is_ascii() {
            // httparse takes UTF-8 in the request-target; RFC 3986 has no such octets there.
            return Some("non-ASCII request-target");
        }
        None
    }

    fn all(&self, name: &str) -> Vec<&'a [u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
            .collect()
    }
}

/// True when our refusal `e` of a head httparse accepted is a decision httparse does not make
/// and its reason holds for this head. Checked from httparse's fields with our own simple
/// rules, so a refusal for the wrong reason (or of a plainly valid value) is caught.
fn semantic_reason_holds(e: &Reject, p: &Parsed<'_>, limits: &HeadLimits) -> bool {
    let hosts = p.all("host");
    let lengths = p.all("content-length");
    let codings = p.all("transfer-encoding");
    let target = p.target;
    let absolute = starts_with_ci(target, b"http://") || starts_with_ci(target, b"https://");
    match (e.status, e.reason.as_ref()) {
        // Size limits (--limit-request-*), which httparse does not have.
        (414, "request line too long") => p.line_len > limits.max_request_line,
        (431, "too many header fields") => p.headers.len() > limits.max_headers,
        (431, "header field too large") => p.field_lens.iter().any(|&l| l > limits.max_field_size),
        (431, "request head too large") => p.head.len() > limits.max_head_size,
        // RFC 9110 §9.1: a method we could never implement.
        (501, "method too long") => p.method.len() > 32,
        // Request-target forms per method (RFC 9112 §3.2); httparse takes any token run.
        (400, "CONNECT needs an authority-form target") => {
            p.method == b"CONNECT" && !plain_authority(target, true)
        }
        (400, "asterisk-form is only for OPTIONS") => target == b"*" && p.method != b"OPTIONS",
        (400, "invalid request target") => !target.starts_with(b"/") && target != b"*" && !absolute,
        (400, "invalid authority in absolute-form target") => {
            let scheme = if starts_with_ci(target, b"http://") {
                7
            } else {
                8
            };
            let rest = target.get(scheme..).unwrap_or_default();
            let end = rest
                .iter()
                .position(|&b| matches!(b, b'/' | b'?' | b'#'))
                .unwrap_or(rest.len());
            absolute && !plain_authority(&rest[..end], false)
        }
        // Framing (RFC 9112 §6): every ambiguity is refused.
        (400, "duplicate Content-Length") => lengths.len() > 1,
        (400, "empty Content-Length" | "invalid Content-Length" | "Content-Length overflow") => {
            lengths.len() == 1 && !is_u64(lengths[0])
        }
        (400, "Transfer-Encoding on HTTP/1.0") => p.version == 0 && !codings.is_empty(),
        (400, "both Content-Length and Transfer-Encoding") => {
            !codings.is_empty() && !lengths.is_empty()
        }
        (400, "malformed Transfer-Encoding") => coding_list(&codings).is_none(),
        (501, "unsupported Transfer-Encoding") => coding_list(&codings)
            .is_some_and(|list| list.len() != 1 || !list[0].eq_ignore_ascii_case(b"chunked")),
        // RFC 9112 §3.2: one valid Host, required on HTTP/1.1.
        (400, "duplicate Host") => hosts.len() > 1,
        (400, "missing Host") => p.version == 1 && hosts.is_empty(),
        (400, "empty Host") => p.version == 1 && hosts == [b""],
        (400, "invalid Host") => hosts.len() == 1 && !plain_authority(hosts[0], false),
        // One Content-Type: two could be read differently by the app and a proxy.
        (400, "duplicate Content-Type") => p.all("content-type").len() > 1,
        // RFC 9110 §10.1.1: only 100-continue is understood.
        (417, "unsupported expectation") => p
            .all("expect")
            .iter()
            .any(|v| !v.eq_ignore_ascii_case(b"100-continue")),
        _ => false,
    }
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn is_u64(v: &[u8]) -> bool {
    // `u64::from_str` alone would take a leading `+`.
    !v.is_empty()
        && v.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(v).is_ok_and(|s| s.parse::<u64>().is_ok())
}

/// The comma-separated codings across all Transfer-Encoding lines, or `None` when an item is
/// empty or not a token.
fn coding_list<'a>(values: &[&'a [u8]]) -> Option<Vec<&'a [u8]>> {
    let mut list = Vec::new();
    for v in values {
        for item in v.split(|&b| b == b',') {
            let item = trim(item);
            if item.is_empty() || !item.iter().all(|&b| is_tchar(b)) {
                return None;
            }
            list.push(item);
        }
    }
    Some(list)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A deliberately narrow authority: letters, digits, `.` and `-`, then an optional port of one
/// to five digits up to 65535. Everything this admits is a valid `host[:port]`, so refusing it
/// is a bug; anything outside it (IPv6, %-escapes, userinfo, ...) is not judged here.
fn plain_authority(a: &[u8], port_required: bool) -> bool {
    let (host, port) = match a.iter().position(|&b| b == b':') {
        Some(i) => (&a[..i], Some(&a[i + 1..])),
        None => (a, None),
    };
    let host_ok = !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok = match port {
        None => !port_required,
        Some(p) => {
            (1..=5).contains(&p.len())
                && p.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(p).is_ok_and(|s| s.parse::<u32>().is_ok_and(|n| n <= 65535))
        }
    };
    host_ok && port_ok
}
