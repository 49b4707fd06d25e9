//! `--reload` (development): the supervisor restarts its workers when a source file of the
//! app changes, through its SIGHUP reload: the new workers must be ready before the old ones
//! stop, so a file that no longer imports (a syntax error) keeps the old code serving, its
//! traceback in the log, and the next save that fixes it reloads again.
//!
//! Which files: a worker, once the app is imported (or failed to import) and before it says
//! ready, lists the files of the modules it imported (`python/source_files.rs`) and the app's
//! own directories (`--chdir`, `--pythonpath`) into a file in a private directory the watcher
//! watches too ([`Report`]). Every generation reports, so modules imported lazily (during
//! requests) are watched from the next reload on. The watches are on directories, where a
//! change to any `.py` file counts, not only to a listed one: a module imported later beside
//! one imported at start (a Django app's views) is covered from the start, and editors that
//! save by renaming a new file over the old one are seen alike.
//!
//! An app that does not import when the server starts has no old code to keep serving: the
//! supervisor waits for a change and starts its first workers again (`supervisor.rs`).
//!
//! The watcher is one thread of the supervisor: inotify (through rustix, the crate this
//! project already makes its system calls with) on those directories; a burst of events (an
//! editor's several writes, a `git checkout`) ends in one reload once it has been quiet for
//! [`QUIET`]. Without `--reload` none of this exists: no thread, no directory, no variable.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

/// The variable a worker finds the report directory in.
pub const REPORTS_VAR: &str = "WSGI_GATEWAY_RELOAD_REPORTS";
/// How long the files must stay unchanged before the reload starts.
pub const QUIET: Duration = Duration::from_millis(200);
/// A report's file name ends so once complete (it is renamed into place).
const REPORT_SUFFIX: &str = ".list";

/// What a change is: a file written and closed, renamed into place or away, or removed.
fn dir_mask() -> WatchFlags {
    WatchFlags::CLOSE_WRITE
        | WatchFlags::MOVED_TO
        | WatchFlags::MOVED_FROM
        | WatchFlags::DELETE
        | WatchFlags::ONLYDIR
}

/// The supervisor's side: the report directory (removed when dropped) and the thread.
pub struct Watcher {
    reports: tempfile::TempDir,
}

impl Watcher {
    /// Watches `extra` (`--reload-extra-file`, absolute) at once, the workers' files as they
    /// report them; calls `trigger` when a reload is due.
    pub fn start(extra: &[PathBuf], trigger: Box<dyn Fn() + Send>) -> Result<Watcher, String> {
        let reports = tempfile::Builder::new()
            .prefix("wsgi-gateway-reload-")
            .tempdir()
            .map_err(|e| {
                format!("--reload: cannot make a directory for the workers' reports: {e}")
            })?;
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
            .map_err(|e| format!("--reload: inotify: {e}"))?;
        let reports_wd = inotify::add_watch(&fd, reports.path(), WatchFlags::MOVED_TO)
            .map_err(|e| format!("--reload: inotify on {}: {e}", reports.path().display()))?;
        let mut watch = Watch {
            fd,
            dirs: HashMap::new(),
            by_path: HashMap::new(),
            reports_wd,
            reports: reports.path().to_path_buf(),
            warned: false,
            trigger,
        };
        for file in extra {
            watch.add(file, false);
        }
        std::thread::Builder::new()
            .name("reload-watcher".into())
            .spawn(move || watch.run())
            .map_err(|e| format!("--reload: cannot start the watcher thread: {e}"))?;
        Ok(Watcher { reports })
    }

    /// Where workers write their reports ([`REPORTS_VAR`]).
    pub fn reports(&self) -> &Path {
        self.reports.path()
    }

    /// What a worker's environment gets: the report directory, and no bytecode written.
    /// Python trusts a `.pyc` whose source has the size and modification second it recorded,
    /// so a file saved twice within a second, its length kept (`v1` → `v2`), after the reload
    /// between the saves wrote its `.pyc`, would bring the old code back (here: every time
    /// in a test of six such saves). Without writes, only `.pyc` files older than the
    /// session are read, and an edit is a later second than theirs.
    pub fn worker_env(&self) -> [(&str, &OsStr); 2] {
        [
            (REPORTS_VAR, self.reports().as_os_str()),
            ("PYTHONDONTWRITEBYTECODE", OsStr::new("1")),
        ]
    }
}

