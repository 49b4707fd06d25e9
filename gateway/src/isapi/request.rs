//! isapi.md §5: what IIS tells us about a request (ECB fields and server variables) turned
//! into the one `Request`. Pure: the fuzz target drives it with arbitrary variables.

use bytes::Bytes;

use crate::cgi_vars::{is_token, CgiVars, Location, Protocol};
use crate::reject::Reject;
use crate::request::{decode_path, MountCase, Request};

/// Server variables passed into the environ as IIS gives them (facts about the server, the
/// application and TLS; never identity or headers).
const EXTRAS: [(&str, &str); 10] = [
    ("SERVER_SOFTWARE", "SERVER_SOFTWARE"),
    ("REMOTE_HOST", "REMOTE_HOST"),
    ("LOCAL_ADDR", "SERVER_ADDR"),
    ("APPL_MD_PATH", "APPL_MD_PATH"),
    ("APPL_PHYSICAL_PATH", "APPL_PHYSICAL_PATH"),
    ("INSTANCE_ID", "INSTANCE_ID"),
    ("HTTPS_KEYSIZE", "HTTPS_KEYSIZE"),
    ("HTTPS_SECRETKEYSIZE", "HTTPS_SECRETKEYSIZE"),
    ("HTTPS_SERVER_ISSUER", "HTTPS_SERVER_ISSUER"),
    ("HTTPS_SERVER_SUBJECT", "HTTPS_SERVER_SUBJECT"),
];

/// Where server variables come from (the ECB's `GetServerVariable`, or a table in tests).
pub trait ServerVariables {
    /// The value without its NUL, or `None` when the server does not know the name.
    fn get(&mut self, name: &std::ffi::CStr) -> Option<Vec<u8>>;
}

/// The ECB's own fields.
#[derive(Clone, Debug, Default)]
pub struct EcbFields {
    pub method: Vec<u8>,
    pub query: Vec<u8>,
    pub content_type: Vec<u8>,
    /// `cbTotalBytes`; `None` for 0xFFFFFFFF (unknown length, chunked).
    pub total_bytes: Option<u64>,
}

/// How a response with no length of its own can be delimited on this connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delimit {
    /// HTTP/1.1: the extension chunk-encodes it.
    Chunked,
    /// HTTP/1.0: the connection's end delimits it.
    Close,
    /// HTTP/2 and later: IIS frames each response itself.
    Server,
}

#[derive(Debug)]
pub struct IsapiRequest {
    pub request: Request,
    /// CONTENT_LENGTH: the body is exactly this long; `None` = read until ReadClient gives 0.
    pub content_length: Option<u64>,
    pub delimit: Delimit,
}

fn var(vars: &mut impl ServerVariables, name: &std::ffi::CStr) -> Option<Bytes> {
    vars.get(name).filter(|v| !v.is_empty()).map(Bytes::from)
}

