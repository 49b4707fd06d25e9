//! The error log: where tracing output goes (a file, or stderr), for every front end, and
//! reopening that file by its path (SIGUSR1, after logrotate renamed it).

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogLevel;

/// The error log file this process writes (when it is a file), so it can be reopened. tracing
/// writes each event with one `write_all` under this lock, so a swap lands between lines.
static FILE_LOG: OnceLock<(String, Arc<Mutex<File>>)> = OnceLock::new();

/// Sends the process's log lines to `error_log` (a path, or `-` for stderr). A second call in
/// the same process (the ISAPI library started again) keeps the first destination. `Err` is
/// the one line the front end reports before it stops: one cause (the file would not open).
pub fn init(error_log: &str, level: LogLevel) -> Result<(), String> {
    let level = match level {
        LogLevel::Error => tracing::Level::ERROR,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Debug => tracing::Level::DEBUG,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_target(false);
    let installed = if error_log == "-" {
        builder.with_writer(std::io::stderr).try_init()
    } else {
        let file = open_append(error_log).map_err(|e| format!("--error-log {error_log}: {e}"))?;
        let file = Arc::new(Mutex::new(file));
        let installed = builder.with_writer(SharedFile(file.clone())).try_init();
        if installed.is_ok() {
            let _ = FILE_LOG.set((error_log.to_string(), file));
        }
        installed
    };
    // Already installed: the earlier destination stays (tracing has one global subscriber).
    drop(installed);
    Ok(())
}

/// Reopens the error log file by its path (logrotate moved the old one away): the next line
/// goes to the new file. If the file will not open, the old one is kept and the cause logged.
/// Nothing to do for stderr.
#[cfg_attr(not(unix), expect(dead_code, reason = "SIGUSR1 is a Unix signal"))]
pub fn reopen_error_log() {
    let Some((path, file)) = FILE_LOG.get() else {
        return;
    };
    match open_append(path) {
        Ok(new) => {
            // A writer that panicked mid-line poisoned nothing we rely on: the file is whole.
            let mut guard = file.lock().unwrap_or_else(|p| p.into_inner());
            *guard = new;
        }
        Err(e) => tracing::error!(
            "cannot reopen the error log {path}: {e}; still writing to the old file"
        ),
    }
}

/// The error log file as tracing's writer: each event is one `write_all` under the lock.
struct SharedFile(Arc<Mutex<File>>);

struct Locked<'a>(MutexGuard<'a, File>);

impl<'a> MakeWriter<'a> for SharedFile {
    type Writer = Locked<'a>;
    fn make_writer(&'a self) -> Locked<'a> {
        Locked(self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Write for Locked<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Opens a log file for appending, creating it. The caller names the file in its message: it
/// is not always `--error-log`'s (the ISAPI library's fallback log).
pub fn open_append(path: &str) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}
