//! The command line's schema: every subcommand and option, its default, its
//! `WSGI_GATEWAY_*` variable and its check (clap). The TOML file's keys are these options'
//! names (`config.rs` merges the three sources).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::{defaults, ConfigError};
use crate::python::interpreter::AppSpec;
use crate::trust::{IpRange, TrustPolicy};

#[derive(Parser, Debug)]
#[command(
    name = "wsgi-gateway",
    // Not argv[0]: under `python -m wsgi_gateway` that is `__main__.py`.
    bin_name = "wsgi-gateway",
    version,
    about = "Run Python WSGI applications (PEP 3333) from a Rust core"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve a WSGI app over HTTP/1.1 (the default command).
    Serve(Box<ServeArgs>),
    /// Answer one request as a CGI/1.1 program (RFC 3875): meta-variables and stdin in, a CGI
    /// response on stdout (the default under a CGI host).
    Cgi(Box<CgiArgs>),
    /// Write what IIS needs to run an app through the ISAPI extension (web.config,
    /// wsgi-gateway.toml, the ISAPI loader DLL, appcmd scripts); successor of `paster
    /// install-iis`. Run it on the IIS machine with the wsgi-gateway of the app's venv: the
    /// venv and its Python are the running interpreter's. Elsewhere, --for-windows DIR writes
    /// the same files for a Windows machine, from the target's paths given as options.
    InstallIis(Box<InstallIisArgs>),
}

#[derive(Args, Debug, Clone)]
pub struct CgiArgs {
    #[command(flatten)]
    pub app: AppArgs,
    /// The host repeats SCRIPT_NAME at the start of PATH_INFO (IIS without allowPathInfo): strip it.
    #[arg(long, env = "WSGI_GATEWAY_IIS_PATH_INFO")]
    pub iis_path_info: bool,
}

/// `install-iis`: only writes files (never starts Python, never calls IIS), so it reads no
/// `WSGI_GATEWAY_*` variables: what it writes is exactly what was typed. Paths the files
/// state are Windows paths (text), whatever system runs it.
#[derive(Args, Debug, Clone)]
pub struct InstallIisArgs {
    /// The WSGI app as module[:callable] (or give --paste).
    #[arg(value_name = "APP")]
    pub app: Option<String>,
    /// Load the app from a PasteDeploy ini file (INI[#NAME]) instead of APP.
    #[arg(long, value_name = "INI[#NAME]")]
    pub paste: Option<String>,
    /// Directory to change to before importing the app.
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<String>,
    /// Extra sys.path entry (repeatable).
    #[arg(long, value_name = "DIR")]
    pub pythonpath: Vec<String>,
    /// The virtualenv wsgi-gateway and the app are installed in. On the IIS machine it is the
    /// running one (this option may only repeat it); with --for-windows, the venv's path there.
    #[arg(long, value_name = "DIR")]
    pub venv: Option<String>,
    /// Where the app is mounted in the site (`/` = the site root).
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub virtualdir: String,
    /// The IIS site.
    #[arg(long, value_name = "NAME", default_value = "Default Web Site")]
    pub site: String,
    /// The ISAPI loader to install, wsgi_gateway_isapi.dll (default: the one in the installed
    /// wsgi_gateway package, wsgi_gateway\isapi\; with --for-windows, a file on this machine).
    #[arg(long, value_name = "PATH")]
    pub library: Option<PathBuf>,
    /// The application's physical directory, where every file goes (default: the current
    /// directory; required with --for-windows, as the path on the Windows machine).
    #[arg(long, value_name = "DIR")]
    pub out: Option<String>,
    /// Application pool to create (default: derived from the site and virtual directory).
    #[arg(long, value_name = "NAME")]
    pub app_pool: Option<String>,
    /// Bitness of the pool; the DLL and Python must match it.
    #[arg(long, value_enum, default_value = "64")]
    pub bitness: Bitness,
    /// Python worker threads in each IIS worker process.
    #[arg(long, default_value_t = defaults::THREADS, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,
    /// Turn Windows authentication on and anonymous access off for the application.
    #[arg(long)]
    pub windows_auth: bool,
    /// Overwrite files that already exist in the output directory.
    #[arg(long)]
    pub force: bool,
    /// Prepare the install on this machine for a Windows machine: write the files into DIR
    /// here, to be copied to --out there. Every path option then names a path on the Windows
    /// machine (absolute: C:\… or \\server\share\…), and its Python is described by
    /// --venv, --base-python and --python-version instead of the running interpreter.
    #[arg(long, value_name = "DIR")]
    pub for_windows: Option<PathBuf>,
    /// With --for-windows: the Python installation the venv was made from (its sys.base_prefix,
    /// e.g. "C:\Program Files\Python311"), which holds python3XY.dll.
    #[arg(long, value_name = "DIR")]
    pub base_python: Option<String>,
    /// With --for-windows: that Python's version, X.Y (3.10 or later).
    #[arg(long, value_name = "X.Y", value_parser = parse_python_version)]
    pub python_version: Option<(u8, u8)>,
}