/// One watched directory.
struct Dir {
    path: PathBuf,
    /// A module's directory: a change to any `.py` file in it counts.
    modules: bool,
    /// The files in it that count whatever their name (listed modules, extra files).
    names: HashSet<OsString>,
}

impl Dir {
    /// Whether a change to `name` here calls for a reload. Hidden names are editors' swap
    /// and lock files (`.x.py.swp`, Emacs's `.#x.py`).
    fn counts(&self, name: &OsStr) -> bool {
        if self.names.contains(name) {
            return true;
        }
        let bytes = name.as_bytes();
        self.modules && bytes.ends_with(b".py") && !bytes.starts_with(b".")
    }
}

struct Watch {
    fd: OwnedFd,
    dirs: HashMap<i32, Dir>,
    /// Each path a watch was made for (several may name one directory).
    by_path: HashMap<PathBuf, i32>,
    reports_wd: i32,
    reports: PathBuf,
    /// The watch limit was reached once (said once).
    warned: bool,
    trigger: Box<dyn Fn() + Send>,
}

/// Changes coming in a burst (an editor's several writes, a `git checkout`): one reload once
/// none came for [`QUIET`].
#[derive(Default)]
struct Burst {
    /// The first change of the burst (what the log names), and when the last one came.
    pending: Option<(PathBuf, Instant)>,
}

impl Burst {
    fn change(&mut self, file: PathBuf, now: Instant) {
        let first = self.pending.take().map_or(file, |(first, _)| first);
        self.pending = Some((first, now));
    }

    /// How long to wait for more (`None`: no burst, wait for the next change).
    fn wait(&self, now: Instant) -> Option<Duration> {
        let (_, last) = self.pending.as_ref()?;
        Some((*last + QUIET).saturating_duration_since(now))
    }

    /// The burst is over: its first file, once.
    fn due(&mut self, now: Instant) -> Option<PathBuf> {
        let (_, last) = self.pending.as_ref()?;
        if now.saturating_duration_since(*last) < QUIET {
            return None;
        }
        self.pending.take().map(|(first, _)| first)
    }
}

/// An event as read, owned (so handling it may add watches).
struct Event {
    wd: i32,
    flags: ReadFlags,
    name: Option<OsString>,
}