/// Builds the request. `mount`: the configured `script-name` (decoded bytes, no trailing `/`);
/// without one the mount point comes from `APPL_MD_PATH`.
pub fn read_request(
    fields: EcbFields,
    vars: &mut impl ServerVariables,
    mount: Option<&[u8]>,
) -> Result<IsapiRequest, Reject> {
    if !is_token(&fields.method) {
        return Err(Reject::new(400, "no valid request method in the ECB"));
    }
    let url = var(vars, c"UNENCODED_URL")
        .or_else(|| var(vars, c"HTTP_URL"))
        .ok_or(Reject::new(
            400,
            "IIS gave neither UNENCODED_URL nor HTTP_URL",
        ))?;
    let mount = match mount {
        Some(m) => Bytes::copy_from_slice(m),
        None => var(vars, c"APPL_MD_PATH")
            .map(|p| mount_from_metabase(&p))
            .unwrap_or_default(),
    };

    let mut headers = Vec::new();
    let mut sent_length = false;
    if let Some(raw) = vars.get(c"ALL_RAW") {
        for (name, value) in raw_headers(&raw) {
            // The ECB's fields are authoritative for the body's type and length.
            if name.eq_ignore_ascii_case(b"content-type") {
                continue;
            }
            if name.eq_ignore_ascii_case(b"content-length") {
                sent_length = true;
                continue;
            }
            headers.push((name, value));
        }
    }
    let https = var(vars, c"HTTPS").is_some_and(|v| v.eq_ignore_ascii_case(b"on"))
        || var(vars, c"SERVER_PORT_SECURE").is_some_and(|v| v.as_ref() == b"1");
    let mut extra = Vec::new();
    for (name, key) in EXTRAS {
        let Ok(cname) = std::ffi::CString::new(name) else {
            continue;
        };
        if let Some(v) = var(vars, &cname) {
            extra.push((Bytes::from_static(key.as_bytes()), v));
        }
    }
    let iis = CgiVars {
        method: Bytes::from(fields.method),
        query: Bytes::from(fields.query),
        protocol: var(vars, c"SERVER_PROTOCOL"),
        https,
        server_name: var(vars, c"SERVER_NAME"),
        // No fallback to LOCAL_ADDR: `localhost` when IIS names no server.
        server_addr: None,
        server_port: var(vars, c"SERVER_PORT"),
        remote_addr: var(vars, c"REMOTE_ADDR"),
        remote_port: var(vars, c"REMOTE_PORT"),
        remote_user: var(vars, c"REMOTE_USER"),
        auth_type: var(vars, c"AUTH_TYPE"),
        headers,
        content_type: Some(Bytes::from(fields.content_type)),
        // An empty body is told only when the client said so.
        content_length: fields
            .total_bytes
            .filter(|&n| n > 0 || sent_length)
            .map(|n| Bytes::from(n.to_string())),
        extra,
    };
    let location = Location::Url {
        url,
        mount,
        case: MountCase::AsciiInsensitive,
    };
    let (request, protocol) = iis.into_request(location)?;
    let delimit = match protocol {
        Protocol::Http10 => Delimit::Close,
        Protocol::Http11 => Delimit::Chunked,
        Protocol::Other => Delimit::Server,
    };
    Ok(IsapiRequest {
        request,
        content_length: fields.total_bytes,
        delimit,
    })
}

