//! Response bytes a client has not taken yet. When the socket is full, the responder queues
//! the rest here instead of waiting for the client, so its worker moves on to other requests;
//! the reactor sends the queue as the client reads (EPOLLOUT). Up to `MEMORY` copied bytes
//! stay in memory, the rest go to an unlinked temporary file sent with `sendfile`; a file the
//! app hands over (`wsgi.file_wrapper`) is queued by a duplicate of its descriptor, not copied.
//! What all connections' queues copy together is bounded by one `SpoolBudget`
//! (--write-buffer-total), so many stalled readers cannot fill the memory or `TMPDIR`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::stream::Stream;

/// Copied bytes one connection keeps in memory before the rest goes to a temporary file.
pub const MEMORY: usize = 256 * 1024;
/// Largest piece one `sendfile` call is asked for.
const SENDFILE_MAX: u64 = 1 << 30;

enum Segment {
    Memory {
        data: Vec<u8>,
        sent: usize,
    },
    /// `at..end` of the spool's temporary file.
    Temp {
        at: u64,
        end: u64,
    },
    /// `at..end` of a file the app returned.
    File {
        fd: OwnedFd,
        at: u64,
        end: u64,
    },
}

/// Copied bytes queued across every connection of this process, and the most allowed.
pub struct SpoolBudget {
    used: AtomicU64,
    cap: u64,
    /// When a write last found the budget full and said so (at most once a minute).
    last_said: parking_lot::Mutex<Option<std::time::Instant>>,
}

impl SpoolBudget {
    pub fn new(cap: u64) -> Arc<SpoolBudget> {
        Arc::new(SpoolBudget {
            used: AtomicU64::new(0),
            cap,
            last_said: parking_lot::Mutex::new(None),
        })
    }

    /// Logs that the budget is full, at most once a minute: a sign of many stalled readers.
    pub fn say_full(&self) {
        let now = std::time::Instant::now();
        let mut last = self.last_said.lock();
        if last.is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(60)) {
            *last = Some(now);
            tracing::warn!(
                "queued response bytes reached --write-buffer-total ({} bytes): responses wait for their clients",
                self.cap
            );
        }
    }

    pub fn unlimited() -> Arc<SpoolBudget> {
        SpoolBudget::new(u64::MAX)
    }

    /// Takes `n` bytes of the budget if they fit.
    fn take(&self, n: u64) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.cap)
            })
            .is_ok();
        if let (Some(m), true) = (crate::metrics::counters(), taken) {
            m.spooled(n, true);
        }
        taken
    }

    fn give_back(&self, n: u64) {
        let before = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
        if let (Some(m), Ok(used)) = (crate::metrics::counters(), before) {
            // What actually left the budget, so the gauge stays equal to `used`.
            m.spooled(used.min(n), false);
        }
    }

    /// Bytes queued right now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

pub struct Spool {
    segments: VecDeque<Segment>,
    in_memory: usize,
    /// Copied bytes (memory and temporary file) not sent yet: what `--write-buffer` bounds,
    /// and this connection's share of `budget`.
    copied: u64,
    /// Created on the first spill, dropped (and so deleted) once everything is sent.
    temp: Option<(File, u64)>,
    budget: Arc<SpoolBudget>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.budget.give_back(self.copied);
    }
}

/// What one non-blocking `flush` achieved.
pub struct Flushed {
    pub done: bool,
    /// Bytes the socket took.
    pub sent: usize,
}

impl Spool {
    pub fn new(budget: Arc<SpoolBudget>) -> Spool {
        Spool {
            segments: VecDeque::new(),
            in_memory: 0,
            copied: 0,
            temp: None,
            budget,
        }
    }