/// `3.11` → (3, 11): the versions wsgi-gateway's wheels are built for. (A value parser's
/// `Err` is the text clap prints after the option's name.)
fn parse_python_version(s: &str) -> Result<(u8, u8), String> {
    let bad = || format!("{s:?}: expected a Python version X.Y, 3.10 or later");
    let (major, minor) = s.split_once('.').ok_or_else(bad)?;
    let version = (
        major.parse::<u8>().map_err(|_| bad())?,
        minor.parse::<u8>().map_err(|_| bad())?,
    );
    if version.0 != 3 || version.1 < 10 {
        return Err(bad());
    }
    Ok(version)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Bitness {
    #[value(name = "64")]
    Bits64,
    #[value(name = "32")]
    Bits32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Underscores {
    Drop,
    Refuse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// Settings shared by every front end that runs an app.
#[derive(Args, Debug, Clone)]
pub struct AppArgs {
    /// The WSGI app as module[:callable] (callable defaults to `application`); `serve` without one shows a welcome page.
    #[arg(value_name = "APP", env = "WSGI_GATEWAY_APP")]
    pub app: Option<String>,
    /// Change to this directory before importing the app (it goes first on sys.path).
    #[arg(long, value_name = "DIR", env = "WSGI_GATEWAY_CHDIR")]
    pub chdir: Option<PathBuf>,
    /// Extra sys.path entry (repeatable).
    #[arg(
        long,
        value_name = "DIR",
        env = "WSGI_GATEWAY_PYTHONPATH",
        value_delimiter = ':'
    )]
    pub pythonpath: Vec<PathBuf>,
    /// A virtualenv whose packages the app imports (default: $VIRTUAL_ENV).
    #[arg(long, value_name = "DIR", env = "WSGI_GATEWAY_VENV")]
    pub venv: Option<PathBuf>,
    /// Load the app from a PasteDeploy ini file (INI[#NAME]) instead of APP.
    #[arg(long, value_name = "INI[#NAME]", env = "WSGI_GATEWAY_PASTE")]
    pub paste: Option<String>,
    /// Read settings from a TOML file (keys named like the long options).
    #[arg(long, value_name = "FILE", env = "WSGI_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Error log: a file path or `-` for stderr.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "-",
        env = "WSGI_GATEWAY_ERROR_LOG"
    )]
    pub error_log: String,
    #[arg(
        long,
        value_enum,
        default_value = "info",
        env = "WSGI_GATEWAY_LOG_LEVEL"
    )]
    pub log_level: LogLevel,
    /// Peers (IPs, CIDR ranges, `unix` for clients of a Unix-socket --bind, or `*` for all) whose X-Forwarded-*/Forwarded and identity headers are believed. A Unix-socket peer is trusted only through `unix` or `*`.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "",
        env = "WSGI_GATEWAY_FORWARDED_ALLOW_IPS"
    )]
    pub forwarded_allow_ips: String,
    /// Another identity header to strip from untrusted peers (repeatable).
    #[arg(
        long,
        value_name = "NAME",
        env = "WSGI_GATEWAY_IDENTITY_HEADER",
        value_delimiter = ','
    )]
    pub identity_header: Vec<String>,
    /// Show tracebacks in 500 responses (never in production).
    #[arg(long, env = "WSGI_GATEWAY_DEBUG")]
    pub debug: bool,
}

