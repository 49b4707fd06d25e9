//! Strict parsing of an HTTP/1.x request head (RFC 9112 §2–§6, RFC 9110 §5–§8).
//!
//! Every ambiguity is an error: the caller answers the `Reject`'s status and closes. The scan is
//! one left-to-right pass, and each error is decided by the bytes up to where it is found, so a
//! prefix of a request either asks for more input or fails exactly as the whole request does.
//! `parse_head_incremental` gives the same answers for a buffer that grows between reads,
//! looking at each new byte about once instead of parsing the whole buffer per read.
//! httparse is not used: it accepts bare LF and does not say where or why it failed, and the
//! statuses below (414/431/501/505) need exactly that.
//! Hand-written, and stricter than httparse on purpose; `fuzz/fuzz_targets/head_differential.rs`
//! runs both on the same bytes and pins every difference. The byte classes and scanners are in
//! `grammar`, shared with the chunked decoder.

use std::net::Ipv6Addr;
use std::str::FromStr;

use bytes::Bytes;

use super::grammar::{
    is, is_token, skip_token, skip_value, skip_vchar, trim_ows, trim_span, REG_NAME, VCHAR,
};
use crate::reject::Reject;
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
        use crate::config::defaults;
        HeadLimits {
            max_request_line: defaults::LIMIT_REQUEST_LINE,
            max_headers: defaults::LIMIT_REQUEST_FIELDS,
            max_field_size: defaults::LIMIT_REQUEST_FIELD_SIZE,
            max_head_size: defaults::LIMIT_REQUEST_HEAD,
        }
    }
}

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
/// Three steps, each deciding only from the bytes it has scanned: the request line, the field
/// lines, then the checks over the whole field section (framing first).
pub fn parse_head(buf: &Bytes, limits: &HeadLimits) -> Result<Option<Head>, Reject> {
    let b: &[u8] = buf;
    let hard = limits.max_head_size;
    let input = Input {
        b,
        avail: b.len().min(hard),
        hard,
    };
    let Some(line) = request_line(&input, limits)? else {
        return Ok(None);
    };
    let Some(f) = field_lines(buf, &input, line.end, limits)? else {
        return Ok(None);
    };
    let framing = framing(b, line.version, &f)?;
    check_fields(b, line.version, &f)?;

    let form = line.form;
    let path = match form.path {
        Some((s, e)) => buf.slice(s..e),
        None => Bytes::from_static(b"/"),
    };
    Ok(Some(Head {
        method: buf.slice(line.method.0..line.method.1),
        target: buf.slice(line.target.0..line.target.1),
        path,
        query: buf.slice(form.query.0..form.query.1),
        authority: form.authority.map(|(s, e)| buf.slice(s..e)),
        version: line.version,
        headers: f.headers,
        framing,
        close: match line.version {
            Version::Http11 => f.conn_close,
            Version::Http10 => f.conn_close || !f.conn_keep_alive,
        },
        expect_continue: f.expect_continue && line.version == Version::Http11,
        head_len: f.head_len,
    }))
}

/// The buffer as the steps of `parse_head` see it.
struct Input<'a> {
    b: &'a [u8],
    /// `b.len()` capped at `hard`: bytes at or past the head limit can never belong to an
    /// acceptable head.
    avail: usize,
    hard: usize,
}

impl Input<'_> {
    /// Called when index `need` is not in `avail`: either past the head limit, or not read yet.
    #[inline]
    fn more<T>(&self, need: usize) -> Result<Option<T>, Reject> {
        if need >= self.hard {
            Err(Reject::new(431, "request head too large"))
        } else {
            Ok(None)
        }
    }
}

/// The request line, checked.
struct RequestLine {
    method: Span,
    target: Span,
    version: Version,
    form: Target,
    /// Index of the first byte after its CRLF.
    end: usize,
}

