//! `serve --workers N`: the supervisor. It holds the listening sockets, starts N worker
//! processes (this binary again, with the same arguments) that inherit them, replaces a worker
//! that dies or retires (`--max-requests`, `--timeout`, `--max-rss`: the worker says so on its
//! pipe, and its replacement starts at once, beside it while it drains), reloads on SIGHUP (a
//! new generation starts and is ready before the old one is told to stop), and stops them all
//! on SIGTERM/SIGINT (graceful) or SIGQUIT (at once). It never starts Python.
//!
//! The bookkeeping is N places ("slots"). Each has the worker serving it (`current`) and,
//! while a reload is under way, the new-code worker that will take it over (`successor`).
//! Every slot has a successor or none does; the reload is done when all of them are ready.
//! A worker that leaves a slot (replaced, or told to stop) goes to `leaving` and is only
//! waited for. So whatever mix of crashes, retirements and reloads happens, a slot never holds
//! more than one worker of each kind, and the end is exactly N workers of the newest code.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};

use crate::balance::Board;
use crate::metrics::{area::Aggregate, ExitReason};
use crate::retire::{self, Reason};

/// The variables a worker finds its inheritance in: how many listening sockets start at fd 3,
/// and the fd it reports readiness on.
pub const WORKER_FDS_VAR: &str = "WSGI_GATEWAY_WORKER_FDS";
pub const READY_FD_VAR: &str = "WSGI_GATEWAY_READY_FD";
/// `FD,SEAT,HOLD`: the board's fd (right after the ready pipe), the worker's seat on it, and
/// `1` for a first-generation worker (it waits for the others before it accepts).
pub const BOARD_VAR: &str = "WSGI_GATEWAY_BOARD";
/// `FD,SEAT`: the metrics area's fd (the last one passed) and the worker's seat on it.
pub const METRICS_VAR: &str = "WSGI_GATEWAY_METRICS";

/// A worker that dies sooner than this after starting counts as a crash loop (back-off).
const SHORT_LIFE: Duration = Duration::from_secs(1);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub struct Plan {
    pub workers: usize,
    /// The program a worker is (this binary, or `python` of the venv) and its arguments:
    /// this process's command line, given to every worker as it is.
    pub program: std::path::PathBuf,
    pub args: Vec<OsString>,
    pub graceful_timeout: Duration,
    /// The listening sockets, and how each is shown in the log.
    pub sockets: Vec<(OwnedFd, String)>,
    /// `--reload`: the extra files to watch besides the app's (absolute).
    pub reload: Option<Vec<std::path::PathBuf>>,
    /// systemd's `NOTIFY_SOCKET`, when it started this supervisor (`Type=notify`).
    pub notify: Option<crate::sd_notify::Notifier>,
    /// `--metrics-bind`: the area the workers count into (its fd is passed to each).
    pub metrics: Option<(&'static Aggregate, OwnedFd)>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Started; not yet serving (its ready pipe is open).
    Starting,
    Ready,
}

struct Worker {
    child: Child,
    started: Instant,
    state: State,
    /// The pipe the worker reports on: "ready", then a retirement; closed when it exits.
    ready: Option<std::io::PipeReader>,
    /// It said it retires (it stops accepting and drains): its replacement starts now.
    retiring: Option<Reason>,
    /// Leaving: when it is killed if it has not exited (`--graceful-timeout` and a margin).
    kill_at: Option<Instant>,
    /// A SIGUSR1 came while it was starting (its own handler may not be in place yet, and
    /// SIGUSR1 would kill it): it is passed on once the worker is ready.
    reopen_due: bool,
    /// Its seat on the board, freed when the worker (reaped by then) is dropped.
    _seat: Option<SeatLease>,
    /// Its seat in the metrics area, folded into the totals once it was reaped.
    metrics: Option<MetricsLease>,
    /// Why the supervisor told it to leave (`worker_exits_total`), if it did; a retirement
    /// the worker announced is in `retiring`.
    exit_reason: Option<ExitReason>,
}

/// A worker's seat in the metrics area (dropped once the worker was reaped, by `exited`, or
/// with the worker as the supervisor ends).
struct MetricsLease {
    area: &'static Aggregate,
    seat: usize,
}

impl Drop for MetricsLease {
    fn drop(&mut self) {
        self.area.free_seat(self.seat);
    }
}

/// A worker's seat on the board. A `Worker` is dropped only once its process was reaped (or
/// as the supervisor itself ends), so nothing writes to the seat after it is freed.
struct SeatLease {
    board: Board,
    seat: usize,
}

impl Drop for SeatLease {
    fn drop(&mut self) {
        self.board.free_seat(self.seat);
    }
}

impl Worker {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads what the worker said on its pipe: ready (it is serving), retiring, or nothing
    /// more (closed: it is exiting).
    fn poll_ready(&mut self) {
        let Some(r) = self.ready.as_mut() else { return };
        let mut fds = [PollFd::new(&*r, PollFlags::IN)];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if !matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0) {
            return;
        }
        let mut said = [0u8; 8];
        let n = match r.read(&mut said) {
            Ok(n) if n > 0 => n,
            _ => {
                self.ready = None;
                return;
            }
        };
        for &b in &said[..n] {
            if b == retire::READY {
                self.state = State::Ready;
                if std::mem::take(&mut self.reopen_due) {
                    signal(&self.child, rustix::process::Signal::USR1);
                }
            } else if let Some(reason) = Reason::from_byte(b) {
                self.retiring.get_or_insert(reason);
            }
        }
    }

    /// The exit status, once the process has exited (it is reaped then).
    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().ok().flatten()?;
        // A worker may say "ready", serve and exit between two looks: its byte is still there.
        self.poll_ready();
        // Its seat is folded into the totals now (dropping the lease), before the exit is
        // logged: a scrape after the log line no longer sees its gauges.
        if let Some(m) = self.metrics.take() {
            // Told to leave, or the retirement it announced; else a clean exit is a stop
            // (someone else's SIGTERM) and any other a crash.
            let why = self
                .exit_reason
                .or(self.retiring.map(ExitReason::from))
                .unwrap_or(match status.success() {
                    true => ExitReason::Stopped,
                    false => ExitReason::Crash,
                });
            m.area.worker_exited(why);
        }
        Some(status)
    }
}