/// What the HTTP server and the ISAPI extension both take beyond the app: how many requests
/// may be inside it at once, the body limit, and header names with `_`.
#[derive(Args, Debug, Clone)]
pub struct ServiceArgs {
    /// Header names containing `_`: drop them, or refuse the request with 400.
    #[arg(
        long,
        value_enum,
        default_value = "drop",
        env = "WSGI_GATEWAY_HEADER_UNDERSCORES"
    )]
    pub header_underscores: Underscores,
    /// Python worker threads: how many requests may be inside the app at once (an idle one costs nothing).
    #[arg(long, default_value_t = defaults::THREADS, value_parser = clap::value_parser!(u32).range(1..=1024), env = "WSGI_GATEWAY_THREADS")]
    pub threads: u32,
    /// Largest request body in bytes (413 beyond); 0 = unlimited.
    #[arg(long, default_value_t = defaults::MAX_BODY_SIZE, env = "WSGI_GATEWAY_MAX_BODY_SIZE")]
    pub max_body_size: u64,
    /// Python's thread switch interval (`sys.setswitchinterval`), set before the app is imported: how long a thread back from a blocking call (a database, `time.sleep`) waits for the GIL while a worker runs ready requests. Python's default is 0.005.
    #[arg(long, value_name = "SECONDS", default_value = "0.001", value_parser = parse_seconds, env = "WSGI_GATEWAY_SWITCH_INTERVAL")]
    pub switch_interval: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub app: AppArgs,
    /// Mount point: SCRIPT_NAME, removed from the front of PATH_INFO.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "",
        env = "WSGI_GATEWAY_SCRIPT_NAME"
    )]
    pub script_name: String,
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Address to listen on: HOST:PORT, [V6]:PORT or unix:PATH (repeatable).
    #[arg(
        long,
        short = 'b',
        value_name = "ADDR",
        env = "WSGI_GATEWAY_BIND",
        value_delimiter = ','
    )]
    pub bind: Vec<String>,
    /// Every connection starts with a PROXY protocol header (v1 or v2, HAProxy's `send-proxy`/`send-proxy-v2`): the client's address and port, and the address and port it connected to, come from it. Accepted only from --forwarded-allow-ips peers; others, and a missing or malformed header, are closed and logged.
    #[arg(long, env = "WSGI_GATEWAY_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,
    /// Access log (Apache combined + duration in µs): a file path or `-` for stdout.
    #[arg(long, value_name = "PATH", env = "WSGI_GATEWAY_ACCESS_LOG")]
    pub access_log: Option<String>,
    /// The access log's line: `combined` (Apache combined + duration in µs), `common`, `json` (one object per line), or Apache `LogFormat` atoms (`%h %l %u %t "%r" %>s %b %D %{VAR}e %{Header}i %{Header}o` …).
    #[arg(
        long,
        value_name = "FORMAT",
        default_value = "combined",
        env = "WSGI_GATEWAY_ACCESS_LOG_FORMAT"
    )]
    pub access_log_format: String,
    /// Longest request line (414 beyond).
    #[arg(long, default_value_t = defaults::LIMIT_REQUEST_LINE as u64, value_parser = clap::value_parser!(u64).range(64..), env = "WSGI_GATEWAY_LIMIT_REQUEST_LINE")]
    pub limit_request_line: u64,
    /// Most header fields in a request (431 beyond).
    #[arg(long, default_value_t = defaults::LIMIT_REQUEST_FIELDS as u64, value_parser = clap::value_parser!(u64).range(1..), env = "WSGI_GATEWAY_LIMIT_REQUEST_FIELDS")]
    pub limit_request_fields: u64,
    /// Longest header field line (431 beyond).
    #[arg(long, default_value_t = defaults::LIMIT_REQUEST_FIELD_SIZE as u64, value_parser = clap::value_parser!(u64).range(16..), env = "WSGI_GATEWAY_LIMIT_REQUEST_FIELD_SIZE")]
    pub limit_request_field_size: u64,
    /// Largest request head in bytes (431 beyond).
    #[arg(long, default_value_t = defaults::LIMIT_REQUEST_HEAD as u64, value_parser = clap::value_parser!(u64).range(256..), env = "WSGI_GATEWAY_LIMIT_REQUEST_HEAD")]
    pub limit_request_head: u64,
    /// Seconds a client has to send a whole request head (408 after).
    #[arg(long, default_value = "30", value_parser = parse_seconds, env = "WSGI_GATEWAY_HEADER_TIMEOUT")]
    pub header_timeout: Duration,
    /// Seconds an idle keep-alive connection is kept open.
    #[arg(long, default_value = "15", value_parser = parse_seconds, env = "WSGI_GATEWAY_KEEPALIVE_TIMEOUT")]
    pub keepalive_timeout: Duration,
    /// Seconds of silence allowed while reading a request body.
    #[arg(long, default_value = "60", value_parser = parse_seconds, env = "WSGI_GATEWAY_BODY_TIMEOUT")]
    pub body_timeout: Duration,
    /// Seconds a client may stop reading the response before the connection is dropped.
    #[arg(long, default_value = "60", value_parser = parse_seconds, env = "WSGI_GATEWAY_WRITE_TIMEOUT")]
    pub write_timeout: Duration,
    /// Response bytes queued for a client that reads slowly, so its worker moves on (beyond 256 KiB they wait in a temporary file); past this the worker waits for the client. 0 = never queue.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20, env = "WSGI_GATEWAY_WRITE_BUFFER")]
    pub write_buffer: u64,
    /// Response bytes queued (in memory and temporary files) across all connections of one process; past this, an app's write waits for its client instead.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30, env = "WSGI_GATEWAY_WRITE_BUFFER_TOTAL")]
    pub write_buffer_total: u64,
    /// Slowest average rate (bytes/s) a client may send a request body at, once --min-rate-grace has passed; only time spent waiting for the client counts. 0 = off.
    #[arg(
        long,
        value_name = "BYTES/S",
        default_value_t = 240,
        env = "WSGI_GATEWAY_MIN_REQUEST_BODY_RATE"
    )]
    pub min_request_body_rate: u64,
    /// Slowest average rate (bytes/s) a client may take a response at, once --min-rate-grace has passed; only time spent waiting for the client counts. 0 = off.
    #[arg(
        long,
        value_name = "BYTES/S",
        default_value_t = 240,
        env = "WSGI_GATEWAY_MIN_RESPONSE_RATE"
    )]
    pub min_response_rate: u64,
    /// Seconds of waiting on a client before the minimum rates apply.
    #[arg(long, default_value = "5", value_parser = parse_seconds, env = "WSGI_GATEWAY_MIN_RATE_GRACE")]
    pub min_rate_grace: Duration,
    /// Send every block of a response the moment it is written, one TCP segment each. By default the first block goes out with the head at once, later small blocks may wait for the client's acknowledgement of earlier ones (Nagle) and go out together, and the response's end is pushed at once. Set it for event streams whose bursts must not wait a round trip.
    #[arg(long, env = "WSGI_GATEWAY_STREAM_NODELAY")]
    pub stream_nodelay: bool,
    /// Seconds in-flight requests get to finish on SIGTERM/SIGINT.
    #[arg(long, default_value = defaults::GRACEFUL_TIMEOUT, value_parser = parse_seconds, env = "WSGI_GATEWAY_GRACEFUL_TIMEOUT")]
    pub graceful_timeout: Duration,
    /// Most open client connections (an idle one costs ~0.2 KiB here; the fd limit is raised to its maximum at start).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..), env = "WSGI_GATEWAY_MAX_CONNECTIONS")]
    pub max_connections: u64,
    /// Worker processes under a supervisor that restarts them and reloads on SIGHUP (0 = one per CPU). Without it (and without --max-requests, --max-rss or --reload), one process serves.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1024), env = "WSGI_GATEWAY_WORKERS")]
    pub workers: Option<u32>,
    /// Replace a worker gracefully after this many requests (0 = never); implies a supervisor.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        env = "WSGI_GATEWAY_MAX_REQUESTS"
    )]
    pub max_requests: u64,
    /// Add a random 0..=J to --max-requests per worker, so workers do not all retire at once.
    #[arg(
        long,
        value_name = "J",
        default_value_t = 0,
        env = "WSGI_GATEWAY_MAX_REQUESTS_JITTER"
    )]
    pub max_requests_jitter: u64,
    /// Seconds a request may spend inside the app (its response included) before it is logged as hung, once, with its Python stack, and counted; a supervised worker then retires gracefully (a replacement starts at once, the call gets --graceful-timeout). 0 = off.
    #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = parse_seconds_or_off, env = "WSGI_GATEWAY_TIMEOUT")]
    pub timeout: Duration,
    /// Replace a worker gracefully once its resident memory passes this many MiB (read once a second; 0 = never); implies a supervisor.
    #[arg(
        long,
        value_name = "MiB",
        default_value_t = 0,
        env = "WSGI_GATEWAY_MAX_RSS"
    )]
    pub max_rss: u64,
    /// Serve Prometheus metrics at /metrics on this address (HOST:PORT, [V6]:PORT or unix:PATH), a listener of its own; under --workers the supervisor serves them, summed over the workers. Off by default.
    #[arg(long, value_name = "ADDR", env = "WSGI_GATEWAY_METRICS_BIND")]
    pub metrics_bind: Option<String>,
    /// Write the (supervisor's) pid to this file; removed at exit.
    #[arg(long, value_name = "FILE", env = "WSGI_GATEWAY_PID")]
    pub pid: Option<PathBuf>,
    /// Listen backlog.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..), env = "WSGI_GATEWAY_BACKLOG")]
    pub backlog: u32,
    /// Development only: restart the workers when a source file the app imported changes (implies a supervisor, one worker without --workers).
    #[arg(long, env = "WSGI_GATEWAY_RELOAD")]
    pub reload: bool,
    /// Another file whose change restarts the workers under --reload (repeatable; relative to --chdir).
    #[arg(
        long,
        value_name = "PATH",
        env = "WSGI_GATEWAY_RELOAD_EXTRA_FILE",
        value_delimiter = ':'
    )]
    pub reload_extra_file: Vec<PathBuf>,
    #[command(flatten)]
    pub privileges: PrivilegeArgs,
}

