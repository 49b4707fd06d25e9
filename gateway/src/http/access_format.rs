//! `--access-log-format`: Apache `LogFormat` atoms (or a preset: `combined`, `common`,
//! `json`) compiled once at start into a list of atoms the access log walks per request. What
//! only the WSGI call sees (`%{VAR}e`, `%{Header}o`, `%a`, `%V`) is captured only when an atom
//! asks for it (`capture`).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::python::call::{Capture, Captured};
use crate::request::{Peer, Request};
use crate::trust::TrustPolicy;

/// Apache's combined format plus the duration in µs: the default.
pub const COMBINED: &str = r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i" %D"#;
/// Apache's common log format.
pub const COMMON: &str = r#"%h %l %u %t "%r" %>s %b"#;

/// One finished request, as the access log records it.
pub struct Entry<'a> {
    pub req: &'a Request,
    /// Whose identity headers are believed (`%u`).
    pub policy: &'a TrustPolicy,
    pub status: u16,
    pub bytes: u64,
    pub duration: Duration,
    /// What the call kept for the format (`None` when it asks for nothing of the kind).
    pub captured: Option<&'a Captured>,
}

/// A compiled format.
#[derive(Debug)]
pub struct Format {
    atoms: Vec<Atom>,
    /// `json`: one object per line, `(field, atom)`.
    json: Vec<(&'static str, Atom)>,
    capture: Capture,
}

#[derive(Clone, Debug, PartialEq)]
enum Atom {
    Text(String),
    PeerHost,
    Logname,
    User,
    ClfTime,
    IsoTime,
    EpochTime(Duration),
    RequestLine,
    Status,
    BytesClf,
    Bytes,
    Duration(Duration),
    Method,
    UrlPath,
    Query,
    QueryBare,
    Protocol,
    ServerPort,
    PeerPort,
    ServerName,
    Pid,
    /// Index into the captured environ values.
    Environ(usize),
    /// Lower-case request header name.
    RequestHeader(Vec<u8>),
    /// Index into the captured response headers.
    ResponseHeader(usize),
}

/// A value before it is written: text is escaped by the writer (log line or JSON).
enum Val<'a> {
    /// The operator's own text in the format: written as given.
    Literal(&'a str),
    Bytes(Cow<'a, [u8]>),
    Num(u64),
    Absent,
}

impl Format {
    /// Compiles `spec` (a preset name or atoms). `Err`: the start-up error, naming the option
    /// and the 1-based character position.
    pub fn parse(spec: &str) -> Result<Format, String> {
        let mut f = Format {
            atoms: Vec::new(),
            json: Vec::new(),
            capture: Capture::default(),
        };
        match spec {
            "combined" => f.atoms = f.compile(COMBINED)?,
            "common" => f.atoms = f.compile(COMMON)?,
            "json" => {
                let fields: [(&str, &str); 12] = [
                    ("remote_addr", "%h"),
                    ("remote_user", "%u"),
                    ("time", "%{iso}t"),
                    ("method", "%m"),
                    ("path", "%U"),
                    ("query", "%{bare}q"),
                    ("protocol", "%H"),
                    ("status", "%>s"),
                    ("bytes", "%B"),
                    ("referer", "%{Referer}i"),
                    ("user_agent", "%{User-agent}i"),
                    ("duration_us", "%D"),
                ];
                for (name, atom) in fields {
                    let mut one = f.compile(atom)?;
                    if let Some(a) = one.pop() {
                        f.json.push((name, a));
                    }
                }
            }
            _ => f.atoms = f.compile(spec)?,
        }
        Ok(f)
    }

    /// What the call must keep for this format (nothing for the presets but `%{…}` atoms).
    pub fn capture(&self) -> &Capture {
        &self.capture
    }

    fn compile(&mut self, spec: &str) -> Result<Vec<Atom>, String> {
        let err =
            |pos: usize, what: String| format!("--access-log-format: {what} at position {pos}");
        let mut atoms = Vec::new();
        let mut text = String::new();
        let mut chars = spec.char_indices().enumerate().peekable();
        while let Some((i, (_, c))) = chars.next() {
            let pos = i + 1;
            if c != '%' {
                text.push(c);
                continue;
            }
            // Apache's `%<s`/`%>s` (original/final status: the same request here).
            let mut angle = None;
            if let Some(&(_, (_, a @ ('<' | '>')))) = chars.peek() {
                angle = Some(a);
                chars.next();
            }
            let mut arg = None;
            if let Some(&(_, (_, '{'))) = chars.peek() {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some((_, (_, '}'))) => break,
                        Some((_, (_, ch))) => s.push(ch),
                        None => return Err(err(pos, "unterminated %{".into())),
                    }
                }
                arg = Some(s);
            }
            let Some((_, (_, letter))) = chars.next() else {
                return Err(err(
                    pos,
                    "a lone % at the end (write %% for a percent sign)".into(),
                ));
            };
            let shown = || {
                format!(
                    "%{}{}{letter}",
                    angle.map(String::from).unwrap_or_default(),
                    arg.as_ref().map(|a| format!("{{{a}}}")).unwrap_or_default()
                )
            };
            if angle.is_some() && letter != 's' {
                return Err(err(pos, format!("unknown atom {}", shown())));
            }
            let atom = match (letter, arg.as_deref()) {
                ('%', None) => {
                    text.push('%');
                    continue;
                }
                ('h', None | Some("c")) => Atom::PeerHost,
                ('a', None) => Atom::Environ(self.capture.environ_key("REMOTE_ADDR")),
                ('a', Some("c")) => Atom::PeerHost,
                ('l', None) => Atom::Logname,
                ('u', None) => Atom::User,
                ('t', None) => Atom::ClfTime,
                ('t', Some("iso")) => Atom::IsoTime,
                ('t', Some("sec")) => Atom::EpochTime(Duration::from_secs(1)),
                ('t', Some("msec")) => Atom::EpochTime(Duration::from_millis(1)),
                ('t', Some("usec")) => Atom::EpochTime(Duration::from_micros(1)),
                ('r', None) => Atom::RequestLine,
                ('s', None) => Atom::Status,
                ('b', None) => Atom::BytesClf,
                ('B', None) => Atom::Bytes,
                ('D', None) | ('T', Some("us")) => Atom::Duration(Duration::from_micros(1)),
                ('T', None | Some("s")) => Atom::Duration(Duration::from_secs(1)),
                ('T', Some("ms")) => Atom::Duration(Duration::from_millis(1)),
                ('m', None) => Atom::Method,
                ('U', None) => Atom::UrlPath,
                ('q', None) => Atom::Query,
                ('q', Some("bare")) => Atom::QueryBare,
                ('H', None) => Atom::Protocol,
                ('p', None | Some("canonical") | Some("local")) => Atom::ServerPort,
                ('p', Some("remote")) => Atom::PeerPort,
                ('v', None) => Atom::ServerName,
                ('V', None) => Atom::Environ(self.capture.environ_key("SERVER_NAME")),
                ('P', None) => Atom::Pid,
                ('e', Some(var)) if !var.is_empty() => Atom::Environ(self.capture.environ_key(var)),
                ('i', Some(h)) if !h.is_empty() => {
                    Atom::RequestHeader(h.to_ascii_lowercase().into_bytes())
                }
                ('o', Some(h)) if !h.is_empty() => {
                    Atom::ResponseHeader(self.capture.response_header(h))
                }
                _ => return Err(err(pos, format!("unknown atom {}", shown()))),
            };
            atoms.extend(flush(&mut text));
            atoms.push(atom);
        }
        atoms.extend(flush(&mut text));
        Ok(atoms)
    }

