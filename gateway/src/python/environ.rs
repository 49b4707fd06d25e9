//! Building the WSGI environ: interned keys, a template dict copied per request, and the
//! mapping of a `Request` into PEP 3333 terms (latin-1 `str` values, decoded PATH_INFO).

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::latin1;
use crate::request::{Peer, Request, Scheme, Version};
use crate::trust::{set_by_last_trusted, HeaderFate, TrustPolicy};

/// Constant facts about the front end that go into every environ.
#[derive(Clone, Copy, Debug)]
pub struct FrontEndKind {
    pub multithread: bool,
    pub multiprocess: bool,
    pub run_once: bool,
}

macro_rules! keys {
    ($($field:ident = $text:literal),* $(,)?) => {
        /// Interned environ keys: created once, so building an environ allocates no key strings.
        struct Keys { $($field: Py<PyString>,)* }
        impl Keys {
            fn new(py: Python<'_>) -> Keys {
                Keys { $($field: PyString::intern(py, $text).unbind(),)* }
            }
        }
    };
}

keys! {
    request_method = "REQUEST_METHOD",
    script_name = "SCRIPT_NAME",
    path_info = "PATH_INFO",
    query_string = "QUERY_STRING",
    content_type = "CONTENT_TYPE",
    content_length = "CONTENT_LENGTH",
    server_name = "SERVER_NAME",
    server_port = "SERVER_PORT",
    server_protocol = "SERVER_PROTOCOL",
    remote_addr = "REMOTE_ADDR",
    remote_port = "REMOTE_PORT",
    remote_user = "REMOTE_USER",
    auth_type = "AUTH_TYPE",
    request_uri = "REQUEST_URI",
    raw_uri = "RAW_URI",
    https = "HTTPS",
    http_host = "HTTP_HOST",
    url_scheme = "wsgi.url_scheme",
    input = "wsgi.input",
}

/// Header names common enough to deserve an interned `HTTP_*` key.
const COMMON_HEADERS: [&str; 40] = [
    "host",
    "user-agent",
    "accept",
    "accept-language",
    "accept-encoding",
    "accept-charset",
    "connection",
    "cookie",
    "referer",
    "origin",
    "cache-control",
    "pragma",
    "upgrade-insecure-requests",
    "if-modified-since",
    "if-none-match",
    "if-match",
    "if-unmodified-since",
    "if-range",
    "range",
    "authorization",
    "x-requested-with",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "dnt",
    "te",
    "expect",
    "sec-fetch-site",
    "sec-fetch-mode",
    "sec-fetch-dest",
    "sec-fetch-user",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "keep-alive",
    "x-hgarg-1",
    "x-hgproto-1",
    "git-protocol",
    "x-csrftoken",
];

const METHODS: [&str; 9] = [
    "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND", "REPORT",
];

/// Everything needed to turn a `Request` into an environ dict, built once per front end.
/// The last Host value seen and what it gave. A server hears the same few Host values, so
/// HTTP_HOST, SERVER_NAME and SERVER_PORT are usually made once, not per request.
struct HostStrings {
    raw: Vec<u8>,
    value: Py<PyString>,
    /// SERVER_NAME and SERVER_PORT from `value` under a scheme (its default port).
    parts: Option<(Scheme, Py<PyString>, Py<PyString>)>,
}

