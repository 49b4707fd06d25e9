//! The counters a supervisor shares with its workers: a memfd of seats (each a `Counters`
//! block and a taken flag), inherited like the balance board. A worker counts into its own
//! seat with relaxed atomics; the supervisor sums the taken seats, and when it reaps a worker
//! it folds the seat's counters into `retired` and frees the seat, under one lock with the
//! sum, so a scrape never sees a worker's counts twice or not at all.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{Counters, ExitReason, Totals};
use crate::shared_mem;

#[repr(C, align(64))]
struct Seat {
    /// Given to a worker (written by the supervisor only).
    taken: AtomicU64,
    counters: Counters,
}

/// A mapping of the seats (never unmapped: it lives as long as the process).
#[derive(Clone, Copy)]
pub struct Seats(&'static [Seat]);

/// The supervisor's side: the seats, the counts of workers that exited, and its own counts.
pub struct Aggregate {
    seats: Seats,
    retired: Mutex<Totals>,
    pub worker_starts: AtomicU64,
    exits: [AtomicU64; ExitReason::ALL.len()],
}

impl Aggregate {
    /// `seats` free seats; returns the fd the workers inherit. Leaked: the supervisor's
    /// endpoint thread reads it until the process ends.
    pub fn create(seats: usize) -> io::Result<(&'static Aggregate, OwnedFd)> {
        let len = seats
            .checked_mul(size_of::<Seat>())
            .ok_or(io::ErrorKind::InvalidInput)?;
        let fd = shared_mem::create("wsgi-gateway-metrics", len)?;
        let seats = Seats::map(&fd, len)?;
        let aggregate = Box::leak(Box::new(Aggregate {
            seats,
            retired: Mutex::new(Totals::default()),
            worker_starts: AtomicU64::new(0),
            exits: Default::default(),
        }));
        Ok((aggregate, fd))
    }

    /// A free seat for a worker about to start, cleared of what the last one left.
    pub fn take_seat(&self) -> Option<usize> {
        let i = self
            .seats
            .0
            .iter()
            .position(|s| s.taken.load(Ordering::Acquire) == 0)?;
        let seat = &self.seats.0[i];
        seat.counters.clear();
        seat.taken.store(1, Ordering::Release);
        Some(i)
    }

    /// The worker on seat `i` was reaped (nothing writes to the seat any more): its counters
    /// join the running total, its gauges drop out, and the seat is free.
    pub fn free_seat(&self, i: usize) {
        let Some(seat) = self.seats.0.get(i) else {
            return;
        };
        let mut retired = self.retired.lock();
        retired.add(&seat.counters, false);
        seat.taken.store(0, Ordering::Release);
    }

    pub fn worker_exited(&self, why: ExitReason) {
        self.exits[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn exits(&self, why: ExitReason) -> u64 {
        self.exits[why.index()].load(Ordering::Relaxed)
    }

    /// Every worker's counts now: the exited ones' and the live seats'.
    pub fn totals(&self) -> Totals {
        let retired = self.retired.lock();
        let mut t = retired.clone();
        for seat in self.seats.0 {
            if seat.taken.load(Ordering::Acquire) != 0 {
                t.add(&seat.counters, true);
            }
        }
        t
    }
}

impl Seats {
    /// A worker's mapping of the area its supervisor passed (`fd` may be closed after).
    pub fn open(fd: &OwnedFd) -> io::Result<Seats> {
        let len = shared_mem::len(fd)?;
        if len == 0 || len % size_of::<Seat>() != 0 {
            return Err(io::ErrorKind::InvalidData.into());
        }
        Seats::map(fd, len)
    }

    fn map(fd: &OwnedFd, len: usize) -> io::Result<Seats> {
        let base = shared_mem::map(fd, len)?;
        // SAFETY: the mapping is page-aligned (so 64-aligned), a whole number of seats long,
        // zero-filled or written only through these atomics (every bit pattern is a valid
        // `AtomicU64`), and never unmapped: 'static is true.
        let seats =
            unsafe { std::slice::from_raw_parts(base as *const Seat, len / size_of::<Seat>()) };
        Ok(Seats(seats))
    }

    /// The counters of seat `i`, for the worker given it.
    pub fn counters(&self, i: usize) -> Option<&'static Counters> {
        self.0.get(i).map(|s| &s.counters)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn counts_of_a_reaped_worker_stay_and_its_gauges_go() {
        let (sup, fd) = Aggregate::create(2).expect("area");
        let worker = Seats::open(&fd).expect("mapped again");
        let a = sup.take_seat().expect("seat");
        let b = sup.take_seat().expect("seat");
        assert_eq!(sup.take_seat(), None);
        let (ca, cb) = (worker.counters(a).unwrap(), worker.counters(b).unwrap());
        ca.request(b"GET", 200, Duration::from_millis(1));
        ca.in_flight(true);
        cb.request(b"GET", 200, Duration::from_millis(1));
        cb.set_open(3);
        let t = sup.totals();
        assert_eq!((t.requests[0][1], t.in_flight, t.open), (2, 1, 3));
        sup.free_seat(a);
        let t = sup.totals();
        assert_eq!((t.requests[0][1], t.in_flight, t.open), (2, 0, 3));
        // The seat's next worker starts from zero; the total keeps the first one's count.
        assert_eq!(sup.take_seat(), Some(a));
        assert_eq!(sup.totals().requests[0][1], 2);
        assert_eq!(
            worker
                .counters(a)
                .map(|c| c.in_flight.load(Ordering::Relaxed)),
            Some(0)
        );
    }

    #[test]
    fn a_file_of_the_wrong_size_is_refused() {
        let fd = shared_mem::create("test", 10).unwrap();
        assert!(Seats::open(&fd).is_err());
    }
}