    /// The line for one request, ending in `\n`.
    pub fn line(&self, e: &Entry<'_>, now: SystemTime) -> String {
        let mut out = String::with_capacity(256);
        if self.json.is_empty() {
            for atom in &self.atoms {
                match value(atom, e, now) {
                    Val::Literal(t) => out.push_str(t),
                    Val::Bytes(b) => escape_into(&mut out, &b),
                    Val::Num(n) => {
                        let _ = write!(out, "{n}");
                    }
                    Val::Absent => out.push('-'),
                }
            }
        } else {
            out.push('{');
            for (i, (name, atom)) in self.json.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(name);
                out.push_str("\":");
                match value(atom, e, now) {
                    Val::Literal(t) => json_string(&mut out, t.as_bytes()),
                    Val::Bytes(b) => json_string(&mut out, &b),
                    Val::Num(n) => {
                        let _ = write!(out, "{n}");
                    }
                    Val::Absent => out.push_str("null"),
                }
            }
            out.push('}');
        }
        out.push('\n');
        out
    }
}

fn flush(text: &mut String) -> Option<Atom> {
    (!text.is_empty()).then(|| Atom::Text(std::mem::take(text)))
}

fn value<'a>(atom: &'a Atom, e: &Entry<'a>, now: SystemTime) -> Val<'a> {
    let req = e.req;
    let owned = |s: String| Val::Bytes(Cow::Owned(s.into_bytes()));
    let captured = |list: Option<&'a Vec<Option<Vec<u8>>>>, i: usize| match list
        .and_then(|l| l.get(i))
        .and_then(|v| v.as_deref())
    {
        Some(v) => Val::Bytes(Cow::Borrowed(v)),
        None => Val::Absent,
    };
    match atom {
        Atom::Text(t) => Val::Literal(t),
        Atom::PeerHost => match &req.peer {
            Peer::Tcp(p) => Val::Bytes(Cow::Borrowed(p.ip.as_bytes())),
            Peer::Unix => Val::Bytes(Cow::Borrowed(b"unix")),
            Peer::Named { addr, .. } => Val::Bytes(Cow::Borrowed(addr.as_bytes())),
        },
        Atom::Logname => Val::Absent,
        Atom::User => match req
            .remote_user
            .as_deref()
            .or_else(|| e.policy.proxy_identity(&req.peer, &req.headers))
        {
            Some(u) if !u.is_empty() => Val::Bytes(Cow::Borrowed(u)),
            _ => Val::Absent,
        },
        Atom::ClfTime => owned(format!("[{}]", clf_time(now))),
        Atom::IsoTime => owned(iso_time(now)),
        Atom::EpochTime(unit) => {
            let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
            Val::Num(per_unit(since, *unit))
        }
        Atom::RequestLine => {
            let mut line = Vec::with_capacity(req.method.len() + req.target.len() + 10);
            line.extend_from_slice(&req.method);
            line.push(b' ');
            line.extend_from_slice(&req.target);
            line.push(b' ');
            line.extend_from_slice(req.version.as_str().as_bytes());
            Val::Bytes(Cow::Owned(line))
        }
        Atom::Status => Val::Num(u64::from(e.status)),
        Atom::BytesClf if e.bytes == 0 => Val::Absent,
        Atom::BytesClf | Atom::Bytes => Val::Num(e.bytes),
        Atom::Duration(unit) => Val::Num(per_unit(e.duration, *unit)),
        Atom::Method => Val::Bytes(Cow::Borrowed(&req.method)),
        Atom::UrlPath => {
            if req.script_name.is_empty() {
                Val::Bytes(Cow::Borrowed(&req.path))
            } else {
                Val::Bytes(Cow::Owned([&req.script_name[..], &req.path[..]].concat()))
            }
        }
        Atom::Query if req.query.is_empty() => Val::Bytes(Cow::Borrowed(b"")),
        Atom::Query => Val::Bytes(Cow::Owned([&b"?"[..], &req.query[..]].concat())),
        Atom::QueryBare => Val::Bytes(Cow::Borrowed(&req.query)),
        Atom::Protocol => Val::Bytes(Cow::Borrowed(req.version.as_str().as_bytes())),
        Atom::ServerPort => Val::Bytes(Cow::Borrowed(req.server_port.as_bytes())),
        Atom::PeerPort => match &req.peer {
            Peer::Tcp(p) => Val::Bytes(Cow::Borrowed(p.port.as_bytes())),
            Peer::Named { port: Some(p), .. } => Val::Bytes(Cow::Borrowed(p.as_bytes())),
            _ => Val::Absent,
        },
        Atom::ServerName => Val::Bytes(Cow::Borrowed(req.server_name.as_bytes())),
        Atom::Pid => Val::Num(u64::from(std::process::id())),
        Atom::Environ(i) => captured(e.captured.map(|c| &c.environ), *i),
        Atom::RequestHeader(name) => match req
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => Val::Bytes(Cow::Borrowed(v)),
            None => Val::Absent,
        },
        Atom::ResponseHeader(i) => captured(e.captured.map(|c| &c.response_headers), *i),
    }
}

