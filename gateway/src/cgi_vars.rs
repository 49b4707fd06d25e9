//! CGI-style variables (a CGI host's meta-variables, RFC 3875 §4.1; IIS's server variables)
//! turned into the one `Request`. Each front end collects and checks its variables its own
//! way (`cgi::meta`, `isapi::request`); the steps they share are here, once.

use bytes::Bytes;

use crate::reject::Reject;
use crate::request::{decode_path, split_mount, MountCase, Peer, Request, Scheme, Version};

/// A non-empty run of token characters (RFC 9110 §5.6.2): a method or a header name.
pub fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| crate::responder::is_tchar(b))
}

/// The protocol the host says the client spoke (`SERVER_PROTOCOL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http10,
    /// HTTP/1.1, or nothing said.
    Http11,
    /// HTTP/2 behind the host, or something else: the app sees HTTP/1.1 semantics and the
    /// host's own name for it.
    Other,
}

impl Protocol {
    fn of(protocol: Option<&[u8]>) -> Protocol {
        match protocol {
            Some(b"HTTP/1.0") => Protocol::Http10,
            Some(b"HTTP/1.1") | None => Protocol::Http11,
            Some(_) => Protocol::Other,
        }
    }
}

/// Where the request's path comes from: the front ends' one genuine difference in it.
pub enum Location {
    /// The host split the path already (CGI: SCRIPT_NAME, and PATH_INFO decoded).
    /// `target`: the raw request-target when the host gave it (REQUEST_URI); otherwise it is
    /// put together from the parts.
    #[cfg_attr(
        not(unix),
        expect(dead_code, reason = "the CGI front end is built for unix only")
    )]
    Split {
        script_name: Bytes,
        path_info: Bytes,
        target: Option<Bytes>,
    },
    /// The raw URL with its query (IIS: UNENCODED_URL), split here at `mount` (decoded, no
    /// trailing `/`) under `case`.
    Url {
        url: Bytes,
        mount: Bytes,
        case: MountCase,
    },
}

/// The variables both front ends read. Empty values count as not given.
#[derive(Debug, Default)]
pub struct CgiVars {
    /// Checked by the front end, which words its refusal after its own source.
    pub method: Bytes,
    pub query: Bytes,
    /// SERVER_PROTOCOL.
    pub protocol: Option<Bytes>,
    /// The host says the connection is TLS (each host has its own variables for it).
    pub https: bool,
    pub server_name: Option<Bytes>,
    /// Where the server name falls back to before `localhost` (CGI: SERVER_ADDR).
    pub server_addr: Option<Bytes>,
    pub server_port: Option<Bytes>,
    pub remote_addr: Option<Bytes>,
    pub remote_port: Option<Bytes>,
    pub remote_user: Option<Bytes>,
    pub auth_type: Option<Bytes>,
    /// The client's header fields, names as sent, without Content-Type and Content-Length.
    pub headers: Vec<(Bytes, Bytes)>,
    /// The body's type and length as the host gives them (it is authoritative for both).
    pub content_type: Option<Bytes>,
    pub content_length: Option<Bytes>,
    /// Host variables for the environ as they are (`Request::extra`).
    pub extra: Vec<(Bytes, Bytes)>,
}

fn given(value: Option<Bytes>) -> Option<Bytes> {
    value.filter(|v| !v.is_empty())
}

fn text(value: Option<Bytes>) -> Option<String> {
    given(value).map(|v| String::from_utf8_lossy(&v).into_owned())
}

impl CgiVars {
    /// The request, and the protocol the host named (a front end may frame by it).
    /// Refused only for a `Location::Url` that is no path or lies outside the mount.
    pub fn into_request(mut self, location: Location) -> Result<(Request, Protocol), Reject> {
        let (target, script_name, path) = match location {
            Location::Split {
                script_name,
                path_info,
                target,
            } => {
                let target = given(target).unwrap_or_else(|| {
                    let mut t = script_name.to_vec();
                    t.extend_from_slice(&path_info);
                    if !self.query.is_empty() {
                        t.push(b'?');
                        t.extend_from_slice(&self.query);
                    }
                    Bytes::from(t)
                });
                (target, script_name, path_info)
            }
            Location::Url { url, mount, case } => {
                let (authority, script_name, path) = split_url(&url, &mount, case)?;
                // The authority of an absolute-form target overrides Host, as on the HTTP
                // listener.
                if let Some(authority) = authority {
                    self.headers
                        .retain(|(n, _)| !n.eq_ignore_ascii_case(b"host"));
                    self.headers.push((Bytes::from_static(b"Host"), authority));
                }
                (url, script_name, path)
            }
        };
        self.protocol = given(self.protocol);
        let protocol = Protocol::of(self.protocol.as_deref());
        let version = match protocol {
            Protocol::Http10 => Version::Http10,
            Protocol::Http11 => Version::Http11,
            Protocol::Other => {
                if let Some(p) = self.protocol {
                    self.extra.push((Bytes::from_static(b"SERVER_PROTOCOL"), p));
                }
                Version::Http11
            }
        };
        let mut headers = self.headers;
        if let Some(ct) = given(self.content_type) {
            headers.push((Bytes::from_static(b"Content-Type"), ct));
        }
        if let Some(cl) = given(self.content_length) {
            headers.push((Bytes::from_static(b"Content-Length"), cl));
        }
        let (scheme, default_port) = if self.https {
            (Scheme::Https, "443")
        } else {
            (Scheme::Http, "80")
        };
        let request = Request {
            method: self.method,
            target,
            path,
            query: self.query,
            version,
            headers,
            peer: Peer::Named {
                addr: text(self.remote_addr).unwrap_or_default(),
                port: text(self.remote_port),
            },
            // No Host header and no configured name (lighttpd passes SERVER_NAME empty then):
            // the address the request came in on, as the HTTP listener does.
            server_name: text(given(self.server_name).or(self.server_addr))
                .unwrap_or_else(|| "localhost".into())
                .into(),
            server_port: text(self.server_port)
                .unwrap_or_else(|| default_port.into())
                .into(),
            scheme,
            remote_user: given(self.remote_user),
            auth_type: given(self.auth_type),
            script_name,
            extra: self.extra,
        };
        Ok((request, protocol))
    }
}

