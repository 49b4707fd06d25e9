//! wsgi-gateway: front end → `Request` → pool → WSGI call → responder → front end.

pub mod admit;
#[cfg(unix)]
pub mod cgi;
pub(crate) mod cgi_vars;
pub(crate) mod chunk_frame;
pub mod cli;
pub mod config;
#[cfg(unix)]
pub mod http;
pub mod install_iis;
pub mod isapi;
pub mod logging;
pub mod pool;
pub mod python;
pub mod reject;
pub mod request;
pub mod responder;
#[cfg(unix)]
pub mod supervisor;
pub mod trust;
