//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1 and 2): what a proxy
//! sends first on each connection to name the client it accepted and the address that client
//! connected to. Strict and bounded: a header is taken whole or refused, never guessed at, and
//! a prefix that can no longer become one is refused at once (a client speaking plain HTTP
//! gets no wait).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 1's longest header, `PROXY UNKNOWN <two longest IPv6> 65535 65535\r\n` (the
/// spec's bound, CRLF included).
pub const V1_MAX: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY ";
/// Version 2's signature: bytes no HTTP request (and no v1 header) can start with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version/command, family/transport, and the length of what follows.
const V2_FIXED: usize = 16;
/// The v2 TLVs read (the others are skipped): a checksum of the header, and TLS facts.
const PP2_TYPE_CRC32C: u8 = 0x03;
const PP2_TYPE_SSL: u8 = 0x20;
/// `PP2_TYPE_SSL`'s first byte: the client connected over TLS.
const PP2_CLIENT_SSL: u8 = 0x01;
/// Addresses of each v2 family: two IPv4 + two ports, two IPv6 + two ports, two Unix paths.
const V2_INET: usize = 12;
const V2_INET6: usize = 36;
const V2_UNIX: usize = 216;

/// Whom the proxy speaks for on this connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A client's TCP connection: its address, and the address it connected to.
    Tcp {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// A client on one of the proxy's Unix sockets (v2 `AF_UNIX`).
    Unix,
    /// The proxy's own connection (v2 `LOCAL`: health checks) or one it does not describe
    /// (v1 `UNKNOWN`, v2 `AF_UNSPEC`): the spec says the real peer stands.
    Local,
}

/// A complete header: whom it names, and how many bytes it took (the request follows them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub origin: Origin,
    pub len: usize,
    /// The client reached the proxy over TLS (v2 `PP2_TYPE_SSL` with `PP2_CLIENT_SSL`, what
    /// HAProxy's `send-proxy-v2-ssl` sends): the request's scheme is https.
    pub tls: bool,
}

/// Why the bytes are not a PROXY header (for the log line of the connection refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// The header at the start of `buf`: `Ok(None)` while what is there is a proper prefix of one
/// (read more; the caller bounds the wait), `Err` as soon as it cannot be one.
pub fn parse(buf: &[u8]) -> Result<Option<Header>, Malformed> {
    match buf.first() {
        None => Ok(None),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(Malformed("no PROXY header")),
    }
}

/// `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` or `PROXY UNKNOWN[ anything]\r\n`.
fn parse_v1(buf: &[u8]) -> Result<Option<Header>, Malformed> {
    let seen = buf.len().min(V1_PREFIX.len());
    if buf.get(..seen) != V1_PREFIX.get(..seen) {
        return Err(Malformed("no PROXY header"));
    }
    let window = buf.get(..buf.len().min(V1_MAX)).unwrap_or(buf);
    let lf = window.iter().position(|&b| b == b'\n');
    // The bytes before the LF (all of them while there is none): printable text, and a CR
    // only as the last. Checked first, so a line is refused for the same reason however
    // much of it has arrived.
    let text = window.get(..lf.unwrap_or(window.len())).unwrap_or(window);
    let cr = text.last() == Some(&b'\r');
    let printable = text
        .get(..text.len().saturating_sub(usize::from(cr)))
        .unwrap_or(text);
    if !printable.iter().all(|b| (b' '..=b'~').contains(b)) {
        return Err(Malformed("v1: a control byte in the header line"));
    }
    let Some(lf) = lf else {
        if window.len() >= V1_MAX {
            return Err(Malformed("v1: no CRLF within 107 bytes"));
        }
        return Ok(None);
    };
    if !cr {
        return Err(Malformed("v1: the line does not end in CRLF"));
    }
    let line = printable.get(V1_PREFIX.len()..).unwrap_or_default();
    let len = lf.saturating_add(1);
    // Printable ASCII, so text.
    let line = std::str::from_utf8(line).map_err(|_| Malformed("v1: not ASCII"))?;
    let mut fields = line.split(' ');
    let proto = fields.next().unwrap_or("");
    if proto == "UNKNOWN" {
        // The spec: whatever follows UNKNOWN is ignored.
        return Ok(Some(Header {
            origin: Origin::Local,
            len,
            tls: false,
        }));
    }
    let v6 = match proto {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(Malformed("v1: protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(Malformed(
            "v1: not exactly two addresses and two ports after the protocol",
        ));
    };
    let addr = |text: &str| -> Result<IpAddr, Malformed> {
        if v6 {
            text.parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| Malformed("v1: TCP6 with an address that is not IPv6"))
        } else {
            text.parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| Malformed("v1: TCP4 with an address that is not IPv4"))
        }
    };
    let source = SocketAddr::new(addr(src)?, v1_port(sport)?);
    let destination = SocketAddr::new(addr(dst)?, v1_port(dport)?);
    Ok(Some(Header {
        origin: Origin::Tcp {
            source,
            destination,
        },
        len,
        tls: false,
    }))
}

