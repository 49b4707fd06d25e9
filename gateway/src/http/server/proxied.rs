//! `--proxy-protocol` on a new connection: its peer must be a trusted proxy (checked at
//! accept), and its first bytes a PROXY header, which then names the client in the peer's
//! place (REMOTE_ADDR, REMOTE_PORT, the access log's `%h`, the header trust rules), the
//! address it connected to (SERVER_ADDR, SERVER_PORT), and whether it used TLS (a v2 SSL TLV:
//! `wsgi.url_scheme` https).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::{Buf, Bytes};

use super::phase::{ConnState, Phase};
use super::Server;
use crate::http::proxy_protocol::{self, Header, Origin};
use crate::http::{Conn, ListenerInfo};
use crate::request::{Peer, Scheme, TcpPeer};

/// What became of the PROXY header after a read.
pub(super) enum Taken {
    /// Not all here yet: read again (the header timeout bounds the wait).
    More,
    /// Taken off the buffer; what follows it (maybe nothing yet) is the first request.
    Done,
    /// Malformed (logged): close the connection, unanswered.
    Refused,
}

impl Server {
    /// Whether a connection from `peer` may be served under --proxy-protocol: only a
    /// --forwarded-allow-ips peer may say whom it speaks for. Logs the refusal.
    pub(super) fn proxy_peer_trusted(&self, peer: &Peer) -> bool {
        let trusted = self.shared.app.environ.policy().peer_trusted(peer);
        if !trusted {
            tracing::warn!(
                "{}: connection refused: --proxy-protocol is on and the peer is not in --forwarded-allow-ips",
                real_peer(peer)
            );
        }
        trusted
    }

    /// Takes the PROXY header off the start of the connection's buffer, if it is all there.
    pub(super) fn take_proxy_header(&self, state: &mut ConnState) -> Taken {
        match proxy_protocol::parse(&state.buf) {
            Ok(None) => Taken::More,
            Err(e) => {
                tracing::warn!(
                    "{}: connection refused: {e} (--proxy-protocol)",
                    real_peer(&state.conn.peer)
                );
                Taken::Refused
            }
            Ok(Some(header)) => {
                let len = header.len;
                apply(&mut state.conn, header);
                state.buf.advance(len);
                // The deadline stays: the header timeout, counted from the accept, covers the
                // PROXY header and the first request's head together.
                state.phase = Phase::Reading;
                Taken::Done
            }
        }
    }
}

/// The connection as the proxy describes it. LOCAL (the proxy's own health check) and
/// UNKNOWN keep the real peer, as the spec says.
fn apply(conn: &mut Conn, header: Header) {
    let listener = &conn.listener;
    let scheme = match header.tls {
        true => Scheme::Https,
        false => listener.scheme,
    };
    match header.origin {
        Origin::Tcp {
            source,
            destination,
        } => {
            let (source, destination) = (unmapped(source), unmapped(destination));
            conn.peer = Peer::Tcp(TcpPeer::new(source));
            conn.listener = Arc::new(ListenerInfo {
                server_name: listener.server_name.clone(),
                server_port: destination.port().to_string().into(),
                scheme,
                server_addr: Some(Bytes::from(destination.ip().to_string())),
            });
            return;
        }
        Origin::Unix => conn.peer = Peer::Unix,
        Origin::Local => {}
    }
    if scheme != listener.scheme {
        conn.listener = Arc::new(ListenerInfo {
            server_name: listener.server_name.clone(),
            server_port: listener.server_port.clone(),
            scheme,
            server_addr: listener.server_addr.clone(),
        });
    }
}

/// An IPv4 client a proxy names as IPv6 (`::ffff:192.0.2.1`, from a dual-stack socket) is
/// shown as IPv4, as the server's own IPv6 listeners (IPv6 only) never show one.
fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// The address of the connection's real peer (with its port), for a log line.
pub(super) fn real_peer(peer: &Peer) -> String {
    match peer {
        Peer::Tcp(p) => p.addr.to_string(),
        Peer::Unix => "unix".to_string(),
        Peer::Named { addr, .. } => addr.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv4_is_shown_as_ipv4() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(unmapped(a("[::ffff:192.0.2.1]:80")), a("192.0.2.1:80"));
        assert_eq!(unmapped(a("[2001:db8::1]:80")), a("[2001:db8::1]:80"));
        assert_eq!(unmapped(a("[::1]:1")), a("[::1]:1"));
        assert_eq!(unmapped(a("192.0.2.1:80")), a("192.0.2.1:80"));
    }
}
