//! The `Responder` every front end implements, and the one place the app's status line and
//! headers are validated. The core decides *what* is sent; a responder only frames it.

use std::io;
#[cfg(unix)]
use std::os::fd::BorrowedFd;

/// How many body bytes the response will carry, as far as the core knows at `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLength {
    /// Exactly this many bytes (the app's Content-Length, or computed from a single chunk).
    Known(u64),
    /// Unknown up front: the front end delimits it (chunked, close, or its own framing).
    Unknown,
}

/// A validated response head, ready to be framed.
#[derive(Debug)]
pub struct ResponseHead<'a> {
    pub code: u16,
    /// `"200 OK"` as the app gave it (validated), as latin-1 bytes.
    pub status: &'a [u8],
    /// The app's headers, validated, as `Name: value\r\n` lines (hop-by-hop ones removed).
    pub header_block: &'a [u8],
    pub length: BodyLength,
    /// The app's own Content-Length is inside `header_block`.
    pub app_content_length: bool,
    /// False for HEAD requests and 1xx/204/304: no body bytes go out.
    pub body_allowed: bool,
    pub has_date: bool,
    pub has_server: bool,
    /// The app asked for `Connection: close`.
    pub close: bool,
}

/// A front end's way of putting a response on its wire. Calls arrive in the order
/// `start`, `write`*, then `finish` or `abort`. Writes may block; a responder releases the GIL
/// around any wait (`python::without_gil`).
pub trait Responder: Send + Sync {
    fn start(&mut self, head: &ResponseHead<'_>) -> io::Result<()>;
    fn write(&mut self, chunk: &[u8]) -> io::Result<()>;
    /// Several chunks the app handed over at once (a list): a front end that can send them
    /// in one call does (fewer system calls, bigger segments).
    fn write_many(&mut self, chunks: &[&[u8]]) -> io::Result<()> {
        chunks.iter().try_for_each(|c| self.write(c))
    }
    /// Send `len` bytes of the open file `fd` from `offset` if the front end can do it without
    /// copying through Python; `Ok(false)` means "not supported, send it with `write`".
    #[cfg(unix)]
    fn send_file(&mut self, _fd: BorrowedFd<'_>, _offset: u64, _len: u64) -> io::Result<bool> {
        Ok(false)
    }
    /// The response is complete.
    fn finish(&mut self) -> io::Result<()>;
    /// The response cannot be completed: it must not look complete to the client.
    fn abort(&mut self);
    /// Body bytes that went out (for the access log).
    fn body_bytes_sent(&self) -> u64;
}

/// Why an app's status or headers were refused (raised to the app as `ValueError`).
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidResponse(pub String);

/// Validates `"NNN Reason"` and returns the code.
pub fn parse_status(status: &str) -> Result<u16, InvalidResponse> {
    let bytes = status.as_bytes();
    let bad = || {
        InvalidResponse(format!(
            "invalid status {status:?}: expected \"NNN Reason\""
        ))
    };
    if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    if bytes.len() > 3 && bytes[3] != b' ' {
        return Err(bad());
    }
    if !latin1_text(status) {
        return Err(InvalidResponse(format!(
            "invalid status {status:?}: control or non-latin-1 character"
        )));
    }
    let code = u16::from(bytes[0] - b'0') * 100
        + u16::from(bytes[1] - b'0') * 10
        + u16::from(bytes[2] - b'0');
    if code < 100 {
        return Err(bad());
    }
    Ok(code)
}

/// Text a status line or header value may hold: latin-1 characters, no controls but tab.
fn latin1_text(s: &str) -> bool {
    s.bytes().all(|b| TEXT_BYTE[b as usize])
}

/// tchar (RFC 9110 §5.6.2): what header names and other tokens are made of, one table lookup
/// per byte (every header name an app sends is checked). The request parser's byte table is
/// built from this too.
pub const fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};

/// The bytes of `latin1_text`, as UTF-8 of a latin-1 string: tab, visible ASCII and space,
/// and what encodes U+0080..U+00FF (lead bytes 0xC2/0xC3, continuation bytes). A lead byte
/// from 0xC4 up starts a character beyond latin-1; controls and DEL are refused.
const TEXT_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i == 0x09 || (i >= 0x20 && i != 0x7F && i <= 0xC3);
        i += 1;
    }
    t
};

/// What a header means to the framing layer.
enum HeaderRole {
    Plain,
    ContentLength,
    Date,
    Server,
    /// `Connection` / `Keep-Alive`: consumed by the gateway.
    ConnectionControl,
    /// Hop-by-hop headers an app must not set (PEP 3333).
    Forbidden,
}

