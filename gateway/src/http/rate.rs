//! How long a client may keep us waiting: an idle limit per wait (--body-timeout,
//! --write-timeout) and a minimum average data rate after a grace period (Kestrel's
//! `MinRequestBodyDataRate`/`MinResponseDataRate`). Without the rate, a client that sends or
//! takes one byte just inside every idle limit would hold its connection (and any worker
//! waiting on it) for ever.
//!
//! Only time spent waiting on the client counts: an app that pauses between reads, or a
//! response that is not being written, costs the client nothing.

use std::time::{Duration, Instant};

/// A minimum average rate; `bytes_per_sec == 0` turns it off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    /// Waiting allowed before the rate applies (and on top of what the bytes earned).
    pub grace: Duration,
}

impl MinRate {
    pub const OFF: MinRate = MinRate {
        bytes_per_sec: 0,
        grace: Duration::ZERO,
    };
}

/// Why a wait on the client ended without data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TooSlow {
    /// Nothing at all within the idle limit.
    Idle,
    /// Less than the minimum rate on average since the transfer began.
    Rate,
}

/// One transfer's allowance for waiting on the client: a bucket that starts with the grace
/// period, drains by the time spent waiting, and refills by `1 / bytes_per_sec` seconds per
/// byte that moved, up to the idle limit (or the grace period, if longer). A client at the
/// minimum rate or faster never runs dry; one that sent a burst and then trickles gets at most
/// an idle limit's worth of the burst's credit, not hours of it.
#[derive(Clone, Copy, Debug)]
pub struct RateMeter {
    rate: MinRate,
    idle: Duration,
    credit: Duration,
    bytes: u64,
}

impl RateMeter {
    pub fn new(rate: MinRate, idle: Duration) -> RateMeter {
        RateMeter {
            rate,
            idle,
            credit: rate.grace,
            bytes: 0,
        }
    }

    /// How long the next wait may last, and what ends it if nothing arrives by then.
    pub fn limit(&self) -> (Duration, TooSlow) {
        if self.rate.bytes_per_sec == 0 || self.credit >= self.idle {
            (self.idle, TooSlow::Idle)
        } else {
            (self.credit, TooSlow::Rate)
        }
    }

    /// Records a wait that ended (with or without data).
    pub fn waited(&mut self, d: Duration) {
        self.credit = self.credit.saturating_sub(d);
    }

    /// Records bytes that moved.
    pub fn moved(&mut self, n: usize) {
        self.bytes = self.bytes.saturating_add(n as u64);
        if self.rate.bytes_per_sec == 0 || n == 0 {
            return;
        }
        let nanos = (n as u128).saturating_mul(1_000_000_000) / u128::from(self.rate.bytes_per_sec);
        let earned = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        let cap = self.idle.max(self.rate.grace);
        self.credit = self.credit.saturating_add(earned).min(cap);
    }

    /// A wait of the reactor's ended at `now` (it began at `since`) with `n` bytes moved:
    /// records both and gives the next deadline.
    pub fn waited_until(&mut self, since: Instant, now: Instant, n: usize) -> Instant {
        self.waited(now.saturating_duration_since(since));
        self.moved(n);
        now + self.limit().0
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KESTREL: MinRate = MinRate {
        bytes_per_sec: 240,
        grace: Duration::from_secs(5),
    };

    #[test]
    fn off_means_only_the_idle_limit() {
        let mut m = RateMeter::new(MinRate::OFF, Duration::from_secs(60));
        m.waited(Duration::from_secs(3600));
        assert_eq!(m.limit(), (Duration::from_secs(60), TooSlow::Idle));
    }

    #[test]
    fn the_grace_period_then_bytes_earn_time() {
        let mut m = RateMeter::new(KESTREL, Duration::from_secs(60));
        assert_eq!(m.limit(), (Duration::from_secs(5), TooSlow::Rate));
        m.moved(240);
        assert_eq!(m.limit(), (Duration::from_secs(6), TooSlow::Rate));
        m.waited(Duration::from_secs(4));
        assert_eq!(m.limit(), (Duration::from_secs(2), TooSlow::Rate));
        // Plenty earned: the idle limit is the shorter one.
        m.moved(240 * 3600);
        assert_eq!(m.limit(), (Duration::from_secs(60), TooSlow::Idle));
    }

    /// A burst banks at most an idle limit of credit: a trickle after it is dropped within
    /// about that long, not after the hours the burst's bytes would pay for on average.
    #[test]
    fn a_burst_then_a_trickle_banks_at_most_the_idle_limit() {
        let mut m = RateMeter::new(KESTREL, Duration::from_secs(60));
        m.moved(70_000);
        let mut elapsed = Duration::ZERO;
        while m.limit().0 >= Duration::from_secs(1) {
            m.waited(Duration::from_secs(1));
            m.moved(1);
            elapsed += Duration::from_secs(1);
        }
        assert!(elapsed > Duration::from_secs(55) && elapsed <= Duration::from_secs(61));
        assert_eq!(m.limit().1, TooSlow::Rate);
    }

    /// Exactly the minimum rate, in bursts a few seconds apart, never runs dry.
    #[test]
    fn the_minimum_rate_in_bursts_is_enough() {
        let mut m = RateMeter::new(KESTREL, Duration::from_secs(60));
        for _ in 0..1000 {
            assert!(m.limit().0 >= Duration::from_secs(4));
            m.waited(Duration::from_secs(4));
            m.moved(960);
        }
    }

    /// One byte a second: the client runs out of allowance just after the grace period,
    /// however each wait ends.
    #[test]
    fn a_trickle_runs_out_soon_after_the_grace_period() {
        let mut m = RateMeter::new(KESTREL, Duration::from_secs(60));
        let mut elapsed = Duration::ZERO;
        loop {
            let (limit, why) = m.limit();
            if limit < Duration::from_secs(1) {
                elapsed += limit;
                assert_eq!(why, TooSlow::Rate);
                break;
            }
            m.waited(Duration::from_secs(1));
            m.moved(1);
            elapsed += Duration::from_secs(1);
        }
        assert!(elapsed > Duration::from_secs(5) && elapsed < Duration::from_secs(6));
    }

    #[test]
    fn huge_figures_saturate() {
        let mut m = RateMeter::new(
            MinRate {
                bytes_per_sec: 1,
                grace: Duration::MAX,
            },
            Duration::from_secs(1),
        );
        m.moved(usize::MAX);
        m.moved(usize::MAX);
        assert_eq!(m.limit(), (Duration::from_secs(1), TooSlow::Idle));
        assert_eq!(m.bytes(), u64::MAX);
        m.waited(Duration::MAX);
        m.waited(Duration::MAX);
        assert_eq!(m.limit(), (Duration::ZERO, TooSlow::Rate));
    }
}
