//! Connections waiting in the TCP listeners' accept queues (`TCP_INFO` of a listening socket:
//! `tcpi_unacked` is the queue's length there, as uWSGI reads it), for `requests_waiting`:
//! each one was sent by a client that is waiting for an answer. Read at scrape time by the
//! process that holds the listeners (the single process, or the supervisor), so a worker
//! does nothing for it. Unix-socket listeners have no such figure and count none.

use std::os::fd::{AsRawFd, OwnedFd};

/// A listening socket's `tcpi_state` (the kernel's `TCP_LISTEN`, include/net/tcp_states.h).
#[cfg(target_os = "linux")]
const TCP_LISTEN: u8 = 10;

/// The connections queued on `listeners` now.
pub fn queued(listeners: &[OwnedFd]) -> u64 {
    listeners
        .iter()
        .filter_map(accept_queue)
        .fold(0u64, u64::saturating_add)
}

#[cfg(target_os = "linux")]
fn accept_queue(fd: &OwnedFd) -> Option<u64> {
    // SAFETY: all-zero is a valid `tcp_info` (plain integers).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(size_of::<libc::tcp_info>()).ok()?;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which is that long; `fd` is
    // a socket this process owns.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    (r == 0 && info.tcpi_state == TCP_LISTEN).then_some(u64::from(info.tcpi_unacked))
}

#[cfg(not(target_os = "linux"))]
fn accept_queue(_fd: &OwnedFd) -> Option<u64> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn connections_not_yet_accepted_are_counted() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = OwnedFd::from(l.try_clone().unwrap());
        assert_eq!(queued(std::slice::from_ref(&fd)), 0);
        let addr = l.local_addr().unwrap();
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // The handshake's last ACK may still be on its way when connect returns: poll.
        let settle = |want: u64| {
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while queued(std::slice::from_ref(&fd)) != want && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            queued(std::slice::from_ref(&fd))
        };
        assert_eq!(settle(3), 3);
        drop(l.accept().unwrap());
        assert_eq!(settle(2), 2);
        drop(clients);
        // A Unix socket has no accept queue figure here.
        let dir = tempfile::tempdir().unwrap();
        let u = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        assert_eq!(queued(&[OwnedFd::from(u)]), 0);
    }
}