/// One of the N places a worker serves in.
#[derive(Default)]
struct Slot {
    /// The worker serving here (or starting to); `None` while its replacement waits.
    current: Option<Worker>,
    /// During a reload: the worker of the new code that takes this place once every slot's
    /// successor is ready. It serves as soon as it is ready, beside `current`.
    successor: Option<Worker>,
    /// When to start a worker for an empty `current` (at once, or after a crash back-off).
    /// Not while there is a successor: that one fills the place when the reload is done.
    restart_at: Option<Instant>,
}

impl Slot {
    /// When a worker is to be started here: the place is empty and no reload will fill it.
    fn pending_restart(&self) -> Option<&Instant> {
        match (&self.current, &self.successor) {
            (None, None) => self.restart_at.as_ref(),
            _ => None,
        }
    }
}

/// Signals, as flags set by the handlers plus a pipe that wakes the loop. Installed by `serve`
/// before the pid file names this process, so a signal sent by its pid (logrotate's SIGUSR1,
/// a reload's SIGHUP) never meets a default action that ends it.
pub struct Signals {
    wake: UnixStream,
    term: Arc<AtomicBool>,
    quit: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    usr1: Arc<AtomicBool>,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1};
        let (wake, notify) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let term = Arc::new(AtomicBool::new(false));
        let quit = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        let usr1 = Arc::new(AtomicBool::new(false));
        for (sig, flag) in [
            (SIGTERM, &term),
            (SIGINT, &term),
            (SIGQUIT, &quit),
            (SIGHUP, &hup),
            (SIGUSR1, &usr1),
        ] {
            signal_hook::flag::register(sig, flag.clone())?;
        }
        for sig in [SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGCHLD] {
            signal_hook::low_level::pipe::register(sig, notify.try_clone()?)?;
        }
        Ok(Signals {
            wake,
            term,
            quit,
            hup,
            usr1,
        })
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(self.wake.read(&mut buf), Ok(n) if n > 0) {}
    }
}

struct Supervisor {
    plan: Plan,
    slots: Vec<Slot>,
    /// Workers told to stop (SIGTERM): waited for, never replaced.
    leaving: Vec<Worker>,
    /// Every slot's first worker became ready (the server is up).
    up: bool,
    /// A SIGHUP that came before the server was up: the reload starts once it is.
    reload_wanted: bool,
    backoff: Duration,
    stop_deadline: Option<Instant>,
    /// The board the workers balance their connections on (none if it could not be made:
    /// the workers then accept as they can).
    board: Option<(Board, OwnedFd)>,
    metrics: Option<&'static Aggregate>,
    /// `--reload`: watches the app's files; a change is a SIGHUP.
    watcher: Option<crate::reload::Watcher>,
}

