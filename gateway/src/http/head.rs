//! Strict parsing of an HTTP/1.x request head (RFC 9112 §2–§6, RFC 9110 §5–§8).
//!
//! Every ambiguity is an error: the caller answers `HeadError::status` and closes. The scan is
//! one left-to-right pass, and each error is decided by the bytes up to where it is found, so a
//! prefix of a request either asks for more input or fails exactly as the whole request does.
//! `parse_head_incremental` gives the same answers for a buffer that grows between reads,
//! looking at each new byte about once instead of parsing the whole buffer per read.
//! httparse is not used: it accepts bare LF and does not say where or why it failed, and the
//! statuses below (414/431/501/505) need exactly that.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use bytes::Bytes;

use crate::request::{Framing, Version};

/// Size limits applied while parsing; exceeding one gives 414 or 431.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// Longest request line (without CRLF) -> 414.
    pub max_request_line: usize,
    /// Most field lines -> 431.
    pub max_headers: usize,
    /// Longest field line (`name:value`, without CRLF) -> 431.
    pub max_field_size: usize,
    /// Longest head, including the final CRLFCRLF and a tolerated leading CRLF -> 431.
    pub max_head_size: usize,
}

impl Default for HeadLimits {
    /// The CLI defaults (`--limit-request-*`).
    fn default() -> Self {
        HeadLimits {
            max_request_line: 16384,
            max_headers: 256,
            max_field_size: 32768,
            max_head_size: 262144,
        }
    }
}

/// Why a head was refused: the status to answer, and a short text for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadError {
    pub status: u16,
    pub reason: &'static str,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for HeadError {}

/// A parsed request head. All `Bytes` are slices of the parsed buffer (no copies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub method: Bytes,
    pub target: Bytes,
    /// Raw %-encoded path: origin-form before `?`/`#`; absolute-form: its path (`/` if empty);
    /// `*` for `OPTIONS *`; the authority for CONNECT.
    pub path: Bytes,
    /// Raw text after the first `?`, without any `#fragment`; empty if none.
    pub query: Bytes,
    /// `host[:port]` of an absolute-form target (overrides Host).
    pub authority: Option<Bytes>,
    pub version: Version,
    /// In order; names as sent; values trimmed of SP/HTAB only.
    pub headers: Vec<(Bytes, Bytes)>,
    pub framing: Framing,
    /// HTTP/1.1: Connection has the token `close`; HTTP/1.0: it lacks `keep-alive`.
    pub close: bool,
    /// HTTP/1.1 with `Expect: 100-continue`.
    pub expect_continue: bool,
    /// Bytes consumed, including the final CRLFCRLF and a tolerated leading CRLF.
    pub head_len: usize,
}

/// RFC 9110 §9.1: a method longer than any we could implement is 501, not a 400.
const MAX_METHOD_LEN: usize = 32;

const fn err(status: u16, reason: &'static str) -> HeadError {
    HeadError { status, reason }
}

// Byte classes, one table lookup per byte on the hot loops.
const TOKEN: u8 = 1; // tchar (RFC 9110 §5.6.2)
const VCHAR: u8 = 2; // visible ASCII: what a request-target may contain
const VALUE: u8 = 4; // field-value octet: HTAB, SP, VCHAR, obs-text (RFC 9110 §5.5)
const REG_NAME: u8 = 8; // reg-name octet: unreserved / sub-delims / '%' (RFC 3986 §3.2.2)

const fn class_of(b: u8) -> u8 {
    let mut c = 0;
    if crate::responder::is_tchar(b) {
        c |= TOKEN;
    }
    if b >= 0x21 && b <= 0x7e {
        c |= VCHAR;
    }
    if b == b'\t' || (b >= 0x20 && b != 0x7f) {
        c |= VALUE;
    }
    let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    let sub_delims = matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    );
    if unreserved || sub_delims || b == b'%' {
        c |= REG_NAME;
    }
    c
}

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = class_of(i as u8);
        i += 1;
    }
    t
};

#[inline(always)]
fn is(b: u8, class: u8) -> bool {
    CLASS[b as usize] & class != 0
}

// Word-at-a-time scanning for the long runs (values, targets): eight bytes per step, falling
// back to the table at the first word that holds a byte needing a closer look.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Some byte of `x` is below `n` (n <= 0x80; exact as to existence).
#[inline(always)]
fn has_below(x: u64, n: u8) -> bool {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS != 0
}

/// Some byte of `x` is DEL.
#[inline(always)]
fn has_del(x: u64) -> bool {
    let y = x ^ (ONES * 0x7f);
    y.wrapping_sub(ONES) & !y & HIGHS != 0
}

#[inline(always)]
fn word_at(b: &[u8], i: usize) -> Option<u64> {
    let w: [u8; 8] = b.get(i..i.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(w))
}

/// First index in `i..lim` whose byte is not a field-value octet (or `lim`).
#[inline(always)]
fn skip_value(b: &[u8], mut i: usize, lim: usize) -> usize {
    while i + 8 <= lim {
        match word_at(b, i) {
            // HTAB is a CTL too, so a word with one takes the byte loop; that is rare.
            Some(x) if !has_below(x, 0x20) && !has_del(x) => i += 8,
            _ => break,
        }
    }
    while i < lim && is(b[i], VALUE) {
        i += 1;
    }
    i
}

/// First index in `i..lim` whose byte is not VCHAR (or `lim`).
#[inline(always)]
fn skip_vchar(b: &[u8], mut i: usize, lim: usize) -> usize {
    while i + 8 <= lim {
        match word_at(b, i) {
            Some(x) if !has_below(x, 0x21) && !has_del(x) && x & HIGHS == 0 => i += 8,
            _ => break,
        }
    }
    while i < lim && is(b[i], VCHAR) {
        i += 1;
    }
    i
}

/// An octet allowed in a field value (HTAB, SP, VCHAR, obs-text); shared with the chunked
/// decoder's trailers.
pub(super) fn is_field_value_byte(b: u8) -> bool {
    is(b, VALUE)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is(b, TOKEN))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Index range into the buffer.
type Span = (usize, usize);

/// The request-target, split per its form (RFC 9112 §3.2).
struct Target {
    /// `None`: absolute-form with an empty path, which means `/`.
    path: Option<Span>,
    query: Span,
    authority: Option<Span>,
}

/// Transfer-Encoding as a list across all its field lines (RFC 9112 §6.1).
#[derive(Default)]
struct TransferCoding {
    seen: bool,
    codings: usize,
    first_is_chunked: bool,
    malformed: bool,
}

impl TransferCoding {
    fn add_line(&mut self, value: &[u8]) {
        self.seen = true;
        for item in value.split(|&b| b == b',') {
            let item = trim_ows(item);
            // `,chunked`, `chunked,`, parameters, non-ASCII: a framing we cannot read -> 400.
            if !is_token(item) {
                self.malformed = true;
                continue;
            }
            self.codings = self.codings.saturating_add(1);
            if self.codings == 1 && item.eq_ignore_ascii_case(b"chunked") {
                self.first_is_chunked = true;
            }
        }
    }
}

/// Fields the parser itself interprets.
enum Known {
    ContentLength,
    TransferEncoding,
    Host,
    ContentType,
    Connection,
    Expect,
    Other,
}

#[inline]
fn known(name: &[u8]) -> Known {
    // Dispatch on length first: most names are compared against at most one candidate.
    let (candidate, kind): (&[u8], Known) = match name.len() {
        4 => (b"host", Known::Host),
        6 => (b"expect", Known::Expect),
        10 => (b"connection", Known::Connection),
        12 => (b"content-type", Known::ContentType),
        14 => (b"content-length", Known::ContentLength),
        17 => (b"transfer-encoding", Known::TransferEncoding),
        _ => return Known::Other,
    };
    if name.eq_ignore_ascii_case(candidate) {
        kind
    } else {
        Known::Other
    }
}

