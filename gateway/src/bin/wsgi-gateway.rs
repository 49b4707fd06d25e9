//! `wsgi-gateway`: parse the configuration, load the app, run a front end.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use wsgi_gateway::cgi;
use wsgi_gateway::config::{self, AppArgs, CgiArgs, Command, Parsed, ServeArgs, Underscores};
use wsgi_gateway::http::server::Server;
use wsgi_gateway::http::{self, head::HeadLimits, listener, Settings, Shared};
use wsgi_gateway::pool;
use wsgi_gateway::python::call::WsgiApp;
use wsgi_gateway::python::environ::FrontEndKind;
use wsgi_gateway::python::interpreter;

/// A start-up failure: reported as one line, exit status 2.
struct Fatal(String);

impl<E: std::fmt::Display> From<E> for Fatal {
    fn from(e: E) -> Fatal {
        Fatal(e.to_string())
    }
}

fn main() -> ExitCode {
    let argv: Vec<_> = std::env::args_os().collect();
    // Under a CGI host every failure must still be a complete response, never silence.
    let as_cgi =
        std::env::var_os("GATEWAY_INTERFACE").is_some() || argv.get(1).is_some_and(|a| a == "cgi");
    let fail = |msg: &str| {
        eprintln!("wsgi-gateway: error: {msg}");
        if as_cgi {
            cgi::write_error_document(500);
            ExitCode::from(1)
        } else {
            ExitCode::from(2)
        }
    };
    let cli = match config::parse(argv) {
        Ok(Parsed::Run(cli)) => cli,
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&e.0),
    };
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Cgi(args) => run_cgi(*args),
        Command::InstallIis(args) => wsgi_gateway::install_iis::run(&args)
            .map(|()| ExitCode::SUCCESS)
            .map_err(Fatal::from),
    };
    match result {
        Ok(code) => code,
        Err(Fatal(msg)) => fail(&msg),
    }
}

fn init_logging(app: &AppArgs) -> Result<(), Fatal> {
    wsgi_gateway::logging::init(&app.error_log, app.log_level).map_err(Fatal)
}

/// Loads the app and the environ builder for a front end (under the GIL).
fn load(app: &AppArgs, kind: FrontEndKind, refuse_underscores: bool) -> Result<WsgiApp, Fatal> {
    let policy = app.trust_policy(refuse_underscores)?;
    Ok(interpreter::load_wsgi_app(
        &app.app_spec(),
        policy,
        kind,
        app.debug,
        false,
    )?)
}

/// Lets the server hold as many connections as the system allows (the soft limit is often
/// 1024, below `--max-connections`).
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        let from = lim.current;
        lim.current = lim.maximum;
        match setrlimit(Resource::Nofile, lim) {
            Ok(()) => tracing::debug!("open file limit raised from {from:?} to {:?}", lim.maximum),
            Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
        }
    }
}

/// One request as a CGI program: no threads, no listener, nothing a single request does not need.
fn run_cgi(args: CgiArgs) -> Result<ExitCode, Fatal> {
    init_logging(&args.app)?;
    if args.app.app.is_none() && args.app.paste.is_none() {
        return Err(Fatal(
            "no app to run: give APP, set WSGI_GATEWAY_APP, or name a TOML file with an `app` key in WSGI_GATEWAY_CONFIG".into(),
        ));
    }
    let app = load(
        &args.app,
        FrontEndKind {
            multithread: false,
            multiprocess: true,
            run_once: true,
        },
        false,
    )?;
    Ok(match cgi::serve_one(&app, args.iis_path_info) {
        cgi::Served::Answered => ExitCode::SUCCESS,
        cgi::Served::Refused => ExitCode::from(1),
    })
}

fn serve(args: ServeArgs) -> Result<ExitCode, Fatal> {
    init_logging(&args.app)?;
    raise_fd_limit();
    let script_name = args.script_name()?;
    let settings = Settings {
        limits: HeadLimits {
            max_request_line: to_usize(args.limit_request_line),
            max_headers: to_usize(args.limit_request_fields),
            max_field_size: to_usize(args.limit_request_field_size),
            max_head_size: to_usize(args.limit_request_head),
        },
        max_body: args.max_body_size,
        header_timeout: args.header_timeout,
        keepalive_timeout: args.keepalive_timeout,
        body_timeout: args.body_timeout,
        write_timeout: args.write_timeout,
        graceful_timeout: args.graceful_timeout,
        max_connections: to_usize(args.max_connections),
        backlog: args.backlog,
        threads: args.threads as usize,
        script_name: script_name.into(),
    };
    let app = load(
        &args.app,
        FrontEndKind {
            multithread: true,
            multiprocess: false,
            run_once: false,
        },
        args.header_underscores == Underscores::Refuse,
    )?;

    let binds = if args.bind.is_empty() {
        vec!["127.0.0.1:8000".to_string()]
    } else {
        args.bind.clone()
    };
    let listeners = binds
        .iter()
        .map(|b| listener::bind(b, settings.backlog))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Fatal)?;
    let access_log = match &args.access_log {
        Some(path) => Some(
            http::access_log::AccessLog::open(path)
                .map_err(|e| Fatal(format!("--access-log {path}: {e}")))?,
        ),
        None => None,
    };

    let (signal_rx, signal_tx) = std::os::unix::net::UnixStream::pair()?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::low_level::pipe::register(sig, signal_tx.try_clone()?)?;
    }

    let threads = settings.threads;
    let shared = Arc::new(Shared {
        app,
        settings,
        stopping: AtomicBool::new(false),
        access_log,
    });
    let server = Arc::new(Server::new(listeners, shared)?);
    for l in server.listeners() {
        tracing::info!(
            "wsgi-gateway {} listening on {} ({} threads)",
            env!("CARGO_PKG_VERSION"),
            l.display,
            threads
        );
    }
    let _pool = pool::start(threads, "wsgi-worker", server.clone())?;
    server.keep_time(signal_rx)?;
    // Workers still inside a stuck app must not hold the exit hostage (graceful timeout passed).
    std::process::exit(0);
}

fn to_usize(n: impl TryInto<usize>) -> usize {
    n.try_into().unwrap_or(usize::MAX)
}