/// Runs the supervisor until it is stopped. `Err` = the first generation could not start
/// (a worker failed before it was ready, or could not be started at all): the message `serve`
/// reports before it exits with status 2, whatever the cause, so a `String`. Once the server
/// is up, a worker that cannot be started (`fork`/`exec` failed: the program was removed, the
/// system is out of processes) is logged and retried with the back-off, and the other workers
/// keep serving.
pub fn run(plan: Plan, mut signals: Signals) -> Result<(), String> {
    tracing::info!(
        "supervisor pid {} starting {} worker(s)",
        std::process::id(),
        plan.workers
    );
    // Seats for the workers, their reload's successors and the leaving workers still
    // draining; a worker started when every seat is taken just does not balance.
    let seats = plan.workers.saturating_mul(4);
    let board = match Board::create(seats, plan.workers) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!("cannot create the board for balancing connections: {e}");
            None
        }
    };
    // Started once SIGHUP is handled: what it does is raise one.
    let watcher = match &plan.reload {
        Some(extra) => Some(crate::reload::Watcher::start(
            extra,
            Box::new(|| {
                let _ = signal_hook::low_level::raise(signal_hook::consts::SIGHUP);
            }),
        )?),
        None => None,
    };
    let mut sup = Supervisor {
        metrics: plan.metrics.as_ref().map(|(a, _)| *a),
        board,
        watcher,
        slots: (0..plan.workers).map(|_| Slot::default()).collect(),
        plan,
        leaving: Vec::new(),
        up: false,
        reload_wanted: false,
        backoff: BACKOFF_FIRST,
        stop_deadline: None,
    };
    for i in 0..sup.slots.len() {
        sup.slots[i].current = Some(sup.spawn_first()?);
    }
    loop {
        sup.wait(&mut signals);
        if signals.quit.swap(false, Ordering::AcqRel) {
            tracing::info!("SIGQUIT: stopping at once");
            sup.notify(|n| n.stopping());
            sup.kill_all();
            sup.reap_all();
            return Ok(());
        }
        if signals.term.swap(false, Ordering::AcqRel) {
            if sup.stop_deadline.is_some() {
                tracing::warn!("second stop signal: killing the workers");
                sup.kill_all();
            } else {
                sup.notify(|n| n.stopping());
                tracing::info!("stopping: workers finish their in-flight requests");
                sup.stop_deadline = Some(Instant::now() + sup.plan.graceful_timeout + SHORT_LIFE);
                sup.stop_all();
            }
        }
        if signals.hup.swap(false, Ordering::AcqRel) {
            sup.reload();
        }
        if signals.usr1.swap(false, Ordering::AcqRel) {
            sup.reopen_logs();
        }
        sup.note_ready();
        sup.retirements();
        sup.kill_overdue();
        sup.reap()?;
        sup.settle();
        sup.due_restarts();
        if let Some(deadline) = sup.stop_deadline {
            if sup.leaving.is_empty() {
                tracing::info!("stopped");
                return Ok(());
            }
            if Instant::now() >= deadline {
                tracing::warn!("--graceful-timeout passed: killing the remaining workers");
                sup.kill_all();
                sup.stop_deadline = Some(Instant::now() + Duration::from_secs(5));
            }
        }
    }
}

impl Supervisor {
    /// Tells systemd (`NOTIFY_SOCKET`), if it is listening.
    fn notify(&self, f: impl FnOnce(&crate::sd_notify::Notifier)) {
        if let Some(n) = &self.plan.notify {
            f(n);
        }
    }

    /// `serving on ADDR, ADDR (N workers)` for systemd's STATUS.
    fn serving(&self) -> String {
        let on: Vec<&str> = self.plan.sockets.iter().map(|(_, s)| s.as_str()).collect();
        format!(
            "serving on {} ({} workers)",
            on.join(", "),
            self.plan.workers
        )
    }

    /// Starts one worker.
    fn spawn(&self) -> Result<Worker, String> {
        self.spawn_worker(false)
    }

    /// Starts one worker of the first generation: they start accepting together.
    fn spawn_first(&self) -> Result<Worker, String> {
        self.spawn_worker(true)
    }

