//! wsgi-gateway: front end → `Request` → pool → WSGI call → responder → front end.

pub mod cgi;
pub mod config;
pub mod http;
pub mod install_iis;
pub mod pool;
pub mod python;
pub mod request;
pub mod responder;
pub mod trust;
