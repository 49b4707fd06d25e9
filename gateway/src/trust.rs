//! Who may tell the app what: the header policy every front end applies before environ is built.
//! Identity and proxy headers are believed only from configured trusted peers.

use std::net::IpAddr;

use crate::request::Peer;

/// An entry of `--forwarded-allow-ips`: an address range (`10.0.0.0/8`, `::1`), `unix` (peers
/// on a Unix socket) or `*` (every peer, Unix sockets included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpRange {
    Any,
    /// Peers on a Unix socket: any local process that can open it, so never implied by an
    /// address range.
    Unix,
    Net {
        addr: IpAddr,
        prefix: u8,
    },
}

impl IpRange {
    pub fn parse(text: &str) -> Result<IpRange, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(IpRange::Any);
        }
        if text.eq_ignore_ascii_case("unix") {
            return Ok(IpRange::Unix);
        }
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0..={max}"))?,
            None => max,
        };
        Ok(IpRange::Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self, ip) {
            (IpRange::Any, _) => true,
            (
                IpRange::Net {
                    addr: IpAddr::V4(net),
                    prefix,
                },
                IpAddr::V4(ip),
            ) => masked(
                u128::from(u32::from(*net)),
                u128::from(u32::from(ip)),
                *prefix,
                32,
            ),
            (
                IpRange::Net {
                    addr: IpAddr::V6(net),
                    prefix,
                },
                IpAddr::V6(ip),
            ) => masked(u128::from(*net), u128::from(ip), *prefix, 128),
            (IpRange::Unix, _) | (IpRange::Net { .. }, _) => false,
        }
    }
}

fn masked(net: u128, ip: u128, prefix: u8, bits: u32) -> bool {
    let host_bits = bits.saturating_sub(u32::from(prefix));
    if host_bits >= bits {
        return true;
    }
    (net >> host_bits) == (ip >> host_bits)
}

/// Identity headers apps are commonly configured to trust (Kallithea's container auth falls
/// back to `X-Forwarded-User`). Never passed on from an untrusted peer.
const IDENTITY_HEADERS: [&str; 3] = ["x-forwarded-user", "x-remote-user", "remote-user"];
/// Proxy headers, honoured (and passed on) only from a trusted peer.
const PROXY_HEADERS: [&str; 5] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "forwarded",
];

/// What becomes of one request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderFate {
    /// `HTTP_<NAME>`.
    Http,
    ContentType,
    ContentLength,
    /// Not passed to the app.
    Drop,
}

#[derive(Clone, Debug, Default)]
pub struct TrustPolicy {
    pub trusted: Vec<IpRange>,
    /// Extra identity header names (lower case).
    pub identity_headers: Vec<String>,
    /// `--header-underscores refuse`: a name with `_` is a 400 instead of being dropped.
    pub refuse_underscores: bool,
}

