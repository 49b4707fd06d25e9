//! One configuration for every front end: command-line flags, `WSGI_GATEWAY_*` environment
//! variables and a TOML file, in that order of precedence. The options themselves are in
//! `schema.rs`; this file merges the three sources.

mod cgi_launch;
pub(crate) mod defaults;
#[cfg(unix)]
mod http_settings;
mod schema;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use cgi_launch::{file_id, CgiLaunch};
pub use schema::*;

/// A configuration error, worded for the operator; the binary exits with status 2. A message,
/// not an enum: every caller reports it and stops (ISAPI: GetExtensionVersion fails).
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
        // From the action: `num_args` is unset until the command is built, which made every
        // flag look like an option taking a value (and `true` in the file an error).
        let takes_value = arg.get_action().takes_values();
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

    /// `serve --config FILE` with `text` as the file.
    fn serve_with_file(text: &str) -> Result<Box<crate::config::ServeArgs>, ConfigError> {
        let dir = std::env::temp_dir().join(format!("wsgi-gateway-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| ConfigError(e.to_string()))?;
        let file = dir.join(format!("{:x}.toml", text.len() ^ text.as_ptr() as usize));
        std::fs::write(&file, text).map_err(|e| ConfigError(e.to_string()))?;
        let parsed = parse(argv(&["gw", "serve", "--config", &file.to_string_lossy()]));
        let _ = std::fs::remove_file(&file);
        match parsed? {
            Parsed::Run(cli) => match cli.command {
                Command::Serve(args) => Ok(args),
                other => Err(ConfigError(format!("not serve: {other:?}"))),
            },
            Parsed::Print(text) => Err(ConfigError(text)),
        }
    }

    #[test]
    fn flags_are_true_or_false_in_the_file() {
        let args = serve_with_file(
            "proxy-protocol = true\ndebug = true\nstream-nodelay = false\nforwarded-allow-ips = \"10.0.0.1\"\n",
        )
        .expect("booleans for flags");
        assert!(args.proxy_protocol && args.app.debug && !args.stream_nodelay);
        assert_eq!(args.app.forwarded_allow_ips, "10.0.0.1");
        let e = serve_with_file("proxy-protocol = \"yes\"\n").expect_err("a string for a flag");
        assert!(
            e.0.ends_with("key \"proxy-protocol\" must be true or false"),
            "{}",
            e.0
        );
        let e = serve_with_file("threads = true\n").expect_err("a boolean for a value");
        assert!(
            e.0.contains("key \"threads\" must be a string or number"),
            "{}",
            e.0
        );
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
