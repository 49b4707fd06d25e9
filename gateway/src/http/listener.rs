//! Binding the listening sockets: TCP (IPv4/IPv6) and Unix-domain. Errors are one line naming
//! the socket (a `String`): `serve` reports it and exits, whatever the cause.

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

/// What a `unix:` socket file gets between `bind` and `listen` (before anyone can connect):
/// `--socket-mode`, and the owner `--user`/`--group` will run as (as gunicorn does), so
/// the server's user owns its socket.
#[derive(Default, Clone, Copy)]
pub struct UnixFile {
    pub mode: Option<u32>,
    pub owner: Option<(Option<u32>, u32)>,
}

/// Binds `HOST:PORT`, `[V6]:PORT` or `unix:PATH`.
pub fn bind(addr: &str, backlog: u32) -> Result<Bound, String> {
    bind_with(addr, backlog, UnixFile::default())
}

/// `bind`, with the socket file's mode and owner for a `unix:` address.
pub fn bind_with(addr: &str, backlog: u32, file: UnixFile) -> Result<Bound, String> {
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
            .and_then(|sa| bind_only(Domain::UNIX, &sa))
            .map_err(|e| format!("--bind {addr}: {e}"))?;
        set_file(&path, file).map_err(|e| format!("--bind {addr}: {e}"))?;
        listen_on(&sock, backlog).map_err(|e| format!("--bind {addr}: {e}"))?;
        return Ok(unix_bound(sock, path));
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
    Ok(tcp_bound(listener, local))
}

fn unix_bound(sock: Socket, path: PathBuf) -> Bound {
    let listener = UnixListener::from(std::os::fd::OwnedFd::from(sock));
    let display = format!("unix:{}", path.display());
    Bound {
        sock: Sock::Unix(listener, path),
        info: Arc::new(ListenerInfo {
            server_name: "localhost".into(),
            server_port: "0".into(),
            scheme: Scheme::Http,
            server_addr: None,
        }),
        display,
    }
}

fn tcp_bound(listener: TcpListener, local: SocketAddr) -> Bound {
    let host = match local {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    Bound {
        sock: Sock::Tcp(listener),
        info: Arc::new(ListenerInfo {
            server_name: host.as_str().into(),
            server_port: local.port().to_string().into(),
            scheme: Scheme::Http,
            server_addr: None,
        }),
        display: format!("http://{host}:{}", local.port()),
    }
}

/// A non-blocking listening socket bound to `sa`.
fn listen(domain: Domain, sa: &socket2::SockAddr, backlog: i32) -> std::io::Result<Socket> {
    let sock = bind_only(domain, sa)?;
    listen_on(&sock, backlog)?;
    Ok(sock)
}

/// A socket bound to `sa`, not yet listening (TCP sockets reuse the address; an IPv6 one
/// does not also take IPv4).
fn bind_only(domain: Domain, sa: &socket2::SockAddr) -> std::io::Result<Socket> {
    let sock = Socket::new(domain, Type::STREAM, None)?;
    if domain != Domain::UNIX {
        sock.set_reuse_address(true)?;
    }
    if domain == Domain::IPV6 {
        let _ = sock.set_only_v6(true);
    }
    sock.bind(sa)?;
    Ok(sock)
}

fn listen_on(sock: &Socket, backlog: i32) -> std::io::Result<()> {
    sock.listen(backlog)?;
    sock.set_nonblocking(true)
}

/// `--socket-mode` and the owner, on a bound socket's file: nobody can connect yet (it does
/// not listen), so no client ever sees the mode the umask gave it.
fn set_file(path: &std::path::Path, file: UnixFile) -> Result<(), String> {
    use rustix::fs::{Gid, Mode, Uid};
    if let Some((uid, gid)) = file.owner {
        rustix::fs::chown(path, uid.map(Uid::from_raw), Some(Gid::from_raw(gid)))
            .map_err(|e| format!("cannot give the socket file to --user/--group: {e}"))?;
    }
    if let Some(mode) = file.mode {
        rustix::fs::chmod(path, Mode::from_bits_truncate(mode))
            .map_err(|e| format!("--socket-mode {mode:o}: {e}"))?;
    }
    Ok(())
}

impl Bound {
    pub fn fd(&self) -> BorrowedFd<'_> {
        match &self.sock {
            Sock::Tcp(s) => s.as_fd(),
            Sock::Unix(s, _) => s.as_fd(),
        }
    }
}

/// A socket another process bound for us (systemd, or the supervisor), already listening:
/// made close-on-exec and non-blocking, and described like one we bound ourselves.
pub fn adopt(fd: std::os::fd::OwnedFd, origin: &str) -> Result<Bound, String> {
    close_on_exec(fd.as_fd()).map_err(|e| format!("{origin}: {e}"))?;
    let sock = Socket::from(fd);
    let local = sock
        .local_addr()
        .map_err(|e| format!("{origin}: not a socket ({e})"))?;
    if !matches!(sock.r#type(), Ok(t) if t == Type::STREAM) {
        return Err(format!("{origin}: not a stream socket"));
    }
    sock.set_nonblocking(true)
        .map_err(|e| format!("{origin}: {e}"))?;
    if let Some(path) = local.as_pathname().map(PathBuf::from) {
        return Ok(unix_bound(sock, path));
    }
    let local = local
        .as_socket()
        .ok_or_else(|| format!("{origin}: neither a TCP nor a named Unix socket"))?;
    Ok(tcp_bound(
        TcpListener::from(std::os::fd::OwnedFd::from(sock)),
        local,
    ))
}

/// Sets close-on-exec on an fd this process was handed without it (inherited fds must be, to
/// be inherited at all): a process the app starts must not keep the server's sockets or pipes.
pub fn close_on_exec(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    use rustix::io::{fcntl_getfd, fcntl_setfd, FdFlags};
    fcntl_setfd(fd, fcntl_getfd(fd)? | FdFlags::CLOEXEC)?;
    Ok(())
}

/// The first inherited descriptor (systemd's SD_LISTEN_FDS_START; the supervisor uses it too).
pub const FIRST_INHERITED_FD: i32 = 3;

/// Takes `count` listening sockets from fds 3, 4, … (`origin` names where they came from).
pub fn adopt_inherited(count: usize, origin: &str) -> Result<Vec<Bound>, String> {
    use std::os::fd::FromRawFd;
    (0..count)
        .map(|i| {
            let fd = FIRST_INHERITED_FD
                .checked_add(i32::try_from(i).map_err(|e| e.to_string())?)
                .ok_or("too many inherited sockets")?;
            // SAFETY: the protocol (systemd's or our supervisor's) hands this process fds
            // 3..3+count as open sockets it now owns; nothing else in the process uses them.
            let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
            adopt(owned, &format!("{origin} fd {fd}"))
        })
        .collect()
}

/// systemd socket activation: `LISTEN_FDS` sockets when `LISTEN_PID` is this process. The
/// variables are removed (by `forget`) so the app's child processes do not take them for their
/// own.
pub fn systemd_sockets(forget: impl Fn(&str)) -> Result<Option<Vec<Bound>>, String> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        forget(var);
    }
    let count: usize = count
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_FDS={count:?} is not a number"))?;
    if count == 0 {
        return Err("LISTEN_FDS=0: systemd passed no sockets".into());
    }
    adopt_inherited(count, "LISTEN_FDS").map(Some)
}