impl TrustPolicy {
    pub fn peer_trusted(&self, peer: &Peer) -> bool {
        match peer {
            Peer::Tcp(p) => self.trusted.iter().any(|r| r.contains(p.addr.ip())),
            // Only when the operator says so: listing a proxy's IP range must not also make
            // every local process that can reach the socket a trusted proxy.
            Peer::Unix => self
                .trusted
                .iter()
                .any(|r| matches!(r, IpRange::Unix | IpRange::Any)),
            Peer::Named { addr, .. } => addr
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.trusted.iter().any(|r| r.contains(ip))),
        }
    }

    /// Decides one header's fate. `trusted` is `peer_trusted` for this request.
    pub fn fate(&self, name: &[u8], trusted: bool) -> HeaderFate {
        if name.contains(&b'_') {
            return HeaderFate::Drop;
        }
        if name.eq_ignore_ascii_case(b"content-type") {
            return HeaderFate::ContentType;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            return HeaderFate::ContentLength;
        }
        // httpoxy: a `Proxy:` header must never become HTTP_PROXY. Transfer-Encoding: every
        // front end hands over the body decoded (RFC 3875 §4.2); apps that see the header
        // decode it again (dulwich does).
        if name.eq_ignore_ascii_case(b"proxy") || name.eq_ignore_ascii_case(b"transfer-encoding") {
            return HeaderFate::Drop;
        }
        if !trusted && self.is_guarded(name) {
            return HeaderFate::Drop;
        }
        HeaderFate::Http
    }

    /// The user a trusted proxy named in an identity header (the first one the request has),
    /// for the access log's `%u`. Never a header from an untrusted peer.
    pub fn proxy_identity<'a>(
        &self,
        peer: &Peer,
        headers: &'a [(bytes::Bytes, bytes::Bytes)],
    ) -> Option<&'a [u8]> {
        if self.trusted.is_empty() || !self.peer_trusted(peer) {
            return None;
        }
        headers.iter().find_map(|(n, v)| {
            let identity = IDENTITY_HEADERS
                .iter()
                .map(|h| h.as_bytes())
                .chain(self.identity_headers.iter().map(|h| h.as_bytes()))
                .any(|h| n.eq_ignore_ascii_case(h));
            identity.then_some(v.as_ref())
        })
    }

    fn is_guarded(&self, name: &[u8]) -> bool {
        // Every built-in guarded name starts with `x`, `r` or `f` (a test checks): most headers
        // are ruled out by their first byte.
        let builtin = matches!(
            name.first().map(u8::to_ascii_lowercase),
            Some(b'x' | b'r' | b'f')
        ) && IDENTITY_HEADERS
            .iter()
            .chain(PROXY_HEADERS.iter())
            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()));
        builtin
            || self
                .identity_headers
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
    }

    /// The first header name the policy refuses outright (`--header-underscores refuse`).
    pub fn refused_header<'a>(
        &self,
        headers: &'a [(bytes::Bytes, bytes::Bytes)],
    ) -> Option<&'a [u8]> {
        if !self.refuse_underscores {
            return None;
        }
        headers
            .iter()
            .map(|(n, _)| n.as_ref())
            .find(|n| n.contains(&b'_'))
    }

    /// From a trusted peer's `X-Forwarded-For`, the client address: the rightmost hop that is
    /// not itself a trusted proxy (the leftmost hop when all are), with its position counted
    /// from the right (0 = the entry our peer appended). See `set_by_last_trusted`.
    pub fn forwarded_client<'a>(&self, xff: &'a str) -> Option<(usize, &'a str)> {
        let mut last = None;
        for (at, hop) in list_from_right(xff).enumerate() {
            last = Some((at, hop));
            if !self.is_trusted_hop(hop) {
                return last;
            }
        }
        last
    }

    fn is_trusted_hop(&self, hop: &str) -> bool {
        hop.parse::<IpAddr>()
            .is_ok_and(|ip| self.trusted.iter().any(|r| r.contains(ip)))
    }

    /// From a trusted peer's RFC 7239 `Forwarded`, the element the last trusted proxy added:
    /// elements are walked from the right while their `for=` is a trusted proxy, as
    /// `forwarded_client` walks `X-Forwarded-For` (each proxy appends one element whose
    /// `for=` is the peer it heard from), and the element where trust ends is taken whole.
    pub fn forwarded_element(&self, value: &str) -> ForwardedElement {
        let mut last = ForwardedElement::default();
        for element in split_unquoted(value, b',').into_iter().rev() {
            let element = ForwardedElement::parse(element);
            if element == ForwardedElement::default() {
                continue;
            }
            let trusted_hop = element
                .for_
                .as_deref()
                .is_some_and(|f| self.is_trusted_hop(f));
            last = element;
            if !trusted_hop {
                break;
            }
        }
        last
    }
}

/// A list-valued forwarding header (`X-Forwarded-Host: a, b`) from the right, empty entries
/// skipped. Repeated header lines reach here joined in order, so they count as one list.
fn list_from_right(list: &str) -> impl Iterator<Item = &str> {
    list.rsplit(',').map(str::trim).filter(|v| !v.is_empty())
}