fn header_role(name: &str) -> HeaderRole {
    // By length first: most names are none of these and are told so by one comparison.
    let is = |text: &str| name.eq_ignore_ascii_case(text);
    match name.len() {
        14 if is("content-length") => HeaderRole::ContentLength,
        4 if is("date") => HeaderRole::Date,
        6 if is("server") => HeaderRole::Server,
        10 if is("connection") || is("keep-alive") => HeaderRole::ConnectionControl,
        // Hop-by-hop headers an app must not set.
        17 if is("transfer-encoding") => HeaderRole::Forbidden,
        7 if is("upgrade") || is("trailer") => HeaderRole::Forbidden,
        2 if is("te") => HeaderRole::Forbidden,
        18 if is("proxy-authenticate") => HeaderRole::Forbidden,
        19 if is("proxy-authorization") => HeaderRole::Forbidden,
        _ => HeaderRole::Plain,
    }
}

thread_local! {
    /// The buffer of the last response head this thread finished, for its next one.
    static SPARE_BLOCK: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}
/// A head buffer larger than this (an app's huge headers) is freed, not kept per thread.
const SPARE_BLOCK_MAX: usize = 16 * 1024;

/// The app's status and headers, validated and serialised once, in one buffer: the status
/// text, then the `Name: value\r\n` lines. The buffer is reused from one response to the next.
#[derive(Debug, Default)]
pub struct HeaderBlock {
    block: Vec<u8>,
    status_len: usize,
    pub content_length: Option<u64>,
    pub has_date: bool,
    pub has_server: bool,
    pub close: bool,
}

impl Drop for HeaderBlock {
    fn drop(&mut self) {
        let capacity = self.block.capacity();
        if capacity > 0 && capacity <= SPARE_BLOCK_MAX {
            let mut block = std::mem::take(&mut self.block);
            block.clear();
            SPARE_BLOCK.set(block);
        }
    }
}

impl HeaderBlock {
    /// A block for `status` (`code` its number), already checked by `parse_status`, with no
    /// headers yet. A bare `"NNN"` gets its standard reason phrase here, once for every front
    /// end.
    pub fn new(status: &str, code: u16) -> HeaderBlock {
        let mut block = SPARE_BLOCK.take();
        // Room for a typical app's headers: no regrowth per header.
        block.reserve(256);
        push_latin1(&mut block, status);
        if status.len() == 3 {
            block.push(b' ');
            block.extend_from_slice(reason(code).as_bytes());
        }
        HeaderBlock {
            status_len: block.len(),
            block,
            content_length: None,
            has_date: false,
            has_server: false,
            close: false,
        }
    }

    /// The status text (`200 OK`), as latin-1 bytes.
    pub fn status(&self) -> &[u8] {
        self.block.get(..self.status_len).unwrap_or_default()
    }

    /// The header lines, each ending in CRLF.
    pub fn lines(&self) -> &[u8] {
        self.block.get(self.status_len..).unwrap_or_default()
    }

    /// Validates one `(name, value)` pair and appends it. `code` decides whether a
    /// Content-Length may be sent at all (never on 1xx/204).
    pub fn push(&mut self, name: &str, value: &str, code: u16) -> Result<(), InvalidResponse> {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(InvalidResponse(format!("invalid header name {name:?}")));
        }
        if !latin1_text(value) {
            return Err(InvalidResponse(format!(
                "invalid value for header {name:?}: {value:?} (control or non-latin-1 character)"
            )));
        }
        match header_role(name) {
            HeaderRole::Forbidden => {
                return Err(InvalidResponse(format!(
                    "hop-by-hop header {name:?} is not allowed from a WSGI application"
                )))
            }
            HeaderRole::ConnectionControl => {
                if name.eq_ignore_ascii_case("connection")
                    && value
                        .split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("close"))
                {
                    self.close = true;
                }
                return Ok(());
            }
            HeaderRole::ContentLength => {
                let v = trim_ows(value);
                let n = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                    v.parse::<u64>().ok()
                } else {
                    None
                };
                let Some(n) = n else {
                    return Err(InvalidResponse(format!("invalid Content-Length {value:?}")));
                };
                if self.content_length.is_some_and(|old| old != n) {
                    return Err(InvalidResponse(
                        "two different Content-Length headers".to_string(),
                    ));
                }
                if self.content_length.is_some() {
                    return Ok(());
                }
                self.content_length = Some(n);
                if (100..200).contains(&code) || code == 204 {
                    return Ok(());
                }
            }
            HeaderRole::Date => self.has_date = true,
            HeaderRole::Server => self.has_server = true,
            HeaderRole::Plain => {}
        }
        let value = trim_ows(value);
        let out = &mut self.block;
        out.reserve(name.len().saturating_add(value.len()).saturating_add(4));
        // A valid name is ASCII.
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        push_latin1(out, value);
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