/// `d` in whole `unit`s (µs, ms, s), rounded down.
fn per_unit(d: Duration, unit: Duration) -> u64 {
    let n = d.as_nanos() / unit.as_nanos().max(1);
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Quotes and control bytes escaped so a client cannot forge log lines.
fn escape_into(s: &mut String, b: &[u8]) {
    escape_bytes(s, b, false);
}

/// Quotes and backslashes escaped, and every byte outside printable ASCII as `\xXX`
/// (text lines) or `\u00XX` (JSON): the line stays ASCII.
fn escape_bytes(s: &mut String, b: &[u8], json: bool) {
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ if json => {
                let _ = write!(s, "\\u{c:04x}");
            }
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
}

/// Quotes and control bytes escaped so a client cannot forge log lines.
#[cfg(test)]
fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    escape_into(&mut s, b);
    s
}

/// A JSON string of bytes read as latin-1 (as WSGI reads them): every byte outside printable
/// ASCII as `\u00XX`, so the line is ASCII and a client cannot break the object.
fn json_string(s: &mut String, b: &[u8]) {
    s.push('"');
    escape_bytes(s, b, true);
    s.push('"');
}

/// `10/Oct/2000:13:55:36 +0000`.
fn clf_time(t: SystemTime) -> String {
    let (d, _) = date_parts(t);
    // From "Sun, 06 Nov 1994 08:49:37 GMT": day, month, year, time.
    let s = String::from_utf8_lossy(&d);
    format!(
        "{}/{}/{}:{} +0000",
        s.get(5..7).unwrap_or_default(),
        s.get(8..11).unwrap_or_default(),
        s.get(12..16).unwrap_or_default(),
        s.get(17..25).unwrap_or_default()
    )
}

