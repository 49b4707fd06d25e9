//! The GIL-aware worker pool. Each worker attaches to Python once. One worker at a time holds
//! the *poller role*: it takes ready work and runs it inline, back to back, keeping the GIL
//! while there is ready work and releasing it only to wait. When one piece of work outlasts
//! `HANDOFF` (a slow app call, a slow client), a monitor hands the role to a standby worker, so
//! slow work never strands the rest. Fast requests thus run on one thread with no GIL
//! contention between workers; slow ones get as many threads as are configured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;

/// How long a piece of work may hold the poller role before a standby worker takes over, when
/// its thread is blocked (waiting on a socket, a database, `time.sleep`): another worker can
/// then run Python meanwhile. Until then nothing else is served, so it is short: 2 ms cost
/// bench/'s `mixed` a third of its `/hello` rate (bench/results/2026-12-06-readme-history.md).
const HANDOFF: Duration = Duration::from_micros(250);
/// The limit for work whose thread is running (a CPU-bound call, or a thread the OS preempted):
/// a second worker would only queue for the GIL, so hand over later, for fairness alone.
const HANDOFF_BUSY: Duration = Duration::from_millis(20);
/// The limit where a thread's state cannot be read: short enough for slow calls, long enough
/// that a CPU-bound Flask view (~0.4 ms) does not bring a second worker to queue for the GIL.
const HANDOFF_UNSEEN: Duration = Duration::from_millis(2);
/// While every look finds the work it timed already done (fast requests back to back) or
/// running on a CPU, the monitor looks half as often after `CALM_LOOKS` such looks in a row,
/// down to one look per `LOOK_MAX`; work found blocked brings it back to `HANDOFF` at once.
/// Each look wakes a thread, costing tens of microseconds of CPU on the 2-core bench machine
/// and often preempting a worker or the client. Traffic with blocking calls among fast ones
/// keeps the monitor at `HANDOFF`; only a blocking call after a long run of fast or CPU-bound
/// ones may wait up to `LOOK_MAX` to be handed off.
const LOOK_MAX: Duration = Duration::from_millis(8);
const CALM_LOOKS: u32 = 32;

/// What a worker found when it looked for work.
pub enum Next<W> {
    Ready(W),
    /// Nothing ready right now (a non-blocking look), or a spurious wake-up.
    Empty,
    /// The source is shut down: the worker exits.
    Closed,
}

/// Where workers get their work from: a front end's readiness set or job queue.
pub trait WorkSource: Send + Sync + 'static {
    type Work: Send;
    /// A look that never blocks; called while holding the GIL.
    fn try_next(&self) -> Next<Self::Work>;
    /// Blocks until there is work; called with the GIL released.
    fn wait_next(&self) -> Next<Self::Work>;
    /// Runs one piece of work with the GIL held.
    fn run(&self, py: Python<'_>, work: Self::Work);
}

thread_local! {
    /// This thread's id, read once (gettid is a system call; `begin` runs once per request).
    static TID: i32 = thread_id();
}

#[derive(Default)]
struct Role {
    /// Nobody holds the poller role: a standby worker may take it.
    free: bool,
    /// The role holder (thread id) is running work number `epoch` since this instant. A
    /// holder whose epoch is no longer here when its work ends lost the role meanwhile.
    serving: Option<(u64, Instant, i32)>,
    epoch: u64,
    standby: usize,
    monitor_parked: bool,
    closed: bool,
}

#[derive(Default)]
struct Sched {
    role: Mutex<Role>,
    standby: Condvar,
    monitor: Condvar,
}

impl Sched {
    /// Waits (GIL released by the caller) until this worker holds the poller role.
    fn take_role(&self) -> bool {
        let mut r = self.role.lock();
        r.standby += 1;
        while !r.free && !r.closed {
            self.standby.wait(&mut r);
        }
        r.standby -= 1;
        if r.closed {
            return false;
        }
        r.free = false;
        true
    }

    fn begin(&self) -> u64 {
        let mut r = self.role.lock();
        r.epoch = r.epoch.wrapping_add(1);
        let epoch = r.epoch;
        r.serving = Some((epoch, Instant::now(), TID.with(|t| *t)));
        if r.monitor_parked {
            self.monitor.notify_one();
        }
        epoch
    }

    /// Whether this worker still holds the role after its work. Only the epoch in `serving`
    /// says so: a worker whose role was handed on, while the worker after it lost the role in
    /// turn, must not take it back (two pollers would then share the GIL for good).
    fn end(&self, epoch: u64) -> bool {
        let mut r = self.role.lock();
        if !matches!(r.serving, Some((serving, ..)) if serving == epoch) {
            return false;
        }
        r.serving = None;
        true
    }

