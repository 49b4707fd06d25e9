//! The client socket: a `socket2::Socket` (TCP or Unix), with the non-blocking reads and
//! writes the server, the connection I/O (`io`) and the response spool (`spool`) make on it.
//!
//! What socket2 does not do is kept here: it cannot tell TCP from Unix without a system call,
//! so the kind is remembered from the accept; and its `Write` impl sends without
//! `MSG_NOSIGNAL`, so writes pass it (a closed peer is `EPIPE`, never a `SIGPIPE`).
//! `sendfile`, `poll` and epoll work on the descriptor through rustix (`AsFd`).

use std::io::{self, IoSlice, Read};
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd};

use socket2::Socket;

pub struct Stream {
    sock: Socket,
    /// A TCP connection (TCP_NODELAY applies), not a Unix-socket one.
    tcp: bool,
}

impl Stream {
    /// A TCP connection (a `TcpStream`, or the descriptor `accept` gave).
    pub fn tcp(sock: impl Into<Socket>) -> Stream {
        Stream {
            sock: sock.into(),
            tcp: true,
        }
    }

    /// A Unix-socket connection.
    pub fn unix(sock: impl Into<Socket>) -> Stream {
        Stream {
            sock: sock.into(),
            tcp: false,
        }
    }

    pub fn is_tcp(&self) -> bool {
        self.tcp
    }

    /// TCP_NODELAY on or off; a Unix socket has no such option (`Unsupported`).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        if !self.tcp {
            return Err(io::ErrorKind::Unsupported.into());
        }
        self.sock.set_tcp_nodelay(on)
    }

    /// Whether TCP_NODELAY is on (`Unsupported` on a Unix socket).
    #[cfg(test)]
    pub fn nodelay(&self) -> io::Result<bool> {
        if !self.tcp {
            return Err(io::ErrorKind::Unsupported.into());
        }
        self.sock.tcp_nodelay()
    }

    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.sock.set_nonblocking(on)
    }

    pub fn shutdown_write(&self) {
        let _ = self.sock.shutdown(Shutdown::Write);
    }

    pub fn read_nb(&self, buf: &mut [u8]) -> io::Result<usize> {
        let r = (&self.sock).read(buf);
        if let (Some(m), Ok(n)) = (crate::metrics::counters(), &r) {
            m.received(*n);
        }
        r
    }

    /// One non-blocking write; for short server-generated answers where a partial write is
    /// acceptable (the connection is closed right after).
    pub fn write_nb(&self, buf: &[u8]) -> io::Result<usize> {
        sent(self.sock.send_with_flags(buf, libc::MSG_NOSIGNAL))
    }

    pub(super) fn write_vectored_nb(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sent(self.sock.send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL))
    }
}

/// Counts what a write sent (`bytes_sent_total`), when metrics are on.
pub(super) fn sent(r: io::Result<usize>) -> io::Result<usize> {
    if let (Some(m), Ok(n)) = (crate::metrics::counters(), &r) {
        m.sent(*n);
    }
    r
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}