thread_local! {
    /// The header list of the last request this thread finished (`reuse_headers`), taken by
    /// its next head instead of a new allocation.
    static SPARE_HEADERS: std::cell::Cell<Vec<(Bytes, Bytes)>> =
        const { std::cell::Cell::new(Vec::new()) };
}

/// Gives a finished request's header list back, for the next head this thread parses.
pub fn reuse_headers(mut headers: Vec<(Bytes, Bytes)>) {
    headers.clear();
    SPARE_HEADERS.set(headers);
}

/// Parses a request head from the start of `buf`.
///
/// `Ok(None)`: incomplete, call again with more bytes. `Err`: answer `status` and close.
pub fn parse_head(buf: &Bytes, limits: &HeadLimits) -> Result<Option<Head>, HeadError> {
    let b: &[u8] = buf;
    let hard = limits.max_head_size;
    // Bytes at or past `hard` can never belong to an acceptable head.
    let avail = b.len().min(hard);
    // Called when index `need` is not in `avail`: either past the head limit, or not read yet.
    let more = |need: usize| {
        if need >= hard {
            Err(err(431, "request head too large"))
        } else {
            Ok(None)
        }
    };

    // RFC 9112 §2.2: tolerate one CRLF before the request line (left over from a previous body).
    let mut start: usize = 0;
    match b.first() {
        None => return more(0),
        Some(b'\r') => {
            if avail < 2 {
                return more(1);
            }
            if b[1] != b'\n' {
                return Err(err(400, "bare CR before request line"));
            }
            start = 2;
        }
        Some(b'\n') => return Err(err(400, "bare LF before request line")),
        Some(_) => {}
    }

    // Request line: method SP request-target SP HTTP-version CRLF, single SPs only.
    // Content bytes at or past `rl_lim` make the line longer than allowed.
    let rl_lim = start
        .saturating_add(limits.max_request_line)
        .saturating_add(1);
    let lim = avail.min(rl_lim);
    let line_out = |i: usize| {
        if i >= rl_lim {
            Err(err(414, "request line too long"))
        } else {
            more(i)
        }
    };

    let mut i = start;
    while i < lim && is(b[i], TOKEN) {
        i += 1;
    }
    if i - start > MAX_METHOD_LEN {
        return Err(err(501, "method too long"));
    }
    if i == lim {
        return line_out(i);
    }
    if b[i] != b' ' || i == start {
        return Err(err(400, "invalid method"));
    }
    let method = (start, i);

    i += 1;
    let t_start = i;
    i = skip_vchar(b, i, lim);
    if i == lim {
        return line_out(i);
    }
    match b[i] {
        b' ' if i > t_start => {}
        b' ' => return Err(err(400, "empty request target")),
        b'\r' | b'\n' => return Err(err(400, "request line without HTTP version")),
        _ => return Err(err(400, "invalid byte in request target")),
    }
    let target = (t_start, i);

    i += 1;
    let v_start = i;
    while i < lim && is(b[i], VCHAR) {
        i += 1;
    }
    if i == lim {
        return line_out(i);
    }
    match b[i] {
        b'\r' => {}
        b'\n' => return Err(err(400, "bare LF in request line")),
        _ => return Err(err(400, "invalid byte in request line")),
    }
    let version = parse_version(&b[v_start..i])?;
    if i + 1 >= avail {
        return more(i + 1);
    }
    if b[i + 1] != b'\n' {
        return Err(err(400, "bare CR in request line"));
    }
    let form = split_target(b, method, target)?;
    let mut pos = i + 2;

    // Header fields.
    let mut headers = SPARE_HEADERS.take();
    if headers.capacity() == 0 {
        headers.reserve(limits.max_headers.min(32));
    }
    let mut content_length: Option<Span> = None;
    let mut content_lengths = 0usize;
    let mut te = TransferCoding::default();
    let mut host: Option<Span> = None;
    let mut hosts = 0usize;
    let mut content_types = 0usize;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    let mut expect_other = false;

    let head_len = loop {
        if pos >= avail {
            return more(pos);
        }
        match b[pos] {
            b'\r' => {
                if pos + 1 >= avail {
                    return more(pos + 1);
                }
                if b[pos + 1] != b'\n' {
                    return Err(err(400, "bare CR in header section"));
                }
                break pos + 2;
            }
            b'\n' => return Err(err(400, "bare LF in header section")),
            // obs-fold, or whitespace between the request line and the first field.
            b' ' | b'\t' => return Err(err(400, "line folding or leading whitespace")),
            _ => {}
        }
        if headers.len() >= limits.max_headers {
            return Err(err(431, "too many header fields"));
        }
        let line_lim = pos.saturating_add(limits.max_field_size).saturating_add(1);
        let lim = avail.min(line_lim);
        let field_out = |i: usize| {
            if i >= line_lim {
                Err(err(431, "header field too large"))
            } else {
                more(i)
            }
        };

        let n_start = pos;
        let mut i = pos;
        while i < lim && is(b[i], TOKEN) {
            i += 1;
        }
        if i == lim {
            return field_out(i);
        }
        if b[i] != b':' {
            return Err(match b[i] {
                b' ' | b'\t' => err(400, "whitespace before colon"),
                b'\r' | b'\n' => err(400, "header line without colon"),
                _ => err(400, "invalid byte in header name"),
            });
        }
        if i == n_start {
            return Err(err(400, "empty header name"));
        }
        let name = (n_start, i);

        i += 1;
        let v_start = i;
        let i = skip_value(b, i, lim);
        if i == lim {
            return field_out(i);
        }
        if b[i] != b'\r' {
            return Err(match b[i] {
                b'\n' => err(400, "bare LF in header value"),
                0 => err(400, "NUL in header value"),
                _ => err(400, "control byte in header value"),
            });
        }
        if i + 1 >= avail {
            return more(i + 1);
        }
        if b[i + 1] != b'\n' {
            return Err(err(400, "bare CR in header value"));
        }
        let value = trim_span(b, v_start, i);
        pos = i + 2;

        let v = &b[value.0..value.1];
        match known(&b[name.0..name.1]) {
            Known::ContentLength => {
                content_lengths += 1;
                content_length = Some(value);
            }
            Known::TransferEncoding => te.add_line(v),
            Known::Host => {
                hosts += 1;
                host = Some(value);
            }
            Known::ContentType => content_types += 1,
            Known::Connection => {
                for token in v.split(|&c| c == b',').map(trim_ows) {
                    conn_close |= token.eq_ignore_ascii_case(b"close");
                    conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            Known::Expect => {
                if v.eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else {
                    expect_other = true;
                }
            }
            Known::Other => {}
        }
        headers.push((buf.slice(name.0..name.1), buf.slice(value.0..value.1)));
    };

    // Framing (RFC 9112 §6): anything a second parser could read differently is refused.
    if content_lengths > 1 {
        return Err(err(400, "duplicate Content-Length"));
    }
    let length = match content_length {
        Some((s, e)) => Some(parse_content_length(&b[s..e])?),
        None => None,
    };
    let framing = if te.seen {
        if version == Version::Http10 {
            return Err(err(400, "Transfer-Encoding on HTTP/1.0"));
        }
        if length.is_some() {
            return Err(err(400, "both Content-Length and Transfer-Encoding"));
        }
        if te.malformed {
            return Err(err(400, "malformed Transfer-Encoding"));
        }
        if te.codings != 1 || !te.first_is_chunked {
            return Err(err(501, "unsupported Transfer-Encoding"));
        }
        Framing::Chunked
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::None,
        }
    };

    // RFC 9112 §3.2: Host is mandatory on 1.1, single, and valid.
    if hosts > 1 {
        return Err(err(400, "duplicate Host"));
    }
    // An empty Host is only meaningful for a target without authority, which 1.1 cannot send.
    let host_error = match host {
        None => (version == Version::Http11).then_some("missing Host"),
        Some((s, e)) if s == e => (version == Version::Http11).then_some("empty Host"),
        Some((s, e)) => (!valid_authority(&b[s..e], false)).then_some("invalid Host"),
    };
    if let Some(reason) = host_error {
        return Err(err(400, reason));
    }
    if content_types > 1 {
        return Err(err(400, "duplicate Content-Type"));
    }
    if expect_other {
        return Err(err(417, "unsupported expectation"));
    }

    let path = match form.path {
        Some((s, e)) => buf.slice(s..e),
        None => Bytes::from_static(b"/"),
    };
    Ok(Some(Head {
        method: buf.slice(method.0..method.1),
        target: buf.slice(target.0..target.1),
        path,
        query: buf.slice(form.query.0..form.query.1),
        authority: form.authority.map(|(s, e)| buf.slice(s..e)),
        version,
        headers,
        framing,
        close: match version {
            Version::Http11 => conn_close,
            Version::Http10 => conn_close || !conn_keep_alive,
        },
        expect_continue: expect_continue && version == Version::Http11,
        head_len,
    }))
}

/// How far `parse_head_incremental` has checked a head that is still arriving. The caller
/// keeps it with the buffer between reads, so a head trickled in small pieces costs time
/// linear in its size, not a whole parse per read. Small and `Copy`: offsets and a count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadScan {
    /// Every byte before `next` passed the checks `parse_head` makes on it.
    next: usize,
    /// Which part of the head `next` is in.
    part: Part,
    /// Start of the line `next` is in (the request line's starts after a tolerated CRLF).
    line: usize,
    /// Request line: the SP after the method, and the one after the target.
    method_end: usize,
    target_end: usize,
    /// Complete field lines before `line`.
    fields: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Part {
    /// Nothing looked at yet.
    #[default]
    Start,
    Method,
    Target,
    Version,
    /// `next` is the request line's CR.
    RequestLf,
    /// `next` starts a field line or the final CRLF.
    LineStart,
    Name,
    Value,
    /// `next` is a field line's CR.
    FieldLf,
}

/// The scan's verdict on a buffer.
enum Scanned {
    /// Valid so far and incomplete: `parse_head` would ask for more.
    More,
    /// `parse_head` gives a final answer here: the head, or an error (bad byte or a limit).
    Decide,
}

#[cfg(test)]
thread_local! {
    /// Bytes `parse_head_incremental` looked at on this thread (tests assert it is linear).
    static EXAMINED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn examined(n: usize) {
    EXAMINED.set(EXAMINED.get().saturating_add(n));
}

/// `parse_head` for a buffer that grows at its end between calls (the same start, more
/// bytes): gives exactly what `parse_head(buf, limits)` gives, but `scan` remembers how far
/// earlier calls checked, so each call looks at the new bytes only, and the whole head is
/// parsed once, when `parse_head`'s answer is final. After `Ok(Some)` or `Err`, `scan` is back
/// at its start, for the next head. A buffer shorter than what `scan` has seen starts over;
/// a buffer whose start moved without `scan` being reset is the caller's error.
pub fn parse_head_incremental(
    buf: &Bytes,
    limits: &HeadLimits,
    scan: &mut HeadScan,
) -> Result<Option<Head>, HeadError> {
    if scan.next > buf.len() {
        *scan = HeadScan::default();
    }
    if scan.part == Part::Start {
        // Most heads arrive whole: then one parse, and the scan only for one that did not.
        #[cfg(test)]
        examined(buf.len());
        let parsed = parse_head(buf, limits);
        if let Ok(None) = parsed {
            if let Scanned::Decide = scan_head(buf, limits, scan) {
                // Cannot happen (the scan decides only where parse_head does); should it,
                // the next call parses whole again, which is slow but right.
                *scan = HeadScan::default();
            }
        }
        return parsed;
    }
    match scan_head(buf, limits, scan) {
        Scanned::More => Ok(None),
        Scanned::Decide => {
            *scan = HeadScan::default();
            #[cfg(test)]
            examined(buf.len());
            parse_head(buf, limits)
        }
    }
}

/// Checks `b` from where `s` stopped, with the rules and in the order of `parse_head`, and
/// says whether `parse_head(b)` would ask for more. It decides nothing itself: anything
/// else (a complete head, any error) is left to `parse_head`, so the two cannot disagree on
/// a verdict, only on how soon it is asked for.
fn scan_head(b: &[u8], limits: &HeadLimits, s: &mut HeadScan) -> Scanned {
    // At or past the head limit parse_head never asks for more.
    if b.len() >= limits.max_head_size {
        return Scanned::Decide;
    }
    #[cfg(test)]
    let from = s.next;
    let verdict = scan_lines(b, limits, s);
    // The bytes stepped over, and the one or two looked at where the scan stopped.
    #[cfg(test)]
    examined(s.next.saturating_sub(from).saturating_add(2));
    verdict
}

/// The loop of `scan_head`; `b` is shorter than the head limit. Every `More` leaves `s.next`
/// at the first byte not looked at yet.
fn scan_lines(b: &[u8], limits: &HeadLimits, s: &mut HeadScan) -> Scanned {
    use Scanned::{Decide, More};
    let len = b.len();
    // A limit that ends the scan before the bytes do is crossed: parse_head gives its error.
    let out_of_bytes = |s: &mut HeadScan, i: usize, limit: usize| {
        s.next = i;
        if i < limit {
            More
        } else {
            Decide
        }
    };
    loop {
        match s.part {
            Part::Start => {
                let start = match b {
                    [] | [b'\r'] => return More,
                    [b'\r', b'\n', ..] => 2,
                    [b'\r' | b'\n', ..] => return Decide,
                    _ => 0,
                };
                s.line = start;
                s.next = start;
                s.part = Part::Method;
            }
            Part::Method | Part::Target | Part::Version => {
                let rl_lim = s
                    .line
                    .saturating_add(limits.max_request_line)
                    .saturating_add(1);
                let lim = len.min(rl_lim);
                let mut i = s.next;
                match s.part {
                    Part::Method => {
                        while i < lim && is(b[i], TOKEN) {
                            i += 1;
                        }
                        if i - s.line > MAX_METHOD_LEN {
                            return Decide;
                        }
                    }
                    Part::Target => i = skip_vchar(b, i, lim),
                    _ => {
                        while i < lim && is(b[i], VCHAR) {
                            i += 1;
                        }
                    }
                }
                if i == lim {
                    return out_of_bytes(s, i, rl_lim);
                }
                match s.part {
                    Part::Method if b[i] == b' ' && i > s.line => {
                        s.method_end = i;
                        s.part = Part::Target;
                    }
                    Part::Target if b[i] == b' ' && i > s.method_end + 1 => {
                        s.target_end = i;
                        s.part = Part::Version;
                    }
                    Part::Version if b[i] == b'\r' => {
                        if parse_version(&b[s.target_end + 1..i]).is_err() {
                            return Decide;
                        }
                        s.next = i;
                        s.part = Part::RequestLf;
                        continue;
                    }
                    _ => return Decide,
                }
                s.next = i + 1;
            }
            Part::RequestLf => {
                let i = s.next;
                if i + 1 >= len {
                    return More;
                }
                let method = (s.line, s.method_end);
                let target = (s.method_end + 1, s.target_end);
                if b[i + 1] != b'\n' || split_target(b, method, target).is_err() {
                    return Decide;
                }
                s.line = i + 2;
                s.next = i + 2;
                s.part = Part::LineStart;
            }
            Part::LineStart => {
                let pos = s.next;
                match b.get(pos) {
                    None => return More,
                    // The end of the head (or a bare CR): parse_head's call once it is here.
                    Some(b'\r') if pos + 1 >= len => return More,
                    Some(b'\r' | b'\n' | b' ' | b'\t') => return Decide,
                    Some(_) => {}
                }
                if s.fields >= limits.max_headers {
                    return Decide;
                }
                s.part = Part::Name;
            }
            Part::Name | Part::Value => {
                let line_lim = s
                    .line
                    .saturating_add(limits.max_field_size)
                    .saturating_add(1);
                let lim = len.min(line_lim);
                let mut i = s.next;
                if s.part == Part::Name {
                    while i < lim && is(b[i], TOKEN) {
                        i += 1;
                    }
                } else {
                    i = skip_value(b, i, lim);
                }
                if i == lim {
                    return out_of_bytes(s, i, line_lim);
                }
                match s.part {
                    Part::Name if b[i] == b':' && i > s.line => {
                        s.next = i + 1;
                        s.part = Part::Value;
                    }
                    Part::Value if b[i] == b'\r' => {
                        s.next = i;
                        s.part = Part::FieldLf;
                    }
                    _ => return Decide,
                }
            }
            Part::FieldLf => {
                let i = s.next;
                if i + 1 >= len {
                    return More;
                }
                if b[i + 1] != b'\n' {
                    return Decide;
                }
                s.fields += 1;
                s.line = i + 2;
                s.next = i + 2;
                s.part = Part::LineStart;
            }
        }
    }
}

#[inline]
fn trim_span(b: &[u8], mut s: usize, mut e: usize) -> Span {
    while s < e && matches!(b[s], b' ' | b'\t') {
        s += 1;
    }
    while e > s && matches!(b[e - 1], b' ' | b'\t') {
        e -= 1;
    }
    (s, e)
}

/// RFC 9112 §2.3: `HTTP/` DIGIT `.` DIGIT, case-sensitive; only 1.0 and 1.1 are spoken.
fn parse_version(v: &[u8]) -> Result<Version, HeadError> {
    match v {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(err(505, "HTTP version not supported"))
        }
        _ => Err(err(400, "invalid HTTP version")),
    }
}

/// RFC 9110 §8.6: `1*DIGIT`, no sign, space, list or overflow.
fn parse_content_length(v: &[u8]) -> Result<u64, HeadError> {
    if v.is_empty() {
        return Err(err(400, "empty Content-Length"));
    }
    let mut n: u64 = 0;
    for &c in v {
        if !c.is_ascii_digit() {
            return Err(err(400, "invalid Content-Length"));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(c - b'0')))
            .ok_or(err(400, "Content-Length overflow"))?;
    }
    Ok(n)
}

