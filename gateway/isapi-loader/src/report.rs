//! A start-up failure the core could not report itself (the loader failed before the core
//! ran): one line in the error log the core would have used, and one for a debugger.

use std::io::Write;
use std::path::Path;

/// `log` is None when the configuration sends errors to stderr (`error-log = "-"`), which IIS
/// discards: the debugger line is then the only trace.
pub fn failure(log: Option<&Path>, msg: &str) {
    let line = format!("wsgi-gateway: error: {msg}");
    super::win::debug_string(&line);
    let Some(log) = log else { return };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log);
    if let Ok(mut f) = file {
        let _ = writeln!(f, "{line}");
    }
}