/// `s` without the spaces and tabs around it (optional whitespace, RFC 9110 §5.6.3).
fn trim_ows(s: &str) -> &str {
    let ows = |c: &u8| *c == b' ' || *c == b'\t';
    let b = s.as_bytes();
    let start = b.iter().position(|c| !ows(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ows(c)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// Appends a string whose characters are all ≤ U+00FF as latin-1 bytes.
pub fn push_latin1(out: &mut Vec<u8>, s: &str) {
    if s.is_ascii() {
        out.extend_from_slice(s.as_bytes());
    } else {
        // Validation already refused characters above U+00FF.
        out.extend(
            s.chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')),
        );
    }
}

/// The reason phrase RFC 9110 §15 gives a status: for the gateway's own documents and for an
/// app's bare `"NNN"` status (every front end sends `NNN Reason`). Empty for an unregistered
/// code (a reason phrase may be empty: RFC 9112 §4, RFC 3875 §6.3.3).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// The Content-Length a framing layer adds itself: the core knows the length and the app did
/// not send one. A HEAD answer carries the length its GET would have; 1xx, 204 and 304
/// answers carry none.
pub fn computed_length(head: &ResponseHead<'_>) -> Option<u64> {
    let BodyLength::Known(n) = head.length else {
        return None;
    };
    let never = (100..200).contains(&head.code) || head.code == 204 || head.code == 304;
    (!head.app_content_length && (head.body_allowed || !never)).then_some(n)
}

/// Whether a response with this status to this method may carry body bytes.
pub fn body_allowed(code: u16, is_head: bool) -> bool {
    !(is_head || (100..200).contains(&code) || code == 204 || code == 304)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(parse_status("200 OK"), Ok(200));
        assert_eq!(parse_status("404 Not Found"), Ok(404));
        assert_eq!(parse_status("599"), Ok(599));
        assert_eq!(parse_status("200 Ok\tfine"), Ok(200));
        for bad in [
            "abc",
            "20 OK",
            "2000 OK",
            "200OK",
            "200 OK\r\n",
            "099 x",
            "",
            "200 \u{1F600}",
        ] {
            assert!(parse_status(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn headers_validated_and_serialised() {
        let mut h = HeaderBlock::new("200 OK", 200);
        h.push("Content-Type", "text/plain", 200).unwrap();
        h.push("Content-Length", "13", 200).unwrap();
        h.push("X-Latin", "caf\u{e9}", 200).unwrap();
        assert_eq!(h.content_length, Some(13));
        assert_eq!(h.status(), b"200 OK");
        assert_eq!(
            h.lines(),
            b"Content-Type: text/plain\r\nContent-Length: 13\r\nX-Latin: caf\xe9\r\n"
        );
        assert!(h.push("X-Bad", "a\r\nSet-Cookie: x", 200).is_err());
        assert!(h.push("Bad Name", "x", 200).is_err());
        assert!(h.push("", "x", 200).is_err());
        assert!(h.push("X-Wide", "\u{263A}", 200).is_err());
        // Latin-1 ends at U+00FF (UTF-8 lead byte 0xC3); controls and DEL are refused, tab is not.
        assert!(h.push("X-Top", "\u{ff}\u{80}", 200).is_ok());
        assert!(h.push("X-Tab", "a\tb", 200).is_ok());
        assert!(h.push("X-Beyond", "\u{100}", 200).is_err());
        assert!(h.push("X-Del", "a\u{7f}b", 200).is_err());
        assert!(h.push("X-Nul", "a\0b", 200).is_err());
        assert!(h.push("Transfer-Encoding", "chunked", 200).is_err());
        assert!(h.push("Upgrade", "h2c", 200).is_err());
        assert!(h.push("Content-Length", "-1", 200).is_err());
        assert!(h.push("Content-Length", "14", 200).is_err());
    }

    #[test]
    fn values_lose_surrounding_whitespace() {
        let mut h = HeaderBlock::new("200 OK", 200);
        h.push("X-Pad", " \t a b \t", 200).unwrap();
        h.push("X-Blank", " \t ", 200).unwrap();
        h.push("Content-Length", "\t 7 ", 200).unwrap();
        assert_eq!(h.content_length, Some(7));
        assert_eq!(
            h.lines(),
            b"X-Pad: a b\r\nX-Blank: \r\nContent-Length: 7\r\n"
        );
    }

    #[test]
    fn connection_close_is_consumed() {
        let mut h = HeaderBlock::default();
        h.push("Connection", "Close", 200).unwrap();
        h.push("Keep-Alive", "timeout=5", 200).unwrap();
        assert!(h.close);
        assert!(h.lines().is_empty());
    }

    #[test]
    fn no_content_length_on_204() {
        let mut h = HeaderBlock::default();
        h.push("Content-Length", "0", 204).unwrap();
        assert!(h.lines().is_empty());
        assert!(!body_allowed(204, false));
        assert!(!body_allowed(200, true));
        assert!(body_allowed(200, false));
    }
}
