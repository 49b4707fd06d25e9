//! One client socket, shared by the body reader and the responder of the request being served.
//! Operations try non-blocking first and release the GIL only when they really have to wait;
//! a wait is bounded by the transfer's `RateMeter` (idle limit and minimum data rate).

use std::io::{self, IoSlice};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use rustix::event::{PollFd, PollFlags};

use super::merge::{Merge, Merging};
use super::rate::{MinRate, RateMeter, TooSlow};
use super::spool::{Spool, SpoolBudget};
use super::stream::Stream;
use crate::python::without_gil;

/// What bounds the sending side of a connection (from `Settings`).
#[derive(Clone)]
pub struct SendLimits {
    /// --write-timeout: longest wait for the client to take any byte.
    pub idle: Duration,
    /// --min-response-rate.
    pub min_rate: MinRate,
    /// --write-buffer: copied bytes queued before a write waits for the client; 0 = never
    /// queue (the worker waits, GIL released).
    pub write_buffer: u64,
    /// --write-buffer-total: what every connection's queue may hold together.
    pub budget: Arc<SpoolBudget>,
}

impl SendLimits {
    /// No queue and no rate: every write waits for the client, up to `idle`.
    pub fn unqueued(idle: Duration) -> SendLimits {
        SendLimits {
            idle,
            min_rate: MinRate::OFF,
            write_buffer: 0,
            budget: SpoolBudget::unlimited(),
        }
    }
}

pub struct ConnIo {
    pub stream: Stream,
    /// How long the current response may keep waiting for the client (reset per request).
    send_meter: Mutex<RateMeter>,
    send_rate: (MinRate, Duration),
    /// The final response's head has gone out: no more `100 Continue`.
    pub response_started: AtomicBool,
    /// The response being sent ends this connection (set by the responder per request).
    pub close_after: AtomicBool,
    /// What the client has not taken yet (see `spool`), and whether there is any: checked
    /// without the lock on every write.
    spool: Mutex<Spool>,
    spooled: AtomicBool,
    /// --write-buffer (see `SendLimits`).
    write_buffer: u64,
    /// Merging a response's later blocks (see `merge`).
    merge: Merge,
}

impl ConnIo {
    pub fn new(stream: Stream, limits: &SendLimits) -> ConnIo {
        ConnIo {
            stream,
            send_meter: Mutex::new(RateMeter::new(limits.min_rate, limits.idle)),
            send_rate: (limits.min_rate, limits.idle),
            response_started: AtomicBool::new(false),
            close_after: AtomicBool::new(true),
            spool: Mutex::new(Spool::new(limits.budget.clone())),
            spooled: AtomicBool::new(false),
            write_buffer: limits.write_buffer,
            merge: Merge::new(false),
        }
    }

    /// Allows merging on this connection (TCP only; see `merge` and --stream-nodelay).
    pub fn allow_merging(mut self, on: bool) -> ConnIo {
        self.merge = Merge::new(on && self.stream.is_tcp());
        self
    }