/// Splits the request-target per its form; the form must fit the method (RFC 9112 §3.2).
fn split_target(b: &[u8], method: Span, target: Span) -> Result<Target, HeadError> {
    let m = &b[method.0..method.1];
    let t = &b[target.0..target.1];
    if m == b"CONNECT" {
        // authority-form only, and a port is required (RFC 9110 §9.3.6).
        if !valid_authority(t, true) {
            return Err(err(400, "CONNECT needs an authority-form target"));
        }
        return Ok(Target {
            path: Some(target),
            query: (target.1, target.1),
            authority: None,
        });
    }
    if t == b"*" {
        if m != b"OPTIONS" {
            return Err(err(400, "asterisk-form is only for OPTIONS"));
        }
        return Ok(Target {
            path: Some(target),
            query: (target.1, target.1),
            authority: None,
        });
    }
    if t.first() == Some(&b'/') {
        let (path, query) = split_path_query(b, target.0, target.1);
        return Ok(Target {
            path: Some(path),
            query,
            authority: None,
        });
    }
    // absolute-form: scheme is case-insensitive (RFC 3986 §3.1).
    let scheme_len = if t.len() >= 7 && t[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else if t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else {
        return Err(err(400, "invalid request target"));
    };
    let a_start = target.0 + scheme_len;
    let a_end = b[a_start..target.1]
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .map_or(target.1, |p| a_start + p);
    // Covers an empty host (MUST reject, RFC 9110 §4.2.1) and userinfo (treated as an error,
    // RFC 9110 §4.2.4: it is used to disguise the real authority).
    if !valid_authority(&b[a_start..a_end], false) {
        return Err(err(400, "invalid authority in absolute-form target"));
    }
    let (path, query) = split_path_query(b, a_end, target.1);
    Ok(Target {
        path: if path.0 == path.1 { None } else { Some(path) },
        query,
        authority: Some((a_start, a_end)),
    })
}

/// Path up to the first `?` or `#`; query after the first `?` up to `#`.
fn split_path_query(b: &[u8], s: usize, e: usize) -> (Span, Span) {
    let p_end = b[s..e]
        .iter()
        .position(|&c| c == b'?' || c == b'#')
        .map_or(e, |p| s + p);
    if p_end == e || b[p_end] == b'#' {
        return ((s, p_end), (e, e));
    }
    let q_start = p_end + 1;
    let q_end = b[q_start..e]
        .iter()
        .position(|&c| c == b'#')
        .map_or(e, |p| q_start + p);
    ((s, p_end), (q_start, q_end))
}

/// `host [":" port]` (RFC 9110 §7.2, RFC 3986 §3.2.2): reg-name, IPv4 or `[IPv6]`; the port,
/// when present, is 1–5 digits up to 65535 (an empty port is refused: it helps nobody).
fn valid_authority(a: &[u8], port_required: bool) -> bool {
    let (host_ok, port) = if let Some(rest) = a.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&c| c == b']') else {
            return false;
        };
        let port = match &rest[close + 1..] {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return false,
        };
        (valid_ipv6(&rest[..close]), port)
    } else {
        // ':' is not a reg-name octet, so the first one starts the port.
        let (host, port) = match a.iter().position(|&c| c == b':') {
            Some(p) => (&a[..p], Some(&a[p + 1..])),
            None => (a, None),
        };
        (valid_reg_name(host), port)
    };
    host_ok
        && match port {
            None => !port_required,
            Some(p) => valid_port(p),
        }
}

