//! Binding the listening sockets: TCP (IPv4/IPv6) and Unix-domain.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;

use socket2::{Domain, Socket, Type};

use super::ListenerInfo;
use crate::request::Scheme;

pub enum Sock {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// A bound, listening socket and what it tells the app about itself.
pub struct Bound {
    pub sock: Sock,
    pub info: Arc<ListenerInfo>,
    /// `http://127.0.0.1:8000` or `unix:/run/app.sock`, for the log.
    pub display: String,
}

/// Binds `HOST:PORT`, `[V6]:PORT` or `unix:PATH`.
pub fn bind(addr: &str, backlog: u32) -> Result<Bound, String> {
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    if let Some(path) = addr.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                // A socket file left by a previous run; nothing can be listening on it.
                if UnixStream::connect(&path).is_ok() {
                    return Err(format!("--bind {addr}: another server is listening there"));
                }
                let _ = std::fs::remove_file(&path);
            } else {
                return Err(format!(
                    "--bind {addr}: {} exists and is not a socket",
                    path.display()
                ));
            }
        }
        let sock = socket2::SockAddr::unix(&path)
            .and_then(|sa| listen(Domain::UNIX, &sa, backlog))
            .map_err(|e| format!("--bind {addr}: {e}"))?;
        let listener: UnixListener = UnixListener::from(std::os::fd::OwnedFd::from(sock));
        return Ok(Bound {
            sock: Sock::Unix(listener, path.clone()),
            info: Arc::new(ListenerInfo {
                server_name: "localhost".into(),
                server_port: "0".into(),
                scheme: Scheme::Http,
            }),
            display: format!("unix:{}", path.display()),
        });
    }
    let sa: SocketAddr = match addr.parse() {
        Ok(sa) => sa,
        Err(_) => addr
            .to_socket_addrs()
            .map_err(|e| {
                format!("--bind {addr}: expected HOST:PORT, [V6]:PORT or unix:PATH ({e})")
            })?
            .next()
            .ok_or_else(|| format!("--bind {addr}: the host name has no address"))?,
    };
    let (listener, local) = listen(Domain::for_address(sa), &sa.into(), backlog)
        .map(TcpListener::from)
        .and_then(|l| l.local_addr().map(|local| (l, local)))
        .map_err(|e| format!("--bind {addr}: {e}"))?;
    let host = match local {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    Ok(Bound {
        sock: Sock::Tcp(listener),
        info: Arc::new(ListenerInfo {
            server_name: host.clone(),
            server_port: local.port().to_string(),
            scheme: Scheme::Http,
        }),
        display: format!("http://{host}:{}", local.port()),
    })
}

/// A non-blocking listening socket bound to `sa` (TCP sockets reuse the address; an IPv6
/// one does not also take IPv4).
fn listen(domain: Domain, sa: &socket2::SockAddr, backlog: i32) -> std::io::Result<Socket> {
    let sock = Socket::new(domain, Type::STREAM, None)?;
    if domain != Domain::UNIX {
        sock.set_reuse_address(true)?;
    }
    if domain == Domain::IPV6 {
        let _ = sock.set_only_v6(true);
    }
    sock.bind(sa)?;
    sock.listen(backlog)?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

impl Bound {
    pub fn fd(&self) -> BorrowedFd<'_> {
        match &self.sock {
            Sock::Tcp(s) => s.as_fd(),
            Sock::Unix(s, _) => s.as_fd(),
        }
    }
}
