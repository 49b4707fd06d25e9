//! Who may tell the app what: the header policy every front end applies before environ is built.
//! Identity and proxy headers are believed only from configured trusted peers.

use std::net::IpAddr;

use crate::request::Peer;

/// An address range from `--forwarded-allow-ips` (`10.0.0.0/8`, `::1`, `*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpRange {
    Any,
    Net { addr: IpAddr, prefix: u8 },
}

impl IpRange {
    pub fn parse(text: &str) -> Result<IpRange, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(IpRange::Any);
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
            _ => false,
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
            // A Unix socket peer is a local process the operator placed there (a proxy).
            Peer::Unix => !self.trusted.is_empty(),
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

    fn is_guarded(&self, name: &[u8]) -> bool {
        IDENTITY_HEADERS
            .iter()
            .chain(PROXY_HEADERS.iter())
            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
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
    /// not itself a trusted proxy.
    pub fn forwarded_client<'a>(&self, xff: &'a str) -> Option<&'a str> {
        let mut last = None;
        for hop in xff.rsplit(',').map(str::trim).filter(|h| !h.is_empty()) {
            last = Some(hop);
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.trusted.iter().any(|r| r.contains(ip)) => continue,
                _ => return Some(hop),
            }
        }
        last
    }
}

/// The `for=`, `proto=` and `host=` of the last element of an RFC 7239 `Forwarded` header.
pub fn parse_forwarded(value: &str) -> (Option<String>, Option<String>, Option<String>) {
    let last = value.rsplit(',').next().unwrap_or("");
    let (mut for_, mut proto, mut host) = (None, None, None);
    for pair in last.split(';') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "for" => {
                // `for="[2001:db8::1]:4711"` or `for=192.0.2.60:80`: keep the address only.
                let addr = if let Some(rest) = v.strip_prefix('[') {
                    rest.split(']').next().unwrap_or("").to_string()
                } else {
                    v.rsplit_once(':')
                        .filter(|(a, _)| !a.contains(':'))
                        .map_or(v.clone(), |(a, _)| a.to_string())
                };
                for_ = Some(addr);
            }
            "proto" => proto = Some(v.to_ascii_lowercase()),
            "host" => host = Some(v),
            _ => {}
        }
    }
    (for_, proto, host)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(p.forwarded_client("1.2.3.4, 10.0.0.5"), Some("1.2.3.4"));
        assert_eq!(p.forwarded_client("6.6.6.6, 1.2.3.4"), Some("1.2.3.4"));
        assert_eq!(p.forwarded_client("10.0.0.1"), Some("10.0.0.1"));
        assert_eq!(p.forwarded_client(""), None);
    }

    #[test]
    fn forwarded_header() {
        let (f, p, h) =
            parse_forwarded("for=1.1.1.1, for=\"[2001:db8::1]:4711\";proto=https;host=ex.com");
        assert_eq!(f.as_deref(), Some("2001:db8::1"));
        assert_eq!(p.as_deref(), Some("https"));
        assert_eq!(h.as_deref(), Some("ex.com"));
    }
}
