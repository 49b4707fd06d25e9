//! Under a CGI host: which of argv's words are the operator's and which may be the request's.

use std::ffi::OsString;
use std::path::PathBuf;

/// How a CGI host started this process, from the meta-variables it set (a request sets none
/// of these).
///
/// RFC 3875 §4.4: for a query without `=` a host may pass the query's words as arguments
/// (Apache's mod_cgi does, shell-escaped; lighttpd does not). A request must never choose an
/// option, app, path or file (php-cgi's CVE-2012-1823), so where those words can be is
/// decided from how the host ran the program, never by comparing them with the query: the
/// host runs SCRIPT_FILENAME with the words after it, so whatever follows the script in argv
/// is the request's.
pub(super) struct CgiLaunch {
    /// QUERY_STRING.
    pub(super) query: Option<OsString>,
    /// SCRIPT_FILENAME: the file the host ran.
    pub(super) script: Option<PathBuf>,
    /// This running executable.
    pub(super) exe: Option<PathBuf>,
}

impl CgiLaunch {
    /// How many leading entries of `argv` (the program name included) are the operator's;
    /// the rest may be the request's and are ignored. `id` names a file (same file, same id).
    pub(super) fn operator_args<Id: PartialEq>(
        &self,
        argv: &[OsString],
        id: impl Fn(&std::path::Path) -> Option<Id>,
    ) -> usize {
        let all = argv.len();
        let may_have_words = self.query.as_ref().is_some_and(|q| {
            let q = q.as_encoded_bytes();
            !q.is_empty() && !q.contains(&b'=')
        });
        let script = self.script.as_deref().filter(|s| !s.as_os_str().is_empty());
        let Some((script, script_id)) = script.and_then(|s| Some((s, id(s)?))) else {
            // Nothing to tell the host's own launch from a wrapper's: argv is trusted only
            // when the query gives a host no words to pass.
            return if may_have_words { all.min(1) } else { all };
        };
        let is_script = |arg: &OsString| id(std::path::Path::new(arg)).as_ref() == Some(&script_id);
        // The host ran this binary as the script (a link or copy in cgi-bin): it is argv[0],
        // and every argument is the host's.
        if self.exe.as_deref().and_then(&id).as_ref() == Some(&script_id)
            || argv.first().is_some_and(is_script)
        {
            return all.min(1);
        }
        // A `#!` line (`#!/usr/bin/wsgi-gateway --config` atop a TOML file) or an interpreter
        // set in the host: the kernel or host put the script's path after the operator's
        // arguments, and the host's words after it. Only arguments ending in the script's
        // file name are looked up on disk.
        let name = script.file_name();
        let at_script = argv
            .iter()
            .skip(1)
            .position(|a| std::path::Path::new(a).file_name() == name && is_script(a));
        match at_script {
            Some(i) => i + 2,
            // A wrapper script ran this binary with arguments of its own: the host gave the
            // words to the wrapper, which does not pass them on (the README's wrapper).
            None => all,
        }
    }
}

/// Identifies a file, following links: two paths to the same file give the same id.
#[cfg(unix)]
pub(super) fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
pub(super) fn file_id(path: &std::path::Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}
