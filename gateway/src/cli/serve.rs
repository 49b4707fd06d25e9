//! `serve`: binds (or inherits) the listening sockets, then either supervises worker
//! processes (`--workers`, `--max-requests`) or loads the app and runs the HTTP server.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use super::{init_logging, load, Fatal};
use crate::config::{ServeArgs, Underscores};
use crate::http::server::Server;
use crate::http::{self, listener, Shared};
use crate::pool;
use crate::privileges::{self, Target};
use crate::python::environ::FrontEndKind;
use crate::python::host::Shape;
use crate::sd_notify::{self, Notifier};
use crate::supervisor;

/// Lets the server hold as many connections as the system allows (the soft limit is often
/// 1024, below `--max-connections`).
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        let from = lim.current;
        lim.current = lim.maximum;
        match setrlimit(Resource::Nofile, lim) {
            Ok(()) => tracing::debug!("open file limit raised from {from:?} to {:?}", lim.maximum),
            Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
        }
    }
}

/// `command_line`: this process's arguments (without the program), given to every worker.
/// Called on the process's only thread: its first steps, to `inherited_sockets`, remove
/// handed-over variables from the environment, so nothing before them may start a thread.
pub(super) fn serve(
    args: ServeArgs,
    shape: &Shape,
    command_line: &[std::ffi::OsString],
) -> Result<u8, Fatal> {
    // First: the error log, the sockets and the app's files are all created under it.
    privileges::apply_umask(args.privileges.umask);
    init_logging(&args.app)?;
    if !args.reload && !args.reload_extra_file.is_empty() {
        return Err(Fatal("--reload-extra-file needs --reload".into()));
    }
    // Compiled here, before any worker starts: a bad format is one start-up error.
    let access_format = http::access_log::Format::parse(&args.access_log_format).map_err(Fatal)?;
    raise_fd_limit();
    let worker = worker_inheritance(shape)?;
    // systemd's socket: only the process it started (this one, unless it is a worker) talks
    // to it; either way the variable goes, so no worker or child of the app sees it.
    // SAFETY: as in `worker_inheritance`: one of `serve`'s first steps, on the only thread.
    let forget = |var: &str| unsafe { shape.forget_env(var) };
    let notifier = match worker {
        None => Notifier::from_env(forget),
        Some(_) => {
            forget(sd_notify::NOTIFY_SOCKET_VAR);
            None
        }
    };
    // SAFETY: as above: still the only thread.
    let reload_report = match &worker {
        Some(_) => unsafe { crate::reload::Report::from_env(shape) },
        None => None,
    };
    // Taken (and made close-on-exec) before the app is imported: a process it starts there
    // must not keep them.
    let inherited = inherited_sockets(&args, shape, worker.as_ref())?;
    // Looked up before anything is bound (after the environment is settled: a name service
    // may start threads): a bad name stops the start with nothing held.
    let target = Target::resolve(
        args.privileges.user.as_deref(),
        args.privileges.group.as_deref(),
    )
    .map_err(Fatal)?;
    if let (None, Some(workers)) = (&worker, args.supervisor_workers()) {
        // The workers' settings, checked before binding: a bad one stops the supervisor here
        // rather than each worker in turn.
        args.http_settings(0)?;
        let listeners = match inherited {
            Some(listeners) => listeners,
            None => bind_sockets(&args, target.as_ref())?,
        };
        // Before the pid file: a signal sent by it must find the supervisor's handlers.
        let signals = supervisor::Signals::install().map_err(|e| Fatal(format!("signals: {e}")))?;
        // Written while still privileged (`/run` is root's).
        let _pid_file = PidFile::write(args.pid.as_deref())?;
        // Bound while still privileged, like the sockets; served once switched.
        let metrics_bound = bind_metrics(&args, target.as_ref())?;
        // The supervisor switches, before any worker exists: it needs root for nothing once
        // the sockets are bound (its workers are its own user's to signal and reap), and no
        // worker, which runs the app, ever starts as root.
        switch_user(&args, target.as_ref())?;
        warn_if_root(target.as_ref());
        let (metrics, _endpoint) = supervised_metrics(metrics_bound, workers, &listeners)?;
        let (program, mut program_args) = shape.program().map_err(Fatal)?;
        program_args.extend(command_line.iter().cloned());
        let plan = supervisor::Plan {
            workers,
            program,
            args: program_args,
            graceful_timeout: args.graceful_timeout,
            reload: reload_files(&args)?,
            sockets: listeners
                .into_iter()
                .map(|b| {
                    let fd = match b.sock {
                        listener::Sock::Tcp(l) => OwnedFd::from(l),
                        listener::Sock::Unix(l, _) => OwnedFd::from(l),
                    };
                    (fd, b.display)
                })
                .collect(),
            notify: notifier,
            metrics,
        };
        supervisor::run(plan, signals).map_err(Fatal)?;
        return Ok(0);
    }
    let max_requests = match (&worker, args.max_requests) {
        (Some(_), n) if n > 0 => n.saturating_add(jitter(args.max_requests_jitter)),
        _ => 0,
    };
    let settings = args.http_settings(max_requests)?;
    // SIGUSR1 (logrotate's postrotate) reopens the log files. Caught from here on (a signal
    // that comes while the app loads waits in `reopen`), before the pid file names us.
    let reopen = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR1])?;
    let mut inherited = inherited;
    let mut pid_file = None;
    let mut metrics_bound = None;
    if target.is_some() {
        // --user/--group: the sockets are bound (ports below 1024 need root) and the pid file
        // written before the switch; the app is imported after it.
        if inherited.is_none() {
            inherited = Some(bind_sockets(&args, target.as_ref())?);
        }
        if worker.is_none() {
            pid_file = PidFile::write(args.pid.as_deref())?;
            metrics_bound = bind_metrics(&args, target.as_ref())?;
        }
    }
    switch_user(&args, target.as_ref())?;
    let app = load(
        &args.app,
        shape,
        FrontEndKind {
            multithread: true,
            multiprocess: worker.is_some(),
            run_once: false,
        },
        args.service.header_underscores == Underscores::Refuse,
        Some(args.service.switch_interval),
    );
    if let Some(report) = reload_report {
        // Also when the app failed to import: its files are the ones to watch for the fix.
        report.send(&app_dirs(&args));
    }
    let mut app = app?;
    // After the app loaded: a start refused before then says one line, its error. A worker's
    // supervisor gave the warning.
    if worker.is_none() {
        warn_if_root(target.as_ref());
    }
    // Bound after the app (unless --user needed them first): a server that cannot start
    // never holds a port, even briefly.
    let listeners = match inherited {
        Some(listeners) => listeners,
        None => bind_sockets(&args, None)?,
    };
    let access_log = match &args.access_log {
        Some(path) => {
            // The call keeps what the format reads (nothing for the presets).
            app.capture = access_format.capture().clone();
            Some(
                http::access_log::AccessLog::open(path, access_format)
                    .map_err(|e| Fatal(format!("--access-log {path}: {e}")))?,
            )
        }
        None => None,
    };

    let access_reopener = access_log.as_ref().map(|l| l.reopener());
    std::thread::Builder::new()
        .name("log-reopen".into())
        .spawn(move || reopen_logs(reopen, access_reopener))?;

    // Bound after the app like the sockets (unless --user needed it first).
    if worker.is_none() && metrics_bound.is_none() {
        metrics_bound = bind_metrics(&args, None)?;
    }
    // A worker counts into the seat its supervisor gave it (the supervisor serves the page).
    let mut endpoint = None;
    let counters = match (&worker, metrics_bound) {
        (Some(w), _) => w.metrics,
        (None, Some(bound)) => {
            use crate::metrics::endpoint::{self, Counts, Source};
            let own: &'static crate::metrics::Counters = Box::leak(Box::default());
            let source = Source {
                counts: Counts::Own(own),
                listeners: listener_copies(&listeners),
            };
            endpoint = Some(endpoint::start(bound, source)?);
            Some(own)
        }
        (None, None) => None,
    };
    if let Some(c) = counters {
        c.set_threads(settings.threads);
        crate::metrics::install(c);
    }

    let pid_file = match (worker.is_some(), pid_file) {
        (false, None) => PidFile::write(args.pid.as_deref())?,
        (_, written) => written,
    };
    let (signal_rx, signal_tx) = std::os::unix::net::UnixStream::pair()?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::low_level::pipe::register(sig, signal_tx.try_clone()?)?;
    }
    let notifier = notifier.map(Arc::new);
    if let Some(n) = &notifier {
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            let n = n.clone();
            // SAFETY: `stopping` is one sendto on data made beforehand (async-signal-safe).
            unsafe { signal_hook::low_level::register(sig, move || n.stopping())? };
        }
    }
    // SIGHUP reloads a supervised server (the supervisor handles it); here it must not kill.
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup)?;

    // --timeout: the calls inside the app are tracked only when it is on.
    let timeout = (!args.timeout.is_zero()).then_some(args.timeout);
    let calls = timeout.map(|_| Arc::new(crate::watchdog::Calls::default()));
    app.watch = calls.clone();
    let threads = settings.threads;
    let shared = Arc::new(Shared {
        app,
        settings,
        stopping: AtomicBool::new(false),
        access_log,
        served: AtomicU64::new(0),
        retiring: AtomicBool::new(false),
    });
    let limits = crate::watchdog::Limits {
        timeout,
        max_rss: (args.max_rss > 0).then(|| args.max_rss.saturating_mul(1 << 20)),
        supervised: worker.is_some(),
    };
    let for_watchdog = shared.clone();
    crate::watchdog::start(
        limits,
        calls,
        Box::new(move |why| crate::retire::retire(&for_watchdog.retiring, why)),
    )?;
    let seat = worker.as_ref().and_then(|w| w.seat);
    let server = Arc::new(Server::new(listeners, shared, seat)?);
    let _pool = pool::start(threads, "wsgi-worker", server.clone())?;
    match worker {
        Some(w) => {
            w.ready();
            server.start_accepting();
        }
        None => {
            for l in server.listeners() {
                tracing::info!(
                    "wsgi-gateway {} listening on {} ({} threads)",
                    env!("CARGO_PKG_VERSION"),
                    l.display,
                    threads
                );
            }
            // The app is imported and the pool accepts on live listeners: systemd may now
            // start what depends on this service.
            if let Some(n) = &notifier {
                let on: Vec<&str> = server
                    .listeners()
                    .iter()
                    .map(|l| l.display.as_str())
                    .collect();
                n.ready(&format!("serving on {} ({threads} threads)", on.join(", ")));
            }
        }
    }
    server.keep_time(signal_rx)?;
    drop(pid_file);
    drop(endpoint);
    // Workers still inside a stuck app must not hold the exit hostage (graceful timeout passed).
    std::process::exit(0);
}

