//! RFC 3875 §4.1: the meta-variables a CGI host sets, turned into the one `Request`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use bytes::Bytes;

use crate::cgi_vars::{is_token, CgiVars, Location};
use crate::reject::Reject;
use crate::request::Request;

/// Host variables that go into the environ as the host gave them. Everything else in the
/// process environment (PATH, HOME, WSGI_GATEWAY_*, …) stays out.
const HOST_EXTRAS: [&str; 11] = [
    "SERVER_SOFTWARE",
    "DOCUMENT_ROOT",
    "SCRIPT_FILENAME",
    "SERVER_ADMIN",
    "PATH_TRANSLATED",
    "REMOTE_HOST",
    "REMOTE_IDENT",
    "REQUEST_SCHEME",
    "CONTEXT_PREFIX",
    "CONTEXT_DOCUMENT_ROOT",
    "UNIQUE_ID",
];
/// Families of host variables: Apache's internal-redirect copies and mod_ssl's TLS facts.
const HOST_EXTRA_PREFIXES: [&str; 2] = ["REDIRECT_", "SSL_"];
/// `HTTP_*` variables that must not become headers: httpoxy, and the duplicates of
/// CONTENT_TYPE/CONTENT_LENGTH some hosts add (lighttpd does).
const DROPPED_HTTP: [&str; 3] = ["HTTP_PROXY", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE"];

/// A request as a CGI host described it.
#[derive(Debug)]
pub struct CgiRequest {
    pub request: Request,
    /// CONTENT_LENGTH: the body on stdin is exactly this long; `None` = read stdin to EOF.
    pub content_length: Option<u64>,
}

/// Builds the request from the process environment's meta-variables. `iis_path_info`: the
/// host repeats SCRIPT_NAME at the front of PATH_INFO (IIS without `allowPathInfo`).
pub fn read_request(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    iis_path_info: bool,
) -> Result<CgiRequest, Reject> {
    let mut m = Meta::default();
    for (name, value) in vars {
        let (Ok(name), value) = (name.into_string(), Bytes::from(value.into_vec())) else {
            continue;
        };
        m.take(name, value);
    }
    m.into_request(iis_path_info)
}

fn non_empty(value: Bytes) -> Option<Bytes> {
    (!value.is_empty()).then_some(value)
}

/// What the host set: the shared variables, and the path as RFC 3875 gives it.
#[derive(Default)]
struct Meta {
    vars: CgiVars,
    script_name: Bytes,
    path_info: Bytes,
    request_uri: Option<Bytes>,
}

impl Meta {
    fn take(&mut self, name: String, value: Bytes) {
        let v = &mut self.vars;
        match name.as_str() {
            "REQUEST_METHOD" => v.method = value,
            "SCRIPT_NAME" => self.script_name = value,
            "PATH_INFO" => self.path_info = value,
            "QUERY_STRING" => v.query = value,
            "REQUEST_URI" => self.request_uri = non_empty(value),
            "CONTENT_TYPE" => v.content_type = non_empty(value),
            "CONTENT_LENGTH" => v.content_length = non_empty(value),
            "SERVER_PROTOCOL" => v.protocol = non_empty(value),
            "SERVER_NAME" => v.server_name = non_empty(value),
            "SERVER_PORT" => v.server_port = non_empty(value),
            "SERVER_ADDR" => {
                v.server_addr = non_empty(value.clone());
                v.extra.push((Bytes::from(name), value));
            }
            "REMOTE_ADDR" => v.remote_addr = non_empty(value),
            "REMOTE_PORT" => v.remote_port = non_empty(value),
            "REMOTE_USER" => v.remote_user = non_empty(value),
            "AUTH_TYPE" => v.auth_type = non_empty(value),
            "HTTPS" => v.https = value.eq_ignore_ascii_case(b"on") || value.as_ref() == b"1",
            _ if DROPPED_HTTP.contains(&name.as_str()) => {}
            _ => {
                // Hosts name header variables in upper case only; anything else in the
                // environment is not a header the client sent.
                let header = name.strip_prefix("HTTP_").filter(|f| {
                    !f.is_empty()
                        && f.bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                });
                if let Some(field) = header {
                    // Back to a header name; the core maps it to the same HTTP_* key and applies
                    // the trust policy (identity and proxy headers) to it.
                    v.headers
                        .push((Bytes::from(field.replace('_', "-")), value));
                } else if HOST_EXTRAS.contains(&name.as_str())
                    || HOST_EXTRA_PREFIXES.iter().any(|p| name.starts_with(p))
                {
                    v.extra.push((Bytes::from(name), value));
                }
            }
        }
    }

    fn into_request(mut self, iis_path_info: bool) -> Result<CgiRequest, Reject> {
        let method = &self.vars.method;
        if method.is_empty() {
            return Err(Reject::new(
                500,
                "REQUEST_METHOD is not set: `cgi` must be started by a CGI host",
            ));
        }
        if !is_token(method) {
            return Err(Reject::because(
                400,
                format!(
                    "REQUEST_METHOD {:?} is not a method",
                    String::from_utf8_lossy(method)
                ),
            ));
        }
        let content_length = match &self.vars.content_length {
            None => None,
            Some(v) => Some(
                std::str::from_utf8(v)
                    .ok()
                    .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|t| t.parse::<u64>().ok())
                    .ok_or_else(|| {
                        Reject::because(
                            400,
                            format!(
                                "CONTENT_LENGTH {:?} is not a length",
                                String::from_utf8_lossy(v)
                            ),
                        )
                    })?,
            ),
        };
        if iis_path_info
            && !self.script_name.is_empty()
            && self.path_info.starts_with(&self.script_name)
        {
            self.path_info = self.path_info.slice(self.script_name.len()..);
        }
        let (request, _) = self.vars.into_request(Location::Split {
            script_name: self.script_name,
            path_info: self.path_info,
            target: self.request_uri,
        })?;
        Ok(CgiRequest {
            request,
            content_length,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Peer, Scheme, Version};

    fn vars(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("REQUEST_METHOD", "POST"),
            ("SCRIPT_NAME", "/cgi-bin/app"),
            ("PATH_INFO", "/a b/%2F"),
            ("QUERY_STRING", "x=1"),
            ("SERVER_NAME", "example.org"),
            ("SERVER_PORT", "8080"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REMOTE_ADDR", "10.0.0.7"),
            ("REMOTE_PORT", "5555"),
            ("CONTENT_LENGTH", "12"),
            ("CONTENT_TYPE", "text/plain"),
            ("HTTP_CONTENT_LENGTH", "12"),
            ("HTTP_CONTENT_TYPE", "text/plain"),
            ("HTTP_PROXY", "http://evil:1"),
            ("HTTP_X_CUSTOM_THING", "v"),
            ("HTTP_Proxy", "http://evil:2"),
            ("HTTP_x_lower", "v"),
            ("DOCUMENT_ROOT", "/srv/www"),
            ("SERVER_ADDR", "10.0.0.1"),
            ("SSL_PROTOCOL", "TLSv1.3"),
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("WSGI_GATEWAY_APP", "x:y"),
        ]
    }

    fn read(list: &[(&str, &str)]) -> CgiRequest {
        match read_request(vars(list), false) {
            Ok(r) => r,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn header<'a>(r: &'a Request, name: &str) -> Vec<&'a [u8]> {
        r.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_ref())
            .collect()
    }

    #[test]
    fn maps_meta_variables() {
        let c = read(&base());
        let r = &c.request;
        assert_eq!(c.content_length, Some(12));
        assert_eq!(&r.method[..], b"POST");
        assert_eq!(&r.script_name[..], b"/cgi-bin/app");
        // The host decoded PATH_INFO already: used as given.
        assert_eq!(&r.path[..], b"/a b/%2F");
        assert_eq!(&r.query[..], b"x=1");
        assert_eq!(&r.target[..], b"/cgi-bin/app/a b/%2F?x=1");
        assert_eq!(r.version, Version::Http11);
        assert_eq!(&*r.server_name, "example.org");
        assert_eq!(&*r.server_port, "8080");
        assert_eq!(
            r.peer,
            Peer::Named {
                addr: "10.0.0.7".into(),
                port: Some("5555".into())
            }
        );
        assert_eq!(header(r, "content-length"), vec![&b"12"[..]]);
        assert_eq!(header(r, "content-type"), vec![&b"text/plain"[..]]);
        assert!(header(r, "proxy").is_empty());
        assert_eq!(header(r, "x-custom-thing"), vec![&b"v"[..]]);
        let extra: Vec<&[u8]> = r.extra.iter().map(|(k, _)| k.as_ref()).collect();
        assert!(extra.contains(&&b"SERVER_ADDR"[..]));
        assert!(extra.contains(&&b"DOCUMENT_ROOT"[..]));
        assert!(extra.contains(&&b"SSL_PROTOCOL"[..]));
        for leaked in ["PATH", "HOME", "WSGI_GATEWAY_APP", "GATEWAY_INTERFACE"] {
            assert!(!extra.contains(&leaked.as_bytes()), "{leaked} leaked");
        }
        assert_eq!(r.remote_user, None);
        assert_eq!(r.scheme, Scheme::Http);
    }

    #[test]
    fn identity_and_scheme_come_from_the_host() {
        let mut v = base();
        v.extend([
            ("REMOTE_USER", "DOMAIN\\alice"),
            ("AUTH_TYPE", "Negotiate"),
            ("HTTPS", "ON"),
            ("REQUEST_URI", "/cgi-bin/app/a%20b/%2F?x=1"),
        ]);
        let r = read(&v).request;
        assert_eq!(r.remote_user.as_deref(), Some(&b"DOMAIN\\alice"[..]));
        assert_eq!(r.auth_type.as_deref(), Some(&b"Negotiate"[..]));
        assert_eq!(r.scheme, Scheme::Https);
        assert_eq!(&r.target[..], b"/cgi-bin/app/a%20b/%2F?x=1");
        // An empty REMOTE_USER is no user at all.
        let mut v = base();
        v.push(("REMOTE_USER", ""));
        assert_eq!(read(&v).request.remote_user, None);
    }

    #[test]
    fn no_body_unless_content_length() {
        let v: Vec<_> = base()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("CONTENT_"))
            .collect();
        let c = read(&v);
        assert_eq!(c.content_length, None);
        assert!(header(&c.request, "content-length").is_empty());
        for bad in ["-1", "1e3", " 12", "99999999999999999999999"] {
            let mut v = base();
            v.retain(|(k, _)| *k != "CONTENT_LENGTH");
            v.push(("CONTENT_LENGTH", bad));
            let err = read_request(vars(&v), false).map(|_| ()).unwrap_err();
            assert_eq!(err.status, 400, "{bad}");
        }
    }

    #[test]
    fn iis_path_info_strips_the_script_name() {
        let mut v = base();
        v.retain(|(k, _)| *k != "PATH_INFO" && *k != "SCRIPT_NAME");
        v.extend([("SCRIPT_NAME", "/app"), ("PATH_INFO", "/app/x/y")]);
        let as_given = read(&v).request;
        assert_eq!(&as_given.path[..], b"/app/x/y");
        let stripped = match read_request(vars(&v), true) {
            Ok(c) => c.request,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(&stripped.path[..], b"/x/y");
        assert_eq!(&stripped.script_name[..], b"/app");
    }

    #[test]
    fn refuses_what_is_not_a_request() {
        let none = read_request(vars(&[("PATH", "/bin")]), false).map(|_| ());
        assert_eq!(none.unwrap_err().status, 500);
        let mut v = base();
        v.retain(|(k, _)| *k != "REQUEST_METHOD");
        v.push(("REQUEST_METHOD", "GET /x"));
        assert_eq!(
            read_request(vars(&v), false)
                .map(|_| ())
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn empty_server_name_falls_back_to_the_server_address() {
        let mut v = base();
        v.retain(|(k, _)| *k != "SERVER_NAME");
        v.push(("SERVER_NAME", ""));
        assert_eq!(&*read(&v).request.server_name, "10.0.0.1");
        v.retain(|(k, _)| *k != "SERVER_ADDR");
        assert_eq!(&*read(&v).request.server_name, "localhost");
    }

    #[test]
    fn server_port_is_the_hosts_whatever_host_names() {
        // RFC 3875 §4.1.15: the port the request came in on, which only the host knows.
        for host in ["localhost", "example.org:9999", "[::1]:1"] {
            let mut v = base();
            v.push(("HTTP_HOST", host));
            let r = read(&v).request;
            assert_eq!(&*r.server_port, "8080", "{host}");
            assert_eq!(header(&r, "host"), vec![host.as_bytes()]);
        }
    }

    #[test]
    fn other_protocols_are_reported_as_given() {
        let mut v = base();
        v.retain(|(k, _)| *k != "SERVER_PROTOCOL");
        v.push(("SERVER_PROTOCOL", "HTTP/2.0"));
        let r = read(&v).request;
        assert!(r
            .extra
            .iter()
            .any(|(k, val)| k.as_ref() == b"SERVER_PROTOCOL" && val.as_ref() == b"HTTP/2.0"));
        v.retain(|(k, _)| *k != "SERVER_PROTOCOL");
        v.push(("SERVER_PROTOCOL", "HTTP/1.0"));
        assert_eq!(read(&v).request.version, Version::Http10);
    }
}