/// Step 1 of `parse_head`: `method SP request-target SP HTTP-version CRLF`, after at most one
/// leading CRLF.
#[inline]
fn request_line(input: &Input<'_>, limits: &HeadLimits) -> Result<Option<RequestLine>, Reject> {
    // RFC 9112 §2.2: tolerate one CRLF before the request line (left over from a previous body).
    let mut start: usize = 0;
    let (b, avail) = (input.b, input.avail);
    match b.first() {
        None => return input.more(0),
        Some(b'\r') => {
            if avail < 2 {
                return input.more(1);
            }
            if b[1] != b'\n' {
                return Err(Reject::new(400, "bare CR before request line"));
            }
            start = 2;
        }
        Some(b'\n') => return Err(Reject::new(400, "bare LF before request line")),
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
            Err(Reject::new(414, "request line too long"))
        } else {
            input.more(i)
        }
    };

    let mut i = start;
    i = skip_token(b, i, lim);
    if i - start > MAX_METHOD_LEN {
        return Err(Reject::new(501, "method too long"));
    }
    if i == lim {
        return line_out(i);
    }
    if b[i] != b' ' || i == start {
        return Err(Reject::new(400, "invalid method"));
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
        b' ' => return Err(Reject::new(400, "empty request target")),
        b'\r' | b'\n' => return Err(Reject::new(400, "request line without HTTP version")),
        _ => return Err(Reject::new(400, "invalid byte in request target")),
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
        b'\n' => return Err(Reject::new(400, "bare LF in request line")),
        _ => return Err(Reject::new(400, "invalid byte in request line")),
    }
    let version = parse_version(&b[v_start..i])?;
    if i + 1 >= avail {
        return input.more(i + 1);
    }
    if b[i + 1] != b'\n' {
        return Err(Reject::new(400, "bare CR in request line"));
    }
    let form = split_target(b, method, target)?;
    Ok(Some(RequestLine {
        method,
        target,
        version,
        form,
        end: i + 2,
    }))
}

/// What `field_lines` collected: the list for environ, and what the checks of step 3 need.
struct Fields {
    headers: Vec<(Bytes, Bytes)>,
    content_length: Option<Span>,
    content_lengths: usize,
    te: TransferCoding,
    host: Option<Span>,
    hosts: usize,
    content_types: usize,
    conn_close: bool,
    conn_keep_alive: bool,
    expect_continue: bool,
    expect_other: bool,
    /// Bytes of the whole head, up to and including the empty line's CRLF.
    head_len: usize,
}

/// Step 2 of `parse_head`: the field lines from `pos` up to the empty line.
#[inline]
fn field_lines(
    buf: &Bytes,
    input: &Input<'_>,
    mut pos: usize,
    limits: &HeadLimits,
) -> Result<Option<Fields>, Reject> {
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

    let (b, avail) = (input.b, input.avail);
    let head_len = loop {
        if pos >= avail {
            return input.more(pos);
        }
        match b[pos] {
            b'\r' => {
                if pos + 1 >= avail {
                    return input.more(pos + 1);
                }
                if b[pos + 1] != b'\n' {
                    return Err(Reject::new(400, "bare CR in header section"));
                }
                break pos + 2;
            }
            b'\n' => return Err(Reject::new(400, "bare LF in header section")),
            // obs-fold, or whitespace between the request line and the first field.
            b' ' | b'\t' => return Err(Reject::new(400, "line folding or leading whitespace")),
            _ => {}
        }
        if headers.len() >= limits.max_headers {
            return Err(Reject::new(431, "too many header fields"));
        }
        let line_lim = pos.saturating_add(limits.max_field_size).saturating_add(1);
        let lim = avail.min(line_lim);
        let field_out = |i: usize| {
            if i >= line_lim {
                Err(Reject::new(431, "header field too large"))
            } else {
                input.more(i)
            }
        };

        let n_start = pos;
        let mut i = pos;
        i = skip_token(b, i, lim);
        if i == lim {
            return field_out(i);
        }
        if b[i] != b':' {
            return Err(match b[i] {
                b' ' | b'\t' => Reject::new(400, "whitespace before colon"),
                b'\r' | b'\n' => Reject::new(400, "header line without colon"),
                _ => Reject::new(400, "invalid byte in header name"),
            });
        }
        if i == n_start {
            return Err(Reject::new(400, "empty header name"));
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
                b'\n' => Reject::new(400, "bare LF in header value"),
                0 => Reject::new(400, "NUL in header value"),
                _ => Reject::new(400, "control byte in header value"),
            });
        }
        if i + 1 >= avail {
            return input.more(i + 1);
        }
        if b[i + 1] != b'\n' {
            return Err(Reject::new(400, "bare CR in header value"));
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
    Ok(Some(Fields {
        headers,
        content_length,
        content_lengths,
        te,
        host,
        hosts,
        content_types,
        conn_close,
        conn_keep_alive,
        expect_continue,
        expect_other,
        head_len,
    }))
}

