//! A supervised worker's retirement (`--max-requests`, `--timeout`, `--max-rss`): it stops
//! taking connections and finishes the ones it has (the server's graceful stop, started by the
//! `retiring` flag), and it tells its supervisor at once, with one byte on the pipe it said
//! "ready" on, so the replacement starts now rather than when this process has drained.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// What a worker writes on its pipe: "ready", then at most one retirement.
pub const READY: u8 = b'1';

/// Why a worker retires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    MaxRequests,
    Timeout,
    MaxRss,
}

impl Reason {
    const ALL: [Reason; 3] = [Reason::MaxRequests, Reason::Timeout, Reason::MaxRss];

    pub fn byte(self) -> u8 {
        match self {
            Reason::MaxRequests => b'R',
            Reason::Timeout => b'T',
            Reason::MaxRss => b'M',
        }
    }

    pub fn from_byte(b: u8) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.byte() == b)
    }

    /// As the supervisor's log says it.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::MaxRequests => "--max-requests reached",
            Reason::Timeout => "a request passed --timeout",
            Reason::MaxRss => "its memory passed --max-rss",
        }
    }
}

/// The worker's end of the pipe to its supervisor, kept once "ready" was said on it (none in a
/// process that has no supervisor).
static SUPERVISOR: OnceLock<std::fs::File> = OnceLock::new();

/// Keeps the pipe "ready" was written on, for the retirement notice.
pub fn keep_pipe(pipe: std::fs::File) {
    let _ = SUPERVISOR.set(pipe);
}

/// Starts the retirement unless one is under way (`retiring` set): the server's stop follows
/// the flag, and the supervisor is told why. `true` when this call started it (the caller logs).
pub fn retire(retiring: &AtomicBool, reason: Reason) -> bool {
    if retiring.swap(true, Ordering::AcqRel) {
        return false;
    }
    if let Some(mut pipe) = SUPERVISOR.get() {
        // Should the supervisor be gone, the worker still stops; nothing else to do.
        let _ = pipe.write_all(&[reason.byte()]);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_byte_and_none_is_ready() {
        for r in Reason::ALL {
            assert_eq!(Reason::from_byte(r.byte()), Some(r));
            assert_ne!(r.byte(), READY);
        }
        assert_eq!(Reason::from_byte(READY), None);
    }

    #[test]
    fn only_the_first_retirement_counts() {
        let flag = AtomicBool::new(false);
        assert!(retire(&flag, Reason::Timeout));
        assert!(!retire(&flag, Reason::MaxRss));
        assert!(flag.load(Ordering::Acquire));
    }
}
