//! The command line of both shapes: the `wsgi-gateway` binary and the console script of the
//! Python package (`wsgi_gateway._core.main`) parse the same clap schema here and run the
//! same commands; what differs is only the `Shape` they pass.

#[cfg(unix)]
mod serve;

use crate::config::{self, Command, Parsed};
use crate::python::host::Shape;
#[cfg(unix)]
use crate::{
    config::AppArgs, python::call::WsgiApp, python::environ::FrontEndKind, python::interpreter,
};

/// A start-up failure: reported as one line, exit status 2. A message, not an enum: every
/// failure ends the same way, so nothing tells the causes apart.
pub(crate) struct Fatal(pub String);

impl<E: std::fmt::Display> From<E> for Fatal {
    fn from(e: E) -> Fatal {
        Fatal(e.to_string())
    }
}

/// Runs one command line (`argv[0]` is the program's name) and returns the exit status.
pub fn main(argv: Vec<std::ffi::OsString>, shape: &Shape) -> u8 {
    // Under a CGI host every failure must still be a complete response, never silence.
    let as_cgi =
        std::env::var_os("GATEWAY_INTERFACE").is_some() || argv.get(1).is_some_and(|a| a == "cgi");
    let fail = |msg: &str| {
        eprintln!("wsgi-gateway: error: {msg}");
        if as_cgi {
            #[cfg(unix)]
            crate::cgi::write_error_document(500);
            1
        } else {
            2
        }
    };
    let command_line: Vec<_> = argv.iter().skip(1).cloned().collect();
    let cli = match config::parse(argv) {
        Ok(Parsed::Run(cli)) => cli,
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            // The extension shape never runs Rust's exit-time flush.
            let _ = std::io::Write::flush(&mut std::io::stdout());
            return 0;
        }
        Err(e) => return fail(&e.0),
    };
    let result = match cli.command {
        Command::Serve(args) => serve(*args, shape, &command_line),
        Command::Cgi(args) => run_cgi(*args, shape),
        Command::InstallIis(args) => crate::install_iis::run(&args, shape)
            .map(|()| 0)
            .map_err(Fatal::from),
    };
    match result {
        Ok(code) => code,
        Err(Fatal(msg)) => fail(&msg),
    }
}

#[cfg(unix)]
use serve::serve;

#[cfg(not(unix))]
fn serve(_: config::ServeArgs, _: &Shape, _: &[std::ffi::OsString]) -> Result<u8, Fatal> {
    Err(Fatal(
        "serve runs on Linux and other Unix systems; on Windows, IIS runs the app: see `wsgi-gateway install-iis --help`".into(),
    ))
}

#[cfg(unix)]
fn init_logging(app: &AppArgs) -> Result<(), Fatal> {
    crate::logging::init(&app.error_log, app.log_level).map_err(Fatal)
}

/// Loads the app and the environ builder for a front end (under the GIL).
#[cfg(unix)]
fn load(
    app: &AppArgs,
    shape: &Shape,
    kind: FrontEndKind,
    refuse_underscores: bool,
    switch_interval: Option<std::time::Duration>,
) -> Result<WsgiApp, Fatal> {
    if let (Shape::Extension(host), Some(venv)) = (shape, &app.venv) {
        host.check_venv(venv).map_err(Fatal)?;
    }
    let policy = app.trust_policy(refuse_underscores)?;
    Ok(interpreter::load_wsgi_app(
        &app.app_spec(),
        policy,
        kind,
        app.debug,
        false,
        switch_interval,
    )?)
}

/// One request as a CGI program: no threads, no listener, nothing a single request does not need.
#[cfg(unix)]
fn run_cgi(args: config::CgiArgs, shape: &Shape) -> Result<u8, Fatal> {
    init_logging(&args.app)?;
    if args.app.app.is_none() && args.app.paste.is_none() {
        return Err(Fatal(
            "no app to run: give APP, set WSGI_GATEWAY_APP, or name a TOML file with an `app` key in WSGI_GATEWAY_CONFIG".into(),
        ));
    }
    let app = load(
        &args.app,
        shape,
        FrontEndKind {
            multithread: false,
            multiprocess: true,
            run_once: true,
        },
        false,
        // One thread: Python's default.
        None,
    )?;
    Ok(match crate::cgi::serve_one(&app, args.iis_path_info) {
        crate::cgi::Served::Answered => 0,
        crate::cgi::Served::Refused => 1,
    })
}

#[cfg(not(unix))]
fn run_cgi(_: config::CgiArgs, _: &Shape) -> Result<u8, Fatal> {
    Err(Fatal(
        "cgi runs on Unix systems; on Windows, IIS runs the app through the ISAPI extension: see `wsgi-gateway install-iis --help`".into(),
    ))
}