impl Watch {
    fn run(mut self) {
        let mut burst = Burst::default();
        loop {
            let ts = burst.wait(Instant::now()).map(|t| rustix::event::Timespec {
                tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(t.subsec_nanos()),
            });
            let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
            match poll(&mut fds, ts.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    tracing::error!("--reload: the watcher stops (poll: {e})");
                    return;
                }
            }
            let events = match self.read() {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!("--reload: the watcher stops (inotify: {e})");
                    return;
                }
            };
            for event in events {
                if let Some(changed) = self.handle(event) {
                    burst.change(changed, Instant::now());
                }
            }
            if let Some(changed) = burst.due(Instant::now()) {
                tracing::info!("--reload: {} changed: reloading", changed.display());
                (self.trigger)();
            }
        }
    }

    /// Every event queued now.
    fn read(&self) -> rustix::io::Result<Vec<Event>> {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16384];
        let mut reader = inotify::Reader::new(self.fd.as_fd(), &mut buf);
        let mut events = Vec::new();
        loop {
            match reader.next() {
                Ok(e) => events.push(Event {
                    wd: e.wd(),
                    flags: e.events(),
                    name: e
                        .file_name()
                        .map(|n| OsString::from_vec(n.to_bytes().to_vec())),
                }),
                Err(rustix::io::Errno::AGAIN) => return Ok(events),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A change that calls for a reload: the file it is about.
    fn handle(&mut self, event: Event) -> Option<PathBuf> {
        if event.flags.contains(ReadFlags::QUEUE_OVERFLOW) {
            // Events were lost: one of them may have been a change.
            return Some(PathBuf::from("(inotify queue overflow)"));
        }
        if event.flags.contains(ReadFlags::IGNORED) {
            // The directory went away (its watch with it).
            if self.dirs.remove(&event.wd).is_some() {
                self.by_path.retain(|_, wd| *wd != event.wd);
            }
            return None;
        }
        let name = event.name?;
        if event.wd == self.reports_wd {
            if name.as_bytes().ends_with(REPORT_SUFFIX.as_bytes()) {
                return self.take_report(&self.reports.join(&name));
            }
            return None;
        }
        let dir = self.dirs.get(&event.wd)?;
        dir.counts(&name).then(|| dir.path.join(&name))
    }

    /// Watches `file` (its directory). `module`: a module's file, so its directory's other
    /// `.py` files count too. Whether the file is new to the watch.
    fn add(&mut self, file: &Path, module: bool) -> bool {
        let (Some(parent), Some(name)) = (file.parent(), file.file_name()) else {
            return false;
        };
        let Some(dir) = self.watch_dir(parent) else {
            return false;
        };
        dir.modules |= module;
        dir.names.insert(name.to_os_string())
    }

    /// Watches a directory of the app's modules (any `.py` file in it counts).
    /// Whether it is new to the watch as a module directory.
    fn add_dir(&mut self, path: &Path) -> bool {
        let Some(dir) = self.watch_dir(path) else {
            return false;
        };
        !std::mem::replace(&mut dir.modules, true)
    }

    /// The watch on `path`, made if there is none. Every worker reports the same files: the
    /// directories already watched take no system call.
    fn watch_dir(&mut self, path: &Path) -> Option<&mut Dir> {
        let wd = match self.by_path.get(path) {
            Some(&wd) => wd,
            None => match inotify::add_watch(&self.fd, path, dir_mask()) {
                Ok(wd) => {
                    self.by_path.insert(path.to_path_buf(), wd);
                    wd
                }
                Err(e) => {
                    self.cannot_watch(path, e);
                    return None;
                }
            },
        };
        // The same directory by another path (a bind mount, a symlink) gives the same watch.
        Some(self.dirs.entry(wd).or_insert_with(|| {
            tracing::debug!("--reload: watching {}", path.display());
            Dir {
                path: path.to_path_buf(),
                modules: false,
                names: HashSet::new(),
            }
        }))
    }

    fn cannot_watch(&mut self, dir: &Path, e: rustix::io::Errno) {
        if e == rustix::io::Errno::NOSPC {
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    "--reload: cannot watch {}: the inotify watch limit is reached \
                     (raise fs.inotify.max_user_watches); changes there go unseen",
                    dir.display()
                );
            }
            return;
        }
        tracing::warn!("--reload: cannot watch {}: {e}", dir.display());
    }

    /// A worker's report: watches its files. A file new to the watch that changed after
    /// that worker began importing (before its watch existed) calls for a reload.
    fn take_report(&mut self, path: &Path) -> Option<PathBuf> {
        let text = std::fs::read(path);
        let _ = std::fs::remove_file(path);
        let report = match text.map(|t| parse_report(&t)) {
            Ok(Some(report)) => report,
            Ok(None) => {
                tracing::warn!("--reload: malformed report {}", path.display());
                return None;
            }
            Err(e) => {
                tracing::warn!("--reload: cannot read {}: {e}", path.display());
                return None;
            }
        };
        let (mut added, mut changed) = (0usize, None);
        for file in &report.files {
            if file.as_os_str().as_bytes().ends_with(b"/") {
                if self.add_dir(file) && changed.is_none() {
                    changed = changed_since(file, report.began);
                }
                continue;
            }
            if !self.add(file, true) {
                continue;
            }
            added = added.saturating_add(1);
            let modified = std::fs::metadata(file).and_then(|m| m.modified());
            if changed.is_none() && modified.is_ok_and(|m| m > report.began) {
                changed = Some(file.clone());
            }
        }
        if added > 0 {
            tracing::info!(
                "--reload: watching {added} more source file(s) ({} directories in all)",
                self.dirs.len()
            );
        }
        changed
    }
}