/// The entry of a list-valued forwarding header (`X-Forwarded-Host`, `-Proto`, `-Port`) that
/// the last trusted proxy wrote. `at` is where `forwarded_client` stopped in
/// `X-Forwarded-For` (0 when there is none).
///
/// A proxy that appends (Apache mod_proxy, HAProxy `option forwardfor`) adds one entry on the
/// right of each list, so entry `at` from the right of every list was written by the same
/// proxy: the one that appended the client's address to `X-Forwarded-For`, i.e. the outermost
/// trusted proxy, the one the client spoke to. Entries further left were written by the client
/// (or an untrusted hop) and are never taken. A list shorter than that means some proxy
/// replaced the header instead of appending (nginx `proxy_set_header`): everything left of the
/// replacing proxy's entry is gone, so its leftmost entry is what a trusted proxy set, the
/// one nearest the client.
pub fn set_by_last_trusted(list: &str, at: usize) -> Option<&str> {
    list_from_right(list).take(at.saturating_add(1)).last()
}

/// `for=`, `proto=` and `host=` of one element of an RFC 7239 `Forwarded` header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardedElement {
    /// The address only (`for="[2001:db8::1]:4711"` gives `2001:db8::1`).
    pub for_: Option<String>,
    /// Lower case.
    pub proto: Option<String>,
    pub host: Option<String>,
}

impl ForwardedElement {
    fn parse(element: &str) -> ForwardedElement {
        let mut out = ForwardedElement::default();
        for pair in split_unquoted(element, b';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').to_string();
            if v.is_empty() {
                continue;
            }
            match k.trim().to_ascii_lowercase().as_str() {
                "for" => {
                    // `for="[2001:db8::1]:4711"` or `for=192.0.2.60:80`: the address only.
                    let addr = if let Some(rest) = v.strip_prefix('[') {
                        rest.split(']').next().unwrap_or("").to_string()
                    } else {
                        v.rsplit_once(':')
                            .filter(|(a, _)| !a.contains(':'))
                            .map_or(v.clone(), |(a, _)| a.to_string())
                    };
                    out.for_ = Some(addr);
                }
                "proto" => out.proto = Some(v.to_ascii_lowercase()),
                "host" => out.host = Some(v),
                _ => {}
            }
        }
        out
    }
}