    fn spawn_worker(&self, first: bool) -> Result<Worker, String> {
        let (ready_r, ready_w) =
            std::io::pipe().map_err(|e| format!("cannot start a worker: {e}"))?;
        let mut sources: Vec<RawFd> = self
            .plan
            .sockets
            .iter()
            .map(|(fd, _)| fd.as_raw_fd())
            .collect();
        sources.push(ready_w.as_raw_fd());
        let count = self.plan.sockets.len();
        let seat = self.board.as_ref().and_then(|(board, fd)| {
            let seat = board.take_seat()?;
            sources.push(fd.as_raw_fd());
            Some(SeatLease {
                board: *board,
                seat,
            })
        });
        let metrics = self.plan.metrics.as_ref().and_then(|(area, fd)| {
            let Some(seat) = area.take_seat() else {
                tracing::warn!("no free metrics seat: the next worker is not counted");
                return None;
            };
            let at = super::http::listener::FIRST_INHERITED_FD as usize + sources.len();
            sources.push(fd.as_raw_fd());
            Some((MetricsLease { area, seat }, at))
        });
        // The child checks that its parent is still this process once it asked to die with it.
        let parent = rustix::process::getpid().as_raw_nonzero().get();
        let mut cmd = Command::new(&self.plan.program);
        cmd.args(&self.plan.args)
            .env(WORKER_FDS_VAR, count.to_string())
            .env(
                READY_FD_VAR,
                (super::http::listener::FIRST_INHERITED_FD as usize + count).to_string(),
            )
            .stdin(Stdio::null());
        if let Some(watcher) = &self.watcher {
            cmd.envs(watcher.worker_env());
        }
        if let Some(lease) = &seat {
            let fd = super::http::listener::FIRST_INHERITED_FD as usize + count + 1;
            cmd.env(
                BOARD_VAR,
                format!("{fd},{},{}", lease.seat, u8::from(first)),
            );
        }
        if let Some((lease, fd)) = &metrics {
            cmd.env(METRICS_VAR, format!("{fd},{}", lease.seat));
        }
        // SAFETY: only async-signal-safe calls (fcntl, dup2, prctl, getppid) between fork and
        // exec.
        unsafe {
            cmd.pre_exec(move || {
                place_fds(&sources)?;
                die_with_parent(parent)
            });
        }
        let child = cmd.spawn().map_err(|e| {
            format!(
                "cannot start a worker ({}): {e}",
                self.plan.program.display()
            )
        })?;
        drop(ready_w);
        if let Some(m) = self.metrics {
            m.worker_starts.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Worker {
            child,
            started: Instant::now(),
            state: State::Starting,
            ready: Some(ready_r),
            retiring: None,
            kill_at: None,
            reopen_due: false,
            _seat: seat,
            metrics: metrics.map(|(lease, _)| lease),
            exit_reason: None,
        })
    }

    /// Every worker that still has a place (not those leaving).
    fn placed(&self) -> impl Iterator<Item = &Worker> {
        self.slots
            .iter()
            .flat_map(|s| s.current.iter().chain(s.successor.iter()))
    }

    fn reloading(&self) -> bool {
        self.slots.iter().any(|s| s.successor.is_some())
    }