/// Reopens the error log and the access log on every SIGUSR1, for the life of the process.
fn reopen_logs(
    mut signals: signal_hook::iterator::Signals,
    access: Option<http::access_log::Reopener>,
) {
    for _ in signals.forever() {
        crate::logging::reopen_error_log();
        if let Some(a) = &access {
            a.reopen(std::time::Duration::from_secs(2));
        }
        tracing::info!("SIGUSR1: log files reopened");
    }
}

/// What a worker process got from its supervisor: its sockets (fds 3..) and a pipe to say
/// "ready" on.
struct WorkerInheritance {
    sockets: usize,
    ready: std::fs::File,
    /// Its seat on the supervisor's board (balancing connections), if it was given one.
    seat: Option<http::server::BoardSeat>,
    /// Its seat in the supervisor's metrics area (`--metrics-bind`), if it was given one.
    metrics: Option<&'static crate::metrics::Counters>,
}

impl WorkerInheritance {
    fn ready(self) {
        use std::io::Write;
        tracing::info!("worker pid {} ready", std::process::id());
        let mut ready = self.ready;
        let _ = ready.write_all(&[crate::retire::READY]);
        // Kept open: a retirement is announced on it.
        crate::retire::keep_pipe(ready);
    }
}

/// The supervisor's hand-over, when this process is one of its workers. The variables are
/// removed so the app's own child processes do not inherit them.
fn worker_inheritance(shape: &Shape) -> Result<Option<WorkerInheritance>, Fatal> {
    let (Some(fds), Some(ready)) = (
        std::env::var_os(supervisor::WORKER_FDS_VAR),
        std::env::var_os(supervisor::READY_FD_VAR),
    ) else {
        return Ok(None);
    };
    let board = std::env::var_os(supervisor::BOARD_VAR);
    let metrics = std::env::var_os(supervisor::METRICS_VAR);
    // SAFETY: `serve` calls this among its first steps, on the only thread (the binary's main,
    // or the main thread of `python -m wsgi_gateway`); logging starts no thread, and Python,
    // the pool and the pusher start later.
    unsafe {
        shape.forget_env(supervisor::WORKER_FDS_VAR);
        shape.forget_env(supervisor::READY_FD_VAR);
        shape.forget_env(supervisor::BOARD_VAR);
        shape.forget_env(supervisor::METRICS_VAR);
    }
    let parse = |v: &std::ffi::OsStr| v.to_str().and_then(|t| t.parse::<i32>().ok());
    let (Some(sockets), Some(ready_fd)) = (parse(&fds), parse(&ready)) else {
        return Err(Fatal(
            "malformed worker hand-over from the supervisor".into(),
        ));
    };
    let expected = listener::FIRST_INHERITED_FD + sockets;
    if sockets < 1 || sockets > supervisor::MAX_SOCKETS as i32 || ready_fd != expected {
        return Err(Fatal(
            "malformed worker hand-over from the supervisor".into(),
        ));
    }
    // SAFETY: the supervisor placed the write end of this worker's ready pipe at `ready_fd`
    // (after the sockets) for this process alone.
    let ready = unsafe { std::fs::File::from_raw_fd(ready_fd) };
    listener::close_on_exec(ready.as_fd())
        .map_err(|e| Fatal(format!("the supervisor's ready pipe: {e}")))?;
    let seat = match board {
        Some(spec) => Some(board_seat(&spec, ready_fd)?),
        None => None,
    };
    let metrics = match metrics {
        Some(spec) => Some(metrics_seat(&spec, ready_fd)?),
        None => None,
    };
    Ok(Some(WorkerInheritance {
        sockets: sockets as usize,
        ready,
        seat,
        metrics,
    }))
}