/// A `.py` file in `dir` changed after `began` (before the directory was watched).
fn changed_since(dir: &Path, began: SystemTime) -> Option<PathBuf> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let name = entry.file_name();
        let bytes = name.as_bytes();
        let module = bytes.ends_with(b".py") && !bytes.starts_with(b".");
        let modified = entry.metadata().and_then(|m| m.modified());
        (module && modified.is_ok_and(|m| m > began)).then(|| entry.path())
    })
}

/// What a worker reports: when it began importing, and the files of its modules.
#[derive(Debug, PartialEq)]
struct ReportData {
    began: SystemTime,
    files: Vec<PathBuf>,
}

/// `NANOS\0PATH\0PATH\0…`: nanoseconds since the epoch, then absolute paths (any bytes but
/// NUL, as file names are).
fn encode_report(report: &ReportData) -> Vec<u8> {
    let nanos = report
        .began
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut out = format!("{nanos}\0").into_bytes();
    for f in &report.files {
        out.extend_from_slice(f.as_os_str().as_bytes());
        out.push(0);
    }
    out
}

fn parse_report(bytes: &[u8]) -> Option<ReportData> {
    let mut records = bytes.strip_suffix(b"\0")?.split(|&b| b == 0);
    let nanos: u64 = std::str::from_utf8(records.next()?).ok()?.parse().ok()?;
    let began = SystemTime::UNIX_EPOCH.checked_add(Duration::from_nanos(nanos))?;
    let files = records
        .map(|r| PathBuf::from(OsStr::from_bytes(r)))
        .filter(|p| p.is_absolute())
        .collect();
    Some(ReportData { began, files })
}

/// A worker's side: where to report its files, and when it began importing the app.
pub struct Report {
    dir: PathBuf,
    began: SystemTime,
}

impl Report {
    /// The supervisor's report directory, if it runs `--reload`; the variable is removed so
    /// the app's own processes do not inherit it.
    ///
    /// # Safety
    /// As [`Shape::forget_env`](crate::python::host::Shape::forget_env): no other thread.
    pub unsafe fn from_env(shape: &crate::python::host::Shape) -> Option<Report> {
        let dir = std::env::var_os(REPORTS_VAR)?;
        // SAFETY: the caller's promise: this is the only thread.
        unsafe { shape.forget_env(REPORTS_VAR) };
        Some(Report {
            dir: PathBuf::from(dir),
            began: SystemTime::now(),
        })
    }