/// Who the server runs as, and the modes of what it creates (`privileges.rs`).
#[derive(Args, Debug, Clone)]
pub struct PrivilegeArgs {
    /// Run as this user (name or UID) once the sockets are bound, before the app is imported (needs root; a supervisor switches before it starts the workers). The group is the user's, its supplementary groups too.
    #[arg(long, value_name = "NAME|UID", env = "WSGI_GATEWAY_USER")]
    pub user: Option<String>,
    /// Run as this group (name or GID) instead of the user's own.
    #[arg(long, value_name = "NAME|GID", env = "WSGI_GATEWAY_GROUP")]
    pub group: Option<String>,
    /// The file mode creation mask (octal, e.g. 027), set first thing at start: for sockets, logs and the app's files.
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode, env = "WSGI_GATEWAY_UMASK")]
    pub umask: Option<u32>,
    /// Mode (octal, e.g. 660) of the socket file of each `unix:` --bind, set before it listens.
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode, env = "WSGI_GATEWAY_SOCKET_MODE")]
    pub socket_mode: Option<u32>,
}

/// An octal permission mode, `0` to `777` (`0o` or a leading `0` allowed). A value parser.
pub(crate) fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.trim();
    let digits = digits.strip_prefix("0o").unwrap_or(digits);
    let bad = || format!("{text:?}: expected an octal mode such as 022 or 660");
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(bad());
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| bad())?;
    if mode > 0o777 {
        return Err(bad());
    }
    Ok(mode)
}

