//! Prometheus metrics (`--metrics-bind`): the counters a serving process keeps, and where
//! they are read. Off (no `--metrics-bind`), nothing is counted: every hook is one load of
//! `COUNTERS` (empty) and a branch.
//!
//! A process that serves by itself counts into a block of its own and its `endpoint` thread
//! renders it. Under `--workers` each worker counts into its seat of a shared area the
//! supervisor made (`area`, a memfd like the balance board), and the supervisor's endpoint
//! sums the seats; a worker's counts are folded into a running total when it is reaped, so
//! counters never go backwards, and its gauges drop out. `render` writes the text format.

pub(crate) mod area;
pub(crate) mod backlog;
pub(crate) mod endpoint;
pub(crate) mod render;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The method classes of `requests_total` (anything else is `other`).
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "other",
];
/// The status classes of `requests_total`.
pub const STATUSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Upper bounds (seconds) of `request_duration_seconds`'s buckets: Prometheus's defaults, and
/// 30 and 60 for the slow calls WSGI apps make (reports, uploads).
pub const BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// The same bounds in microseconds, for placing a duration without floating point.
const BUCKETS_US: [u64; 13] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000, 60_000_000,
];

/// Why a worker exited, the `reason` label of `worker_exits_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// Retired after `--max-requests`.
    MaxRequests = 0,
    /// Exited on its own with a failure status, or killed by a signal it was not sent.
    Crash = 1,
    /// Told to stop (SIGTERM/SIGINT/SIGQUIT to the supervisor).
    Stopped = 2,
    /// Replaced by a reload (SIGHUP), or a reload's worker given up.
    Reload = 3,
    /// Retired for its memory (`--max-rss`).
    MaxRss = 4,
    /// Retired because a request hung (`--timeout`).
    Hung = 5,
}

impl ExitReason {
    pub const ALL: [ExitReason; 6] = [
        ExitReason::MaxRequests,
        ExitReason::Crash,
        ExitReason::Stopped,
        ExitReason::Reload,
        ExitReason::MaxRss,
        ExitReason::Hung,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ExitReason::MaxRequests => "max_requests",
            ExitReason::Crash => "crash",
            ExitReason::Stopped => "stopped",
            ExitReason::Reload => "reload",
            ExitReason::MaxRss => "max_rss",
            ExitReason::Hung => "hung",
        }
    }

    /// Its place in the supervisor's exit counts (the discriminant).
    fn index(self) -> usize {
        self as usize
    }
}

/// The retirement a worker announced on its pipe (`crate::retire`).
impl From<crate::retire::Reason> for ExitReason {
    fn from(r: crate::retire::Reason) -> ExitReason {
        match r {
            crate::retire::Reason::MaxRequests => ExitReason::MaxRequests,
            crate::retire::Reason::Timeout => ExitReason::Hung,
            crate::retire::Reason::MaxRss => ExitReason::MaxRss,
        }
    }
}

/// One serving process's counts (a worker's seat, or a single process's own block). Every
/// field is an `AtomicU64` (the area is shared memory: any bit pattern is valid). Counters
/// only grow; gauges (`in_flight` …) are the process's state now.
#[repr(C, align(64))]
#[derive(Default)]
pub struct Counters {
    requests: [[AtomicU64; STATUSES.len()]; METHODS.len()],
    /// Requests by the first bucket their duration fits (the last: beyond every bound).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    duration_us: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    hung: AtomicU64,
    in_flight: AtomicU64,
    open: AtomicU64,
    idle: AtomicU64,
    waiting: AtomicU64,
    spooled: AtomicU64,
    /// The process's worker threads (`--threads`): how many requests may be in the app.
    threads: AtomicU64,
}

/// This process's counters: set once at start when metrics are on, before any connection.
static COUNTERS: OnceLock<&'static Counters> = OnceLock::new();

/// The counters to count into, `None` when metrics are off (the branch every hook takes).
#[inline]
pub fn counters() -> Option<&'static Counters> {
    COUNTERS.get().copied()
}

/// Metrics are on in this process.
#[inline]
pub fn on() -> bool {
    COUNTERS.get().is_some()
}

/// Counts into `c` from now on (once: a second call is ignored).
pub fn install(c: &'static Counters) {
    let _ = COUNTERS.set(c);
}

/// Counts a request the app (or the server, refusing it) answered, `elapsed` after its head
/// was in. Status 0 (no response was sent: the connection was given up) is not counted.
pub fn request_done(method: &[u8], status: u16, elapsed: Duration) {
    if let Some(c) = counters() {
        c.request(method, status, elapsed);
    }
}

/// `n` more requests hung in the app past `--timeout` (the watchdog counts each once).
pub fn hung_requests(n: usize) {
    if let Some(c) = counters() {
        c.hung.fetch_add(n as u64, Ordering::Relaxed);
    }
}

fn method_class(method: &[u8]) -> usize {
    match method {
        b"GET" => 0,
        b"HEAD" => 1,
        b"POST" => 2,
        b"PUT" => 3,
        b"DELETE" => 4,
        b"OPTIONS" => 5,
        b"PATCH" => 6,
        _ => 7,
    }
}