/// A v1 port: decimal 0..=65535, no sign, no leading zero.
fn v1_port(text: &str) -> Result<u16, Malformed> {
    let bad = Malformed("v1: a port is not a number 0..65535 without leading zeros");
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(bad);
    }
    text.parse::<u16>().map_err(|_| bad)
}

/// The binary header: signature, version 2 and a command, family and transport, the length
/// of the rest, addresses, then TLVs (their framing is checked; their content is not used).
fn parse_v2(buf: &[u8]) -> Result<Option<Header>, Malformed> {
    let seen = buf.len().min(V2_SIGNATURE.len());
    if buf.get(..seen) != V2_SIGNATURE.get(..seen) {
        return Err(Malformed("no PROXY header"));
    }
    let Some(&[.., ver_cmd, fam, hi, lo]) = buf.get(..V2_FIXED) else {
        // The version/command byte is judged as soon as it is here.
        if let Some(&ver_cmd) = buf.get(V2_SIGNATURE.len()) {
            v2_command(ver_cmd)?;
        }
        return Ok(None);
    };
    let local = v2_command(ver_cmd)?;
    let body_len = usize::from(u16::from_be_bytes([hi, lo]));
    // The family is judged before the rest arrives, so a bad one is refused at once.
    let (family, need) = if local {
        (Family::Unspec, 0)
    } else {
        v2_family(fam)?
    };
    if body_len < need {
        return Err(Malformed("v2: length shorter than the family's addresses"));
    }
    let len = V2_FIXED
        .checked_add(body_len)
        .ok_or(Malformed("v2: length"))?;
    let Some(body) = buf.get(V2_FIXED..len) else {
        return Ok(None);
    };
    if local {
        // The spec: the family and anything after it are ignored; the real peer stands.
        return Ok(Some(Header {
            origin: Origin::Local,
            len,
            tls: false,
        }));
    }
    let addrs = body.get(..need).ok_or(Malformed("v2: length"))?;
    let header = buf.get(..len).ok_or(Malformed("v2: length"))?;
    let tlvs = read_tlvs(header, V2_FIXED.saturating_add(need))?;
    let origin = match (family, addrs) {
        (Family::Unspec, _) => Origin::Local,
        (Family::Unix, _) => Origin::Unix,
        (Family::Inet, &[s0, s1, s2, s3, d0, d1, d2, d3, sp0, sp1, dp0, dp1]) => Origin::Tcp {
            source: SocketAddr::new(
                Ipv4Addr::new(s0, s1, s2, s3).into(),
                u16::from_be_bytes([sp0, sp1]),
            ),
            destination: SocketAddr::new(
                Ipv4Addr::new(d0, d1, d2, d3).into(),
                u16::from_be_bytes([dp0, dp1]),
            ),
        },
        (Family::Inet6, addrs) => {
            let (src, rest) = addrs
                .split_first_chunk::<16>()
                .ok_or(Malformed("v2: length"))?;
            let (dst, ports) = rest
                .split_first_chunk::<16>()
                .ok_or(Malformed("v2: length"))?;
            let &[sp0, sp1, dp0, dp1] = ports else {
                return Err(Malformed("v2: length"));
            };
            Origin::Tcp {
                source: SocketAddr::new(
                    Ipv6Addr::from(*src).into(),
                    u16::from_be_bytes([sp0, sp1]),
                ),
                destination: SocketAddr::new(
                    Ipv6Addr::from(*dst).into(),
                    u16::from_be_bytes([dp0, dp1]),
                ),
            }
        }
        // Cannot happen: `need` is the family's address length.
        (Family::Inet, _) => return Err(Malformed("v2: length")),
    };
    Ok(Some(Header {
        origin,
        len,
        tls: tlvs.tls,
    }))
}