pub struct EnvironBuilder {
    template: Py<PyDict>,
    host: Mutex<Option<HostStrings>>,
    /// The last client address seen (REMOTE_ADDR): clients come from few addresses.
    remote_addr: LastText,
    /// The last SERVER_PORT made: requests come through few listeners.
    server_port: LastText,
    keys: Keys,
    /// `HTTP_*` keys of `COMMON_HEADERS`, by the length of the header name: finding one
    /// compares a few names of that length, with no key built and no hashing.
    http_keys: Vec<Vec<(&'static [u8], Py<PyString>)>>,
    methods: Vec<(&'static [u8], Py<PyString>)>,
    /// The values that differ from the template's `HTTP/1.1` and `http`.
    http10: Py<PyString>,
    https: Py<PyString>,
    policy: TrustPolicy,
}

impl EnvironBuilder {
    pub fn new(
        py: Python<'_>,
        kind: FrontEndKind,
        policy: TrustPolicy,
        errors: Bound<'_, PyAny>,
        file_wrapper: Bound<'_, PyAny>,
    ) -> PyResult<EnvironBuilder> {
        let template = PyDict::new(py);
        template.set_item(PyString::intern(py, "GATEWAY_INTERFACE"), "CGI/1.1")?;
        template.set_item(
            PyString::intern(py, "SERVER_SOFTWARE"),
            concat!("wsgi-gateway/", env!("CARGO_PKG_VERSION")),
        )?;
        template.set_item(PyString::intern(py, "SCRIPT_NAME"), "")?;
        template.set_item(PyString::intern(py, "wsgi.version"), (1, 0))?;
        template.set_item(PyString::intern(py, "wsgi.errors"), errors)?;
        template.set_item(PyString::intern(py, "wsgi.multithread"), kind.multithread)?;
        template.set_item(PyString::intern(py, "wsgi.multiprocess"), kind.multiprocess)?;
        template.set_item(PyString::intern(py, "wsgi.run_once"), kind.run_once)?;
        template.set_item(PyString::intern(py, "wsgi.input_terminated"), true)?;
        template.set_item(PyString::intern(py, "wsgi.file_wrapper"), file_wrapper)?;
        let keys = Keys::new(py);
        // Keys every request sets get a place in the template now: the per-request copy is a
        // block copy of a table already big enough, and `build` replaces values instead of
        // inserting (no rehashing while the dict grows).
        for key in [
            &keys.request_method,
            &keys.path_info,
            &keys.query_string,
            &keys.request_uri,
            &keys.raw_uri,
            &keys.server_protocol,
            &keys.remote_addr,
            // Not every peer has a port (Unix sockets): `build` removes it then. With it the
            // template outgrows its first table size, so the copy has room for the headers.
            &keys.remote_port,
            &keys.server_name,
            &keys.server_port,
            &keys.url_scheme,
            &keys.input,
        ] {
            template.set_item(key.bind(py), "")?;
        }
        let mut http_keys: Vec<Vec<_>> = Vec::new();
        for name in COMMON_HEADERS {
            let key = http_key_bytes(name.as_bytes());
            let text = String::from_utf8_lossy(&key).into_owned();
            if http_keys.len() <= name.len() {
                http_keys.resize_with(name.len() + 1, Vec::new);
            }
            if let Some(same_length) = http_keys.get_mut(name.len()) {
                same_length.push((name.as_bytes(), PyString::intern(py, &text).unbind()));
            }
        }
        let methods = METHODS
            .iter()
            .map(|m| (m.as_bytes(), PyString::intern(py, m).unbind()))
            .collect();
        // The usual values are the template's: `build` sets only what differs from them.
        template.set_item(&keys.request_method, PyString::intern(py, "GET"))?;
        template.set_item(&keys.server_protocol, PyString::intern(py, "HTTP/1.1"))?;
        template.set_item(&keys.url_scheme, PyString::intern(py, "http"))?;
        Ok(EnvironBuilder {
            template: template.unbind(),
            host: Mutex::new(None),
            remote_addr: LastText::default(),
            server_port: LastText::default(),
            keys,
            http_keys,
            methods,
            http10: PyString::intern(py, "HTTP/1.0").unbind(),
            https: PyString::intern(py, "https").unbind(),
            policy,
        })
    }

    pub fn policy(&self) -> &TrustPolicy {
        &self.policy
    }

    /// The environ for one request. `input` becomes `wsgi.input`.
    pub fn build<'py>(
        &self,
        py: Python<'py>,
        req: &Request,
        input: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let k = &self.keys;
        // A copy of the template: GET, HTTP/1.1, http, an empty query and SCRIPT_NAME.
        let env = self.template.bind(py).copy()?;
        if req.method.as_ref() != b"GET" {
            match self.methods.iter().find(|(m, _)| *m == req.method.as_ref()) {
                Some((_, s)) => env.set_item(&k.request_method, s)?,
                None => env.set_item(&k.request_method, latin1(py, &req.method)?)?,
            }
        }
        if !req.script_name.is_empty() {
            env.set_item(&k.script_name, latin1(py, &req.script_name)?)?;
        }
        env.set_item(&k.path_info, latin1(py, &req.path)?)?;
        if !req.query.is_empty() {
            env.set_item(&k.query_string, latin1(py, &req.query)?)?;
        }
        let target = latin1(py, &req.target)?;
        env.set_item(&k.request_uri, &target)?;
        env.set_item(&k.raw_uri, target)?;
        if req.version == Version::Http10 {
            env.set_item(&k.server_protocol, &self.http10)?;
        }
        match &req.peer {
            Peer::Tcp(p) => {
                env.set_item(&k.remote_addr, self.remote_addr.text(py, &p.ip)?)?;
                env.set_item(&k.remote_port, latin1(py, p.port.as_bytes())?)?;
            }
            Peer::Unix => {
                env.set_item(&k.remote_addr, "")?;
                env.del_item(&k.remote_port)?;
            }
            Peer::Named { addr, port } => {
                env.set_item(&k.remote_addr, addr)?;
                match port {
                    Some(port) => env.set_item(&k.remote_port, port)?,
                    None => env.del_item(&k.remote_port)?,
                }
            }
        }
        let trusted = self.policy.peer_trusted(&req.peer);
        let mut scheme = req.scheme;
        let mut host: Option<Bound<'py, PyString>> = None;
        for (name, value) in &req.headers {
            let key = match self.policy.fate(name, trusted) {
                HeaderFate::Drop => continue,
                HeaderFate::ContentType => k.content_type.bind(py).clone(),
                HeaderFate::ContentLength => k.content_length.bind(py).clone(),
                HeaderFate::Http => match self.common_key(name) {
                    Some(interned) => interned.bind(py).clone(),
                    None => latin1(py, &http_key_bytes(name))?,
                },
            };
            let value = if key.is(k.http_host.bind(py)) {
                self.host_value(py, value)?
            } else {
                latin1(py, value)?
            };
            if key.is(k.content_type.bind(py)) || key.is(k.content_length.bind(py)) {
                // Never joined: the HTTP parser refuses a second one, and CGI and ISAPI hosts
                // pass one.
                env.set_item(&key, value)?;
                continue;
            }
            let is_host = key.is(k.http_host.bind(py));
            if let Some(prev) = insert_new(&env, &key, &value)? {
                // A repeated header: one value, joined as RFC 9110 §5.3 allows.
                let sep = if name.eq_ignore_ascii_case(b"cookie") {
                    "; "
                } else {
                    ", "
                };
                let prev: String = prev.extract()?;
                let joined = format!("{prev}{sep}{}", value.to_cow()?);
                env.set_item(&key, joined)?;
            } else if is_host {
                host = Some(value);
            }
        }
        let proxied = if trusted {
            self.apply_proxy_headers(py, &env, &mut scheme, &mut host)?
        } else {
            Proxied::No
        };
        // SERVER_NAME follows the host the request names. SERVER_PORT is the port the request
        // was received on (RFC 3875 §4.1.15), not the one in Host: the listener's (a CGI
        // host's, IIS's). Behind a trusted proxy the request was received by the proxy: its
        // X-Forwarded-Port, else the port its host names (or the scheme's). A Unix socket has
        // no port of its own either.
        let port_from_host = matches!(proxied, Proxied::Yes) || req.peer == Peer::Unix;
        match &host {
            Some(h) => {
                let (name, port) = self.server_name_port(py, h, scheme)?;
                env.set_item(&k.server_name, name)?;
                if port_from_host {
                    env.set_item(&k.server_port, port)?;
                } else {
                    env.set_item(&k.server_port, self.server_port.text(py, &req.server_port)?)?;
                }
            }
            None => {
                env.set_item(&k.server_name, &*req.server_name)?;
                env.set_item(&k.server_port, self.server_port.text(py, &req.server_port)?)?;
            }
        }
        if let Proxied::Port(port) = &proxied {
            env.set_item(&k.server_port, port)?;
        }
        if scheme == Scheme::Https {
            env.set_item(&k.url_scheme, &self.https)?;
            env.set_item(&k.https, "on")?;
        }
        if let Some(user) = &req.remote_user {
            env.set_item(&k.remote_user, latin1(py, user)?)?;
        }
        if let Some(auth) = &req.auth_type {
            env.set_item(&k.auth_type, latin1(py, auth)?)?;
        }
        for (key, value) in &req.extra {
            env.set_item(latin1(py, key)?, latin1(py, value)?)?;
        }
        env.set_item(&k.input, input)?;
        Ok(env)
    }

    /// The interned `HTTP_*` key of a common header name (any case; `_` matches `-`).
    fn common_key(&self, name: &[u8]) -> Option<&Py<PyString>> {
        let same = |known: &[u8]| {
            name.iter()
                .zip(known)
                .all(|(&b, &k)| b.to_ascii_lowercase() == k || (b == b'_' && k == b'-'))
        };
        self.http_keys
            .get(name.len())?
            .iter()
            .find(|(known, _)| same(known))
            .map(|(_, key)| key)
    }

    /// HTTP_HOST's text, reused while clients keep sending the same Host.
    fn host_value<'py>(&self, py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyString>> {
        let mut last = self.host.lock();
        if let Some(h) = last.as_ref().filter(|h| h.raw == raw) {
            return Ok(h.value.bind(py).clone());
        }
        let value = latin1(py, raw)?;
        *last = Some(HostStrings {
            raw: raw.to_vec(),
            value: value.clone().unbind(),
            parts: None,
        });
        Ok(value)
    }