/// Splits on `sep` outside quoted strings (RFC 7239 values may be quoted, and a quoted value
/// may hold `,` or `;`).
fn split_unquoted(text: &str, sep: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in text.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(text.get(start..i).unwrap_or(""));
            start = i + 1;
        }
    }
    parts.push(text.get(start..).unwrap_or(""));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `is_guarded` looks at names starting with these letters only.
    #[test]
    fn every_guarded_name_starts_with_x_r_or_f() {
        for h in IDENTITY_HEADERS.iter().chain(PROXY_HEADERS.iter()) {
            assert!(matches!(h.as_bytes()[0], b'x' | b'r' | b'f'), "{h}");
        }
        let p = TrustPolicy::default();
        assert!(p.is_guarded(b"X-Forwarded-Port") && p.is_guarded(b"Remote-User"));
        assert!(p.is_guarded(b"FORWARDED") && !p.is_guarded(b"Host"));
    }
    use crate::request::TcpPeer;

    fn policy(trusted: &[&str]) -> TrustPolicy {
        TrustPolicy {
            trusted: trusted.iter().map(|t| IpRange::parse(t).unwrap()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn ranges() {
        let r = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(r.contains("10.1.2.3".parse().unwrap()));
        assert!(!r.contains("11.0.0.1".parse().unwrap()));
        assert!(r.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(IpRange::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(IpRange::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(IpRange::parse("10.0.0.0/33").is_err());
        assert!(IpRange::parse("example.com").is_err());
    }

    #[test]
    fn identity_headers_need_trust() {
        let p = policy(&["127.0.0.1"]);
        for name in [
            "X-Forwarded-User",
            "remote-user",
            "X-Remote-User",
            "X-Forwarded-For",
            "Forwarded",
        ] {
            assert_eq!(p.fate(name.as_bytes(), false), HeaderFate::Drop, "{name}");
            assert_eq!(p.fate(name.as_bytes(), true), HeaderFate::Http, "{name}");
        }
        assert_eq!(p.fate(b"Remote_User", true), HeaderFate::Drop);
        assert_eq!(p.fate(b"Proxy", true), HeaderFate::Drop);
        assert_eq!(p.fate(b"content-type", false), HeaderFate::ContentType);
        assert!(p.peer_trusted(&Peer::Tcp(TcpPeer::new("127.0.0.1:5".parse().unwrap()))));
        assert!(!p.peer_trusted(&Peer::Tcp(TcpPeer::new("127.0.0.2:5".parse().unwrap()))));
    }

    #[test]
    fn extra_identity_header() {
        let mut p = policy(&[]);
        p.identity_headers.push("x-auth-user".into());
        assert_eq!(p.fate(b"X-Auth-User", false), HeaderFate::Drop);
    }

    #[test]
    fn forwarded_for_rightmost_untrusted() {
        let p = policy(&["10.0.0.0/8"]);
        assert_eq!(
            p.forwarded_client("1.2.3.4, 10.0.0.5"),
            Some((1, "1.2.3.4"))
        );
        assert_eq!(p.forwarded_client("6.6.6.6, 1.2.3.4"), Some((0, "1.2.3.4")));
        assert_eq!(p.forwarded_client("10.0.0.1"), Some((0, "10.0.0.1")));
        assert_eq!(
            p.forwarded_client("10.0.0.2, 10.0.0.1"),
            Some((1, "10.0.0.2"))
        );
        assert_eq!(
            p.forwarded_client("1.2.3.4,, 10.0.0.5 ,"),
            Some((1, "1.2.3.4"))
        );
        assert_eq!(p.forwarded_client(""), None);
    }

    #[test]
    fn list_entry_of_the_last_trusted_proxy() {
        assert_eq!(set_by_last_trusted("evil, real", 0), Some("real"));
        assert_eq!(set_by_last_trusted("evil, real, inner", 1), Some("real"));
        // replaced by a proxy: its value, the only one there
        assert_eq!(set_by_last_trusted("real", 2), Some("real"));
        assert_eq!(set_by_last_trusted(" , ", 0), None);
        assert_eq!(set_by_last_trusted("a,,b", 0), Some("b"));
    }

    #[test]
    fn unix_peers_only_when_listed() {
        let unix = |list: &[&str]| policy(list).peer_trusted(&Peer::Unix);
        assert!(!unix(&["127.0.0.1"]));
        assert!(!unix(&["0.0.0.0/0", "::/0"]));
        assert!(!unix(&[]));
        assert!(unix(&["unix"]));
        assert!(unix(&["10.0.0.0/8", "UNIX"]));
        assert!(unix(&["*"]));
        assert!(!IpRange::Unix.contains("127.0.0.1".parse().unwrap()));
        assert!(!policy(&["unix"])
            .peer_trusted(&Peer::Tcp(TcpPeer::new("127.0.0.1:5".parse().unwrap()))));
    }

    #[test]
    fn forwarded_header() {
        let p = policy(&["10.0.0.0/8"]);
        let e =
            p.forwarded_element("for=1.1.1.1, for=\"[2001:db8::1]:4711\";proto=HTTPS;host=ex.com");
        assert_eq!(e.for_.as_deref(), Some("2001:db8::1"));
        assert_eq!(e.proto.as_deref(), Some("https"));
        assert_eq!(e.host.as_deref(), Some("ex.com"));
        // past trusted proxies to the element the outermost one added
        let e = p.forwarded_element(
            "for=6.6.6.6;host=evil, for=1.2.3.4;host=real;proto=https, for=10.0.0.9;host=inner",
        );
        assert_eq!(
            (e.for_.as_deref(), e.host.as_deref(), e.proto.as_deref()),
            (Some("1.2.3.4"), Some("real"), Some("https"))
        );
        // a quoted `,` or `;` does not split
        let e = p.forwarded_element("for=6.6.6.6;host=\"a,b;c\", for=\"1.2.3.4:80\";host=\"x;y\"");
        assert_eq!(
            (e.for_.as_deref(), e.host.as_deref()),
            (Some("1.2.3.4"), Some("x;y"))
        );
        // an element without `for=` cannot be a trusted hop: trust ends there
        let e = p.forwarded_element("for=10.0.0.1;host=a, host=b");
        assert_eq!(e.host.as_deref(), Some("b"));
        assert_eq!(p.forwarded_element(""), ForwardedElement::default());
    }
}
