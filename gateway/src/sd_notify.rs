//! systemd's readiness protocol (`sd_notify`, `Type=notify`): datagrams such as `READY=1` to
//! the socket named in `NOTIFY_SOCKET`. Only the process systemd started (the supervisor, or
//! the one serving process) talks to it: the variable is taken out of the environment at
//! start, so workers and the app's own child processes never see it, as systemd's
//! `sd_notify(unset_environment=1)` does. Without `NOTIFY_SOCKET` nothing here exists.

use std::os::fd::OwnedFd;

use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

/// The variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET_VAR: &str = "NOTIFY_SOCKET";

/// A datagram socket and systemd's address. Sending is one `sendto`: no allocation, no lock,
/// so `stopping` may run inside a signal handler.
pub struct Notifier {
    sock: OwnedFd,
    addr: SocketAddrUnix,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` names, if it is set; `forget` removes the variable from
    /// the environment (the caller's only thread must be running: see `Shape::forget_env`).
    /// A value that is not a usable socket address is logged and ignored (systemd then
    /// reports the start as timed out, which names the cause better than a refusal here).
    pub fn from_env(forget: impl Fn(&str)) -> Option<Notifier> {
        let value = std::env::var_os(NOTIFY_SOCKET_VAR)?;
        forget(NOTIFY_SOCKET_VAR);
        match Notifier::open(value.as_encoded_bytes()) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET={value:?}: {e}; not notifying systemd");
                None
            }
        }
    }

    /// A path (`/run/systemd/notify`) or an abstract name (`@name`).
    fn open(value: &[u8]) -> std::io::Result<Notifier> {
        let addr = match value {
            #[cfg(target_os = "linux")]
            [b'@', name @ ..] if !name.is_empty() => SocketAddrUnix::new_abstract_name(name)?,
            [b'/', ..] => SocketAddrUnix::new(value)?,
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "neither an absolute path nor an @abstract name",
                ))
            }
        };
        let sock = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        Ok(Notifier { sock, addr })
    }

    /// Sends one message (newline-separated `KEY=value` lines). A failure is logged: systemd
    /// gone or its socket full must not stop the server.
    pub fn send(&self, message: &str) {
        if let Err(e) = self.send_raw(message.as_bytes()) {
            tracing::warn!("sd_notify {:?}: {e}", message.lines().next().unwrap_or(""));
        } else {
            tracing::debug!("sd_notify: {}", message.replace('\n', " "));
        }
    }

    fn send_raw(&self, message: &[u8]) -> rustix::io::Result<usize> {
        rustix::net::sendto(&self.sock, message, SendFlags::NOSIGNAL, &self.addr)
    }

    /// `READY=1` with a `STATUS=` line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// `RELOADING=1` with the monotonic time systemd matches it against (systemd 253+).
    pub fn reloading(&self, status: &str) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = u64::try_from(now.tv_sec)
            .unwrap_or(0)
            .saturating_mul(1_000_000)
            .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0) / 1000);
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS={status}"
        ));
    }

    /// `STOPPING=1`. Async-signal-safe (one system call on data made beforehand), so a
    /// SIGTERM handler may call it; the result is ignored there (nothing can be logged).
    pub fn stopping(&self) {
        let _ = self.send_raw(b"STOPPING=1\nSTATUS=stopping");
    }
}

#[cfg(test)]
mod tests {
    use super::Notifier;
    use std::os::unix::net::UnixDatagram;

    fn received(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("notify");
        let systemd = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::open(path.as_os_str().as_encoded_bytes()).expect("open");
        n.ready("serving");
        assert_eq!(received(&systemd), "READY=1\nSTATUS=serving");
        n.reloading("reloading");
        let msg = received(&systemd);
        let lines: Vec<_> = msg.lines().collect();
        assert_eq!(lines[0], "RELOADING=1");
        let usec = lines[1].strip_prefix("MONOTONIC_USEC=").expect("a time");
        assert!(usec.parse::<u64>().is_ok_and(|u| u > 0), "{msg}");
        n.stopping();
        assert_eq!(received(&systemd), "STOPPING=1\nSTATUS=stopping");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_names_and_bad_values() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("wsgi-gateway-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("an abstract address");
        let systemd = UnixDatagram::bind_addr(&addr).expect("bind");
        let n = Notifier::open(format!("@{name}").as_bytes()).expect("open");
        n.ready("hello");
        assert_eq!(received(&systemd), "READY=1\nSTATUS=hello");
        for bad in [&b""[..], b"@", b"relative/path"] {
            assert!(Notifier::open(bad).is_err(), "{bad:?}");
        }
    }
}
