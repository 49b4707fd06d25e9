//! The error log: where tracing output goes (a file, or stderr), for every front end.

use crate::config::LogLevel;

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
        builder.with_writer(std::sync::Mutex::new(file)).try_init()
    };
    // Already installed: the earlier destination stays (tracing has one global subscriber).
    drop(installed);
    Ok(())
}

/// Opens a log file for appending, creating it. The caller names the file in its message: it
/// is not always `--error-log`'s (the ISAPI library's fallback log).
pub fn open_append(path: &str) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}