/// `2000-10-10T13:55:36.123Z` (ISO 8601, UTC, milliseconds).
fn iso_time(t: SystemTime) -> String {
    let (d, millis) = date_parts(t);
    let s = String::from_utf8_lossy(&d);
    let month = s.get(8..11).unwrap_or_default();
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|&n| n == month).map_or(0, |i| i + 1);
    format!(
        "{}-{m:02}-{}T{}.{millis:03}Z",
        s.get(12..16).unwrap_or_default(),
        s.get(5..7).unwrap_or_default(),
        s.get(17..25).unwrap_or_default()
    )
}

fn date_parts(t: SystemTime) -> ([u8; 29], u32) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (
        super::date::format_date(since.as_secs()),
        since.subsec_millis(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_quotes_and_controls() {
        assert_eq!(escape(b"a\"b\n"), "a\\\"b\\x0a");
        let mut s = String::new();
        json_string(&mut s, b"a\"b\\\n\xe9");
        assert_eq!(s, r#""a\"b\\\u000a\u00e9""#);
    }

    #[test]
    fn times() {
        let t = UNIX_EPOCH + Duration::from_millis(784_111_777_042);
        assert_eq!(clf_time(t), "06/Nov/1994:08:49:37 +0000");
        assert_eq!(iso_time(t), "1994-11-06T08:49:37.042Z");
    }

    #[test]
    fn errors_name_the_option_and_position() {
        let e = Format::parse("%h %Z").unwrap_err();
        assert_eq!(e, "--access-log-format: unknown atom %Z at position 4");
        let e = Format::parse("ab %{Referer").unwrap_err();
        assert_eq!(e, "--access-log-format: unterminated %{ at position 4");
        let e = Format::parse("x %").unwrap_err();
        assert!(e.contains("lone %") && e.contains("position 3"), "{e}");
        let e = Format::parse("%>b").unwrap_err();
        assert!(e.contains("unknown atom %>b at position 1"), "{e}");
        assert!(Format::parse("%{}i").is_err());
        assert!(Format::parse("%{foo}t").is_err());
    }

    #[test]
    fn presets_capture_nothing() {
        for p in ["combined", "common", "json"] {
            let f = Format::parse(p).unwrap();
            assert!(f.capture().is_empty(), "{p}");
        }
        let f = Format::parse("%a %{HTTP_X_A}e %{X-Out}o %{x-out}o %V").unwrap();
        assert_eq!(
            f.capture().environ_keys(),
            ["REMOTE_ADDR", "HTTP_X_A", "SERVER_NAME"]
        );
        assert_eq!(f.capture().response_headers(), [b"x-out".to_vec()]);
    }

    fn request(headers: &[(&'static str, &'static [u8])]) -> Request {
        use bytes::Bytes;
        Request {
            method: Bytes::from_static(b"GET"),
            target: Bytes::from_static(b"/a%20b?x=1"),
            path: Bytes::from_static(b"/a b"),
            query: Bytes::from_static(b"x=1"),
            version: crate::request::Version::Http11,
            headers: headers
                .iter()
                .map(|(n, v)| (Bytes::from_static(n.as_bytes()), Bytes::from_static(v)))
                .collect(),
            peer: Peer::Tcp(crate::request::TcpPeer::new(
                "192.0.2.1:4321".parse().unwrap(),
            )),
            server_name: "srv".into(),
            server_port: "8000".into(),
            scheme: crate::request::Scheme::Http,
            remote_user: None,
            auth_type: None,
            script_name: Bytes::new(),
            extra: Vec::new(),
        }
    }

    fn line(spec: &str, req: &Request, policy: &TrustPolicy, bytes: u64) -> String {
        let e = Entry {
            req,
            policy,
            status: 200,
            bytes,
            duration: Duration::from_micros(1_234_567),
            captured: None,
        };
        let now = UNIX_EPOCH + Duration::from_millis(784_111_777_042);
        Format::parse(spec).unwrap().line(&e, now)
    }

    #[test]
    fn the_default_line_is_combined_plus_microseconds() {
        let policy = TrustPolicy::default();
        let req = request(&[
            ("User-Agent", b"ua \"q\" \t\xe9"),
            ("x-remote-user", b"mallory"),
        ]);
        let want = "192.0.2.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a%20b?x=1 HTTP/1.1\" 200 \
                    12 \"-\" \"ua \\\"q\\\" \\x09\\xe9\" 1234567\n";
        assert_eq!(line("combined", &req, &policy, 12), want);
        assert_eq!(line(COMBINED, &req, &policy, 12), want);
        assert!(line("combined", &req, &policy, 0).contains("\" 200 - \""));
        assert_eq!(
            line("common", &req, &policy, 0),
            "192.0.2.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a%20b?x=1 HTTP/1.1\" 200 -\n"
        );
    }

    #[test]
    fn user_only_from_a_trusted_peer() {
        let req = request(&[("X-Remote-User", b"alice")]);
        let untrusted = TrustPolicy::default();
        assert_eq!(line("%u", &req, &untrusted, 0), "-\n");
        let trusted = TrustPolicy {
            trusted: vec![crate::trust::IpRange::parse("192.0.2.0/24").unwrap()],
            ..TrustPolicy::default()
        };
        assert_eq!(line("%u", &req, &trusted, 0), "alice\n");
    }

    #[test]
    fn json_line() {
        let policy = TrustPolicy::default();
        let req = request(&[("Referer", b"r\"\n")]);
        assert_eq!(
            line("json", &req, &policy, 0),
            concat!(
                r#"{"remote_addr":"192.0.2.1","remote_user":null,"time":"1994-11-06T08:49:37.042Z","#,
                r#""method":"GET","path":"/a b","query":"x=1","protocol":"HTTP/1.1","status":200,"#,
                r#""bytes":0,"referer":"r\"\u000a","user_agent":null,"duration_us":1234567}"#,
                "\n"
            )
        );
    }

    #[test]
    fn literal_percent_and_text() {
        let f = Format::parse("a%%b %m").unwrap();
        assert_eq!(f.atoms, [Atom::Text("a%b ".into()), Atom::Method]);
    }
}
