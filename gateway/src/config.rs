//! One configuration for every front end: command-line flags, `WSGI_GATEWAY_*` environment
//! variables and a TOML file, in that order of precedence.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

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
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
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

/// `3.11` → (3, 11): the versions wsgi-gateway's wheels are built for.
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
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024), env = "WSGI_GATEWAY_THREADS")]
    pub threads: u32,
    /// Largest request body in bytes (413 beyond); 0 = unlimited.
    #[arg(long, default_value_t = 1 << 30, env = "WSGI_GATEWAY_MAX_BODY_SIZE")]
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
    /// Access log (Apache combined + duration in µs): a file path or `-` for stdout.
    #[arg(long, value_name = "PATH", env = "WSGI_GATEWAY_ACCESS_LOG")]
    pub access_log: Option<String>,
    /// Longest request line (414 beyond).
    #[arg(long, default_value_t = 16384, value_parser = clap::value_parser!(u64).range(64..), env = "WSGI_GATEWAY_LIMIT_REQUEST_LINE")]
    pub limit_request_line: u64,
    /// Most header fields in a request (431 beyond).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..), env = "WSGI_GATEWAY_LIMIT_REQUEST_FIELDS")]
    pub limit_request_fields: u64,
    /// Longest header field line (431 beyond).
    #[arg(long, default_value_t = 32768, value_parser = clap::value_parser!(u64).range(16..), env = "WSGI_GATEWAY_LIMIT_REQUEST_FIELD_SIZE")]
    pub limit_request_field_size: u64,
    /// Largest request head in bytes (431 beyond).
    #[arg(long, default_value_t = 262144, value_parser = clap::value_parser!(u64).range(256..), env = "WSGI_GATEWAY_LIMIT_REQUEST_HEAD")]
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
    #[arg(long, default_value = "30", value_parser = parse_seconds, env = "WSGI_GATEWAY_GRACEFUL_TIMEOUT")]
    pub graceful_timeout: Duration,
    /// Most open client connections (an idle one costs ~0.2 KiB here; the fd limit is raised to its maximum at start).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..), env = "WSGI_GATEWAY_MAX_CONNECTIONS")]
    pub max_connections: u64,
    /// Worker processes under a supervisor that restarts them and reloads on SIGHUP (0 = one per CPU). Without it (and without --max-requests), one process serves.
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
    /// Write the (supervisor's) pid to this file; removed at exit.
    #[arg(long, value_name = "FILE", env = "WSGI_GATEWAY_PID")]
    pub pid: Option<PathBuf>,
    /// Listen backlog.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..), env = "WSGI_GATEWAY_BACKLOG")]
    pub backlog: u32,
}

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

/// A configuration error, worded for the operator; the binary exits with status 2.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a parse produced: settings, or text to print and exit 0 (`--help`, `--version`).
pub enum Parsed {
    Run(Box<Cli>),
    Print(String),
}

const SUBCOMMANDS: [&str; 4] = ["serve", "cgi", "install-iis", "help"];

/// Parses argv (CLI > env > `--config` file). With no subcommand, `serve` is meant, or `cgi`
/// when a CGI host started the program.
pub fn parse(mut argv: Vec<OsString>) -> Result<Parsed, ConfigError> {
    let under_cgi = std::env::var_os("GATEWAY_INTERFACE").is_some();
    if under_cgi {
        let launch = CgiLaunch {
            query: std::env::var_os("QUERY_STRING"),
            script: std::env::var_os("SCRIPT_FILENAME").map(PathBuf::from),
            exe: std::env::current_exe().ok(),
        };
        argv.truncate(launch.operator_args(&argv, file_id));
    }
    let argv = with_command(argv, under_cgi);
    let matches = match Cli::command().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => return clap_outcome(e, None),
    };
    let file = match matches.subcommand() {
        Some((name, sub)) if name != "help" => sub
            // try_: install-iis has no --config.
            .try_get_one::<PathBuf>("config")
            .ok()
            .flatten()
            .cloned()
            .map(|file| (name.to_string(), file, sub)),
        _ => None,
    };
    let Some((name, file, sub)) = file else {
        return Cli::from_arg_matches(&matches)
            .map(|c| Parsed::Run(Box::new(c)))
            .map_err(|e| ConfigError(clap_text(&e)));
    };
    // Settings from the file go in front of the real arguments, but only for options that the
    // command line and the environment left unset.
    let command = Cli::command();
    let sub_command = command
        .find_subcommand(&name)
        .ok_or_else(|| ConfigError(format!("internal: no {name} command")))?;
    let (from_file, app) = file_args(&file, &format!("`{name}`"), sub_command, sub)?;
    let mut merged: Vec<OsString> = argv[..2].to_vec();
    merged.extend(from_file);
    merged.extend(argv[2..].iter().cloned());
    merged.extend(app);
    match Cli::command().try_get_matches_from(&merged) {
        Ok(m) => Cli::from_arg_matches(&m)
            .map(|c| Parsed::Run(Box::new(c)))
            .map_err(|e| ConfigError(clap_text(&e))),
        Err(e) => clap_outcome(e, Some(&file)),
    }
}