    /// Sleeps until a signal, a readiness report, or the next deadline.
    fn wait(&mut self, signals: &mut Signals) {
        let now = Instant::now();
        let mut timeout = Duration::from_millis(500);
        let restarts = self.slots.iter().filter_map(Slot::pending_restart);
        let kills = self.leaving.iter().filter_map(|w| w.kill_at.as_ref());
        for at in restarts.chain(self.stop_deadline.iter()).chain(kills) {
            timeout = timeout.min(at.saturating_duration_since(now));
        }
        let readers: Vec<BorrowedFd<'_>> = self
            .placed()
            .filter_map(|w| w.ready.as_ref().map(|r| r.as_fd()))
            .collect();
        let mut fds: Vec<PollFd<'_>> = std::iter::once(signals.wake.as_fd())
            .chain(readers)
            .map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN))
            .collect();
        let ts = rustix::event::Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(0),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        // EINTR (a signal) just ends the wait early, which is what we want.
        let _ = poll(&mut fds, Some(&ts));
        drop(fds);
        signals.drain();
    }

    /// SIGUSR1: the supervisor's own error log is reopened, and every worker reopens its logs
    /// (a starting one once it is ready).
    fn reopen_logs(&mut self) {
        crate::logging::reopen_error_log();
        tracing::info!("SIGUSR1: log files reopened; passing it on to the workers");
        let workers = self
            .slots
            .iter_mut()
            .flat_map(|s| s.current.iter_mut().chain(s.successor.iter_mut()));
        for w in workers.chain(self.leaving.iter_mut()) {
            match w.state {
                State::Ready => signal(&w.child, rustix::process::Signal::USR1),
                State::Starting => w.reopen_due = true,
            }
        }
    }

    /// Workers whose ready pipe spoke are ready.
    fn note_ready(&mut self) {
        for slot in &mut self.slots {
            for w in slot.current.iter_mut().chain(slot.successor.iter_mut()) {
                w.poll_ready();
            }
        }
    }

    /// What readiness completes: the start (every first worker ready), a reload (every
    /// successor ready), and a SIGHUP that waited for the start.
    fn settle(&mut self) {
        let ready = |w: &Option<Worker>| w.as_ref().is_some_and(|w| w.state == State::Ready);
        if !self.up && self.slots.iter().all(|s| ready(&s.current)) {
            self.up = true;
            for (_, shown) in &self.plan.sockets {
                tracing::info!(
                    "wsgi-gateway {} listening on {shown} ({} workers)",
                    env!("CARGO_PKG_VERSION"),
                    self.plan.workers
                );
            }
            self.notify(|n| n.ready(&self.serving()));
        }
        if self.reloading() && self.slots.iter().all(|s| ready(&s.successor)) {
            for i in 0..self.slots.len() {
                let slot = &mut self.slots[i];
                slot.restart_at = None;
                let old = std::mem::replace(&mut slot.current, slot.successor.take());
                if let Some(old) = old {
                    self.leave(old);
                }
            }
            tracing::info!("reload: done");
            self.notify(|n| n.ready(&format!("{}; reloaded", self.serving())));
        }
        if self.up && self.reload_wanted {
            self.reload_wanted = false;
            self.reload();
        }
    }

    /// SIGHUP: a new generation (fresh processes import the app's code anew). A reload under
    /// way is replaced: its workers may have imported older code than what is on disk now.
    fn reload(&mut self) {
        if self.stop_deadline.is_some() {
            tracing::warn!("SIGHUP ignored: stopping");
            return;
        }
        if !self.up && self.watcher.is_some() {
            // --reload: the first generation (failed, or still importing older code) starts
            // anew.
            tracing::info!(
                "reload: starting the first {} worker(s) again",
                self.plan.workers
            );
            for i in 0..self.slots.len() {
                if let Some(w) = self.slots[i].current.take() {
                    self.leave(w);
                }
                match self.spawn_first() {
                    Ok(w) => {
                        self.slots[i].restart_at = None;
                        self.slots[i].current = Some(w);
                    }
                    // As any worker that cannot be started: `due_restarts` tries again.
                    Err(e) => {
                        tracing::error!("{e}; retrying in {} ms", self.backoff.as_millis());
                        self.slots[i].restart_at = Some(Instant::now() + self.backoff);
                    }
                }
            }
            return;
        }
        if !self.up {
            tracing::info!("SIGHUP: the reload starts once every worker has started");
            self.reload_wanted = true;
            return;
        }
        if self.reloading() {
            tracing::info!("reload: a newer SIGHUP replaces the reload under way");
            self.drop_successors();
        }
        tracing::info!("reload: starting {} new worker(s)", self.plan.workers);
        self.notify(|n| {
            n.reloading(&format!(
                "reloading: starting {} new workers",
                self.plan.workers
            ))
        });
        for i in 0..self.slots.len() {
            match self.spawn() {
                Ok(w) => self.slots[i].successor = Some(w),
                Err(e) => {
                    tracing::error!("reload failed: {e}; keeping the running workers");
                    self.reload_failed();
                    return;
                }
            }
        }
    }

    /// Gives a reload up (its new code fails, or its workers cannot be started): its workers
    /// stop, and the running generation serves on.
    fn reload_failed(&mut self) {
        self.drop_successors();
        // The reload systemd waits for has ended.
        self.notify(|n| n.ready(&format!("{}; the reload failed", self.serving())));
    }

    /// Ends a reload without taking it: every successor is told to stop.
    fn drop_successors(&mut self) {
        for i in 0..self.slots.len() {
            if let Some(w) = self.slots[i].successor.take() {
                self.leave(w);
            }
        }
    }

    /// Tells `w` to stop (SIGTERM: it finishes its in-flight requests) and waits for it.
    fn leave(&mut self, mut w: Worker) {
        // Unless the caller said why (`worker_exits_total`): a stop, or else a reload.
        w.exit_reason.get_or_insert(match self.stop_deadline {
            Some(_) => ExitReason::Stopped,
            None => ExitReason::Reload,
        });
        signal(&w.child, rustix::process::Signal::TERM);
        self.let_go(w);
    }

    /// `w` stops (told to, or retiring by itself): it is waited for, and killed should it
    /// outlive `--graceful-timeout` (its own stop ends there; this is for one that cannot).
    fn let_go(&mut self, mut w: Worker) {
        w.ready = None;
        w.kill_at = Some(Instant::now() + self.plan.graceful_timeout + SHORT_LIFE);
        // Its connections no longer count in the others' share (it takes no new ones).
        if let Some(lease) = &w._seat {
            if let Some(seat) = lease.board.seat(lease.seat) {
                seat.set_live(false);
            }
        }
        self.leaving.push(w);
    }

    /// Workers that said they retire leave their place, and their replacements start now:
    /// they are draining, and may take up to `--graceful-timeout` to exit. Not sent SIGTERM:
    /// a worker already stopping takes a stop signal for "exit now".
    fn retirements(&mut self) {
        let retiring = |w: &Option<Worker>| w.as_ref().is_some_and(|w| w.retiring.is_some());
        for i in 0..self.slots.len() {
            if retiring(&self.slots[i].successor) {
                if let Some(w) = self.slots[i].successor.take() {
                    let (pid, why) = (w.pid(), w.retiring.map_or("", Reason::describe));
                    self.let_go(w);
                    match self.spawn() {
                        Ok(next) => {
                            tracing::info!(
                                "worker pid {pid} retiring ({why}); started {}",
                                next.pid()
                            );
                            self.slots[i].successor = Some(next);
                        }
                        Err(e) => {
                            tracing::error!(
                                "worker pid {pid} retiring ({why}); reload failed: {e}; \
                                 keeping the running workers"
                            );
                            self.reload_failed();
                        }
                    }
                }
            }
            if retiring(&self.slots[i].current) {
                if let Some(w) = self.slots[i].current.take() {
                    let (pid, why) = (w.pid(), w.retiring.map_or("", Reason::describe));
                    // It served: as for a worker that exits after a while, no crash loop.
                    if w.started.elapsed() >= SHORT_LIFE {
                        self.backoff = BACKOFF_FIRST;
                    }
                    self.let_go(w);
                    if let Some(next) = &self.slots[i].successor {
                        tracing::info!(
                            "worker pid {pid} retiring ({why}); the reload's worker {} takes \
                             its place",
                            next.pid()
                        );
                        self.slots[i].restart_at = Some(Instant::now());
                    } else if let Some(new_pid) = self.start_in(i) {
                        tracing::info!("worker pid {pid} retiring ({why}); started {new_pid}");
                    } else {
                        tracing::warn!("worker pid {pid} retiring ({why})");
                    }
                }
            }
        }
    }

    /// Leaving workers past their time are killed.
    fn kill_overdue(&mut self) {
        let now = Instant::now();
        for w in &mut self.leaving {
            if w.kill_at.is_some_and(|at| at <= now) {
                tracing::warn!(
                    "worker pid {} still running --graceful-timeout after it was let go; \
                     killing it",
                    w.pid()
                );
                let _ = w.child.kill();
                w.kill_at = None;
            }
        }
    }

    /// SIGTERM/SIGINT: every worker stops; none is replaced.
    fn stop_all(&mut self) {
        self.reload_wanted = false;
        for i in 0..self.slots.len() {
            let slot = std::mem::take(&mut self.slots[i]);
            for w in slot.current.into_iter().chain(slot.successor) {
                self.leave(w);
            }
        }
    }

    fn kill_all(&mut self) {
        let slots = self
            .slots
            .iter_mut()
            .flat_map(|s| s.current.iter_mut().chain(s.successor.iter_mut()));
        for w in slots.chain(self.leaving.iter_mut()) {
            let _ = w.child.kill();
        }
    }

    /// Waits for every worker (after `kill_all`: the final stop).
    fn reap_all(&mut self) {
        for slot in std::mem::take(&mut self.slots) {
            for mut w in slot.current.into_iter().chain(slot.successor) {
                let _ = w.child.wait();
            }
        }
        for mut w in std::mem::take(&mut self.leaving) {
            let _ = w.child.wait();
        }
    }

    /// Collects exited workers and decides what takes their place.
    /// `Err`: the first generation cannot start (see `run`).
    fn reap(&mut self) -> Result<(), String> {
        self.leaving.retain_mut(|w| match w.exited() {
            Some(status) => {
                tracing::info!("worker pid {} exited ({})", w.pid(), describe(status));
                false
            }
            None => true,
        });
        for i in 0..self.slots.len() {
            let successor = &mut self.slots[i].successor;
            if let Some(status) = successor.as_mut().and_then(Worker::exited) {
                if let Some(w) = successor.take() {
                    self.successor_exited(i, w, status);
                }
            }
            let current = &mut self.slots[i].current;
            if let Some(status) = current.as_mut().and_then(Worker::exited) {
                if let Some(w) = current.take() {
                    self.current_exited(i, w, status)?;
                }
            }
        }
        Ok(())
    }

    /// A new-code worker exited before its reload was done. Retired after serving
    /// (`--max-requests`): another takes its place. Otherwise the new code fails (at import,
    /// or crashing): the reload is given up and the running workers stay.
    fn successor_exited(&mut self, i: usize, w: Worker, status: ExitStatus) {
        let (pid, how) = (w.pid(), describe(status));
        if w.state == State::Ready && status.success() {
            match self.spawn() {
                Ok(next) => {
                    tracing::info!("worker pid {pid} exited ({how}); started {}", next.pid());
                    self.slots[i].successor = Some(next);
                }
                Err(e) => {
                    tracing::error!(
                        "worker pid {pid} exited ({how}); reload failed: {e}; keeping the \
                         running workers"
                    );
                    self.reload_failed();
                }
            }
            return;
        }
        let when = match w.state {
            State::Starting => "before it was ready",
            State::Ready => "before the reload was done",
        };
        tracing::error!(
            "reload failed: worker pid {pid} exited ({how}) {when}; keeping the running workers"
        );
        self.reload_failed();
    }

    /// A serving (or starting) worker exited. Its replacement starts at once, or after a
    /// back-off when workers keep dying young. During a reload none starts: the slot's
    /// successor takes the place (a replacement would be one worker too many); should the
    /// reload fail, `restart_at` still fills it.
    fn current_exited(&mut self, i: usize, w: Worker, status: ExitStatus) -> Result<(), String> {
        let (pid, how) = (w.pid(), describe(status));
        if !self.up && w.state == State::Starting && self.watcher.is_some() {
            // --reload: the app is being written; the next change starts it again.
            tracing::error!(
                "worker pid {pid} exited ({how}) before it was ready; --reload: waiting for a \
                 change to start again"
            );
            return Ok(());
        }
        if !self.up && w.state == State::Starting {
            // The first generation cannot start (the worker said why): give up.
            self.kill_all();
            self.reap_all();
            return Err(format!(
                "worker pid {pid} exited ({how}) before it was ready; stopping"
            ));
        }
        let delay = self.restart_delay(&w, status);
        let now = Instant::now();
        if let Some(next) = &self.slots[i].successor {
            tracing::info!(
                "worker pid {pid} exited ({how}); the reload's worker {} takes its place",
                next.pid()
            );
            self.slots[i].restart_at = Some(now + delay);
            return Ok(());
        }
        if !delay.is_zero() {
            tracing::warn!(
                "worker pid {pid} exited ({how}); restarting in {} ms",
                delay.as_millis()
            );
            self.slots[i].restart_at = Some(now + delay);
            return Ok(());
        }
        let Some(new_pid) = self.start_in(i) else {
            tracing::warn!("worker pid {pid} exited ({how})");
            return Ok(());
        };
        if status.success() {
            tracing::info!("worker pid {pid} exited ({how}); started {new_pid}");
        } else {
            tracing::warn!("worker pid {pid} exited ({how}); started {new_pid}");
        }
        Ok(())
    }

    /// Starts a worker for slot `i`'s empty `current`. One that cannot be started is logged
    /// and retried after the back-off (doubling, as for a crash loop): the server goes on
    /// with the others meanwhile. Returns the new worker's pid.
    fn start_in(&mut self, i: usize) -> Option<u32> {
        match self.spawn() {
            Ok(next) => {
                let pid = next.pid();
                self.slots[i].restart_at = None;
                self.slots[i].current = Some(next);
                Some(pid)
            }
            Err(e) => {
                let wait = self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                tracing::error!("{e}; retrying in {} ms", wait.as_millis());
                self.slots[i].restart_at = Some(Instant::now() + wait);
                None
            }
        }
    }

    /// How long to wait before replacing `w`. Exit 0 while serving is a retirement
    /// (`--max-requests`): planned, replaced at once. A worker that failed before it was
    /// ready, or crashed young, backs off (doubling, capped); one that served a while resets it.
    fn restart_delay(&mut self, w: &Worker, status: ExitStatus) -> Duration {
        let young = w.started.elapsed() < SHORT_LIFE;
        if !status.success() && (young || w.state == State::Starting) {
            let wait = self.backoff;
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            return wait;
        }
        if !young {
            self.backoff = BACKOFF_FIRST;
        }
        Duration::ZERO
    }

    /// Starts the replacements whose time has come (not in a slot a reload will fill).
    fn due_restarts(&mut self) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            let due = self.slots[i].pending_restart().is_some_and(|&at| at <= now);
            if due {
                if let Some(pid) = self.start_in(i) {
                    tracing::info!("started worker pid {pid}");
                }
            }
        }
    }
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => {
            let name = match sig {
                libc::SIGKILL => "SIGKILL",
                libc::SIGTERM => "SIGTERM",
                libc::SIGINT => "SIGINT",
                libc::SIGQUIT => "SIGQUIT",
                libc::SIGSEGV => "SIGSEGV",
                libc::SIGABRT => "SIGABRT",
                libc::SIGBUS => "SIGBUS",
                libc::SIGHUP => "SIGHUP",
                _ => return format!("signal {sig}"),
            };
            format!("signal {name}")
        }
        _ => "unknown status".into(),
    }
}