/// Version 2 and its command: `true` for LOCAL, `false` for PROXY.
fn v2_command(ver_cmd: u8) -> Result<bool, Malformed> {
    if ver_cmd >> 4 != 2 {
        return Err(Malformed("v2: version is not 2"));
    }
    match ver_cmd & 0x0f {
        0 => Ok(true),
        1 => Ok(false),
        _ => Err(Malformed("v2: command is neither LOCAL nor PROXY")),
    }
}

enum Family {
    Unspec,
    Inet,
    Inet6,
    Unix,
}

/// The family/transport byte of a PROXY command, and the length of its addresses. The spec
/// defines seven values and says receivers must refuse the others; the datagram ones make no
/// sense on a stream connection.
fn v2_family(fam: u8) -> Result<(Family, usize), Malformed> {
    match fam {
        0x00 => Ok((Family::Unspec, 0)),
        0x11 => Ok((Family::Inet, V2_INET)),
        0x21 => Ok((Family::Inet6, V2_INET6)),
        0x31 => Ok((Family::Unix, V2_UNIX)),
        0x12 | 0x22 | 0x32 => Err(Malformed("v2: a datagram (UDP) family on a stream")),
        _ => Err(Malformed("v2: unknown address family or transport")),
    }
}

/// What the TLVs say that is used here.
#[derive(Default)]
struct Tlvs {
    tls: bool,
}

/// The TLVs of `header` (the whole v2 header) from `at`: type, 16-bit length, value, tiling
/// the rest exactly. A CRC32C checksum is verified (the spec: a receiver that supports it
/// must refuse a mismatch); `PP2_TYPE_SSL` says whether the client used TLS; the others are
/// skipped.
fn read_tlvs(header: &[u8], mut at: usize) -> Result<Tlvs, Malformed> {
    let bad = Malformed("v2: a TLV runs past the header's length");
    let mut out = Tlvs::default();
    while at < header.len() {
        let value_at = at.checked_add(3).ok_or(bad)?;
        let Some(&[kind, hi, lo]) = header.get(at..value_at) else {
            return Err(bad);
        };
        let end = value_at
            .checked_add(usize::from(u16::from_be_bytes([hi, lo])))
            .ok_or(bad)?;
        let value = header.get(value_at..end).ok_or(bad)?;
        match kind {
            PP2_TYPE_CRC32C => {
                let &[a, b, c, d] = value else {
                    return Err(Malformed("v2: a CRC32C TLV that is not 4 bytes"));
                };
                if crc32c_with_zeroed(header, value_at) != u32::from_be_bytes([a, b, c, d]) {
                    return Err(Malformed("v2: the CRC32C checksum does not match"));
                }
            }
            PP2_TYPE_SSL => {
                // client flags (1 byte), verify (4 bytes), then sub-TLVs.
                if value.len() < 5 {
                    return Err(Malformed("v2: an SSL TLV shorter than 5 bytes"));
                }
                out.tls = value.first().is_some_and(|c| c & PP2_CLIENT_SSL != 0);
            }
            _ => {}
        }
        at = end;
    }
    Ok(out)
}