/// Settings of a front end with no command line (the ISAPI library): the TOML `file`, with
/// `WSGI_GATEWAY_*` variables over it. `what` names the front end in messages.
pub fn parse_file<T: clap::Parser>(
    file: &std::path::Path,
    what: &str,
) -> Result<(T, ArgMatches), ConfigError> {
    let command = T::command();
    let argv0 = [OsString::from(what)];
    let given = command
        .clone()
        .try_get_matches_from(argv0.iter())
        .map_err(|e| ConfigError(clap_text(&e)))?;
    let (mut argv, app) = file_args(file, what, &command, &given)?;
    argv.insert(0, argv0[0].clone());
    argv.extend(app);
    let with_file = |e: clap::Error| {
        ConfigError(format!(
            "{} (with settings from {})",
            clap_text(&e),
            file.display()
        ))
    };
    let matches = command.try_get_matches_from(argv).map_err(with_file)?;
    let parsed = T::from_arg_matches(&matches).map_err(with_file)?;
    Ok((parsed, matches))
}

/// argv with its subcommand made explicit: `serve`, or `cgi` under a CGI host
/// (`GATEWAY_INTERFACE` set).
fn with_command(mut argv: Vec<OsString>, under_cgi: bool) -> Vec<OsString> {
    if argv.is_empty() {
        argv.push(OsString::from("wsgi-gateway"));
    }
    let first = argv.get(1).and_then(|a| a.to_str()).unwrap_or("");
    if !SUBCOMMANDS.contains(&first) && !matches!(first, "-h" | "--help" | "-V" | "--version") {
        let command = if under_cgi { "cgi" } else { "serve" };
        argv.insert(1, OsString::from(command));
    }
    argv
}

/// How a CGI host started this process, from the meta-variables it set (a request sets none
/// of these).
///
/// RFC 3875 §4.4: for a query without `=` a host may pass the query's words as arguments
/// (Apache's mod_cgi does, shell-escaped; lighttpd does not). A request must never choose an
/// option, app, path or file (php-cgi's CVE-2012-1823), so where those words can be is
/// decided from how the host ran the program, never by comparing them with the query: the
/// host runs SCRIPT_FILENAME with the words after it, so whatever follows the script in argv
/// is the request's.
struct CgiLaunch {
    /// QUERY_STRING.
    query: Option<OsString>,
    /// SCRIPT_FILENAME: the file the host ran.
    script: Option<PathBuf>,
    /// This running executable.
    exe: Option<PathBuf>,
}

