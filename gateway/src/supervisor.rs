//! `serve --workers N`: the supervisor. It holds the listening sockets, starts N worker
//! processes (this binary again, with the same arguments) that inherit them, replaces a worker
//! that dies or retires (`--max-requests`), reloads on SIGHUP (a new generation starts and is
//! ready before the old one is told to stop), and stops them all on SIGTERM/SIGINT (graceful)
//! or SIGQUIT (at once). It never starts Python.

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

/// The variables a worker finds its inheritance in: how many listening sockets start at fd 3,
/// and the fd it reports readiness on.
pub const WORKER_FDS_VAR: &str = "WSGI_GATEWAY_WORKER_FDS";
pub const READY_FD_VAR: &str = "WSGI_GATEWAY_READY_FD";

/// A worker that dies sooner than this after starting counts as a crash loop (back-off).
const SHORT_LIFE: Duration = Duration::from_secs(1);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub struct Plan {
    pub workers: usize,
    /// This program's arguments (without argv[0]), given to every worker as they are.
    pub args: Vec<OsString>,
    pub graceful_timeout: Duration,
    /// The listening sockets, and how each is shown in the log.
    pub sockets: Vec<(OwnedFd, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Started; not yet serving (its ready pipe is open).
    Starting,
    Ready,
    /// Told to stop (SIGTERM); not replaced when it exits.
    Stopping,
}

struct Worker {
    child: Child,
    generation: u64,
    started: Instant,
    state: State,
    ready: Option<std::io::PipeReader>,
}

/// Signals, as flags set by the handlers plus a pipe that wakes the loop.
struct Signals {
    wake: UnixStream,
    term: Arc<AtomicBool>,
    quit: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM};
        let (wake, notify) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let term = Arc::new(AtomicBool::new(false));
        let quit = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        for (sig, flag) in [
            (SIGTERM, &term),
            (SIGINT, &term),
            (SIGQUIT, &quit),
            (SIGHUP, &hup),
        ] {
            signal_hook::flag::register(sig, flag.clone())?;
        }
        for sig in [SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGCHLD] {
            signal_hook::low_level::pipe::register(sig, notify.try_clone()?)?;
        }
        Ok(Signals {
            wake,
            term,
            quit,
            hup,
        })
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(self.wake.read(&mut buf), Ok(n) if n > 0) {}
    }
}

struct Supervisor {
    plan: Plan,
    exe: std::path::PathBuf,
    workers: Vec<Worker>,
    generation: u64,
    /// The generation being started by a reload, if one is under way.
    reloading: Option<u64>,
    /// Every worker of the first generation became ready (the server is up).
    up: bool,
    backoff: Duration,
    /// Replacements waiting for their back-off to pass.
    restarts: Vec<Instant>,
    stop_deadline: Option<Instant>,
}