/// Most listening sockets a supervisor passes on (fds 3.. in the worker).
pub const MAX_SOCKETS: usize = 64;

/// In the child between fork and exec: the sockets go to fds 3, 4, … and the ready pipe right
/// after them, then the board and the metrics area (without close-on-exec). No allocation here: only
/// async-signal-safe calls are allowed after fork.
fn place_fds(sources: &[RawFd]) -> std::io::Result<()> {
    // First move every source out of the way, so placing one cannot overwrite another.
    let mut moved = [0 as RawFd; MAX_SOCKETS + 3];
    for (slot, &fd) in moved.iter_mut().zip(sources) {
        // SAFETY: fcntl on an fd this process owns.
        *slot = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 1000) };
        if *slot < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let first = super::http::listener::FIRST_INHERITED_FD;
    for (target, &high) in (first..).zip(moved.iter().take(sources.len())) {
        // SAFETY: dup2 onto a fixed fd number in the child; the copy has no close-on-exec.
        if unsafe { libc::dup2(high, target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// In the child between fork and exec: the worker gets SIGTERM when the supervisor (`parent`)
/// dies. Had it died already, after the fork and before the request, no signal would ever
/// come and the worker would be an orphan: then the parent is no longer `parent` and the
/// child gives up (ESRCH: `spawn` fails, the child exits before exec). Async-signal-safe.
fn die_with_parent(parent: libc::pid_t) -> std::io::Result<()> {
    // Both are single system calls (rustix's raw syscalls: no allocation, no lock).
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))?;
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(parent) {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spawns `true` with `die_with_parent(parent)` between fork and exec.
    fn spawn_checking(parent: libc::pid_t) -> std::io::Result<ExitStatus> {
        let mut cmd = Command::new("true");
        // SAFETY: die_with_parent only makes async-signal-safe calls.
        unsafe {
            cmd.pre_exec(move || die_with_parent(parent));
        }
        cmd.status()
    }

    #[test]
    fn the_pipe_says_ready_then_why_the_worker_retires_then_closes() {
        use std::io::Write;
        // Started before the pipe exists: a child being started holds every fd of this
        // process until its exec, the write end included.
        let child = Command::new("true").spawn().expect("spawn true");
        let (r, mut w) = std::io::pipe().expect("pipe");
        let mut worker = Worker {
            child,
            started: Instant::now(),
            state: State::Starting,
            ready: Some(r),
            retiring: None,
            kill_at: None,
            reopen_due: false,
            _seat: None,
            metrics: None,
            exit_reason: None,
        };
        worker.poll_ready();
        assert_eq!((worker.state, worker.retiring), (State::Starting, None));
        w.write_all(&[retire::READY]).expect("write");
        worker.poll_ready();
        assert_eq!((worker.state, worker.retiring), (State::Ready, None));
        assert!(worker.ready.is_some(), "the pipe was closed after ready");
        // The first reason given is the one kept.
        w.write_all(&[Reason::Timeout.byte(), Reason::MaxRss.byte()])
            .expect("write");
        worker.poll_ready();
        assert_eq!(worker.retiring, Some(Reason::Timeout));
        drop(w);
        // Another test's child may hold a copy of the write end until its exec: poll for EOF.
        let deadline = Instant::now() + Duration::from_secs(10);
        while worker.ready.is_some() && Instant::now() < deadline {
            worker.poll_ready();
            std::thread::yield_now();
        }
        assert!(worker.ready.is_none(), "EOF did not close the pipe");
        let _ = worker.child.wait();
    }

    #[test]
    fn a_child_whose_parent_is_gone_does_not_start() {
        // The child's parent is this process; any other pid stands for "the supervisor that
        // forked me has died and I was re-parented".
        let me = rustix::process::getpid().as_raw_nonzero().get();
        let other = if me == 1 { 2 } else { 1 };
        let err = spawn_checking(other).expect_err("a child with another parent started");
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "{err}");
        let status = spawn_checking(me).expect("a child with the right parent");
        assert!(status.success(), "{status:?}");
    }
}
