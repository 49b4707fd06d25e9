//! The graceful stop and the main thread's loop that drives it: no new connections, idle
//! ones given a short grace, in-flight ones finished within --graceful-timeout.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustix::event::epoll;

use super::phase::Phase;
use super::slots::Entry;
use super::Server;
use crate::http::listener::Sock;

/// On a graceful stop, how long a just-accepted connection that has sent nothing yet may take
/// to start its request.
const STOP_GRACE: Duration = Duration::from_secs(1);

impl Server {
    /// Graceful stop, part one: no new connections; idle ones are closed.
    pub fn begin_stop(&self) {
        self.shared.stopping.store(true, Ordering::Release);
        for l in &self.listeners {
            let _ = epoll::delete(&self.epoll, l.fd());
            if let Sock::Unix(_, path) = &l.sock {
                let _ = std::fs::remove_file(path);
            }
        }
        {
            let mut c = self.conns.lock();
            // Under the lock `start_accepting` marks the worker live under: it stays unmarked.
            self.leave_board();
            // No connection is closed under a client that may be sending a request right now:
            // one whose request is arriving is served, and a silent new one and an idle
            // keep-alive one get `STOP_GRACE` to start a request (answered with
            // `Connection: close`). Closing an idle keep-alive connection at once would lose the
            // request its client sent meanwhile. Slot indices fit in u32 (see `insert`).
            let mut silent = Vec::new();
            for (i, e) in c.slots.iter() {
                if let Entry::Parked { state, .. } = e {
                    match state.phase {
                        Phase::Idle => silent.push(i),
                        Phase::Reading | Phase::Proxy if state.buf.is_empty() => silent.push(i),
                        _ => {}
                    }
                }
            }
            let grace = Instant::now() + STOP_GRACE;
            c.draining_until = Some(grace);
            for i in silent {
                if let Some(Entry::Parked { state, .. }) = c.slots.get_mut(i) {
                    if state.deadline > grace {
                        state.deadline = grace;
                        c.deadlines.queue(i, grace);
                    }
                }
            }
        }
    }

    /// Connections still being served, with a request arriving, or lingering; while a stop
    /// drains (`STOP_GRACE`), idle keep-alive ones too (they may still send a request).
    pub fn busy(&self) -> usize {
        let c = self.conns.lock();
        let draining = c.draining_until.is_some_and(|t| Instant::now() < t);
        c.slots.owned
            + c.accepting
            + c.slots
                .iter()
                .filter(|(_, e)| {
                    matches!(e, Entry::Parked { state, .. } if draining || state.phase != Phase::Idle)
                })
                .count()
    }

    /// Runs the main thread's side: deadlines, and the stop signal. Returns when stopped, with
    /// the access log written out.
    pub fn keep_time(&self, signals: UnixStream) -> io::Result<()> {
        let result = self.keep_time_until_stopped(signals);
        if let Some(log) = &self.shared.access_log {
            log.flush(Duration::from_secs(2));
        }
        result
    }

    fn keep_time_until_stopped(&self, mut signals: UnixStream) -> io::Result<()> {
        let mut stop_deadline: Option<Instant> = None;
        let mut buf = [0u8; 64];
        loop {
            let now = Instant::now();
            let mut sleep = self
                .next_deadline()
                .map_or(Duration::from_millis(250), |d| {
                    d.saturating_duration_since(now)
                });
            sleep = sleep.clamp(
                Duration::from_millis(1),
                Duration::from_millis(if stop_deadline.is_some() { 20 } else { 250 }),
            );
            signals.set_read_timeout(Some(sleep))?;
            match signals.read(&mut buf) {
                Ok(n) if n > 0 => {
                    if stop_deadline.is_some() {
                        tracing::warn!("second stop signal: exiting now");
                        return Ok(());
                    }
                    tracing::info!("stopping: no new connections; finishing in-flight requests");
                    stop_deadline = Some(Instant::now() + self.shared.settings.graceful_timeout);
                    self.begin_stop();
                }
                Ok(_) => return Ok(()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
            if stop_deadline.is_none() && self.shared.retiring.load(Ordering::Acquire) {
                stop_deadline = Some(Instant::now() + self.shared.settings.graceful_timeout);
                self.begin_stop();
            }
            self.expire();
            self.resume_listeners();
            self.rebalance(true);
            if let Some(deadline) = stop_deadline {
                let busy = self.busy();
                if busy == 0 {
                    tracing::info!("stopped cleanly");
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        "--graceful-timeout reached with {busy} connection(s) still busy; exiting"
                    );
                    return Ok(());
                }
            }
        }
    }
}