/// A `--…-timeout`'s seconds (a value parser: `Err` is the text clap prints).
pub(crate) fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0 * 365.0) {
        return Err(format!("{text:?}: expected seconds greater than 0"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--timeout`'s seconds, where 0 means off (`Duration::ZERO`).
pub(crate) fn parse_seconds_or_off(text: &str) -> Result<Duration, String> {
    if text.trim().parse::<f64>() == Ok(0.0) {
        return Ok(Duration::ZERO);
    }
    parse_seconds(text)
}

impl AppArgs {
    pub fn app_spec(&self) -> AppSpec {
        AppSpec {
            app: self.app.clone(),
            paste: self.paste.clone(),
            chdir: self.chdir.clone(),
            pythonpath: self.pythonpath.clone(),
            venv: self
                .venv
                .clone()
                .or_else(|| std::env::var_os("VIRTUAL_ENV").map(PathBuf::from)),
        }
    }

    /// Who is believed about proxies and identity. `refuse_underscores`: refuse header names
    /// with `_` instead of dropping them.
    pub fn trust_policy(&self, refuse_underscores: bool) -> Result<TrustPolicy, ConfigError> {
        let trusted = self
            .forwarded_allow_ips
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                IpRange::parse(s).map_err(|e| ConfigError(format!("--forwarded-allow-ips: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut identity_headers = Vec::new();
        for h in &self.identity_header {
            let h = h.trim();
            if h.is_empty() || !h.bytes().all(crate::responder::is_tchar) {
                return Err(ConfigError(format!(
                    "--identity-header {h:?}: not a header name"
                )));
            }
            identity_headers.push(h.to_ascii_lowercase());
        }
        Ok(TrustPolicy {
            trusted,
            identity_headers,
            refuse_underscores,
        })
    }
}

impl ServeArgs {
    /// The mount point, validated: empty, or `/x` without a trailing `/`.
    #[cfg(unix)]
    pub fn script_name(&self) -> Result<String, ConfigError> {
        let s = self.script_name.trim_end_matches('/');
        if !s.is_empty() && !s.starts_with('/') {
            return Err(ConfigError(format!(
                "--script-name {s:?}: must start with '/'"
            )));
        }
        Ok(s.to_string())
    }

    /// How many worker processes a supervisor runs: `--workers` (0 = one per CPU), or one when
    /// only `--max-requests`, `--max-rss` (they replace workers) or `--reload` asks for a
    /// supervisor; `None`: this process serves by itself.
    #[cfg(unix)]
    pub fn supervisor_workers(&self) -> Option<usize> {
        match self.workers {
            Some(0) => Some(std::thread::available_parallelism().map_or(1, |n| n.get())),
            Some(n) => Some(n as usize),
            None if self.max_requests > 0 || self.max_rss > 0 || self.reload => Some(1),
            None => None,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use clap::Parser;

    use super::{Cli, Command, ServeArgs};

    /// `wsgi-gateway serve WORDS…` as clap parses it.
    pub(in crate::config) fn serve(words: &[&str]) -> ServeArgs {
        let argv = ["wsgi-gateway", "serve"].iter().chain(words);
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Serve(args)) => *args,
            other => panic!("{words:?} is not a serve command line: {other:?}"),
        }
    }

    #[test]
    fn modes_are_octal() {
        use super::parse_mode;
        assert_eq!(parse_mode("022"), Ok(0o22));
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("0o777"), Ok(0o777));
        assert_eq!(parse_mode("7"), Ok(0o7));
        for bad in ["", "8", "1000", "0x1f", "-1", "rw-", "07777"] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
        let args = serve(&["--umask=027", "--socket-mode=660", "--user=root"]);
        assert_eq!(args.privileges.umask, Some(0o27));
        assert_eq!(args.privileges.socket_mode, Some(0o660));
    }

    #[test]
    fn workers_or_max_requests_ask_for_a_supervisor() {
        assert_eq!(serve(&[]).supervisor_workers(), None);
        assert_eq!(serve(&["--max-requests=0"]).supervisor_workers(), None);
        assert_eq!(serve(&["--max-requests=5"]).supervisor_workers(), Some(1));
        assert_eq!(serve(&["--workers=3"]).supervisor_workers(), Some(3));
        let per_cpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(serve(&["--workers=0"]).supervisor_workers(), Some(per_cpu));
        let both = serve(&["--workers=2", "--max-requests=5"]);
        assert_eq!(both.supervisor_workers(), Some(2));
        assert_eq!(serve(&["--reload"]).supervisor_workers(), Some(1));
        assert_eq!(
            serve(&["--reload", "--workers=2"]).supervisor_workers(),
            Some(2)
        );
        assert_eq!(serve(&["--max-rss=512"]).supervisor_workers(), Some(1));
        assert_eq!(serve(&["--timeout=30"]).supervisor_workers(), None);
    }

    #[test]
    fn timeout_is_off_by_default_and_takes_seconds() {
        use std::time::Duration;
        assert_eq!(serve(&[]).timeout, Duration::ZERO);
        assert_eq!(serve(&["--timeout=0"]).timeout, Duration::ZERO);
        assert_eq!(
            serve(&["--timeout=2.5"]).timeout,
            Duration::from_millis(2500)
        );
        assert_eq!(serve(&[]).max_rss, 0);
        let argv = ["wsgi-gateway", "serve", "--timeout=-1"];
        assert!(super::Cli::try_parse_from(argv).is_err());
    }
}