/// CRC32C (Castagnoli, RFC 4960 appendix B) of `header` with the 4 bytes at `zeroed` taken as
/// zeros, as the sender computed it. Bitwise: headers are short, and checksums rare.
fn crc32c_with_zeroed(header: &[u8], zeroed: usize) -> u32 {
    let mut crc = !0u32;
    for (i, &byte) in header.iter().enumerate() {
        let byte = if (zeroed..zeroed.saturating_add(4)).contains(&i) {
            0
        } else {
            byte
        };
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82f6_3b78 & 0u32.wrapping_sub(crc & 1));
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(src: &str, dst: &str) -> Origin {
        Origin::Tcp {
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
        }
    }

    /// Every proper prefix of a complete header asks for more; the whole gives `want`, and
    /// bytes after it (the request) change nothing.
    fn complete(bytes: &[u8], want: Origin) {
        for n in 0..bytes.len() {
            assert_eq!(parse(&bytes[..n]), Ok(None), "prefix {n} of {bytes:?}");
        }
        let header = Header {
            origin: want,
            len: bytes.len(),
            tls: false,
        };
        assert_eq!(parse(bytes), Ok(Some(header.clone())));
        let mut more = bytes.to_vec();
        more.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(parse(&more), Ok(Some(header)));
    }

    fn malformed(bytes: &[u8], why: &str) {
        match parse(bytes) {
            Err(Malformed(m)) => assert!(m.contains(why), "{bytes:?}: {m:?}, not {why:?}"),
            other => panic!("{bytes:?}: {other:?}, not refused ({why})"),
        }
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        complete(
            b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\n",
            tcp("192.0.2.10:56324", "198.51.100.1:443"),
        );
        complete(
            b"PROXY TCP6 2001:db8::1 2001:db8::2 0 65535\r\n",
            tcp("[2001:db8::1]:0", "[2001:db8::2]:65535"),
        );
        complete(
            b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n",
            tcp("[::ffff:192.0.2.1]:1", "[::1]:2"),
        );
        complete(b"PROXY UNKNOWN\r\n", Origin::Local);
        complete(
            b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
            Origin::Local,
        );
    }

    #[test]
    fn v1_longest_header_fits() {
        let ip = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY TCP6 {ip} {ip} 65535 65535\r\n");
        assert_eq!(line.len(), 104);
        complete(
            line.as_bytes(),
            tcp(&format!("[{ip}]:65535"), &format!("[{ip}]:65535")),
        );
        // The spec's bound is this line with UNKNOWN (what a proxy may send for a family it
        // cannot name).
        let line = format!("PROXY UNKNOWN {ip} {ip} 65535 65535\r\n");
        assert_eq!(line.len(), V1_MAX);
        complete(line.as_bytes(), Origin::Local);
        // UNKNOWN padded to exactly the bound, and one byte past it.
        let pad = |n: usize| format!("PROXY UNKNOWN {}\r\n", "x".repeat(n));
        let at_bound = pad(V1_MAX - "PROXY UNKNOWN \r\n".len());
        assert_eq!(at_bound.len(), V1_MAX);
        complete(at_bound.as_bytes(), Origin::Local);
        malformed(
            pad(V1_MAX + 1 - "PROXY UNKNOWN \r\n".len()).as_bytes(),
            "107",
        );
    }

    #[test]
    fn v1_malformed() {
        let cases: &[(&[u8], &str)] = &[
            (b"GET / HTTP/1.1\r\n", "no PROXY header"),
            (b"PROXI TCP4", "no PROXY header"),
            (b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", "no PROXY header"),
            (b"PROXY\r\n", "no PROXY header"),
            (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "protocol"),
            (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "protocol"),
            (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "protocol"),
            (b"PROXY UNKNOWNX\r\n", "protocol"),
            (b"PROXY \r\n", "protocol"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "two ports"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "two ports"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "two ports"),
            (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "two ports"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", "two ports"),
            (b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", "control byte"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "CRLF"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "control byte"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n", "control byte"),
            (b"PROXY TCP4 1.2.3.4\r 5.6", "control byte"),
            (b"PROXY TCP4 1.2.3.\xff", "control byte"),
            (b"PROXY TCP4 ::1 ::1 1 2\r\n", "not IPv4"),
            (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "not IPv4"),
            (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "not IPv4"),
            (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "not IPv4"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8:9 1 2\r\n", "not IPv4"),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "not IPv6"),
            (b"PROXY TCP6 [::1] ::1 1 2\r\n", "not IPv6"),
            (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "not IPv6"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 099999\r\n", "port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "port"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 0x1 2\r\n", "port"),
        ];
        for (bytes, why) in cases {
            malformed(bytes, why);
        }
        // A control byte is the reason whether or not the line's end has arrived (found by
        // the fuzz target: the reason changed when the LF came).
        let control = b"PROXY TCP4!\x11\x00\x1e\xc0\x00\x02\n\xc63d";
        for n in 12..=control.len() {
            malformed(&control[..n], "control byte");
        }
        // No CRLF within the bound: refused at 107 bytes, not waited on.
        let long = format!("PROXY TCP4 {}", "1".repeat(200));
        assert_eq!(parse(&long.as_bytes()[..V1_MAX - 1]), Ok(None));
        malformed(&long.as_bytes()[..V1_MAX], "107");
        malformed(long.as_bytes(), "107");
    }

    /// A v2 header: version/command, family/transport, then `body` (addresses and TLVs).
    fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[ver_cmd, fam]);
        h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    fn inet_body() -> Vec<u8> {
        let mut b = vec![192, 0, 2, 10, 198, 51, 100, 1];
        b.extend_from_slice(&56324u16.to_be_bytes());
        b.extend_from_slice(&443u16.to_be_bytes());
        b
    }

    fn inet6_body() -> Vec<u8> {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut b = src.octets().to_vec();
        b.extend_from_slice(&dst.octets());
        b.extend_from_slice(&1234u16.to_be_bytes());
        b.extend_from_slice(&8080u16.to_be_bytes());
        b
    }

    #[test]
    fn v2_families() {
        complete(
            &v2(0x21, 0x11, &inet_body()),
            tcp("192.0.2.10:56324", "198.51.100.1:443"),
        );
        complete(
            &v2(0x21, 0x21, &inet6_body()),
            tcp("[2001:db8::1]:1234", "[2001:db8::2]:8080"),
        );
        complete(&v2(0x21, 0x31, &[0u8; V2_UNIX]), Origin::Unix);
        complete(&v2(0x21, 0x00, &[]), Origin::Local);
        // UNSPEC with bytes after it: TLVs, framing checked.
        complete(&v2(0x21, 0x00, &[0x04, 0, 0]), Origin::Local);
    }

    #[test]
    fn v2_local_ignores_family_and_addresses() {
        complete(&v2(0x20, 0x00, &[]), Origin::Local);
        complete(&v2(0x20, 0x11, &inet_body()), Origin::Local);
        // Even a family PROXY would refuse, and bytes that are no TLVs.
        complete(&v2(0x20, 0x12, &[1, 2, 3, 4, 5]), Origin::Local);
        complete(&v2(0x20, 0x99, &[]), Origin::Local);
    }

    #[test]
    fn v2_tlvs_are_skipped() {
        let mut body = inet_body();
        // PP2_TYPE_ALPN "h2", PP2_TYPE_NOOP of 0 bytes, PP2_TYPE_UNIQUE_ID of 5.
        body.extend_from_slice(&[
            0x01, 0, 2, b'h', b'2', 0x04, 0, 0, 0x05, 0, 5, 1, 2, 3, 4, 5,
        ]);
        complete(
            &v2(0x21, 0x11, &body),
            tcp("192.0.2.10:56324", "198.51.100.1:443"),
        );
        // The longest header the length field allows.
        let mut body = inet_body();
        let tlv = u16::MAX as usize - body.len() - 3;
        body.push(0xe0);
        body.extend_from_slice(&u16::try_from(tlv).unwrap().to_be_bytes());
        body.resize(u16::MAX as usize, 7);
        let h = v2(0x21, 0x11, &body);
        assert_eq!(h.len(), V2_FIXED + 65535);
        assert_eq!(parse(&h[..h.len() - 1]), Ok(None));
        assert_eq!(
            parse(&h).map(|h| h.map(|h| h.len)),
            Ok(Some(V2_FIXED + 65535))
        );
    }

    #[test]
    fn v2_ssl_tlv_says_tls() {
        let tls = |tlv: &[u8]| {
            let mut body = inet_body();
            body.extend_from_slice(tlv);
            parse(&v2(0x21, 0x11, &body)).map(|h| h.map(|h| h.tls))
        };
        // PP2_CLIENT_SSL, verify 0, a PP2_SUBTYPE_SSL_VERSION sub-TLV "TLSv1.3".
        let ssl = [
            0x20, 0, 15, 0x01, 0, 0, 0, 0, 0x21, 0, 7, b'T', b'L', b'S', b'v', b'1', b'.', b'3',
        ];
        assert_eq!(tls(&ssl), Ok(Some(true)));
        // Flags without PP2_CLIENT_SSL (a certificate flag alone), and no SSL TLV at all.
        assert_eq!(tls(&[0x20, 0, 5, 0x02, 0, 0, 0, 1]), Ok(Some(false)));
        assert_eq!(tls(&[]), Ok(Some(false)));
        assert_eq!(
            tls(&[0x20, 0, 4, 0x01, 0, 0, 0]),
            Err(Malformed("v2: an SSL TLV shorter than 5 bytes"))
        );
        // LOCAL ignores it (and everything else after the length).
        let local = parse(&v2(0x20, 0x11, &[&inet_body()[..], &ssl].concat()));
        assert_eq!(local.map(|h| h.map(|h| h.tls)), Ok(Some(false)));
    }

    #[test]
    fn crc32c_is_castagnoli() {
        // RFC 3720's check value for "123456789", and the same with 4 bytes zeroed.
        assert_eq!(crc32c_with_zeroed(b"123456789", 100), 0xe306_9283);
        assert_eq!(
            crc32c_with_zeroed(b"12345678", 2),
            crc32c_with_zeroed(b"12\x00\x00\x00\x0078", 100)
        );
    }

    #[test]
    fn v2_crc32c_is_verified() {
        let with_crc = |flip: bool| {
            let mut body = inet_body();
            body.extend_from_slice(&[0x03, 0, 4, 0, 0, 0, 0]);
            let mut h = v2(0x21, 0x11, &body);
            let at = h.len() - 4;
            let sum = crc32c_with_zeroed(&h, at);
            h[at..].copy_from_slice(&sum.to_be_bytes());
            if flip {
                h[V2_FIXED] ^= 1;
            }
            h
        };
        complete(
            &with_crc(false),
            tcp("192.0.2.10:56324", "198.51.100.1:443"),
        );
        malformed(&with_crc(true), "CRC32C checksum does not match");
        let mut body = inet_body();
        body.extend_from_slice(&[0x03, 0, 3, 0, 0, 0]);
        malformed(&v2(0x21, 0x11, &body), "not 4 bytes");
    }

    #[test]
    fn v2_malformed() {
        let sig = V2_SIGNATURE;
        let mut bad_sig = sig.to_vec();
        bad_sig[11] = b'X';
        malformed(&bad_sig, "no PROXY header");
        malformed(b"\r\n\r\nGET", "no PROXY header");
        malformed(b"\r\nGET / HTTP/1.1\r\n", "no PROXY header");
        // Version and command, judged as soon as the byte is here.
        let mut early = sig.to_vec();
        early.push(0x11);
        malformed(&early, "version");
        malformed(&v2(0x11, 0x11, &inet_body()), "version");
        malformed(&v2(0x31, 0x11, &inet_body()), "version");
        malformed(&v2(0x22, 0x11, &inet_body()), "command");
        malformed(&v2(0x2f, 0x11, &inet_body()), "command");
        // Families: datagram, unknown, undefined transport; judged before the addresses arrive.
        for fam in [0x12, 0x22, 0x32] {
            malformed(&v2(0x21, fam, &inet6_body()), "datagram");
            malformed(&v2(0x21, fam, &inet6_body())[..V2_FIXED], "datagram");
        }
        for fam in [0x01, 0x02, 0x10, 0x13, 0x41, 0xff] {
            malformed(&v2(0x21, fam, &inet6_body()), "unknown address family");
        }
        // A length too short for the family's addresses.
        malformed(&v2(0x21, 0x11, &inet_body()[..11]), "shorter");
        malformed(&v2(0x21, 0x11, &[]), "shorter");
        malformed(&v2(0x21, 0x21, &inet_body()), "shorter");
        malformed(&v2(0x21, 0x31, &[0u8; 215]), "shorter");
        malformed(&v2(0x21, 0x11, &inet_body()[..11])[..V2_FIXED], "shorter");
        // TLVs that do not tile the rest.
        for tail in [
            &[0x01][..],
            &[0x01, 0],
            &[0x01, 0, 3, b'a', b'b'],
            &[0x04, 0, 0, 0x01],
        ] {
            let mut body = inet_body();
            body.extend_from_slice(tail);
            malformed(&v2(0x21, 0x11, &body), "TLV");
        }
    }

    /// No byte string makes the parser panic or claim more than it was given; a verdict on a
    /// prefix never changes as bytes are added (a refused prefix stays refused).
    #[test]
    fn verdicts_are_stable_as_bytes_arrive() {
        let mut samples: Vec<Vec<u8>> = vec![
            b"PROXY TCP4 192.0.2.10 198.51.100.1 56324 443\r\nGET".to_vec(),
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2(0x21, 0x11, &inet_body()),
            v2(0x21, 0x12, &inet_body()),
            v2(0x20, 0x00, &[9; 40]),
        ];
        let mut h = v2(0x21, 0x21, &inet6_body());
        h.extend_from_slice(b"\x01\x00\x02h2GET /");
        samples.push(h);
        for s in &samples {
            let mut refused = None;
            for n in 0..=s.len() {
                match (parse(&s[..n]), refused) {
                    (Err(e), None) => refused = Some(e),
                    (Err(e), Some(first)) => assert_eq!(e, first, "{s:?} at {n}"),
                    (Ok(v), Some(first)) => panic!("{s:?} at {n}: {v:?} after {first:?}"),
                    (Ok(Some(h)), None) => assert!(h.len <= n),
                    (Ok(None), None) => {}
                }
            }
        }
    }
}