/// Step 3a of `parse_head`: the message framing from the field section.
#[inline]
fn framing(b: &[u8], version: Version, f: &Fields) -> Result<Framing, Reject> {
    // Framing (RFC 9112 §6): anything a second parser could read differently is refused.
    if f.content_lengths > 1 {
        return Err(Reject::new(400, "duplicate Content-Length"));
    }
    let length = match f.content_length {
        Some((s, e)) => Some(parse_content_length(&b[s..e])?),
        None => None,
    };
    let te = &f.te;
    let framing = if te.seen {
        if version == Version::Http10 {
            return Err(Reject::new(400, "Transfer-Encoding on HTTP/1.0"));
        }
        if length.is_some() {
            return Err(Reject::new(
                400,
                "both Content-Length and Transfer-Encoding",
            ));
        }
        if te.malformed {
            return Err(Reject::new(400, "malformed Transfer-Encoding"));
        }
        if te.codings != 1 || !te.first_is_chunked {
            return Err(Reject::new(501, "unsupported Transfer-Encoding"));
        }
        Framing::Chunked
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::None,
        }
    };
    Ok(framing)
}

/// Step 3b of `parse_head`, after the framing: the fields that must be single or valid.
#[inline]
fn check_fields(b: &[u8], version: Version, f: &Fields) -> Result<(), Reject> {
    // RFC 9112 §3.2: Host is mandatory on 1.1, single, and valid.
    if f.hosts > 1 {
        return Err(Reject::new(400, "duplicate Host"));
    }
    // An empty Host is only meaningful for a target without authority, which 1.1 cannot send.
    let host_error = match f.host {
        None => (version == Version::Http11).then_some("missing Host"),
        Some((s, e)) if s == e => (version == Version::Http11).then_some("empty Host"),
        Some((s, e)) => (!valid_authority(&b[s..e], false)).then_some("invalid Host"),
    };
    if let Some(reason) = host_error {
        return Err(Reject::new(400, reason));
    }
    if f.content_types > 1 {
        return Err(Reject::new(400, "duplicate Content-Type"));
    }
    if f.expect_other {
        return Err(Reject::new(417, "unsupported expectation"));
    }
    Ok(())
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
) -> Result<Option<Head>, Reject> {
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
                        i = skip_token(b, i, lim);
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
                    i = skip_token(b, i, lim);
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

/// RFC 9112 §2.3: `HTTP/` DIGIT `.` DIGIT, case-sensitive; only 1.0 and 1.1 are spoken.
fn parse_version(v: &[u8]) -> Result<Version, Reject> {
    match v {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(Reject::new(505, "HTTP version not supported"))
        }
        _ => Err(Reject::new(400, "invalid HTTP version")),
    }
}

/// RFC 9110 §8.6: `1*DIGIT`, no sign, space, list or overflow.
fn parse_content_length(v: &[u8]) -> Result<u64, Reject> {
    if v.is_empty() {
        return Err(Reject::new(400, "empty Content-Length"));
    }
    let mut n: u64 = 0;
    for &c in v {
        if !c.is_ascii_digit() {
            return Err(Reject::new(400, "invalid Content-Length"));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(c - b'0')))
            .ok_or(Reject::new(400, "Content-Length overflow"))?;
    }
    Ok(n)
}

/// Splits the request-target per its form; the form must fit the method (RFC 9112 §3.2).
fn split_target(b: &[u8], method: Span, target: Span) -> Result<Target, Reject> {
    let m = &b[method.0..method.1];
    let t = &b[target.0..target.1];
    if m == b"CONNECT" {
        // authority-form only, and a port is required (RFC 9110 §9.3.6).
        if !valid_authority(t, true) {
            return Err(Reject::new(400, "CONNECT needs an authority-form target"));
        }
        return Ok(Target {
            path: Some(target),
            query: (target.1, target.1),
            authority: None,
        });
    }
    if t == b"*" {
        if m != b"OPTIONS" {
            return Err(Reject::new(400, "asterisk-form is only for OPTIONS"));
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
        return Err(Reject::new(400, "invalid request target"));
    };
    let a_start = target.0 + scheme_len;
    let a_end = b[a_start..target.1]
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b'#'))
        .map_or(target.1, |p| a_start + p);
    // Covers an empty host (MUST reject, RFC 9110 §4.2.1) and userinfo (treated as an error,
    // RFC 9110 §4.2.4: it is used to disguise the real authority).
    if !valid_authority(&b[a_start..a_end], false) {
        return Err(Reject::new(
            400,
            "invalid authority in absolute-form target",
        ));
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
mod tests;
