//! The ISAPI library's settings: `wsgi-gateway.toml` (the file the ISAPI loader read, else the
//! one named by `WSGI_GATEWAY_CONFIG`, else the one beside the library), with the keys
//! `serve --config` uses where they mean the same here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, Parser};
use parking_lot::Mutex;

use crate::config::{defaults, parse_file, parse_seconds, AppArgs, ConfigError, ServiceArgs};

#[derive(Parser, Debug)]
#[command(name = "wsgi-gateway ISAPI extension")]
pub struct IsapiCli {
    #[command(flatten)]
    pub args: IsapiArgs,
}

#[derive(Args, Debug, Clone)]
pub struct IsapiArgs {
    #[command(flatten)]
    pub app: AppArgs,
    /// Mount point (SCRIPT_NAME); default: the IIS application's path, from APPL_MD_PATH.
    #[arg(long, value_name = "PREFIX", env = "WSGI_GATEWAY_SCRIPT_NAME")]
    pub script_name: Option<String>,
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Requests waiting for a worker; beyond it IIS gets 503 at once.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000), env = "WSGI_GATEWAY_QUEUE_SIZE")]
    pub queue_size: u32,
    /// Seconds TerminateExtension waits for requests in flight.
    #[arg(long, default_value = defaults::GRACEFUL_TIMEOUT, value_parser = parse_seconds, env = "WSGI_GATEWAY_GRACEFUL_TIMEOUT")]
    pub graceful_timeout: Duration,
    /// For the ISAPI loader (wsgi_gateway_isapi.dll): the python3X.dll it loads by absolute
    /// path before this library. Read by the loader only; accepted here so the file is valid.
    #[arg(long, value_name = "PATH")]
    pub python_dll: Option<String>,
    /// For the ISAPI loader: this library's own file (the `_core` module in the venv), which
    /// it loads after python-dll. Read by the loader only.
    #[arg(long, value_name = "PATH")]
    pub core: Option<String>,
}

/// Everything the extension needs, paths resolved against the configuration file's folder
/// (IIS's working directory is not the application's).
#[derive(Debug)]
pub struct IsapiConfig {
    pub file: PathBuf,
    pub args: IsapiArgs,
    /// Decoded mount point without a trailing `/`, when configured.
    pub mount: Option<Vec<u8>>,
}

/// The configuration file the ISAPI loader read and named (`WsgiGatewayIsapiConfigure`).
/// Not an environment variable: several applications may share one IIS worker process.
static CONFIGURED: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Records the file the loader read; this library then reads the same one.
pub fn set_configured(file: PathBuf) {
    *CONFIGURED.lock() = Some(file);
}

/// The file the library reads: the one the loader named, else `WSGI_GATEWAY_CONFIG`, else
/// `wsgi-gateway.toml` in `lib_dir`. Loaded by the loader, this library sits in the venv's
/// site-packages, far from the application's configuration.
pub fn config_file(lib_dir: Option<&Path>) -> Result<PathBuf, ConfigError> {
    choose_file(
        CONFIGURED.lock().clone(),
        std::env::var_os("WSGI_GATEWAY_CONFIG").map(PathBuf::from),
        lib_dir,
    )
}

fn choose_file(
    configured: Option<PathBuf>,
    env: Option<PathBuf>,
    lib_dir: Option<&Path>,
) -> Result<PathBuf, ConfigError> {
    if let Some(f) = configured.or(env) {
        return Ok(f);
    }
    let dir = lib_dir.ok_or_else(|| {
        ConfigError("cannot tell where the library is; set WSGI_GATEWAY_CONFIG".into())
    })?;
    Ok(dir.join("wsgi-gateway.toml"))
}

pub fn load(file: &Path) -> Result<IsapiConfig, ConfigError> {
    if !file.is_file() {
        return Err(ConfigError(format!(
            "no configuration: {} does not exist (put wsgi-gateway.toml beside the library, or name the file in WSGI_GATEWAY_CONFIG)",
            file.display()
        )));
    }
    let (cli, matches) = parse_file::<IsapiCli>(file, "the ISAPI extension")?;
    let mut args = cli.args;
    let base = file.parent().unwrap_or(Path::new("."));
    let app = &mut args.app;
    if app.app.is_none() && app.paste.is_none() {
        return Err(ConfigError(format!(
            "{}: no app to run: set `app = \"module:callable\"` or `paste = \"app.ini\"`",
            file.display()
        )));
    }
    app.chdir = app.chdir.take().map(|p| base.join(p));
    app.venv = app.venv.take().map(|p| base.join(p));
    app.pythonpath = app.pythonpath.iter().map(|p| base.join(p)).collect();
    app.paste = app.paste.take().map(|p| {
        let (ini, name) = match p.split_once('#') {
            Some((ini, name)) => (ini.to_string(), Some(name.to_string())),
            None => (p, None),
        };
        let ini = base.join(ini).display().to_string();
        match name {
            Some(n) => format!("{ini}#{n}"),
            None => ini,
        }
    });
    // stderr goes nowhere under IIS: the default log sits beside the configuration.
    let default_log = matches.value_source("error_log") == Some(ValueSource::DefaultValue);
    app.error_log = if default_log {
        base.join("wsgi-gateway.log").display().to_string()
    } else if app.error_log == "-" {
        app.error_log.clone()
    } else {
        base.join(&app.error_log).display().to_string()
    };
    let mount = match &args.script_name {
        None => None,
        Some(s) => {
            let s = s.trim_end_matches('/');
            if !s.is_empty() && !s.starts_with('/') {
                return Err(ConfigError(format!(
                    "{}: script-name {s:?}: must start with '/'",
                    file.display()
                )));
            }
            Some(s.as_bytes().to_vec())
        }
    };
    Ok(IsapiConfig {
        file: file.to_path_buf(),
        args,
        mount,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loaders_file_comes_first() {
        let loader = PathBuf::from("/srv/app/wsgi-gateway.toml");
        let env = PathBuf::from("/elsewhere/gw.toml");
        let lib = Path::new("/venv/site-packages/wsgi_gateway");
        let pick = |c: Option<&PathBuf>, e: Option<&PathBuf>, l| {
            choose_file(c.cloned(), e.cloned(), l).map_err(|e| e.0)
        };
        assert_eq!(pick(Some(&loader), Some(&env), Some(lib)), Ok(loader));
        assert_eq!(pick(None, Some(&env), Some(lib)), Ok(env));
        assert_eq!(
            pick(None, None, Some(lib)),
            Ok(lib.join("wsgi-gateway.toml"))
        );
        assert!(pick(None, None, None)
            .unwrap_err()
            .contains("WSGI_GATEWAY_CONFIG"));
    }
}