    /// Takes the role from the holder (busy with its work) for a standby worker.
    fn hand_off(&self, r: &mut Role) {
        r.serving = None;
        r.free = true;
        self.standby.notify_one();
    }

    fn close(&self) {
        let mut r = self.role.lock();
        r.closed = true;
        self.standby.notify_all();
        self.monitor.notify_one();
    }

    /// Hands the role on when its holder has been busy for longer than `HANDOFF`.
    fn monitor(&self) {
        let mut r = self.role.lock();
        // How long a piece of work runs before the monitor looks at it (see `LOOK_MAX`).
        let mut every = HANDOFF;
        let mut calm = 0u32;
        let mut timed = None;
        loop {
            if r.closed {
                return;
            }
            match r.serving {
                None => {
                    r.monitor_parked = true;
                    self.monitor.wait(&mut r);
                    r.monitor_parked = false;
                }
                Some((epoch, since, tid)) => {
                    let due = since + every;
                    let now = Instant::now();
                    if now < due {
                        if timed.is_some_and(|t| t != epoch) {
                            // The work timed last ended in time: one more calm look.
                            calm = calm_look(calm, &mut every);
                        }
                        timed = Some(epoch);
                        self.monitor.wait_until(&mut r, due);
                        continue;
                    }
                    // This work has run for `every` (at least `HANDOFF`).
                    if r.standby > 0 && now >= since + HANDOFF_BUSY {
                        self.hand_off(&mut r);
                    } else if r.standby > 0
                        && thread_blocked(tid).unwrap_or(now >= since + HANDOFF_UNSEEN)
                    {
                        // The app blocks in calls like this one: look closely from now on.
                        every = HANDOFF;
                        calm = 0;
                        self.hand_off(&mut r);
                    } else {
                        // Every worker is busy, or the holder is running (a CPU-bound call is
                        // no reason to look more often): look again soon, it may block next.
                        calm = calm_look(calm, &mut every);
                        self.monitor.wait_for(&mut r, Duration::from_millis(1));
                    }
                }
            }
        }
    }
}

/// Counts a look that found nothing to hand off; after `CALM_LOOKS` in a row the monitor
/// looks half as often.
fn calm_look(calm: u32, every: &mut Duration) -> u32 {
    if calm + 1 < CALM_LOOKS {
        return calm + 1;
    }
    *every = every.saturating_mul(2).min(LOOK_MAX);
    0
}

#[cfg(unix)]
fn thread_id() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Without `/proc` a thread's state cannot be read (`thread_blocked` says `None`).
#[cfg(not(unix))]
fn thread_id() -> i32 {
    0
}

/// Whether a thread of this process is blocked in the kernel on something outside the process
/// (a socket, a timer, the disk), from `/proc/self/task/<tid>/{stat,syscall}`: only then can a
/// standby worker run Python meanwhile. A thread in a futex wait is waiting for another thread
/// of this process, nearly always for the GIL: a second worker would queue behind it too, and
/// every such hand-off adds one more thread to the GIL's queue. Such a thread counts as
/// running and is handed off after `HANDOFF_BUSY` (a wait on the app's own lock, which frees
/// the GIL, is handed off that late too). `None` without `/proc` (Windows, for the ISAPI
/// extension).
fn thread_blocked(tid: i32) -> Option<bool> {
    let state = thread_state(tid)?;
    Some(matches!(state, Some('S' | 'D')) && !in_futex_wait(tid))
}

/// The thread's state letter from `/proc/self/task/<tid>/stat` (`R`, `S`, `D`…); `None`
/// without `/proc`, `Some(None)` if the line cannot be read.
fn thread_state(tid: i32) -> Option<Option<char>> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses and may contain spaces.
    Some(
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next()),
    )
}

/// Whether the thread is blocked in `futex` (its first field in `/proc/.../syscall` is the
/// system call's number).
#[cfg(target_os = "linux")]
fn in_futex_wait(tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).is_ok_and(|s| {
        s.split_whitespace()
            .next()
            .and_then(|n| n.parse::<libc::c_long>().ok())
            == Some(libc::SYS_futex)
    })
}

#[cfg(not(target_os = "linux"))]
fn in_futex_wait(_tid: i32) -> bool {
    false
}

/// The running workers, so a front end that must not outlive them (the ISAPI library, which
/// IIS may unload) can wait for them to exit.
pub struct Pool {
    live: Arc<(Mutex<usize>, Condvar)>,
}

impl Pool {
    /// Waits until every worker has exited (its source said `Closed`), for at most `limit`.
    /// Returns how many are still running (stuck inside an app call).
    pub fn wait_exit(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        let (count, exited) = &*self.live;
        let mut live = count.lock();
        while *live > 0 && !exited.wait_until(&mut live, deadline).timed_out() {}
        *live
    }
}

