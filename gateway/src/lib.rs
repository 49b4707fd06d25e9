//! wsgi-gateway: front end → `Request` → pool → WSGI call → responder → front end.
//!
//! The public surface is what the programs built from this crate need: `main` and `Shape`
//! for the binary. The Python extension's `PyInit__core` and the ISAPI exports are
//! `#[no_mangle]` functions, exported whatever their module's visibility. bench/ and fuzz/
//! reach the pieces they drive through `internals`, which is not an API.

pub(crate) mod admit;
#[cfg(unix)]
pub(crate) mod balance;
#[cfg(unix)]
pub(crate) mod cgi;
pub(crate) mod cgi_vars;
pub(crate) mod chunk_frame;
pub(crate) mod cli;
pub(crate) mod config;
#[cfg(unix)]
pub(crate) mod http;
pub(crate) mod install_iis;
#[doc(hidden)]
pub mod internals;
pub(crate) mod isapi;
pub(crate) mod logging;
#[cfg(unix)]
pub(crate) mod metrics;
pub(crate) mod pool;
#[cfg(unix)]
pub(crate) mod privileges;
pub(crate) mod python;
pub(crate) mod reject;
#[cfg(unix)]
pub(crate) mod reload;
pub(crate) mod request;
pub(crate) mod responder;
#[cfg(unix)]
pub(crate) mod retire;
#[cfg(unix)]
pub(crate) mod sd_notify;
#[cfg(unix)]
pub(crate) mod shared_mem;
#[cfg(unix)]
pub(crate) mod supervisor;
pub(crate) mod trust;
#[cfg(unix)]
pub(crate) mod watchdog;

pub use cli::main;
pub use python::host::Shape;
