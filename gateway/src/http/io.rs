//! One client socket, shared by the body reader and the responder of the request being served.
//! Operations try non-blocking first and release the GIL only when they really have to wait.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use parking_lot::Mutex;

use super::spool::Spool;
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
    /// What the client has not taken yet (see `spool`), and whether there is any: checked
    /// without the lock on every write.
    spool: Mutex<Spool>,
    spooled: AtomicBool,
    /// --write-buffer: copied bytes queued before a write waits for the client; 0 = never
    /// queue (the worker waits, GIL released).
    write_buffer: u64,
    /// A TCP connection without --stream-nodelay: a response's later blocks may be merged.
    merge_ok: bool,
    /// TCP_NODELAY is off (see `merge`); the lock makes each switch and this flag one step,
    /// as the worker and the pusher both switch it.
    merging: Mutex<bool>,
    /// Body writes while merging, so the pusher can tell a paused response from a busy one.
    pub(super) writes: AtomicU32,
}

impl ConnIo {
    pub fn new(
        stream: Stream,
        timeouts: (std::time::Duration, std::time::Duration),
        write_buffer: u64,
    ) -> ConnIo {
        ConnIo {
            stream,
            timeouts,
            timeouts_set: AtomicBool::new(false),
            response_started: AtomicBool::new(false),
            close_after: AtomicBool::new(true),
            spool: Mutex::new(Spool::default()),
            spooled: AtomicBool::new(false),
            write_buffer,
            merge_ok: false,
            merging: Mutex::new(false),
            writes: AtomicU32::new(0),
        }
    }

    /// Allows merging on this connection (TCP only; see `merge` and --stream-nodelay).
    pub fn allow_merging(mut self, on: bool) -> ConnIo {
        self.merge_ok = on && matches!(self.stream, Stream::Tcp(_));
        self
    }

    pub fn merge_allowed(&self) -> bool {
        self.merge_ok
    }

    /// `true`: TCP_NODELAY off, so the kernel holds a small write while an earlier small one is
    /// unacknowledged and sends it with what follows (Nagle). `false`: TCP_NODELAY on again,
    /// which also sends at once what the kernel holds. Returns whether the socket is now so.
    pub fn set_merging(&self, on: bool) -> bool {
        let Stream::Tcp(s) = &self.stream else {
            return !on;
        };
        let mut merging = self.merging.lock();
        if *merging != on && s.set_nodelay(!on).is_ok() {
            *merging = on;
        }
        *merging == on
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

    /// Writes every byte of `bufs` in order after anything queued before. What the socket does
    /// not take at once is queued (the reactor sends it as the client reads) until the queue
    /// passes --write-buffer; then this waits (GIL released) until the client has taken it all.
    pub fn write_all(&self, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        let mut bufs = bufs;
        if !self.spooled.load(Ordering::Acquire) {
            match write_vectored_all(&self.stream, &mut bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            if self.write_buffer == 0 {
                return self.blocking(move |s| {
                    // In blocking mode the write timeout surfaces as WouldBlock/TimedOut.
                    write_vectored_all(s, &mut bufs).map_err(write_timed_out)
                });
            }
        }
        let mut spool = self.spool.lock();
        if !spool.is_empty() && spool.flush(&self.stream)?.done {
            match write_vectored_all(&self.stream, &mut bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => {
                    self.spooled.store(false, Ordering::Release);
                    return other;
                }
            }
        }
        let len = bufs
            .iter()
            .map(|b| b.len())
            .fold(0usize, usize::saturating_add);
        if spool.will_spill(len) {
            // A file write can wait on the disk: never with the GIL held.
            let queue = &mut *spool;
            without_gil(move || queue.push(bufs))?;
        } else {
            spool.push(bufs)?;
        }
        self.spooled.store(true, Ordering::Release);
        if spool.copied() > self.write_buffer {
            self.wait_for_spool(&mut spool)?;
        }
        Ok(())
    }

    /// Sends `offset..offset+len` of `fd` after anything queued before, queuing (by
    /// descriptor) what the socket does not take at once.
    pub fn send_file(&self, fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
        let mut spool = self.spool.lock();
        spool.push_file(fd, offset, len)?;
        self.spooled.store(true, Ordering::Release);
        if spool.flush(&self.stream)?.done {
            self.spooled.store(false, Ordering::Release);
        } else if self.write_buffer == 0 {
            self.wait_for_spool(&mut spool)?;
        }
        Ok(())
    }

    /// Whether response bytes are queued for the reactor to send.
    pub fn spooled(&self) -> bool {
        self.spooled.load(Ordering::Acquire)
    }

    /// Sends what the queue holds without waiting; `done` once it is empty.
    pub fn flush_spool(&self) -> io::Result<super::spool::Flushed> {
        let mut spool = self.spool.lock();
        let flushed = spool.flush(&self.stream)?;
        if flushed.done {
            self.spooled.store(false, Ordering::Release);
        }
        Ok(flushed)
    }

    /// Waits (GIL released, bounded by --write-timeout) until the queue has gone out.
    fn wait_for_spool(&self, spool: &mut Spool) -> io::Result<()> {
        let flushed = self.blocking(|s| spool.flush(s).map_err(write_timed_out))?;
        if !flushed.done {
            // In blocking mode the write timeout surfaces as WouldBlock, which `flush` takes
            // for "full".
            return Err(write_timed_out(io::ErrorKind::WouldBlock.into()));
        }
        self.spooled.store(false, Ordering::Release);
        Ok(())
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

/// A blocking write that hit the socket's write timeout, reported as such.
fn write_timed_out(e: io::Error) -> io::Error {
    if timed_out(&e) {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "client stopped reading (--write-timeout)",
        )
    } else {
        e
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