    /// Queues a copy of `bufs` if the budget has room for all of it; `false`: nothing queued.
    pub fn try_push(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<bool> {
        let len = bufs
            .iter()
            .map(|b| b.len() as u64)
            .fold(0, u64::saturating_add);
        if !self.budget.take(len) {
            return Ok(false);
        }
        let before = self.copied;
        let pushed = self.push(bufs);
        // A spill that failed half-way queued less than was taken.
        let queued = self.copied.saturating_sub(before);
        self.budget.give_back(len.saturating_sub(queued));
        pushed.map(|()| true)
    }

    pub fn budget(&self) -> &SpoolBudget {
        &self.budget
    }

    /// Bytes that left the queue: no longer this connection's share of the budget.
    fn uncopy(&mut self, n: u64) {
        let n = n.min(self.copied);
        self.copied -= n;
        self.budget.give_back(n);
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn copied(&self) -> u64 {
        self.copied
    }

    /// Whether queuing `len` more bytes writes to the temporary file (worth releasing the GIL).
    pub fn will_spill(&self, len: usize) -> bool {
        self.in_memory.saturating_add(len) > MEMORY
    }

    /// Queues a copy of `bufs`, taken from the budget by `try_push`.
    fn push(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<()> {
        for buf in bufs.iter().filter(|b| !b.is_empty()) {
            let fits = self.in_memory.saturating_add(buf.len()) <= MEMORY;
            match self.segments.back_mut() {
                Some(Segment::Memory { data, .. }) if fits => data.extend_from_slice(buf),
                _ if fits => self.segments.push_back(Segment::Memory {
                    data: buf.to_vec(),
                    sent: 0,
                }),
                _ => self.spill(buf)?,
            }
            if fits {
                self.in_memory += buf.len();
            }
            self.copied = self.copied.saturating_add(buf.len() as u64);
        }
        Ok(())
    }

    /// Appends `buf` to the temporary file.
    fn spill(&mut self, buf: &[u8]) -> io::Result<()> {
        let (file, end) = match &mut self.temp {
            Some(t) => t,
            None => self.temp.insert((tempfile::tempfile()?, 0)),
        };
        file.write_all(buf)?;
        let start = *end;
        *end = end
            .checked_add(buf.len() as u64)
            .ok_or_else(|| io::Error::other("spool file too large"))?;
        match self.segments.back_mut() {
            Some(Segment::Temp { end: e, .. }) if *e == start => *e = *end,
            _ => self.segments.push_back(Segment::Temp {
                at: start,
                end: *end,
            }),
        }
        Ok(())
    }

    /// Queues `offset..offset+len` of `fd` (the app's file, duplicated: the app may close it).
    pub fn push_file(&mut self, fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
        let end = offset
            .checked_add(len)
            .ok_or_else(|| io::Error::other("file range too large"))?;
        self.segments.push_back(Segment::File {
            fd: fd.try_clone_to_owned()?,
            at: offset,
            end,
        });
        Ok(())
    }

    /// Sends what the socket takes without waiting (the socket is non-blocking), or waits
    /// for every byte when it is in blocking mode.
    pub fn flush(&mut self, stream: &Stream) -> io::Result<Flushed> {
        let mut sent_total = 0usize;
        while let Some(front) = self.segments.front_mut() {
            let copied = !matches!(front, Segment::File { .. });
            let (n, finished) = match front {
                Segment::Memory { data, sent } => {
                    let rest = data.get(*sent..).unwrap_or_default();
                    let n = match stream.write_nb(rest) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => n,
                        Err(e) => return self.stopped(e, sent_total),
                    };
                    *sent += n;
                    self.in_memory = self.in_memory.saturating_sub(n);
                    (n, *sent >= data.len())
                }
                Segment::Temp { at, end } => {
                    let Some((file, _)) = &self.temp else {
                        return Err(io::Error::other("spool file missing"));
                    };
                    let n = match send_file(stream, file.as_fd(), at, *end) {
                        Ok(n) => n,
                        Err(e) => return self.stopped(e, sent_total),
                    };
                    (n, *at >= *end)
                }
                Segment::File { fd, at, end } => {
                    let n = match send_file(stream, fd.as_fd(), at, *end) {
                        Ok(n) => n,
                        Err(e) => return self.stopped(e, sent_total),
                    };
                    (n, *at >= *end)
                }
            };
            sent_total = sent_total.saturating_add(n);
            if copied {
                self.uncopy(n as u64);
            }
            if finished {
                self.segments.pop_front();
            }
        }
        // Everything went out: the temporary file is deleted with its descriptor.
        self.temp = None;
        self.in_memory = 0;
        self.uncopy(self.copied);
        Ok(Flushed {
            done: true,
            sent: sent_total,
        })
    }

    /// A write that could not go on: the socket is full (not an error) or the client is gone.
    fn stopped(&self, e: io::Error, sent: usize) -> io::Result<Flushed> {
        match e.kind() {
            io::ErrorKind::WouldBlock => Ok(Flushed { done: false, sent }),
            _ => Err(e),
        }
    }
}

/// One `sendfile` of `*at..end` of `fd`, advancing `*at`; a file that ended early is an error
/// (the response promised those bytes).
fn send_file(stream: &Stream, fd: BorrowedFd<'_>, at: &mut u64, end: u64) -> io::Result<usize> {
    let count = usize::try_from(end.saturating_sub(*at).min(SENDFILE_MAX)).unwrap_or(1 << 20);
    let mut off = *at;
    loop {
        let n = match rustix::fs::sendfile(stream, fd, Some(&mut off), count) {
            Ok(n) => super::stream::sent(Ok(n))?,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than the response says",
            ));
        }
        *at = (*at).saturating_add(n as u64);
        return Ok(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    /// Pushes `total` bytes in pieces, then drains the spool into a reader thread through a
    /// small socket: the bytes arrive complete and in order, across memory and temp file.
    #[test]
    fn spool_keeps_order_across_memory_and_file() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let stream = Stream::unix(ours);
        let expected: Vec<u8> = (0..(3 * MEMORY + 12345)).map(|i| (i % 251) as u8).collect();
        let budget = SpoolBudget::new(u64::MAX);
        let mut spool = Spool::new(budget.clone());
        let mut at = 0;
        for size in [1usize, 1000, 70_000, MEMORY, 5, 300_000].iter().cycle() {
            let end = (at + size).min(expected.len());
            assert!(spool.try_push(&[IoSlice::new(&expected[at..end])]).unwrap());
            at = end;
            if at == expected.len() {
                break;
            }
        }
        assert!(spool.temp.is_some(), "more than MEMORY spills to a file");
        assert_eq!(spool.copied(), expected.len() as u64);
        assert_eq!(budget.used(), expected.len() as u64);
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).unwrap();
            got
        });
        loop {
            let f = spool.flush(&stream).unwrap();
            if f.done {
                break;
            }
            std::thread::yield_now();
        }
        assert!(spool.is_empty() && spool.temp.is_none() && spool.copied() == 0);
        assert_eq!(budget.used(), 0, "what went out is given back");
        drop(stream);
        assert!(reader.join().unwrap() == expected);
    }

    /// Two connections share one budget: a push that would pass the cap queues nothing, and
    /// what is sent or dropped is given back.
    #[test]
    fn the_budget_caps_what_every_spool_copies_together() {
        let budget = SpoolBudget::new(1000);
        let mut a = Spool::new(budget.clone());
        let mut b = Spool::new(budget.clone());
        assert!(a.try_push(&[IoSlice::new(&[1; 600])]).unwrap());
        assert!(!b.try_push(&[IoSlice::new(&[2; 401])]).unwrap());
        assert!(b.is_empty() && budget.used() == 600);
        assert!(b.try_push(&[IoSlice::new(&[2; 400])]).unwrap());
        assert_eq!(budget.used(), 1000);
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let stream = Stream::unix(ours);
        assert!(a.flush(&stream).unwrap().done);
        assert_eq!(budget.used(), 400);
        drop(b);
        assert_eq!(budget.used(), 0, "a dropped spool gives its share back");
        let mut got = vec![0u8; 600];
        theirs.read_exact(&mut got).unwrap();
        assert!(got.iter().all(|&x| x == 1));
    }
}