    /// SERVER_NAME and SERVER_PORT from the host the request names (Host, or a trusted
    /// proxy's): made once per Host value and scheme.
    fn server_name_port<'py>(
        &self,
        py: Python<'py>,
        host: &Bound<'py, PyString>,
        scheme: Scheme,
    ) -> PyResult<(Bound<'py, PyString>, Bound<'py, PyString>)> {
        let split = || -> PyResult<_> {
            let (name, port) = split_host(&host.to_cow()?, scheme);
            Ok((PyString::new(py, &name), PyString::new(py, &port)))
        };
        let mut last = self.host.lock();
        let Some(h) = last.as_mut().filter(|h| h.value.bind(py).is(host)) else {
            return split();
        };
        if let Some((s, name, port)) = &h.parts {
            if *s == scheme {
                return Ok((name.bind(py).clone(), port.bind(py).clone()));
            }
        }
        let (name, port) = split()?;
        h.parts = Some((scheme, name.clone().unbind(), port.clone().unbind()));
        Ok((name, port))
    }

    /// From a trusted proxy: client address, scheme, host and port as the proxy saw them.
    /// Every list-valued header gives the entry the last trusted proxy wrote, never one the
    /// client wrote (see `trust::set_by_last_trusted`).
    fn apply_proxy_headers<'py>(
        &self,
        py: Python<'py>,
        env: &Bound<'py, PyDict>,
        scheme: &mut Scheme,
        host: &mut Option<Bound<'py, PyString>>,
    ) -> PyResult<Proxied> {
        let k = &self.keys;
        let get = |key: &str| -> PyResult<Option<String>> {
            env.get_item(key)?
                .map(|v| v.extract::<String>())
                .transpose()
        };
        let xff = get("HTTP_X_FORWARDED_FOR")?;
        let x_proto = get("HTTP_X_FORWARDED_PROTO")?;
        let x_host = get("HTTP_X_FORWARDED_HOST")?;
        let x_port = get("HTTP_X_FORWARDED_PORT")?;
        let forwarded = get("HTTP_FORWARDED")?;
        if xff.is_none()
            && x_proto.is_none()
            && x_host.is_none()
            && x_port.is_none()
            && forwarded.is_none()
        {
            // A trusted peer that forwards nothing is a client like any other.
            return Ok(Proxied::No);
        }
        // RFC 7239 first; the X-Forwarded-* headers, where present and valid, take precedence.
        let (mut client, mut proto, mut fhost) = match forwarded {
            Some(fwd) => {
                let e = self.policy.forwarded_element(&fwd);
                (
                    e.for_,
                    e.proto.as_deref().and_then(Scheme::from_proto),
                    e.host,
                )
            }
            None => (None, None, None),
        };
        // Where X-Forwarded-For's walk through trusted proxies stopped: the same position in
        // the other lists holds what the outermost trusted proxy wrote.
        let mut at = 0;
        if let Some((hop, c)) = xff.as_deref().and_then(|x| self.policy.forwarded_client(x)) {
            at = hop;
            client = Some(c.to_string());
        }
        if let Some(p) = entry(&x_proto, at).and_then(Scheme::from_proto) {
            proto = Some(p);
        }
        if let Some(h) = entry(&x_host, at) {
            fhost = Some(h.to_string());
        }
        let port = entry(&x_port, at)
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|&p| p > 0)
            .map(|p| PyString::new(py, &p.to_string()));
        if let Some(addr) = client {
            env.set_item(&k.remote_addr, addr)?;
            env.del_item(&k.remote_port).ok();
        }
        if let Some(p) = proto {
            *scheme = p;
        }
        if let Some(h) = fhost {
            let s = PyString::new(py, &h);
            env.set_item(&k.http_host, &s)?;
            *host = Some(s);
        }
        Ok(match port {
            Some(p) => Proxied::Port(p.unbind()),
            None => Proxied::Yes,
        })
    }
}

