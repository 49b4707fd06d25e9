//! One client socket, shared by the body reader and the responder of the request being served.
//! Operations try non-blocking first and release the GIL only when they really have to wait.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::python::without_gil;

pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }

    pub fn set_timeouts(
        &self,
        read: std::time::Duration,
        write: std::time::Duration,
    ) -> io::Result<()> {
        let (read, write) = (Some(read.max(MIN_TIMEOUT)), Some(write.max(MIN_TIMEOUT)));
        match self {
            Stream::Tcp(s) => s
                .set_read_timeout(read)
                .and_then(|_| s.set_write_timeout(write)),
            Stream::Unix(s) => s
                .set_read_timeout(read)
                .and_then(|_| s.set_write_timeout(write)),
        }
    }

    pub fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }

    pub fn read_nb(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
        }
    }

    /// One non-blocking write; for short server-generated answers where a partial write is
    /// acceptable (the connection is closed right after).
    pub fn write_nb(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write(buf),
            Stream::Unix(s) => (&*s).write(buf),
        }
    }

    fn write_vectored_nb(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write_vectored(bufs),
            Stream::Unix(s) => (&*s).write_vectored(bufs),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// A zero timeout means "none" to the socket API; never ask for that.
const MIN_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1);

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

pub struct ConnIo {
    pub stream: Stream,
    /// (--body-timeout, --write-timeout): given to the socket the first time a call has to
    /// wait, so a connection that never waits costs no setsockopt.
    timeouts: (std::time::Duration, std::time::Duration),
    timeouts_set: AtomicBool,
    /// The final response's head has gone out: no more `100 Continue`.
    pub response_started: AtomicBool,
    /// The response being sent ends this connection (set by the responder per request).
    pub close_after: AtomicBool,
}

impl ConnIo {
    pub fn new(stream: Stream, timeouts: (std::time::Duration, std::time::Duration)) -> ConnIo {
        ConnIo {
            stream,
            timeouts,
            timeouts_set: AtomicBool::new(false),
            response_started: AtomicBool::new(false),
            close_after: AtomicBool::new(true),
        }
    }

    /// Reads at least one byte (or EOF), waiting up to the socket's read timeout.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stream.read_nb(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.blocking(|s| match s.read_nb(buf) {
                    Err(e) if timed_out(&e) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client sent nothing within --body-timeout",
                    )),
                    other => other,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.read(buf),
            other => other,
        }
    }

    /// Writes every byte of `bufs`, waiting (GIL released) whenever the socket is full.
    pub fn write_all(&self, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        let mut bufs = bufs;
        match write_vectored_all(&self.stream, &mut bufs) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.blocking(move |s| {
                // In blocking mode the socket's write timeout surfaces as WouldBlock/TimedOut.
                write_vectored_all(s, &mut bufs).map_err(|e| {
                    if timed_out(&e) {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            "client stopped reading (--write-timeout)",
                        )
                    } else {
                        e
                    }
                })
            }),
            other => other,
        }
    }

    /// Runs `f` on the socket in blocking mode (bounded by its timeouts) without the GIL.
    pub fn blocking<T: Send>(
        &self,
        f: impl Send + FnOnce(&Stream) -> io::Result<T>,
    ) -> io::Result<T> {
        let stream = &self.stream;
        if !self.timeouts_set.swap(true, Ordering::AcqRel) {
            stream.set_timeouts(self.timeouts.0, self.timeouts.1)?;
        }
        without_gil(move || {
            stream.set_nonblocking(false)?;
            let result = f(stream);
            stream.set_nonblocking(true)?;
            result
        })
    }

    pub fn mark_started(&self) {
        self.response_started.store(true, Ordering::Release);
    }

    /// Resets the per-request flags before the next request on this connection.
    pub fn next_request(&self) {
        self.response_started.store(false, Ordering::Release);
        self.close_after.store(true, Ordering::Release);
    }

    pub fn set_close_after(&self, close: bool) {
        self.close_after.store(close, Ordering::Release);
    }

    pub fn close_after(&self) -> bool {
        self.close_after.load(Ordering::Acquire)
    }

    pub fn started(&self) -> bool {
        self.response_started.load(Ordering::Acquire)
    }
}

/// Writes `bufs` until done or an error (`WouldBlock` included), consuming what was written.
fn write_vectored_all(stream: &Stream, bufs: &mut &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(bufs, 0);
    while !bufs.is_empty() {
        match stream.write_vectored_nb(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