/// The metrics area the supervisor passed (`FD,SEAT`, the last fd it placed: right after
/// the ready pipe, or after the board).
fn metrics_seat(
    spec: &std::ffi::OsStr,
    ready_fd: i32,
) -> Result<&'static crate::metrics::Counters, Fatal> {
    let malformed = || Fatal("malformed worker hand-over from the supervisor (metrics)".into());
    let (fd, seat) = spec
        .to_str()
        .and_then(|s| s.split_once(','))
        .ok_or_else(malformed)?;
    let fd = fd.parse::<i32>().map_err(|_| malformed())?;
    let seat = seat.parse::<usize>().map_err(|_| malformed())?;
    if fd <= ready_fd || fd > ready_fd.saturating_add(2) {
        return Err(malformed());
    }
    // SAFETY: the supervisor placed the metrics area's fd there for this process alone; it is
    // mapped and closed here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let seats = crate::metrics::area::Seats::open(&fd)
        .map_err(|e| Fatal(format!("the supervisor's metrics area: {e}")))?;
    drop(fd);
    seats.counters(seat).ok_or_else(malformed)
}

/// `--metrics-bind`'s listener, bound like `--bind`'s (before a switch to `--user`, whose
/// `unix:` socket file it then is); served from a thread started after the switch.
fn bind_metrics(
    args: &ServeArgs,
    target: Option<&Target>,
) -> Result<Option<listener::Bound>, Fatal> {
    let Some(addr) = &args.metrics_bind else {
        return Ok(None);
    };
    let owner = target.map(Target::owner);
    crate::metrics::endpoint::bind(addr, owner)
        .map(Some)
        .map_err(Fatal)
}