impl Counters {
    fn request(&self, method: &[u8], status: u16, elapsed: Duration) {
        let class = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => return,
        };
        if let Some(row) = self.requests.get(method_class(method)) {
            row[class].fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.duration_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn received(&self, n: usize) {
        self.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn sent(&self, n: usize) {
        self.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A request enters the app (`false`: it left it).
    pub fn in_flight(&self, entering: bool) {
        add(&self.in_flight, entering);
    }

    /// A connection parks idle between requests (`false`: it left that state).
    pub fn idle(&self, parked: bool) {
        add(&self.idle, parked);
    }

    pub fn set_open(&self, open: usize) {
        self.open.store(open as u64, Ordering::Relaxed);
    }

    pub fn set_threads(&self, threads: usize) {
        self.threads.store(threads as u64, Ordering::Relaxed);
    }

    pub fn set_waiting(&self, waiting: usize) {
        self.waiting.store(waiting as u64, Ordering::Relaxed);
    }

    /// Response bytes queued for slow readers: `n` more (`true`) or fewer.
    pub fn spooled(&self, n: u64, more: bool) {
        if more {
            self.spooled.fetch_add(n, Ordering::Relaxed);
        } else {
            self.spooled.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// Zeroes every count (a seat given to a new worker).
    fn clear(&self) {
        for row in &self.requests {
            row.iter().for_each(zero);
        }
        self.buckets.iter().for_each(zero);
        for a in [
            &self.duration_us,
            &self.bytes_received,
            &self.bytes_sent,
            &self.hung,
            &self.in_flight,
            &self.open,
            &self.idle,
            &self.waiting,
            &self.spooled,
            &self.threads,
        ] {
            zero(a);
        }
    }
}

/// Gauges go up and down in pairs (each decrement follows its increment), so wrapping
/// arithmetic never shows a wrapped value once both happened.
fn add(gauge: &AtomicU64, up: bool) {
    if up {
        gauge.fetch_add(1, Ordering::Relaxed);
    } else {
        gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

fn zero(a: &AtomicU64) {
    a.store(0, Ordering::Relaxed);
}

/// A plain copy of counts: summed over seats and the workers that exited, then rendered.
#[derive(Clone, Default, Debug, PartialEq)]
pub struct Totals {
    pub requests: [[u64; STATUSES.len()]; METHODS.len()],
    pub buckets: [u64; BUCKETS.len() + 1],
    pub duration_us: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub hung: u64,
    pub in_flight: u64,
    pub open: u64,
    pub idle: u64,
    pub waiting: u64,
    pub spooled: u64,
    pub threads: u64,
}

impl Totals {
    /// Adds `c`'s counters, and its gauges too when `gauges` (a live process's).
    pub fn add(&mut self, c: &Counters, gauges: bool) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (sum, row) in self.requests.iter_mut().zip(&c.requests) {
            for (s, a) in sum.iter_mut().zip(row) {
                *s = s.saturating_add(load(a));
            }
        }
        for (s, a) in self.buckets.iter_mut().zip(&c.buckets) {
            *s = s.saturating_add(load(a));
        }
        let gauge = |a: &AtomicU64| {
            // A decrement seen before its increment (two threads, relaxed loads) reads as
            // a wrapped value for a moment: shown as 0.
            let v = load(a);
            if v > i64::MAX as u64 {
                0
            } else {
                v
            }
        };
        self.duration_us = self.duration_us.saturating_add(load(&c.duration_us));
        self.bytes_received = self.bytes_received.saturating_add(load(&c.bytes_received));
        self.bytes_sent = self.bytes_sent.saturating_add(load(&c.bytes_sent));
        self.hung = self.hung.saturating_add(load(&c.hung));
        if gauges {
            self.in_flight = self.in_flight.saturating_add(gauge(&c.in_flight));
            self.open = self.open.saturating_add(gauge(&c.open));
            self.idle = self.idle.saturating_add(gauge(&c.idle));
            self.waiting = self.waiting.saturating_add(gauge(&c.waiting));
            self.spooled = self.spooled.saturating_add(gauge(&c.spooled));
            self.threads = self.threads.saturating_add(gauge(&c.threads));
        }
    }

    /// How many requests the histogram holds.
    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0u64, |s, n| s.saturating_add(*n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_land_in_their_method_and_status_class_and_bucket() {
        let c = Counters::default();
        c.request(b"GET", 200, Duration::from_millis(3));
        c.request(b"GET", 204, Duration::from_millis(5));
        c.request(b"POST", 404, Duration::from_millis(70));
        c.request(b"BREW", 599, Duration::from_secs(100));
        c.request(b"HEAD", 0, Duration::ZERO);
        let mut t = Totals::default();
        t.add(&c, true);
        assert_eq!(t.requests[0][1], 2);
        assert_eq!(t.requests[2][3], 1);
        assert_eq!(t.requests[7][4], 1);
        assert_eq!(
            t.requests[1].iter().sum::<u64>(),
            0,
            "status 0 is not counted"
        );
        // 5 ms is within the first bound (le="0.005"); 70 ms in le="0.1"; 100 s beyond all.
        assert_eq!(t.buckets[0], 2);
        assert_eq!(t.buckets[4], 1);
        assert_eq!(t.buckets[BUCKETS.len()], 1);
        assert_eq!(t.count(), 4);
        assert_eq!(t.duration_us, 3_000 + 5_000 + 70_000 + 100_000_000);
    }

    #[test]
    fn the_bounds_in_seconds_and_microseconds_agree() {
        for (s, us) in BUCKETS.iter().zip(BUCKETS_US) {
            assert_eq!((s * 1e6).round() as u64, us);
        }
    }

    #[test]
    fn gauges_of_an_exited_worker_are_left_out_and_wrapped_ones_read_zero() {
        let c = Counters::default();
        c.in_flight(true);
        c.idle(false);
        c.sent(10);
        let mut t = Totals::default();
        t.add(&c, false);
        assert_eq!((t.in_flight, t.bytes_sent), (0, 10));
        t.add(&c, true);
        assert_eq!((t.in_flight, t.idle, t.bytes_sent), (1, 0, 20));
    }
}