/// The application's URL prefix from `APPL_MD_PATH` (`/LM/W3SVC/1/ROOT/app` → `/app`); the
/// `ROOT` segment is spelled `Root` on some sites.
pub fn mount_from_metabase(path: &[u8]) -> Bytes {
    let lower = path.to_ascii_lowercase();
    let mut at = 0;
    while let Some(i) = find(&lower[at..], b"/root") {
        let end = at + i + 5;
        if end == path.len() || path[end] == b'/' {
            let rest = &path[end..];
            let rest = rest.strip_suffix(b"/").unwrap_or(rest);
            return decode_path(&Bytes::copy_from_slice(rest));
        }
        at = end;
    }
    Bytes::new()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `ALL_RAW`: the headers as the client sent them, `Name: value` per line (`\r\n` or `\n`).
fn raw_headers(raw: &[u8]) -> impl Iterator<Item = (Bytes, Bytes)> + '_ {
    raw.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let name = &line[..colon];
        if !is_token(name) {
            return None;
        }
        let value = line[colon + 1..].trim_ascii();
        Some((Bytes::copy_from_slice(name), Bytes::copy_from_slice(value)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Scheme;
    use std::collections::HashMap;

    struct Table(HashMap<&'static str, &'static [u8]>);

    impl ServerVariables for Table {
        fn get(&mut self, name: &std::ffi::CStr) -> Option<Vec<u8>> {
            self.0.get(name.to_str().ok()?).map(|v| v.to_vec())
        }
    }

    fn request(vars: &[(&'static str, &'static [u8])], mount: Option<&[u8]>) -> IsapiRequest {
        let fields = EcbFields {
            method: b"GET".to_vec(),
            query: b"a=1".to_vec(),
            content_type: Vec::new(),
            total_bytes: Some(0),
        };
        read_request(fields, &mut Table(vars.iter().copied().collect()), mount).unwrap()
    }

    #[test]
    fn mount_from_appl_md_path() {
        assert_eq!(&mount_from_metabase(b"/LM/W3SVC/1/ROOT")[..], b"");
        assert_eq!(&mount_from_metabase(b"/LM/W3SVC/1/ROOT/")[..], b"");
        assert_eq!(
            &mount_from_metabase(b"/LM/W3SVC/1874390919/Root/hg")[..],
            b"/hg"
        );
        assert_eq!(&mount_from_metabase(b"/LM/W3SVC/1/ROOT/a/b")[..], b"/a/b");
        assert_eq!(
            &mount_from_metabase(b"/LM/W3SVC/1/ROOTS/x/ROOT/y")[..],
            b"/y"
        );
        assert_eq!(
            &mount_from_metabase(b"/LM/W3SVC/1/ROOT/my%20app")[..],
            b"/my app"
        );
        assert_eq!(&mount_from_metabase(b"nothing")[..], b"");
    }

    #[test]
    fn path_comes_from_unencoded_url_below_the_mount() {
        let r = request(
            &[
                ("UNENCODED_URL", b"/App/caf%C3%A9/a%2Fb?a=1"),
                ("APPL_MD_PATH", b"/LM/W3SVC/1/Root/app"),
            ],
            None,
        );
        assert_eq!(&r.request.script_name[..], b"/App");
        assert_eq!(&r.request.path[..], b"/caf\xc3\xa9/a/b");
        assert_eq!(&r.request.target[..], b"/App/caf%C3%A9/a%2Fb?a=1");
        let r = request(
            &[("UNENCODED_URL", b"http://Example.org:8081/abs/p?q")],
            None,
        );
        assert_eq!(&r.request.path[..], b"/abs/p");
        let r = request(&[("UNENCODED_URL", b"HTTPS://example.org")], None);
        assert_eq!(&r.request.path[..], b"/");
        let r = request(&[("HTTP_URL", b"/x/y")], Some(b"/x"));
        assert_eq!(&r.request.path[..], b"/y");
        assert_eq!(&r.request.script_name[..], b"/x");
    }

    #[test]
    fn outside_the_mount_is_404() {
        let fields = EcbFields {
            method: b"GET".to_vec(),
            ..EcbFields::default()
        };
        let mut vars = Table(
            [
                ("UNENCODED_URL", &b"/application/x"[..]),
                ("APPL_MD_PATH", b"/LM/W3SVC/1/ROOT/app"),
            ]
            .into_iter()
            .collect(),
        );
        assert_eq!(
            read_request(fields, &mut vars, None).unwrap_err().status,
            404
        );
    }

    #[test]
    fn identity_and_headers() {
        let r = request(
            &[
                ("UNENCODED_URL", b"/"),
                (
                    "ALL_RAW",
                    b"Host: example\r\nX_Weird: 1\r\nContent-Length: 0\r\nRemote-User: mallory\nbroken line\r\n",
                ),
                ("REMOTE_USER", b"CORP\\alice"),
                ("AUTH_TYPE", b"Negotiate"),
                ("HTTPS", b"ON"),
                ("SERVER_PROTOCOL", b"HTTP/1.0"),
            ],
            None,
        );
        let req = &r.request;
        assert_eq!(req.remote_user.as_deref(), Some(&b"CORP\\alice"[..]));
        assert_eq!(req.auth_type.as_deref(), Some(&b"Negotiate"[..]));
        assert_eq!(req.scheme, Scheme::Https);
        assert_eq!(r.delimit, Delimit::Close);
        let names: Vec<&[u8]> = req.headers.iter().map(|(n, _)| &n[..]).collect();
        // The trust policy (core) drops X_Weird and Remote-User later; the mapping keeps
        // names as sent and the ECB's Content-Length.
        assert_eq!(
            names,
            [&b"Host"[..], b"X_Weird", b"Remote-User", b"Content-Length"]
        );
        let r = request(&[("UNENCODED_URL", b"/"), ("REMOTE_USER", b"")], None);
        assert_eq!(r.request.remote_user, None);
        assert!(r.request.headers.is_empty());
    }
}