/// `--metrics-bind` under a supervisor (`bound`: its listener): the area its workers count
/// into (seats for the workers, a reload's successors and leaving workers, as the board has).
/// The page is served from now on.
fn supervised_metrics(
    bound: Option<listener::Bound>,
    workers: usize,
    listeners: &[listener::Bound],
) -> Result<SupervisedMetrics, Fatal> {
    use crate::metrics::area::Aggregate;
    use crate::metrics::endpoint::{self, Counts, Source};
    let Some(bound) = bound else {
        return Ok((None, None));
    };
    let (area, fd) = Aggregate::create(workers.saturating_mul(4)).map_err(|e| {
        Fatal(format!(
            "--metrics-bind: cannot create the metrics area: {e}"
        ))
    })?;
    let source = Source {
        counts: Counts::Workers(area),
        listeners: listener_copies(listeners),
    };
    let running = endpoint::start(bound, source)?;
    Ok((Some((area, fd)), Some(running)))
}

/// The area for the supervisor's plan, and its endpoint (kept while the supervisor runs).
type SupervisedMetrics = (
    Option<(&'static crate::metrics::area::Aggregate, OwnedFd)>,
    Option<crate::metrics::endpoint::Running>,
);

/// Copies (close-on-exec) of the TCP listening sockets, whose accept queues the metrics
/// endpoint reads; one that cannot be copied is left out of that figure.
fn listener_copies(listeners: &[listener::Bound]) -> Vec<OwnedFd> {
    listeners
        .iter()
        .filter_map(|b| match &b.sock {
            listener::Sock::Tcp(l) => l.as_fd().try_clone_to_owned().ok(),
            listener::Sock::Unix(..) => None,
        })
        .collect()
}

/// The board the supervisor passed (`FD,SEAT,HOLD`, the fd right after the ready pipe).
fn board_seat(spec: &std::ffi::OsStr, ready_fd: i32) -> Result<http::server::BoardSeat, Fatal> {
    let malformed = || Fatal("malformed worker hand-over from the supervisor (board)".into());
    let fields: Vec<u64> = spec
        .to_str()
        .ok_or_else(malformed)?
        .split(',')
        .map(|f| f.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| malformed())?;
    let [fd, seat, hold] = fields[..] else {
        return Err(malformed());
    };
    if Some(fd) != ready_fd.checked_add(1).and_then(|f| u64::try_from(f).ok()) || hold > 1 {
        return Err(malformed());
    }
    let seat = usize::try_from(seat).map_err(|_| malformed())?;
    let raw = i32::try_from(fd).map_err(|_| malformed())?;
    // SAFETY: the supervisor placed the board's fd right after the ready pipe for this
    // process alone; it is mapped and closed here.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let board = crate::balance::Board::open(&fd)
        .map_err(|e| Fatal(format!("the supervisor's board: {e}")))?;
    drop(fd);
    http::server::BoardSeat::new(board, seat, hold == 1).ok_or_else(malformed)
}

/// `--reload`: the extra files to watch, absolute (relative ones are in `--chdir`, where the
/// worker imports the app). Says how the server runs.
fn reload_files(args: &ServeArgs) -> Result<Option<Vec<std::path::PathBuf>>, Fatal> {
    if !args.reload {
        return Ok(None);
    }
    tracing::warn!(
        "--reload: workers restart when the app's source files change (development only: \
         never use it in production)"
    );
    if args.workers.is_none() {
        tracing::info!("--reload: one worker process under a supervisor (give --workers for more)");
    }
    let cwd = std::env::current_dir()
        .map_err(|e| Fatal(format!("cannot read the current directory: {e}")))?;
    let base = match &args.app.chdir {
        Some(dir) => cwd.join(dir),
        None => cwd,
    };
    Ok(Some(
        args.reload_extra_file
            .iter()
            .map(|f| {
                let path = base.join(f);
                // Its real place: an edit of a symlink's target happens there.
                std::fs::canonicalize(&path).unwrap_or(path)
            })
            .collect(),
    ))
}

/// The app's own directories (`--chdir`, else the current directory; `--pythonpath`), as
/// the app was imported from them (`load` changed to `--chdir`).
fn app_dirs(args: &ServeArgs) -> Vec<std::path::PathBuf> {
    let Ok(cwd) = std::env::current_dir() else {
        return Vec::new();
    };
    let mut dirs: Vec<_> = args.app.pythonpath.iter().map(|d| cwd.join(d)).collect();
    dirs.insert(0, cwd);
    dirs
}

/// The listening sockets another process passed: the supervisor, or systemd (`LISTEN_FDS`).
fn inherited_sockets(
    args: &ServeArgs,
    shape: &Shape,
    worker: Option<&WorkerInheritance>,
) -> Result<Option<Vec<listener::Bound>>, Fatal> {
    if let Some(w) = worker {
        return listener::adopt_inherited(w.sockets, "supervisor")
            .map(Some)
            .map_err(Fatal);
    }
    // SAFETY: as in `worker_inheritance`: one of `serve`'s first steps, on the only thread.
    let forget = |var: &str| unsafe { shape.forget_env(var) };
    let inherited = listener::systemd_sockets(forget).map_err(Fatal)?;
    if inherited.is_some() && !args.bind.is_empty() {
        return Err(Fatal(
            "--bind and LISTEN_FDS (systemd socket activation) both name sockets; give one".into(),
        ));
    }
    if inherited.is_some() && args.privileges.socket_mode.is_some() {
        tracing::warn!(
            "--socket-mode applies to sockets bound here, not to systemd's (set SocketMode= in the .socket unit)"
        );
    }
    Ok(inherited)
}

/// `--user`/`--group` (once the sockets are bound, before the app is imported), or the
/// warning when the app is about to run as root without them. Log files the server opened as
/// root are handed to the user first, so it can open them again after a rotation.
fn switch_user(args: &ServeArgs, target: Option<&Target>) -> Result<(), Fatal> {
    let Some(target) = target else {
        return Ok(());
    };
    if rustix::process::geteuid().is_root() {
        privileges::hand_over(&args.app.error_log, target);
        if let Some(path) = &args.access_log {
            privileges::hand_over(path, target);
        }
    }
    if target.switch().map_err(Fatal)? {
        tracing::info!("running as {}", target.shown);
    }
    Ok(())
}

/// uWSGI's warning when the app is to run as root with no `--user`, given once by the process
/// that decides (one process, or the supervisor), when the start got that far.
fn warn_if_root(target: Option<&Target>) {
    privileges::warn_if_root(target.is_some_and(Target::changes_user));
}

/// The listening sockets bound here (`--bind`, or the default address); `unix:` socket files
/// get `--socket-mode` and belong to `target`.
fn bind_sockets(args: &ServeArgs, target: Option<&Target>) -> Result<Vec<listener::Bound>, Fatal> {
    let binds = if args.bind.is_empty() {
        vec![crate::config::defaults::BIND.to_string()]
    } else {
        args.bind.clone()
    };
    if binds.len() > supervisor::MAX_SOCKETS {
        return Err(Fatal(format!(
            "--bind: at most {} addresses",
            supervisor::MAX_SOCKETS
        )));
    }
    binds
        .iter()
        .map(|b| match (args.privileges.socket_mode, target) {
            (None, None) => listener::bind(b, args.backlog),
            (mode, target) => {
                let owner = target.map(Target::owner);
                listener::bind_with(b, args.backlog, listener::UnixFile { mode, owner })
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(Fatal)
}

/// `--pid FILE`: written once the sockets are bound, removed when the process ends normally.
struct PidFile(std::path::PathBuf);

impl PidFile {
    fn write(path: Option<&std::path::Path>) -> Result<Option<PidFile>, Fatal> {
        let Some(path) = path else { return Ok(None) };
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| Fatal(format!("--pid {}: {e}", path.display())))?;
        Ok(Some(PidFile(path.to_path_buf())))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A random number in 0..=`max` (`--max-requests-jitter`): enough that workers started
/// together do not retire together.
fn jitter(max: u64) -> u64 {
    use std::hash::BuildHasher;
    if max == 0 {
        return 0;
    }
    let seed = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    seed % max.saturating_add(1)
}