fn valid_reg_name(h: &[u8]) -> bool {
    if h.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < h.len() {
        let c = h[i];
        if !is(c, REG_NAME) {
            return false;
        }
        if c == b'%' {
            match h.get(i + 1..i + 3) {
                Some([x, y]) if x.is_ascii_hexdigit() && y.is_ascii_hexdigit() => i += 2,
                _ => return false,
            }
        }
        i += 1;
    }
    true
}

fn valid_ipv6(h: &[u8]) -> bool {
    // Only hex, ':' and '.' (no zone id, no IPvFuture); then std does the real parse.
    if h.is_empty()
        || !h
            .iter()
            .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
    {
        return false;
    }
    std::str::from_utf8(h).is_ok_and(|s| Ipv6Addr::from_str(s).is_ok())
}

fn valid_port(p: &[u8]) -> bool {
    if p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
        return false;
    }
    p.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65535
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> HeadLimits {
        HeadLimits {
            max_request_line: 40,
            max_headers: 4,
            max_field_size: 30,
            max_head_size: 200,
        }
    }

    /// Parses `raw`, and checks that every prefix either asks for more or fails identically,
    /// and that `parse_head_incremental` gives what `parse_head` gives on every prefix, fed
    /// byte by byte and in pieces of other sizes.
    fn parse_with(raw: &[u8], limits: &HeadLimits) -> Result<Option<Head>, HeadError> {
        let whole = Bytes::copy_from_slice(raw);
        let full = parse_head(&whole, limits);
        let mut scan = HeadScan::default();
        for k in 0..=raw.len() {
            let prefix = whole.slice(..k);
            let part = parse_head(&prefix, limits);
            let inc = parse_head_incremental(&prefix, limits, &mut scan);
            assert_eq!(inc, part, "incremental, prefix {k} of {raw:?}");
            match (&part, &full) {
                _ if k == raw.len() => {}
                (Ok(None), _) => {}
                (Err(p), Err(f)) => assert_eq!(p, f, "prefix {k} of {raw:?}"),
                (Ok(Some(p)), Ok(Some(f))) => assert_eq!(p, f, "prefix {k} of {raw:?}"),
                _ => panic!("prefix {k} of {raw:?} gave {part:?}, whole gave {full:?}"),
            }
        }
        for step in [2, 3, 7, 16, 61] {
            assert_eq!(
                incremental_in_steps(&whole, limits, |_| step),
                full,
                "pieces of {step} of {raw:?}"
            );
        }
        full
    }

    /// Feeds growing prefixes of `whole` (`step(n)` more bytes after `n`) to one scan until a
    /// final answer or the end; each answer must be `parse_head`'s for that prefix.
    fn incremental_in_steps(
        whole: &Bytes,
        limits: &HeadLimits,
        mut step: impl FnMut(usize) -> usize,
    ) -> Result<Option<Head>, HeadError> {
        let mut scan = HeadScan::default();
        let mut end = 0;
        loop {
            let prefix = whole.slice(..end);
            let inc = parse_head_incremental(&prefix, limits, &mut scan);
            assert_eq!(inc, parse_head(&prefix, limits), "prefix {end}");
            if !matches!(inc, Ok(None)) || end == whole.len() {
                return inc;
            }
            end = end.saturating_add(step(end).max(1)).min(whole.len());
        }
    }

    fn ok_with(raw: &[u8], limits: &HeadLimits) -> Head {
        match parse_with(raw, limits) {
            Ok(Some(h)) => h,
            other => panic!(
                "{:?}: expected a head, got {other:?}",
                String::from_utf8_lossy(raw)
            ),
        }
    }

    fn ok(raw: &[u8]) -> Head {
        let h = ok_with(raw, &HeadLimits::default());
        assert_eq!(h.head_len, raw.len(), "whole input is the head");
        h
    }

    fn status_with(raw: &[u8], limits: &HeadLimits) -> u16 {
        match parse_with(raw, limits) {
            Err(e) => e.status,
            other => panic!(
                "{:?}: expected an error, got {other:?}",
                String::from_utf8_lossy(raw)
            ),
        }
    }

    fn status(raw: &[u8]) -> u16 {
        status_with(raw, &HeadLimits::default())
    }

    /// A GET with Host and one extra field line.
    fn get_with(field: &[u8]) -> Vec<u8> {
        let mut v = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        v.extend_from_slice(field);
        v.extend_from_slice(b"\r\n\r\n");
        v
    }

    fn value<'a>(h: &'a Head, name: &str) -> Option<&'a [u8]> {
        h.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &v[..])
    }

    #[test]
    fn simple_get() {
        let h = ok(b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n");
        assert_eq!(&h.method[..], b"GET");
        assert_eq!(&h.target[..], b"/index.html");
        assert_eq!(&h.path[..], b"/index.html");
        assert_eq!(&h.query[..], b"");
        assert_eq!(h.authority, None);
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.headers.len(), 2);
        assert_eq!(h.framing, Framing::None);
        assert!(!h.close);
        assert!(!h.expect_continue);
    }

    #[test]
    fn slices_point_into_the_buffer() {
        let buf = Bytes::from_static(b"GET /a?b HTTP/1.1\r\nHost: h\r\n\r\n");
        let h = parse_head(&buf, &HeadLimits::default()).unwrap().unwrap();
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        for s in [
            &h.method,
            &h.target,
            &h.path,
            &h.query,
            &h.headers[0].0,
            &h.headers[0].1,
        ] {
            assert!(range.contains(&(s.as_ptr() as usize)), "{s:?} is a copy");
        }
    }

    #[test]
    fn header_order_case_and_repeats_kept() {
        let h = ok(b"GET / HTTP/1.1\r\nhost: h\r\nX-A: 1\r\nx-a: 2\r\nACCEPT: b\r\n\r\n");
        let names: Vec<&[u8]> = h.headers.iter().map(|(n, _)| &n[..]).collect();
        assert_eq!(names, [&b"host"[..], b"X-A", b"x-a", b"ACCEPT"]);
        assert_eq!(&h.headers[2].1[..], b"2");
    }

    #[test]
    fn body_after_head_is_not_consumed() {
        let raw = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET";
        let h = ok_with(raw, &HeadLimits::default());
        assert_eq!(h.head_len, raw.len() - 8);
        assert_eq!(h.framing, Framing::Length(5));
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        let lim = HeadLimits::default();
        for raw in [
            &b""[..],
            b"G",
            b"GET / HTTP/1.1",
            b"GET / HTTP/1.1\r",
            b"GET / HTTP/1.1\r\nHost: h\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n\r",
            b"\r",
        ] {
            assert_eq!(
                parse_head(&Bytes::copy_from_slice(raw), &lim),
                Ok(None),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn one_leading_crlf_is_tolerated() {
        let h = ok(b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(&h.method[..], b"GET");
        assert_eq!(h.head_len, 29);
    }

    #[test]
    fn two_leading_crlfs_are_refused() {
        assert_eq!(status(b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn leading_bare_lf_or_cr_refused() {
        assert_eq!(status(b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"\rGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn bare_lf_ends_request_line() {
        assert_eq!(status(b"GET / HTTP/1.1\nHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn bare_cr_in_request_line() {
        assert_eq!(status(b"GET / HTTP/1.1\rHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\r HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn bare_lf_ends_field_line() {
        // CVE-2019-16785: a bare LF would smuggle a second field line.
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: h\nContent-Length: 5\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\nb\r\n\r\n"), 400);
    }

    #[test]
    fn bare_lf_or_cr_ends_head() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\n\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\n\rX"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\n\n"), 400);
    }

    #[test]
    fn bare_cr_in_field_value() {
        assert_eq!(status(&get_with(b"X: a\rb")), 400);
        assert_eq!(status(&get_with(b"X: a\r\r")), 400);
    }

    #[test]
    fn token_methods_kept_as_sent() {
        assert_eq!(
            &ok(b"-BLARGH / HTTP/1.1\r\nHost: h\r\n\r\n").method[..],
            b"-BLARGH"
        );
        assert_eq!(&ok(b"get / HTTP/1.1\r\nHost: h\r\n\r\n").method[..], b"get");
        assert_eq!(
            &ok(b"M.!#$%&'*+^_`|~9 / HTTP/1.1\r\nHost: h\r\n\r\n").method[..],
            b"M.!#$%&'*+^_`|~9"
        );
    }

    #[test]
    fn invalid_method_bytes() {
        assert_eq!(status(b"GET: / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"G\0T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"G\xc3\xa9T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GE(T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn empty_method() {
        assert_eq!(status(b" / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn method_length_boundary() {
        let m32 = "A".repeat(32);
        let raw = format!("{m32} / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(ok(raw.as_bytes()).method.len(), 32);
        let raw = format!("{m32}A / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(status(raw.as_bytes()), 501);
        // Known as soon as the 33rd method byte arrives.
        let part = Bytes::from(format!("{m32}A"));
        assert_eq!(
            parse_head(&part, &HeadLimits::default())
                .unwrap_err()
                .status,
            501
        );
    }

    #[test]
    fn separators_must_be_single_sp() {
        assert_eq!(status(b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET /  HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\tHTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\t\r\nHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn http09_request_line_refused() {
        assert_eq!(status(b"GET /\r\n\r\n"), 400);
        assert_eq!(status(b"GET\r\n\r\n"), 400);
        assert_eq!(status(b"GET / \r\n\r\n"), 400);
    }

    #[test]
    fn whitespace_inside_target() {
        assert_eq!(status(b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn ctl_del_and_non_ascii_in_target() {
        assert_eq!(status(b"GET /a\0 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn visible_specials_in_target_accepted() {
        let h = ok(b"GET /a\"b'<c>{|}^`\\ HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(&h.path[..], b"/a\"b'<c>{|}^`\\");
        assert_eq!(
            &ok(b"GET ///x//y HTTP/1.1\r\nHost: h\r\n\r\n").path[..],
            b"///x//y"
        );
    }

    #[test]
    fn path_and_query_split() {
        let h = ok(b"GET /a/b%20c?x=1&y=%2F?z HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(&h.path[..], b"/a/b%20c");
        assert_eq!(&h.query[..], b"x=1&y=%2F?z");
        assert_eq!(&h.target[..], b"/a/b%20c?x=1&y=%2F?z");
        let h = ok(b"GET /a? HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((&h.path[..], &h.query[..]), (&b"/a"[..], &b""[..]));
    }

    #[test]
    fn fragment_cut_from_path_and_query() {
        let h = ok(b"GET /p?q=1#frag HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((&h.path[..], &h.query[..]), (&b"/p"[..], &b"q=1"[..]));
        assert_eq!(&h.target[..], b"/p?q=1#frag");
        let h = ok(b"GET /p#f?x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((&h.path[..], &h.query[..]), (&b"/p"[..], &b""[..]));
    }

    #[test]
    fn absolute_form_http() {
        let h = ok(b"GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!(h.authority.as_deref(), Some(&b"example.com:8080"[..]));
        assert_eq!((&h.path[..], &h.query[..]), (&b"/a/b"[..], &b"c=d"[..]));
        assert_eq!(&h.target[..], b"http://example.com:8080/a/b?c=d");
    }

    #[test]
    fn absolute_form_https_empty_path_is_slash() {
        let h = ok(b"GET https://example.com HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(&h.path[..], b"/");
        assert_eq!(h.authority.as_deref(), Some(&b"example.com"[..]));
        let h = ok(b"GET HTTP://Example.COM?q HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((&h.path[..], &h.query[..]), (&b"/"[..], &b"q"[..]));
    }

    #[test]
    fn absolute_form_ipv6() {
        let h = ok(b"GET http://[2001:db8::1]:8000/x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.authority.as_deref(), Some(&b"[2001:db8::1]:8000"[..]));
        assert_eq!(&h.path[..], b"/x");
    }

    #[test]
    fn absolute_form_bad_authority() {
        assert_eq!(
            status(b"GET http://user:pw@host/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET http://host:/x HTTP/1.1\r\nHost: h\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"GET http://[::1/x HTTP/1.1\r\nHost: h\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET http:/host/x HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn absolute_form_still_needs_host_on_11() {
        assert_eq!(status(b"GET http://example.com/ HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            ok(b"GET http://example.com/ HTTP/1.0\r\n\r\n")
                .authority
                .as_deref(),
            Some(&b"example.com"[..])
        );
    }

    #[test]
    fn other_schemes_and_relative_targets_refused() {
        assert_eq!(
            status(b"GET ftp://example.com/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET foo/bar HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET ?x HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET #x HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn asterisk_form_only_for_options() {
        let h = ok(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((&h.path[..], &h.query[..]), (&b"*"[..], &b""[..]));
        assert_eq!(status(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status(b"OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(
            &ok(b"OPTIONS /x HTTP/1.1\r\nHost: h\r\n\r\n").path[..],
            b"/x"
        );
    }

    #[test]
    fn authority_form_only_for_connect() {
        let h = ok(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        assert_eq!(&h.path[..], b"example.com:443");
        assert_eq!(h.authority, None);
        assert_eq!(
            &ok(b"CONNECT [::1]:443 HTTP/1.1\r\nHost: h\r\n\r\n").path[..],
            b"[::1]:443"
        );
        assert_eq!(
            status(b"GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n"),
            400
        );
    }

    #[test]
    fn connect_needs_host_and_port() {
        assert_eq!(
            status(b"CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n"),
            400
        );
        assert_eq!(status(b"CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(
            status(b"CONNECT http://a:1/ HTTP/1.1\r\nHost: h\r\n\r\n"),
            400
        );
        assert_eq!(status(b"CONNECT :443 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn http10_accepted() {
        let h = ok(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(h.version, Version::Http10);
        assert!(h.close);
    }

    #[test]
    fn unsupported_well_formed_versions_are_505() {
        for v in ["HTTP/2.0", "HTTP/0.9", "HTTP/1.2", "HTTP/3.1", "HTTP/9.9"] {
            let raw = format!("GET / {v}\r\nHost: h\r\n\r\n");
            assert_eq!(status(raw.as_bytes()), 505, "{v}");
        }
    }

    #[test]
    fn malformed_versions_are_400() {
        let long = format!("HTTP/1.{}", "1".repeat(90));
        for v in [
            "HTTP/111",
            "http/1.1",
            "FTP/1.1",
            "HTTP/1.10",
            "HTTP/1.1x",
            "HTTP/1",
            "HTTP/1.",
            "HTTP/a.b",
            "HTTP/1,1",
            "HTTPS/1.1",
            &long,
        ] {
            let raw = format!("GET / {v}\r\nHost: h\r\n\r\n");
            assert_eq!(status(raw.as_bytes()), 400, "{v}");
        }
    }

    #[test]
    fn field_name_specials_and_underscores_accepted() {
        let h = ok(&get_with(b"X.|~!#$%&'*+^_`-9: v"));
        assert_eq!(&h.headers[1].0[..], b"X.|~!#$%&'*+^_`-9");
        assert_eq!(
            value(&ok(&get_with(b"X_Forwarded_For: 1")), "x_forwarded_for"),
            Some(&b"1"[..])
        );
    }

    #[test]
    fn empty_field_name() {
        assert_eq!(status(&get_with(b": v")), 400);
    }

    #[test]
    fn whitespace_before_colon() {
        assert_eq!(status(&get_with(b"X : v")), 400);
        assert_eq!(status(&get_with(b"X\t: v")), 400);
        assert_eq!(status(&get_with(b"Content-Length : 0")), 400);
    }

    #[test]
    fn non_token_bytes_in_name() {
        assert_eq!(status(&get_with(b"X\0Y: v")), 400);
        assert_eq!(status(&get_with(b"X\xc3\xa9: v")), 400);
        assert_eq!(status(&get_with(b"X(Y: v")), 400);
        assert_eq!(status(&get_with(b"X\"Y: v")), 400);
    }

    #[test]
    fn field_line_without_colon() {
        assert_eq!(status(&get_with(b"NoColon")), 400);
        assert_eq!(status(&get_with(b"No Colon here")), 400);
    }

    #[test]
    fn value_ctls_refused() {
        for bad in [
            &b"X: a\0b"[..],
            b"X: \x07",
            b"X: a\x7fb",
            b"X: \x0b",
            b"X: \x0c",
            b"X: \x1b[0m",
            b"X: \x00",
        ] {
            assert_eq!(status(&get_with(bad)), 400, "{bad:?}");
        }
    }

    #[test]
    fn obs_text_values_kept_raw() {
        let h = ok(&get_with(b"X: caf\xe9 \x80\xff"));
        assert_eq!(value(&h, "x"), Some(&b"caf\xe9 \x80\xff"[..]));
    }

    #[test]
    fn only_sp_and_htab_are_trimmed() {
        let h = ok(&get_with(b"X: \t a \t b\t "));
        assert_eq!(value(&h, "x"), Some(&b"a \t b"[..]));
        // \x85 and \xa0 are not whitespace here (CVE-2019-16789).
        let h = ok(&get_with(b"X:\xa0a\x85"));
        assert_eq!(value(&h, "x"), Some(&b"\xa0a\x85"[..]));
    }

    #[test]
    fn empty_values_and_no_ows() {
        let h = ok(&get_with(b"X:"));
        assert_eq!(value(&h, "x"), Some(&b""[..]));
        let h = ok(&get_with(b"X:v"));
        assert_eq!(value(&h, "x"), Some(&b"v"[..]));
        let h = ok(&get_with(b"X:   "));
        assert_eq!(value(&h, "x"), Some(&b""[..]));
    }

    #[test]
    fn obs_fold_refused() {
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n"),
            400
        );
    }

    #[test]
    fn whitespace_before_first_field() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n Host: h\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\n\tHost: h\r\n\r\n"), 400);
    }

    #[test]
    fn content_length_valid() {
        assert_eq!(
            ok(&get_with(b"Content-Length: 0")).framing,
            Framing::Length(0)
        );
        assert_eq!(
            ok(&get_with(b"Content-Length: 42")).framing,
            Framing::Length(42)
        );
        assert_eq!(
            ok(&get_with(b"content-length:\t0005 ")).framing,
            Framing::Length(5)
        );
        assert_eq!(
            ok(&get_with(b"Content-Length: 18446744073709551615")).framing,
            Framing::Length(u64::MAX)
        );
    }

    #[test]
    fn content_length_invalid() {
        for v in [
            "-1", "+1", "-0", "0x10", "1_0", "0 1", "3 1", "5, 5", "5,", "", "bla-bla", "1.0",
            "\u{00b9}",
        ] {
            let field = format!("Content-Length: {v}");
            assert_eq!(status(&get_with(field.as_bytes())), 400, "{v:?}");
        }
    }

    #[test]
    fn content_length_overflow() {
        assert_eq!(
            status(&get_with(b"Content-Length: 18446744073709551616")),
            400
        );
        assert_eq!(
            status(&get_with(b"Content-Length: 99999999999999999999999999")),
            400
        );
    }

    #[test]
    fn duplicate_content_length() {
        assert_eq!(
            status(&get_with(b"Content-Length: 5\r\nContent-Length: 5")),
            400
        );
        assert_eq!(
            status(&get_with(b"Content-Length: 5\r\ncontent-length: 6")),
            400
        );
    }

    #[test]
    fn chunked_accepted() {
        assert_eq!(
            ok(&get_with(b"Transfer-Encoding: chunked")).framing,
            Framing::Chunked
        );
        assert_eq!(
            ok(&get_with(b"transfer-encoding: CHUNKED")).framing,
            Framing::Chunked
        );
        assert_eq!(
            ok(&get_with(b"Transfer-Encoding:\t chunked \t")).framing,
            Framing::Chunked
        );
    }

    #[test]
    fn other_codings_are_501() {
        for v in [
            "gzip, chunked",
            "chunked, gzip",
            "identity",
            "identity, chunked",
            "chunked, chunked",
            "chunked , identity",
            "gzip",
            "x-custom",
        ] {
            let field = format!("Transfer-Encoding: {v}");
            assert_eq!(status(&get_with(field.as_bytes())), 501, "{v:?}");
        }
    }

    #[test]
    fn te_is_a_list_across_lines() {
        assert_eq!(
            status(&get_with(
                b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked"
            )),
            501
        );
        assert_eq!(
            status(&get_with(
                b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
            )),
            501
        );
        assert_eq!(
            status(&get_with(b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked")),
            501
        );
    }

    #[test]
    fn malformed_te_is_400() {
        for v in [
            &b",chunked"[..],
            b"chunked,",
            b"chunked,,gzip",
            b"",
            b" , ",
            b"chunked;q=1",
            b"chunked\x85",
            b"\"chunked\"",
            b"chun ked",
        ] {
            let mut field = b"Transfer-Encoding: ".to_vec();
            field.extend_from_slice(v);
            assert_eq!(status(&get_with(&field)), 400, "{v:?}");
        }
        assert_eq!(
            status(&get_with(
                b"Transfer-Encoding: chunked\r\nTransfer-Encoding: "
            )),
            400
        );
    }

    #[test]
    fn te_on_http10_is_400() {
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n"),
            400
        );
    }

    #[test]
    fn te_with_content_length_is_400() {
        assert_eq!(
            status(&get_with(
                b"Content-Length: 5\r\nTransfer-Encoding: chunked"
            )),
            400
        );
        assert_eq!(
            status(&get_with(
                b"Transfer-Encoding:\tchunked\r\nContent-Length: 5"
            )),
            400
        );
        assert_eq!(
            status(&get_with(b"Transfer-Encoding: gzip\r\nContent-Length: 5")),
            400
        );
    }

    #[test]
    fn missing_host_on_11() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nX-Host: h\r\n\r\n"), 400);
    }

    #[test]
    fn duplicate_host() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
    }

    #[test]
    fn empty_host() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost:\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost:  \r\n\r\n"), 400);
        assert!(ok(b"GET / HTTP/1.0\r\nHost:\r\n\r\n").close);
    }

    #[test]
    fn valid_hosts() {
        for host in [
            "example.com",
            "example.com:8080",
            "127.0.0.1",
            "127.0.0.1:0",
            "[::1]",
            "[::1]:65535",
            "[2001:db8::192.0.2.1]",
            "xn--bcher-kva.example",
            "exa_mple.com",
            "%41b",
            "a~b!$&'()*+,;=c",
        ] {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(
                value(&ok(raw.as_bytes()), "host"),
                Some(host.as_bytes()),
                "{host}"
            );
        }
    }

    #[test]
    fn invalid_hosts() {
        for host in [
            &b"a b"[..],
            b"host:",
            b"host:99999",
            b"host:123456",
            b"host:8x",
            b"host:1:2",
            b"user@host",
            b"[::1",
            b"::1",
            b"[::1]x",
            b"[fe80::1%25eth0]",
            b"[v1.fe]",
            b"[not-ip]",
            b":80",
            b"%4",
            b"%zz",
            b"ex/ample",
            b"h\xe9",
        ] {
            let mut raw = b"GET / HTTP/1.1\r\nHost: ".to_vec();
            raw.extend_from_slice(host);
            raw.extend_from_slice(b"\r\n\r\n");
            assert_eq!(status(&raw), 400, "{:?}", String::from_utf8_lossy(host));
        }
    }

    #[test]
    fn duplicate_content_type() {
        assert_eq!(
            status(&get_with(
                b"Content-Type: text/plain\r\ncontent-type: text/plain"
            )),
            400
        );
        assert!(value(&ok(&get_with(b"Content-Type: text/plain")), "content-type").is_some());
    }

    #[test]
    fn connection_close_on_11() {
        assert!(ok(&get_with(b"Connection: close")).close);
        assert!(ok(&get_with(b"Connection: Keep-Alive, CLOSE")).close);
        assert!(ok(&get_with(b"Connection: upgrade\r\nConnection: close")).close);
        assert!(!ok(&get_with(b"Connection: keep-alive")).close);
        assert!(!ok(&get_with(b"Connection: closed")).close);
    }

    #[test]
    fn keep_alive_on_10() {
        assert!(!ok(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").close);
        assert!(!ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").close);
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").close);
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: foo\r\n\r\n").close);
    }

    #[test]
    fn expect_continue() {
        assert!(ok(&get_with(b"Expect: 100-continue")).expect_continue);
        assert!(ok(&get_with(b"Expect: 100-Continue ")).expect_continue);
        // RFC 9110 §10.1.1: ignored on HTTP/1.0.
        assert!(!ok(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    }

    #[test]
    fn other_expectations_are_417() {
        assert_eq!(status(&get_with(b"Expect: foo")), 417);
        assert_eq!(status(&get_with(b"Expect: 100-continue, foo")), 417);
        assert_eq!(status(&get_with(b"Expect:")), 417);
        assert_eq!(status(b"GET / HTTP/1.0\r\nExpect: 200-ok\r\n\r\n"), 417);
    }

    #[test]
    fn request_line_limit_boundary() {
        let lim = small();
        // 40 bytes exactly.
        let line = format!("GET /{} HTTP/1.1", "a".repeat(26));
        assert_eq!(line.len(), 40);
        let h = ok_with(format!("{line}\r\nHost: h\r\n\r\n").as_bytes(), &lim);
        assert_eq!(h.path.len(), 27);
        let line = format!("GET /{} HTTP/1.1", "a".repeat(27));
        assert_eq!(
            status_with(format!("{line}\r\nHost: h\r\n\r\n").as_bytes(), &lim),
            414
        );
    }

    #[test]
    fn request_line_limit_before_crlf() {
        let lim = small();
        let part = Bytes::from(format!("GET /{}", "a".repeat(36)));
        assert_eq!(part.len(), 41);
        assert_eq!(parse_head(&part, &lim).unwrap_err().status, 414);
        // A CR at byte 41 would still be in time.
        let part = Bytes::from(format!("GET /{}", "a".repeat(35)));
        assert_eq!(parse_head(&part, &lim), Ok(None));
        // Counted after the one tolerated leading CRLF.
        let part = Bytes::from(format!("\r\nGET /{}", "a".repeat(35)));
        assert_eq!(parse_head(&part, &lim), Ok(None));
    }

    #[test]
    fn too_many_fields() {
        let lim = small();
        let four = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(ok_with(four, &lim).headers.len(), 4);
        let five = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert_eq!(status_with(five, &lim), 431);
    }

    #[test]
    fn field_size_limit_boundary() {
        let lim = small();
        let field = format!("X: {}", "v".repeat(27));
        assert_eq!(field.len(), 30);
        ok_with(
            format!("GET / HTTP/1.1\r\nHost: h\r\n{field}\r\n\r\n").as_bytes(),
            &lim,
        );
        let field = format!("X: {}", "v".repeat(28));
        assert_eq!(
            status_with(
                format!("GET / HTTP/1.1\r\nHost: h\r\n{field}\r\n\r\n").as_bytes(),
                &lim
            ),
            431
        );
        let name = format!("{}: v", "N".repeat(40));
        assert_eq!(
            status_with(
                format!("GET / HTTP/1.1\r\nHost: h\r\n{name}\r\n\r\n").as_bytes(),
                &lim
            ),
            431
        );
    }

    #[test]
    fn field_size_limit_before_crlf() {
        let lim = small();
        let part = Bytes::from(format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}",
            "v".repeat(28)
        ));
        assert_eq!(parse_head(&part, &lim).unwrap_err().status, 431);
    }

    #[test]
    fn head_size_limit() {
        let lim = HeadLimits {
            max_head_size: 60,
            ..small()
        };
        // Exactly 60 bytes.
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nA: 12345678\r\nB: 123456789012345\r\n\r\n";
        assert_eq!(raw.len(), 60);
        assert_eq!(ok_with(raw, &lim).head_len, 60);
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nA: 12345678\r\nB: 1234567890123456\r\n\r\n";
        assert_eq!(status_with(raw, &lim), 431);
        // Incomplete and already over the limit.
        let part = Bytes::from_static(
            b"GET / HTTP/1.1\r\nHost: h\r\nA: 12345678\r\nB: 123456789012345\r\nC: x",
        );
        assert_eq!(part.len(), 62);
        assert_eq!(parse_head(&part, &lim).unwrap_err().status, 431);
    }

    #[test]
    fn head_size_counts_body_free_buffer_only() {
        // A body after a head of exactly the limit does not count.
        let lim = HeadLimits {
            max_head_size: 27,
            ..small()
        };
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\n\r\nBODY BYTES";
        let h = ok_with(raw, &lim);
        assert_eq!(h.head_len, 27);
    }

    #[test]
    fn default_limits_take_a_long_but_legal_head() {
        let raw = format!(
            "GET /{} HTTP/1.1\r\nHost: h\r\nCookie: {}\r\n\r\n",
            "p".repeat(8000),
            "c".repeat(8000)
        );
        let h = parse_head(&Bytes::from(raw.clone()), &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(h.head_len, raw.len());
    }

    #[test]
    fn many_headers_grow_the_vec() {
        let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..100 {
            raw.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        let h = parse_head(&Bytes::from(raw), &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(h.headers.len(), 101);
        assert_eq!(&h.headers[100].1[..], b"99");
    }

    #[test]
    fn bad_value_byte_at_every_word_offset() {
        // The value scan reads 8 bytes at a time: a bad byte must be seen at any offset.
        for bad in [0u8, 0x01, 0x08, 0x0b, 0x1f, 0x7f, b'\n'] {
            for offset in 0..20 {
                let mut field = b"X: ".to_vec();
                field.extend(std::iter::repeat_n(b'a', offset));
                field.push(bad);
                field.extend_from_slice(b"bbbbbbbbbbbb");
                assert_eq!(status(&get_with(&field)), 400, "{bad:#x} at {offset}");
            }
        }
    }

    #[test]
    fn long_values_with_htab_obs_text_and_edges() {
        for v in [
            &b"\x7e\x20\x80\xff\t\x21abcdefghijklmnop\x7e"[..],
            b"0123456789abcdef\t0123456789abcdef",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ] {
            let mut field = b"X: ".to_vec();
            field.extend_from_slice(v);
            assert_eq!(value(&ok(&get_with(&field)), "x"), Some(v), "{v:?}");
        }
    }

    #[test]
    fn bad_target_byte_at_every_word_offset() {
        for bad in [0u8, b'\t', 0x7f, 0x80, 0xff, 0x1f] {
            for offset in 1..20 {
                let mut raw = b"GET /".to_vec();
                raw.extend(std::iter::repeat_n(b'p', offset));
                raw.push(bad);
                raw.extend_from_slice(b"qqqqqqqqqqqq HTTP/1.1\r\nHost: h\r\n\r\n");
                assert_eq!(status(&raw), 400, "{bad:#x} at {offset}");
            }
        }
    }

    /// Crude mutation run: whatever the bytes, no panic, and prefixes agree with the whole.
    #[test]
    fn mutated_requests_never_panic_and_prefixes_agree() {
        let seeds: [&[u8]; 4] = [
            b"GET /a?b HTTP/1.1\r\nHost: h:1\r\nContent-Length: 3\r\n\r\n",
            b"POST http://x/y HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
            b"\r\nOPTIONS * HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
        ];
        let alphabet = b"\r\n \t:,;/?#*[]@%0aA\x00\x7f\x80-H.1";
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let lim = HeadLimits {
            max_request_line: 50,
            max_headers: 3,
            max_field_size: 40,
            max_head_size: 120,
        };
        for _ in 0..3000 {
            let mut v = seeds[(next() % 4) as usize].to_vec();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % (v.len() + 1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 if at < v.len() => v[at] = c,
                    1 if at < v.len() => {
                        v.remove(at);
                    }
                    _ => v.insert(at, c),
                }
            }
            let _ = parse_with(&v, &lim);
            let _ = parse_with(&v, &HeadLimits::default());
            let whole = Bytes::from(v);
            let split = next();
            let steps = |n: usize| (split.rotate_left(n as u32 % 64) % 9) as usize;
            assert_eq!(
                incremental_in_steps(&whole, &lim, steps),
                parse_head(&whole, &lim)
            );
        }
    }

    #[test]
    fn trickled_head_is_looked_at_a_bounded_number_of_times() {
        // Issue 16 item 5: a 202 KB head arriving 16 bytes per read was parsed whole on every
        // read. Now the bytes looked at over all reads are a small multiple of the head.
        let mut raw = b"GET /trickle HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..200 {
            raw.extend_from_slice(format!("X-Fill-{i:03}: {}\r\n", "v".repeat(1000)).as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        let whole = Bytes::from(raw);
        let lim = HeadLimits::default();
        let mut scan = HeadScan::default();
        EXAMINED.set(0);
        let mut end = 0;
        let head = loop {
            end = (end + 16).min(whole.len());
            match parse_head_incremental(&whole.slice(..end), &lim, &mut scan) {
                Ok(None) => assert!(end < whole.len(), "complete head not recognised"),
                Ok(Some(h)) => break h,
                Err(e) => panic!("{e} at {end}"),
            }
        };
        assert_eq!(head.head_len, whole.len());
        assert_eq!(head.headers.len(), 201);
        let looked_at = EXAMINED.get();
        assert!(
            looked_at <= 3 * whole.len(),
            "{looked_at} bytes looked at for a {}-byte head",
            whole.len()
        );
        // The scan starts over for the next head.
        assert_eq!(scan, HeadScan::default());
    }
}