/// (authority of an absolute-form URL, SCRIPT_NAME, PATH_INFO) of a raw URL: the query cut
/// off, the path decoded and split at the mount.
fn split_url(
    url: &Bytes,
    mount: &[u8],
    case: MountCase,
) -> Result<(Option<Bytes>, Bytes, Bytes), Reject> {
    let raw_path = match url.iter().position(|&b| b == b'?') {
        Some(q) => url.slice(..q),
        None => url.clone(),
    };
    // An absolute-form target (`http://host/path`, RFC 9112 §3.2.2): the path is what follows
    // the authority.
    let (authority, raw_path) = match split_origin(&raw_path) {
        Some((authority, path)) => (Some(authority), path),
        None => (None, raw_path),
    };
    if !raw_path.starts_with(b"/") {
        return Err(Reject::new(400, "the request path does not start with '/'"));
    }
    let decoded = decode_path(&raw_path);
    let Some((script_name, path)) = split_mount(&decoded, mount, case) else {
        return Err(Reject::because(
            404,
            format!(
                "path {:?} is outside the application at {:?}",
                String::from_utf8_lossy(&decoded),
                String::from_utf8_lossy(mount)
            ),
        ));
    };
    Ok((authority, script_name, path))
}

/// (authority, path) of an absolute-form URL (path `/` when it has none), or `None` for
/// origin-form.
fn split_origin(url: &Bytes) -> Option<(Bytes, Bytes)> {
    let lower = url.get(..8)?.to_ascii_lowercase();
    let scheme_len = if lower.starts_with(b"http://") {
        7
    } else if lower.starts_with(b"https://") {
        8
    } else {
        return None;
    };
    let rest = url.slice(scheme_len..);
    Some(match rest.iter().position(|&b| b == b'/') {
        Some(slash) => (rest.slice(..slash), rest.slice(slash..)),
        None => (rest, Bytes::from_static(b"/")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn url(u: &'static str, mount: &'static str) -> Result<(Request, Protocol), Reject> {
        let vars = CgiVars {
            method: b("GET"),
            headers: vec![(b("host"), b("given"))],
            ..CgiVars::default()
        };
        vars.into_request(Location::Url {
            url: b(u),
            mount: b(mount),
            case: MountCase::AsciiInsensitive,
        })
    }

    fn host(r: &Request) -> Vec<&[u8]> {
        r.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"host"))
            .map(|(_, v)| v.as_ref())
            .collect()
    }

    #[test]
    fn defaults_follow_the_scheme() {
        let (r, p) = match CgiVars::default().into_request(Location::Split {
            script_name: b("/s"),
            path_info: b("/p"),
            target: None,
        }) {
            Ok(x) => x,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(p, Protocol::Http11);
        assert_eq!(&r.target[..], b"/s/p");
        assert_eq!(&*r.server_name, "localhost");
        assert_eq!(&*r.server_port, "80");
        let vars = CgiVars {
            https: true,
            server_name: Some(Bytes::new()),
            server_addr: Some(b("10.0.0.1")),
            protocol: Some(b("HTTP/1.0")),
            ..CgiVars::default()
        };
        let (r, p) = match vars.into_request(Location::Split {
            script_name: Bytes::new(),
            path_info: Bytes::new(),
            target: Some(b("/raw")),
        }) {
            Ok(x) => x,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(p, Protocol::Http10);
        assert_eq!(r.version, Version::Http10);
        assert_eq!(&r.target[..], b"/raw");
        assert_eq!(&*r.server_name, "10.0.0.1");
        assert_eq!(&*r.server_port, "443");
        assert_eq!(r.scheme, Scheme::Https);
    }

    #[test]
    fn an_absolute_url_names_the_host() {
        let Ok((r, _)) = url("http://Example.org:8081/abs/p?q", "") else {
            panic!("refused");
        };
        assert_eq!(&r.path[..], b"/abs/p");
        assert_eq!(host(&r), [&b"Example.org:8081"[..]]);
        let Ok((r, _)) = url("/App/x?q", "/app") else {
            panic!("refused");
        };
        assert_eq!(
            (&r.script_name[..], &r.path[..]),
            (&b"/App"[..], &b"/x"[..])
        );
        assert_eq!(host(&r), [&b"given"[..]]);
        assert_eq!(url("*", "").map(|_| ()).unwrap_err().status, 400);
        assert_eq!(
            url("/application", "/app").map(|_| ()).unwrap_err().status,
            404
        );
    }
}