/// Runs the supervisor until it is stopped. `Err` = the first generation could not start.
pub fn run(plan: Plan) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut signals = Signals::install().map_err(|e| format!("signals: {e}"))?;
    tracing::info!(
        "supervisor pid {} starting {} worker(s)",
        std::process::id(),
        plan.workers
    );
    let mut sup = Supervisor {
        plan,
        exe,
        workers: Vec::new(),
        generation: 1,
        reloading: None,
        up: false,
        backoff: BACKOFF_FIRST,
        restarts: Vec::new(),
        stop_deadline: None,
    };
    for _ in 0..sup.plan.workers {
        sup.spawn(1)?;
    }
    loop {
        sup.wait(&mut signals);
        if signals.quit.swap(false, Ordering::AcqRel) {
            tracing::info!("SIGQUIT: stopping at once");
            sup.kill_all();
            sup.reap();
            return Ok(());
        }
        if signals.term.swap(false, Ordering::AcqRel) {
            if sup.stop_deadline.is_some() {
                tracing::warn!("second stop signal: killing the workers");
                sup.kill_all();
            } else {
                tracing::info!("stopping: workers finish their in-flight requests");
                sup.stop_deadline = Some(Instant::now() + sup.plan.graceful_timeout + SHORT_LIFE);
                sup.restarts.clear();
                sup.terminate(|_| true);
            }
        }
        if signals.hup.swap(false, Ordering::AcqRel) {
            sup.reload()?;
        }
        sup.reap_and_replace()?;
        sup.note_ready();
        sup.due_restarts()?;
        if let Some(deadline) = sup.stop_deadline {
            if sup.workers.is_empty() {
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
    /// Starts one worker of `generation`.
    fn spawn(&mut self, generation: u64) -> Result<(), String> {
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
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.plan.args)
            .env(WORKER_FDS_VAR, count.to_string())
            .env(
                READY_FD_VAR,
                (super::http::listener::FIRST_INHERITED_FD as usize + count).to_string(),
            )
            .stdin(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2, close, prctl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || place_fds(&sources));
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start a worker ({}): {e}", self.exe.display()))?;
        drop(ready_w);
        self.workers.push(Worker {
            child,
            generation,
            started: Instant::now(),
            state: State::Starting,
            ready: Some(ready_r),
        });
        Ok(())
    }

    /// Sleeps until a signal, a readiness report, or the next deadline.
    fn wait(&mut self, signals: &mut Signals) {
        let now = Instant::now();
        let mut timeout = Duration::from_millis(500);
        for at in self.restarts.iter().chain(self.stop_deadline.iter()) {
            timeout = timeout.min(at.saturating_duration_since(now));
        }
        let readers: Vec<BorrowedFd<'_>> = self
            .workers
            .iter()
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

    /// Workers whose ready pipe spoke (or closed) are ready (or about to be reaped).
    fn note_ready(&mut self) {
        for w in &mut self.workers {
            let Some(r) = w.ready.as_mut() else { continue };
            let mut fds = [PollFd::new(&*r, PollFlags::IN)];
            let zero = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            if !matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0) {
                continue;
            }
            let mut byte = [0u8; 1];
            let said_ready = matches!(r.read(&mut byte), Ok(1));
            w.ready = None;
            if said_ready && w.state == State::Starting {
                w.state = State::Ready;
            }
        }
        if !self.up && self.generation_ready(1) {
            self.up = true;
            for (_, shown) in &self.plan.sockets {
                tracing::info!(
                    "wsgi-gateway {} listening on {shown} ({} workers)",
                    env!("CARGO_PKG_VERSION"),
                    self.plan.workers
                );
            }
        }
        if let Some(g) = self.reloading {
            if self.generation_ready(g) {
                self.reloading = None;
                self.terminate(|w| w.generation < g);
                tracing::info!("reload: done");
            }
        }
    }

    fn generation_ready(&self, generation: u64) -> bool {
        let mut of_gen = self.workers.iter().filter(|w| w.generation == generation);
        of_gen.clone().count() == self.plan.workers && of_gen.all(|w| w.state == State::Ready)
    }

    /// SIGHUP: a new generation (fresh processes import the app's code anew).
    fn reload(&mut self) -> Result<(), String> {
        if self.stop_deadline.is_some() || self.reloading.is_some() || !self.up {
            tracing::warn!("SIGHUP ignored: a start, reload or stop is under way");
            return Ok(());
        }
        self.generation += 1;
        let g = self.generation;
        tracing::info!("reload: starting {} new worker(s)", self.plan.workers);
        self.reloading = Some(g);
        self.restarts.clear();
        for _ in 0..self.plan.workers {
            self.spawn(g)?;
        }
        Ok(())
    }

    /// Sends SIGTERM (graceful stop) to the workers `which` selects.
    fn terminate(&mut self, which: impl Fn(&Worker) -> bool) {
        for w in self.workers.iter_mut().filter(|w| which(w)) {
            w.state = State::Stopping;
            signal(&w.child, rustix::process::Signal::TERM);
        }
    }

    fn kill_all(&mut self) {
        for w in &mut self.workers {
            w.state = State::Stopping;
            let _ = w.child.kill();
        }
    }

    /// Collects exited workers without replacing them (the final stop).
    fn reap(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.wait();
        }
        self.workers.clear();
    }

    /// Collects exited workers and replaces those that should be replaced.
    fn reap_and_replace(&mut self) -> Result<(), String> {
        let mut i = 0;
        while i < self.workers.len() {
            let status = match self.workers[i].child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) | Err(_) => {
                    i += 1;
                    continue;
                }
            };
            let w = self.workers.swap_remove(i);
            let pid = w.child.id();
            let how = describe(status);
            match w.state {
                State::Stopping => tracing::info!("worker pid {pid} exited ({how})"),
                State::Starting if !self.up => {
                    // The first generation cannot start (the worker said why): give up.
                    self.kill_all();
                    self.reap();
                    return Err(format!(
                        "worker pid {pid} exited ({how}) before it was ready; stopping"
                    ));
                }
                State::Starting if self.reloading == Some(w.generation) => {
                    let g = w.generation;
                    self.reloading = None;
                    self.terminate(|o| o.generation == g);
                    tracing::error!(
                        "reload failed: worker pid {pid} exited ({how}) before it was ready; keeping the running workers"
                    );
                }
                State::Starting | State::Ready => self.replace(pid, &w, status, &how)?,
            }
        }
        Ok(())
    }

    fn replace(
        &mut self,
        pid: u32,
        w: &Worker,
        status: ExitStatus,
        how: &str,
    ) -> Result<(), String> {
        // Exit 0 while serving is a retirement (--max-requests): planned, replaced at once.
        let crash_loop = !status.success() && w.started.elapsed() < SHORT_LIFE;
        if crash_loop {
            let wait = self.backoff;
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            tracing::warn!(
                "worker pid {pid} exited ({how}); restarting in {} ms",
                wait.as_millis()
            );
            self.restarts.push(Instant::now() + wait);
            return Ok(());
        }
        if w.started.elapsed() >= SHORT_LIFE {
            self.backoff = BACKOFF_FIRST;
        }
        self.spawn(self.generation)?;
        let new_pid = self.workers.last().map_or(0, |n| n.child.id());
        let level_warn = !status.success();
        if level_warn {
            tracing::warn!("worker pid {pid} exited ({how}); started {new_pid}");
        } else {
            tracing::info!("worker pid {pid} exited ({how}); started {new_pid}");
        }
        Ok(())
    }

    fn due_restarts(&mut self) -> Result<(), String> {
        let now = Instant::now();
        let due = self.restarts.iter().filter(|&&at| at <= now).count();
        self.restarts.retain(|&at| at > now);
        for _ in 0..due {
            self.spawn(self.generation)?;
        }
        Ok(())
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
/// after them (without close-on-exec); the worker dies with the supervisor. No allocation
/// here: only async-signal-safe calls are allowed after fork.
fn place_fds(sources: &[RawFd]) -> std::io::Result<()> {
    // First move every source out of the way, so placing one cannot overwrite another.
    let mut moved = [0 as RawFd; MAX_SOCKETS + 1];
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
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