/// The entry of a forwarding header's list the last trusted proxy wrote (`at`: see
/// `TrustPolicy::forwarded_client`).
fn entry(list: &Option<String>, at: usize) -> Option<&str> {
    list.as_deref().and_then(|l| set_by_last_trusted(l, at))
}

/// The Python text of the last value seen, reused while the same value keeps coming (a
/// client's address, a listener's port): one string made per change, not per request.
#[derive(Default)]
struct LastText(Mutex<Option<(std::sync::Arc<str>, Py<PyString>)>>);

impl LastText {
    fn text<'py>(
        &self,
        py: Python<'py>,
        value: &std::sync::Arc<str>,
    ) -> PyResult<Bound<'py, PyString>> {
        let mut last = self.0.lock();
        if let Some((seen, s)) = last.as_ref() {
            if **seen == **value {
                return Ok(s.bind(py).clone());
            }
        }
        let s = latin1(py, value.as_bytes())?;
        *last = Some((value.clone(), s.clone().unbind()));
        Ok(s)
    }
}

/// Whether a trusted proxy forwarded the request, and the port it says it received it on.
enum Proxied {
    No,
    Yes,
    Port(Py<PyString>),
}

/// Puts `value` under `key` unless the key is there already; then returns what is there.
/// One dict lookup for the usual case of a header sent once.
fn insert_new<'py>(
    env: &Bound<'py, PyDict>,
    key: &Bound<'py, PyString>,
    value: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let before = env.len();
    // SAFETY: all three are live objects of this thread (GIL held); PyDict_SetDefault
    // returns a borrowed reference to the value now in the dict, or NULL with an exception set.
    let now = unsafe { pyo3::ffi::PyDict_SetDefault(env.as_ptr(), key.as_ptr(), value.as_ptr()) };
    if now.is_null() {
        return Err(PyErr::fetch(env.py()));
    }
    if env.len() > before {
        return Ok(None);
    }
    // SAFETY: `now` is a valid borrowed reference (checked non-null above), owned by `env`.
    Ok(Some(unsafe { Bound::from_borrowed_ptr(env.py(), now) }))
}

