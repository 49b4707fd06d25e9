//! How long a client may keep us waiting: an idle limit per wait (--body-timeout,
//! --write-timeout) and a minimum average data rate after a grace period (Kestrel's
//! `MinRequestBodyDataRate`/`MinResponseDataRate`). Without the rate, a client that sends or
//! takes one byte just inside every idle limit would hold its connection (and any worker
//! waiting on it) for ever.
//!
//! Only time spent waiting on the client counts: an app that pauses between reads, or a
//! response that is not being written, costs the client nothing.

use std::time::Duration;

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

/// One transfer's waiting so far: the bytes that moved and the time spent waiting for them.
#[derive(Clone, Copy, Debug)]
pub struct RateMeter {
    rate: MinRate,
    idle: Duration,
    waited: Duration,
    bytes: u64,
}

impl RateMeter {
    pub fn new(rate: MinRate, idle: Duration) -> RateMeter {
        RateMeter {
            rate,
            idle,
            waited: Duration::ZERO,
            bytes: 0,
        }
    }

    /// How long the next wait may last, and what ends it if nothing arrives by then. Each byte
    /// earns `1 / bytes_per_sec` seconds of waiting on top of the grace period.
    pub fn limit(&self) -> (Duration, TooSlow) {
        if self.rate.bytes_per_sec == 0 {
            return (self.idle, TooSlow::Idle);
        }
        let earned_nanos = u128::from(self.bytes).saturating_mul(1_000_000_000)
            / u128::from(self.rate.bytes_per_sec);
        let earned = Duration::from_nanos(u64::try_from(earned_nanos).unwrap_or(u64::MAX));
        let left = self
            .rate
            .grace
            .saturating_add(earned)
            .saturating_sub(self.waited);
        if left < self.idle {
            (left, TooSlow::Rate)
        } else {
            (self.idle, TooSlow::Idle)
        }
    }

    /// Records a wait that ended (with or without data).
    pub fn waited(&mut self, d: Duration) {
        self.waited = self.waited.saturating_add(d);
    }

    /// Records bytes that moved.
    pub fn moved(&mut self, n: usize) {
        self.bytes = self.bytes.saturating_add(n as u64);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn waited_total(&self) -> Duration {
        self.waited
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
        m.waited(Duration::MAX);
        m.waited(Duration::MAX);
        assert_eq!(m.limit(), (Duration::ZERO, TooSlow::Rate));
    }
}