    /// Lists the app's source files for the supervisor, once the app is loaded or failed to
    /// load (the files of a failed import are what gets fixed). `dirs`: the app's own
    /// directories (`--chdir`, `--pythonpath`), watched whatever was imported from them: a
    /// module that failed to import is not in `sys.modules`. A failure only means fewer
    /// files are watched: logged, never fatal.
    pub fn send(self, dirs: &[PathBuf]) {
        let mut files = match crate::python::source_files::imported() {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!("--reload: cannot list the app's source files: {e}");
                Vec::new()
            }
        };
        // A directory is sent as its path with a trailing `/`.
        files.extend(dirs.iter().map(|d| d.join("")));
        let data = encode_report(&ReportData {
            began: self.began,
            files,
        });
        let pid = std::process::id();
        let partial = self.dir.join(format!("{pid}.part"));
        let done = self.dir.join(format!("{pid}{REPORT_SUFFIX}"));
        // Renamed into place once whole: the watcher reads only complete reports.
        let written = std::fs::File::create(&partial)
            .and_then(|mut f| f.write_all(&data))
            .and_then(|()| std::fs::rename(&partial, &done));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&partial);
            tracing::warn!("--reload: cannot report the app's source files: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_with_any_file_name() {
        let report = ReportData {
            began: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_765_000_000_123_456_789),
            files: vec![
                PathBuf::from("/srv/app/app.py"),
                PathBuf::from(OsStr::from_bytes(b"/srv/app/\xff\n.py")),
            ],
        };
        assert_eq!(parse_report(&encode_report(&report)), Some(report));
    }

    #[test]
    fn a_malformed_report_is_refused_and_relative_paths_dropped() {
        assert_eq!(parse_report(b""), None);
        assert_eq!(parse_report(b"12"), None, "unterminated");
        assert_eq!(parse_report(b"x\0/a.py\0"), None, "no time");
        let parsed = parse_report(b"5\0rel.py\0/abs.py\0").expect("well formed");
        assert_eq!(parsed.files, vec![PathBuf::from("/abs.py")]);
    }

    #[test]
    fn extra_files_reported_files_and_their_neighbours_trigger_a_reload() {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let (extra, app) = (tmp.path().join("settings.toml"), tmp.path().join("app"));
        std::fs::write(&extra, "a").expect("write");
        std::fs::create_dir(&app).expect("mkdir");
        std::fs::write(app.join("app.py"), "a").expect("write");
        let (tx, rx) = std::sync::mpsc::channel();
        let watcher = Watcher::start(
            std::slice::from_ref(&extra),
            Box::new(move || {
                let _ = tx.send(());
            }),
        )
        .expect("the watcher starts");
        let reloaded = || rx.recv_timeout(Duration::from_secs(20)).is_ok();

        std::fs::write(&extra, "b").expect("write");
        assert!(reloaded(), "the extra file");

        // A report from a worker that began importing before app.py was last written: its
        // change may have come before the watch, so it counts at once.
        let report = encode_report(&ReportData {
            began: SystemTime::UNIX_EPOCH,
            files: vec![app.join("app.py")],
        });
        std::fs::write(watcher.reports().join("7.part"), report).expect("write");
        std::fs::rename(
            watcher.reports().join("7.part"),
            watcher.reports().join("7.list"),
        )
        .expect("rename");
        assert!(reloaded(), "a file changed while it was imported");
        assert!(!watcher.reports().join("7.list").exists(), "taken");

        // Watched now: the file and another module beside it, saved by a rename.
        std::fs::write(app.join("app.py"), "b").expect("write");
        assert!(reloaded(), "the reported file");
        std::fs::write(app.join("views.py.tmp"), "a").expect("write");
        std::fs::rename(app.join("views.py.tmp"), app.join("views.py")).expect("rename");
        assert!(reloaded(), "a module beside it");
    }

    #[test]
    fn a_burst_of_changes_is_one_reload_once_quiet() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut burst = Burst::default();
        assert_eq!(burst.wait(t0), None, "nothing pending: wait for a change");
        assert_eq!(burst.due(t0), None);
        // An editor's writes, 50 ms apart: each one starts the quiet period again.
        for (i, at) in [0, 50, 100, 150].into_iter().enumerate() {
            burst.change(PathBuf::from(format!("/app/{i}.py")), ms(at));
            assert_eq!(burst.due(ms(at + 199)), None, "not yet quiet after {at} ms");
        }
        assert_eq!(burst.wait(ms(150)), Some(QUIET));
        assert_eq!(burst.wait(ms(300)), Some(Duration::from_millis(50)));
        assert_eq!(
            burst.due(ms(350)),
            Some(PathBuf::from("/app/0.py")),
            "the first named"
        );
        assert_eq!(burst.due(ms(400)), None, "once");
        assert_eq!(burst.wait(ms(400)), None);
        burst.change(PathBuf::from("/app/x.py"), ms(1000));
        assert_eq!(burst.due(ms(1200)), Some(PathBuf::from("/app/x.py")));
    }

    #[test]
    fn what_counts_in_a_directory() {
        let dir = |modules| Dir {
            path: PathBuf::from("/srv/app"),
            modules,
            names: HashSet::from([OsString::from("settings.toml"), OsString::from("_c.so")]),
        };
        let counts = |d: &Dir, n: &str| d.counts(OsStr::new(n));
        let modules = dir(true);
        for name in ["views.py", "settings.toml", "_c.so"] {
            assert!(counts(&modules, name), "{name}");
        }
        for name in [
            ".views.py.swp",
            ".#views.py",
            "views.py~",
            "4913",
            "notes.txt",
        ] {
            assert!(!counts(&modules, name), "{name}");
        }
        let extra = dir(false);
        assert!(counts(&extra, "settings.toml"));
        assert!(!counts(&extra, "views.py"), "not a module directory");
    }
}