/// Counts a worker out when its thread ends, however it ends.
struct Alive(Arc<(Mutex<usize>, Condvar)>);

impl Drop for Alive {
    fn drop(&mut self) {
        let (count, exited) = &*self.0;
        let mut live = count.lock();
        *live = live.saturating_sub(1);
        exited.notify_all();
    }
}

/// Starts `threads` workers on `source`, and the monitor that hands the poller role on.
pub fn start<S: WorkSource>(threads: usize, name: &str, source: Arc<S>) -> std::io::Result<Pool> {
    let sched = Arc::new(Sched::default());
    sched.role.lock().free = true;
    let live = Arc::new((Mutex::new(0usize), Condvar::new()));
    for i in 0..threads.max(1) {
        let source = source.clone();
        let worker_sched = sched.clone();
        *live.0.lock() += 1;
        let alive = Alive(live.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || {
                let _alive = alive;
                worker(&*source, &worker_sched)
            });
        if let Err(e) = spawned {
            sched.close();
            return Err(e);
        }
    }
    std::thread::Builder::new()
        .name(format!("{name}-monitor"))
        .spawn(move || sched.monitor())?;
    Ok(Pool { live })
}

fn worker<S: WorkSource>(source: &S, sched: &Sched) {
    Python::attach(|py| {
        let mut has_role = false;
        loop {
            if !has_role {
                // Standby: wait for the poller role without holding the GIL.
                if !py.detach(|| sched.take_role()) {
                    return;
                }
                has_role = true;
            }
            let work = match source.try_next() {
                Next::Ready(w) => w,
                Next::Closed => return sched.close(),
                // Nothing ready: let other threads run Python while this one waits.
                Next::Empty => match py.detach(|| source.wait_next()) {
                    Next::Ready(w) => w,
                    Next::Empty => continue,
                    Next::Closed => return sched.close(),
                },
            };
            let epoch = sched.begin();
            // A bug in a handler must cost one piece of work, not a worker.
            let run = std::panic::AssertUnwindSafe(|| source.run(py, work));
            if std::panic::catch_unwind(run).is_err() {
                tracing::error!("a request handler panicked; the worker carries on");
            }
            has_role = sched.end(epoch);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_whose_role_was_handed_on_never_gets_it_back() {
        let sched = Sched::default();
        sched.role.lock().free = true;
        // Worker 1 takes the role and starts slow work; the monitor hands the role on.
        assert!(sched.take_role());
        let first = sched.begin();
        sched.hand_off(&mut sched.role.lock());
        // Worker 2 takes it, and its own work is slow too: handed on again.
        assert!(sched.take_role());
        let second = sched.begin();
        sched.hand_off(&mut sched.role.lock());
        // Both finish: neither holds the role now, and it waits for a standby worker.
        assert!(!sched.end(first), "worker 1 took back a role it had lost");
        assert!(!sched.end(second), "worker 2 took back a role it had lost");
        assert!(sched.role.lock().free);
        // A holder whose work was not handed on keeps the role.
        assert!(sched.take_role());
        let third = sched.begin();
        assert!(sched.end(third));
        assert!(!sched.role.lock().free);
    }

    /// Waits until the thread sleeps in the kernel (`S` in `/proc`).
    #[cfg(target_os = "linux")]
    fn wait_until_asleep(tid: i32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if thread_state(tid) == Some(Some('S')) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "thread {tid} never went to sleep"
            );
            std::thread::yield_now();
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_waiting_on_a_socket_is_blocked_one_waiting_on_a_lock_is_not() {
        use std::io::{Read, Write};
        use std::sync::mpsc;

        // Blocked on a socket (like an app waiting for its database): hand it off.
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            tx.send(thread_id()).unwrap();
            let mut byte = [0u8; 1];
            (&theirs).read_exact(&mut byte).unwrap();
        });
        let tid = rx.recv().unwrap();
        wait_until_asleep(tid);
        assert_eq!(
            thread_blocked(tid),
            Some(true),
            "a thread in recv was taken for running"
        );
        ours.write_all(b"x").unwrap();
        reader.join().unwrap();

        // Waiting for a lock another thread holds (like the GIL): not worth a hand-off.
        let lock = Arc::new(Mutex::new(()));
        let held = lock.lock();
        let (tx, rx) = mpsc::channel();
        let waiter_lock = lock.clone();
        let waiter = std::thread::spawn(move || {
            tx.send(thread_id()).unwrap();
            drop(waiter_lock.lock());
        });
        let tid = rx.recv().unwrap();
        wait_until_asleep(tid);
        assert_eq!(
            thread_blocked(tid),
            Some(false),
            "a thread waiting for a lock was taken for blocked"
        );
        drop(held);
        waiter.join().unwrap();
    }
}