impl CgiLaunch {
    /// How many leading entries of `argv` (the program name included) are the operator's;
    /// the rest may be the request's and are ignored. `id` names a file (same file, same id).
    fn operator_args<Id: PartialEq>(
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
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(path: &std::path::Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

fn clap_text(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    first.trim_start_matches("error: ").to_string()
}

fn clap_outcome(e: clap::Error, file: Option<&PathBuf>) -> Result<Parsed, ConfigError> {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Ok(Parsed::Print(e.to_string())),
        _ => Err(ConfigError(match file {
            Some(f) => format!("{} (with settings from {})", clap_text(&e), f.display()),
            None => clap_text(&e),
        })),
    }
}

/// Turns the TOML file into arguments for the options not already set.
fn file_args(
    file: &std::path::Path,
    command: &str,
    sub: &clap::Command,
    given: &ArgMatches,
) -> Result<(Vec<OsString>, Option<OsString>), ConfigError> {
    let name = file.display();
    let text =
        std::fs::read_to_string(file).map_err(|e| ConfigError(format!("--config {name}: {e}")))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        match line {
            Some(l) => ConfigError(format!("--config {name}: line {l}: {}", e.message())),
            None => ConfigError(format!("--config {name}: {}", e.message())),
        }
    })?;
    let mut out = Vec::new();
    // The positional APP cannot be injected as a flag; the caller appends it after the CLI args.
    let mut app = None;
    for (key, value) in &table {
        let id = key.replace('-', "_");
        let Some(arg) = sub.get_arguments().find(|a| a.get_id().as_str() == id) else {
            return Err(ConfigError(format!(
                "--config {name}: unknown key {key:?} for {command}"
            )));
        };
        if id == "config" {
            return Err(ConfigError(format!(
                "--config {name}: key \"config\" cannot name another file"
            )));
        }
        if matches!(
            given.value_source(&id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let flag = format!("--{}", arg.get_long().unwrap_or(&id));
        let positional = arg.get_long().is_none();
        let takes_value = arg.get_num_args().is_none_or(|n| n.takes_values());
        let scalar = |v: &toml::Value| -> Result<String, ConfigError> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                _ => Err(ConfigError(format!(
                    "--config {name}: key {key:?} must be a string or number"
                ))),
            }
        };
        match value {
            toml::Value::Boolean(b) if !takes_value => {
                if *b {
                    out.push(OsString::from(flag));
                }
            }
            toml::Value::Array(items) => {
                for item in items {
                    out.push(OsString::from(&flag));
                    out.push(OsString::from(scalar(item)?));
                }
            }
            v if positional => app = Some(OsString::from(scalar(v)?)),
            v => {
                if !takes_value {
                    return Err(ConfigError(format!(
                        "--config {name}: key {key:?} must be true or false"
                    )));
                }
                out.push(OsString::from(flag));
                out.push(OsString::from(scalar(v)?));
            }
        }
    }
    Ok((out, app))
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
    pub fn script_name(&self) -> Result<String, ConfigError> {
        let s = self.script_name.trim_end_matches('/');
        if !s.is_empty() && !s.starts_with('/') {
            return Err(ConfigError(format!(
                "--script-name {s:?}: must start with '/'"
            )));
        }
        Ok(s.to_string())
    }
}