    /// Reads at least one byte (or EOF), waiting (GIL released) as long as `meter` allows.
    pub fn read(&self, buf: &mut [u8], meter: &mut RateMeter) -> io::Result<usize> {
        loop {
            match self.stream.read_nb(buf) {
                Ok(n) => {
                    meter.moved(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait_ready(PollFlags::IN, meter)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits (GIL released) until the socket is ready for `dir`, within what `meter` allows;
    /// `TimedOut` names the limit the client ran into.
    fn wait_ready(&self, dir: PollFlags, meter: &mut RateMeter) -> io::Result<()> {
        let (limit, why) = meter.limit();
        let start = Instant::now();
        let ready = without_gil(|| poll_until(&self.stream, dir, start + limit));
        meter.waited(start.elapsed());
        match ready {
            Ok(true) => Ok(()),
            Ok(false) => Err(too_slow(dir, why)),
            Err(e) => Err(e),
        }
    }

    /// Writes every byte of `bufs` in order after anything queued before. What the socket does
    /// not take at once is queued (the reactor sends it as the client reads) until the queue
    /// passes --write-buffer, or every connection's queues together would pass
    /// --write-buffer-total; then this waits (GIL released) until the client has taken it all.
    pub fn write_all(&self, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        let mut bufs = bufs;
        if !self.spooled.load(Ordering::Acquire) {
            match write_vectored_all(&self.stream, &mut bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            if self.write_buffer == 0 {
                return self.write_waiting(&mut bufs);
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
        let queued = if spool.will_spill(len) {
            // A file write can wait on the disk: never with the GIL held.
            let queue = &mut *spool;
            let pending = &*bufs;
            without_gil(move || queue.try_push(pending))?
        } else {
            spool.try_push(bufs)?
        };
        if !queued {
            // The server's queues are full (--write-buffer-total): this response waits for its
            // client instead of taking more memory or disk.
            spool.budget().say_full();
            self.wait_for_spool(&mut spool)?;
            return self.write_waiting(&mut bufs);
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

    /// How long the current response may keep waiting for its client: the reactor records
    /// its waits here too, so one meter covers the whole response.
    pub fn send_meter(&self) -> MutexGuard<'_, RateMeter> {
        self.send_meter.lock()
    }

    /// Writes the rest of `bufs`, waiting for the client as long as the send meter allows.
    fn write_waiting(&self, bufs: &mut &mut [IoSlice<'_>]) -> io::Result<()> {
        let mut meter = self.send_meter.lock();
        loop {
            let before = pending(bufs);
            let result = write_vectored_all(&self.stream, bufs);
            meter.moved(before.saturating_sub(pending(bufs)));
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait_ready(PollFlags::OUT, &mut meter)?
                }
                other => return other,
            }
        }
    }

    /// Waits (GIL released) until the queue has gone out, as long as the send meter allows.
    fn wait_for_spool(&self, spool: &mut Spool) -> io::Result<()> {
        let mut meter = self.send_meter.lock();
        loop {
            let flushed = spool.flush(&self.stream)?;
            meter.moved(flushed.sent);
            if flushed.done {
                self.spooled.store(false, Ordering::Release);
                return Ok(());
            }
            self.wait_ready(PollFlags::OUT, &mut meter)?;
        }
    }

    pub fn mark_started(&self) {
        self.response_started.store(true, Ordering::Release);
    }

    /// Resets the per-request flags before the next request on this connection.
    pub fn next_request(&self) {
        self.response_started.store(false, Ordering::Release);
        self.close_after.store(true, Ordering::Release);
        let (rate, idle) = self.send_rate;
        *self.send_meter.lock() = RateMeter::new(rate, idle);
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

impl Merging for ConnIo {
    fn merge(&self) -> &Merge {
        &self.merge
    }

    fn stream(&self) -> &Stream {
        &self.stream
    }
}

/// The error for a client that kept us waiting too long, naming the limit it ran into.
fn too_slow(dir: PollFlags, why: TooSlow) -> io::Error {
    let text = match (dir == PollFlags::IN, why) {
        (true, TooSlow::Idle) => "client sent nothing within --body-timeout",
        (true, TooSlow::Rate) => "client sent the body slower than --min-request-body-rate",
        (false, TooSlow::Idle) => "client stopped reading (--write-timeout)",
        (false, TooSlow::Rate) => "client read the response slower than --min-response-rate",
    };
    io::Error::new(io::ErrorKind::TimedOut, text)
}

/// Waits until `stream` is ready for `dir` (or hung up: the next call then says how) or
/// `deadline` passes; `false` on the deadline.
fn poll_until(stream: &Stream, dir: PollFlags, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = rustix::event::Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(stream, dir)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) if left.is_zero() => return Ok(false),
            // Woken early (timer slack) with time left: wait again.
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Bytes still to write in `bufs`.
fn pending(bufs: &[IoSlice<'_>]) -> usize {
    bufs.iter().map(|b| b.len()).fold(0, usize::saturating_add)
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
