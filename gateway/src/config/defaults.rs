//! Defaults that more than one place states: the clap schema shows them in `--help` (and the
//! README's table), and the structs, files and fallbacks below use the same numbers.

/// `--limit-request-line`, `HeadLimits::default().max_request_line`.
pub const LIMIT_REQUEST_LINE: usize = 16384;
/// `--limit-request-fields`, `HeadLimits::default().max_headers`.
pub const LIMIT_REQUEST_FIELDS: usize = 256;
/// `--limit-request-field-size`, `HeadLimits::default().max_field_size`.
pub const LIMIT_REQUEST_FIELD_SIZE: usize = 32768;
/// `--limit-request-head`, `HeadLimits::default().max_head_size`.
pub const LIMIT_REQUEST_HEAD: usize = 262144;
/// `--max-body-size` of `serve` and the ISAPI library; also the IIS request limit
/// `install-iis` writes into web.config, so IIS lets through what the library accepts.
pub const MAX_BODY_SIZE: u64 = 1 << 30;
/// `--threads` of `serve` and the ISAPI library, and `install-iis --threads`.
pub const THREADS: u32 = 32;
/// `--graceful-timeout` of `serve` and the ISAPI library, in seconds (clap parses the text).
pub const GRACEFUL_TIMEOUT: &str = "30";
/// The address `serve` binds without `--bind` (and without systemd's sockets).
#[cfg(unix)]
pub const BIND: &str = "127.0.0.1:8000";