#[cfg(test)]
mod readme_table;

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn cmd(words: &[&str], under_cgi: bool) -> Vec<OsString> {
        with_command(argv(words), under_cgi)
    }

    #[test]
    fn default_command_is_serve_or_cgi() {
        assert_eq!(
            cmd(&["gw", "app:x"], false),
            argv(&["gw", "serve", "app:x"])
        );
        assert_eq!(cmd(&["gw"], true), argv(&["gw", "cgi"]));
        assert_eq!(
            cmd(&["gw", "cgi", "app"], true),
            argv(&["gw", "cgi", "app"])
        );
        assert_eq!(cmd(&["gw", "--help"], false), argv(&["gw", "--help"]));
    }

    /// Files of a pretend disk: the binary (`/usr/bin/gw`, also linked as
    /// `/srv/cgi-bin/gw`), a wrapper script and a TOML file with a `#!` line.
    fn fake_id(path: &std::path::Path) -> Option<u32> {
        match path.to_str()? {
            "/usr/bin/gw" | "/srv/cgi-bin/gw" | "gw" => Some(1),
            "/srv/cgi-bin/app.sh" => Some(2),
            "/srv/cgi-bin/app.toml" | "app.toml" => Some(3),
            "/etc/app.toml" => Some(4),
            _ => None,
        }
    }

    /// The operator's part of `words` under a CGI host.
    fn kept(words: &[&str], query: &str, script: Option<&str>) -> Vec<OsString> {
        let launch = CgiLaunch {
            query: Some(OsString::from(query)),
            script: script.map(PathBuf::from),
            exe: Some(PathBuf::from("/usr/bin/gw")),
        };
        let mut argv = argv(words);
        argv.truncate(launch.operator_args(&argv, fake_id));
        argv
    }

    #[test]
    fn a_host_that_runs_the_binary_itself_gives_no_arguments_of_the_operators() {
        let gw = Some("/srv/cgi-bin/gw");
        // Apache: the words URL-decoded, then shell-escaped, so they are not the query's.
        let exploit = "--forwarded-allow-ips+0.0.0.0%2F0+--error-log+x.log%26";
        let words = [
            "/srv/cgi-bin/gw",
            "--forwarded-allow-ips",
            "0.0.0.0/0",
            "--error-log",
            "x.log\\&",
        ];
        assert_eq!(kept(&words, exploit, gw), argv(&["/srv/cgi-bin/gw"]));
        // Whatever the query: a subcommand, only `+`, empty words, a `=` (no host passes
        // words then, but none of argv is the operator's anyway).
        for (words, query) in [
            (
                &["/srv/cgi-bin/gw", "serve", "--bind", "0.0.0.0:80"][..],
                "serve+--bind+0.0.0.0:80",
            ),
            (&["/srv/cgi-bin/gw", "", ""][..], "+"),
            (&["/srv/cgi-bin/gw", "--error-log", "/tmp/x"][..], "a=1"),
            (&["/srv/cgi-bin/gw", "--error-log", "/tmp/x"][..], ""),
        ] {
            assert_eq!(
                kept(words, query, gw),
                argv(&["/srv/cgi-bin/gw"]),
                "{query}"
            );
        }
        // suexec runs the script by its file name from its directory.
        assert_eq!(
            kept(&["gw", "--error-log", "x"], "--error-log+x", gw),
            argv(&["gw"])
        );
    }

    #[test]
    fn a_hash_bang_line_keeps_its_arguments_and_drops_the_hosts_words() {
        let toml = Some("/srv/cgi-bin/app.toml");
        let words = [
            "/usr/bin/gw",
            "--config",
            "/srv/cgi-bin/app.toml",
            "--error-log",
            "x",
        ];
        let mine = argv(&["/usr/bin/gw", "--config", "/srv/cgi-bin/app.toml"]);
        assert_eq!(kept(&words, "--error-log+x", toml), mine);
        assert_eq!(kept(&words[..3], "a=1", toml), mine);
        // suexec: the script by its file name; a request word naming the script again.
        let words = [
            "/usr/bin/gw",
            "--config",
            "app.toml",
            "app.toml",
            "--error-log",
            "x",
        ];
        assert_eq!(
            kept(&words, "app.toml+--error-log+x", toml),
            argv(&["/usr/bin/gw", "--config", "app.toml"])
        );
        // Another file with the same name is not the script.
        let words = [
            "/usr/bin/gw",
            "--config",
            "/etc/app.toml",
            "app.toml",
            "--debug",
        ];
        assert_eq!(
            kept(&words, "app.toml+--debug", toml),
            argv(&["/usr/bin/gw", "--config", "/etc/app.toml", "app.toml"])
        );
    }

    #[test]
    fn a_wrappers_arguments_are_the_operators() {
        let wrapper = Some("/srv/cgi-bin/app.sh");
        let words = ["/usr/bin/gw", "cgi", "app", "--chdir", "/srv"];
        // The wrapper got the query's words and did not pass them on.
        for query in ["cgi+app", "a+b+c+d", "", "x=1", "+"] {
            assert_eq!(kept(&words, query, wrapper), argv(&words), "{query}");
        }
    }

    #[test]
    fn without_a_script_filename_argv_is_trusted_only_for_a_query_with_no_words() {
        let words = ["/usr/bin/gw", "cgi", "app", "--chdir", "/srv"];
        for script in [None, Some(""), Some("/srv/cgi-bin/missing")] {
            assert_eq!(kept(&words, "a+b", script), argv(&["/usr/bin/gw"]));
            assert_eq!(kept(&words, "%2D%2Dx", script), argv(&["/usr/bin/gw"]));
            assert_eq!(kept(&words, "x=1", script), argv(&words));
            assert_eq!(kept(&words, "", script), argv(&words));
        }
        assert_eq!(kept(&[], "a+b", None), argv(&[]));
    }
}
