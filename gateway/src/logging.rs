//! The error log: where tracing output goes (a file, or stderr), for every front end.

use crate::config::LogLevel;

/// Sends the process's log lines to `error_log` (a path, or `-` for stderr). A second call in
/// the same process (the ISAPI library started again) keeps the first destination.
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
        let file = open_append(error_log)?;
        builder.with_writer(std::sync::Mutex::new(file)).try_init()
    };
    // Already installed: the earlier destination stays (tracing has one global subscriber).
    drop(installed);
    Ok(())
}

/// Opens a log file for appending, creating it.
pub fn open_append(path: &str) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("--error-log {path}: {e}"))
}
