//! The CGI front end (RFC 3875): one request per process. The host's meta-variables and stdin
//! become a `Request` (`meta`), the app is called once, and the response goes to stdout as a
//! CGI document (`stdio`).

pub(crate) mod meta;
mod stdio;

use std::io::Write;

use pyo3::prelude::*;

use crate::python::call::WsgiApp;
use stdio::{error_document, StdinBody, StdoutResponder};

/// How one CGI request ended, for the exit status.
#[derive(Debug, PartialEq, Eq)]
pub enum Served {
    /// A response went out (the app's own, or a 500 for its exception).
    Answered,
    /// The host's request could not be served at all (already reported on stderr).
    Refused,
}

/// Serves the one request the host started this process for.
pub fn serve_one(app: &WsgiApp, iis_path_info: bool) -> Served {
    let cgi = match meta::read_request(std::env::vars_os(), iis_path_info) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{}: {}", e.status, e.reason);
            write_error_document(e.status);
            return Served::Refused;
        }
    };
    let (body, responder) = match (StdinBody::new(cgi.content_length), StdoutResponder::new()) {
        (Ok(b), Ok(r)) => (b, r),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("cannot use stdin/stdout: {e}");
            return Served::Refused;
        }
    };
    Python::attach(|py| app.call(py, &cgi.request, Box::new(body), Box::new(responder)));
    Served::Answered
}

/// The gateway's own answer when there is no app response: a complete CGI document.
pub fn write_error_document(status: u16) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&error_document(status));
    let _ = out.flush();
}