/// `HTTP_` + upper-cased name with `-` → `_`.
fn http_key_bytes(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 5);
    out.extend_from_slice(b"HTTP_");
    out.extend(name.iter().map(|&b| {
        if b == b'-' {
            b'_'
        } else {
            b.to_ascii_uppercase()
        }
    }));
    out
}

/// SERVER_NAME and SERVER_PORT from a Host value (`example.com:8080`, `[::1]:80`).
fn split_host(host: &str, scheme: Scheme) -> (String, String) {
    let default_port = match scheme {
        Scheme::Http => "80",
        Scheme::Https => "443",
    };
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((addr, after)) = rest.split_once(']') {
            let port = after
                .strip_prefix(':')
                .filter(|p| !p.is_empty())
                .unwrap_or(default_port);
            return (format!("[{addr}]"), port.to_string());
        }
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() => (name.to_string(), port.to_string()),
        Some((name, _)) => (name.to_string(), default_port.to_string()),
        None => (host.to_string(), default_port.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_keys() {
        assert_eq!(http_key_bytes(b"X-Forwarded-For"), b"HTTP_X_FORWARDED_FOR");
        assert_eq!(http_key_bytes(b"accept"), b"HTTP_ACCEPT");
    }

    #[test]
    fn hosts() {
        assert_eq!(
            split_host("example.com:8080", Scheme::Http),
            ("example.com".into(), "8080".into())
        );
        assert_eq!(
            split_host("example.com", Scheme::Https),
            ("example.com".into(), "443".into())
        );
        assert_eq!(
            split_host("[::1]:81", Scheme::Http),
            ("[::1]".into(), "81".into())
        );
        assert_eq!(
            split_host("[::1]", Scheme::Http),
            ("[::1]".into(), "80".into())
        );
    }
}
