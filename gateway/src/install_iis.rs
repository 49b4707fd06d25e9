//! `wsgi-gateway install-iis`, the successor of Kallithea's `paster install-iis`: writes into
//! the application's directory what IIS needs to run the app through the ISAPI library —
//! web.config, wsgi-gateway.toml, the DLL, and appcmd scripts that register it. It only writes
//! files: Python is not started and IIS is not touched until the operator runs the script.

mod inputs;
mod pe;
mod scripts;
mod settings;
mod web_config;

use std::path::{Path, PathBuf};

use crate::config::{Bitness, ConfigError, InstallIisArgs};
use settings::Settings;

const DLL_NAME: &str = "wsgi_gateway.dll";
const LOG_NAME: &str = "wsgi-gateway.log";
const CONFIG_NAME: &str = "wsgi-gateway.toml";
const INSTALL_NAME: &str = "install-iis.cmd";
const UNINSTALL_NAME: &str = "uninstall-iis.cmd";

/// The checked inputs, as the files will state them.
pub(crate) struct Plan {
    out_dir: PathBuf,
    /// The application's physical directory, absolute.
    out: String,
    /// Where the DLL is installed (in `out`): the handler's scriptProcessor.
    dll: String,
    log: String,
    site: String,
    /// `/` or `/a/b`.
    vdir: String,
    pool: String,
    bitness: Bitness,
    windows_auth: bool,
    settings: Settings,
    /// The DLL given, and its bytes (already checked to be a DLL of the right bitness).
    library: PathBuf,
    image: Vec<u8>,
}

impl Plan {
    fn is_ascii(&self) -> bool {
        [&self.out, &self.site, &self.vdir, &self.pool]
            .iter()
            .all(|s| s.is_ascii())
    }
}

pub fn run(args: &InstallIisArgs, _shape: &crate::python::host::Shape) -> Result<(), ConfigError> {
    let cwd = std::env::current_dir()
        .map_err(|e| ConfigError(format!("cannot read the current directory: {e}")))?;
    let plan = inputs::plan(args, &cwd)?;
    std::fs::create_dir_all(&plan.out_dir)
        .map_err(|e| ConfigError(format!("--out {}: {e}", plan.out)))?;

    let dll_path = plan.out_dir.join(DLL_NAME);
    // Installing the DLL that is already in place must not truncate it by copying onto itself.
    let copy_dll = !same_file(&plan.library, &dll_path);
    let mut files = vec![
        (
            plan.out_dir.join("web.config"),
            web_config::render(&plan.dll, plan.bitness).into_bytes(),
        ),
        (
            plan.out_dir.join(CONFIG_NAME),
            settings::render(&plan.settings)?.into_bytes(),
        ),
        (
            plan.out_dir.join(INSTALL_NAME),
            scripts::install(&plan).into_bytes(),
        ),
        (
            plan.out_dir.join(UNINSTALL_NAME),
            scripts::uninstall(&plan).into_bytes(),
        ),
    ];
    if copy_dll {
        files.push((dll_path, plan.image.clone()));
    }

    if !args.force {
        let existing: Vec<String> = files
            .iter()
            .filter(|(path, _)| path.exists())
            .map(|(path, _)| path.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(ConfigError(format!(
                "{} already exist{} (--force overwrites)",
                existing.join(", "),
                if existing.len() == 1 { "s" } else { "" }
            )));
        }
    }
    for (path, bytes) in &files {
        std::fs::write(path, bytes).map_err(|e| {
            let hint = if path.ends_with(DLL_NAME) {
                " (if IIS has it loaded, stop the application pool first)"
            } else {
                ""
            };
            ConfigError(format!("cannot write {}: {e}{hint}", path.display()))
        })?;
    }
    // The log must exist for install-iis.cmd to grant the pool write access to it; an existing
    // log is kept as it is.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&plan.log)
        .map_err(|e| ConfigError(format!("cannot create {}: {e}", plan.log)))?;

    print!("{}", next_steps(&plan, copy_dll));
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn next_steps(plan: &Plan, copied: bool) -> String {
    let dir = &plan.out;
    let pool = &plan.pool;
    let sep = std::path::MAIN_SEPARATOR;
    let url = if plan.vdir == "/" { "/" } else { &plan.vdir };
    let bits = match plan.bitness {
        Bitness::Bits64 => "64",
        Bitness::Bits32 => "32",
    };
    let mut t = format!("wsgi-gateway install-iis: wrote into {dir}:\n");
    t +=
        "  web.config          handler mapping: every request to the application goes to the DLL\n";
    t += "  wsgi-gateway.toml   the app settings the DLL reads (recycle the pool after editing)\n";
    if copied {
        t += &format!("  {DLL_NAME}    copy of {}\n", plan.library.display());
    }
    t += "  install-iis.cmd     registers it with IIS (pool, application, ISAPI allow-list)\n";
    t += "  uninstall-iis.cmd   reverses install-iis.cmd\n";
    t += "\nNext steps:\n";
    t += &format!("  1. As administrator, run: \"{dir}{sep}{INSTALL_NAME}\"\n");
    t += &format!(
        "     (site \"{}\", application {url}, pool \"{pool}\", {bits}-bit)\n",
        plan.site
    );
    t += &format!(
        "  2. w3wp.exe must find the {bits}-bit Python the DLL was built against: put the folder\n     \
         holding python3X.dll on the system PATH, then run iisreset. The pool identity\n     \
         \"IIS AppPool\\{pool}\" needs read access to Python and to the app, e.g.\n       \
         icacls \"C:\\Python3X\" /grant \"IIS AppPool\\{pool}:(OI)(CI)RX\"\n"
    );
    for dir in plan.settings.chdir.iter().chain(&plan.settings.venv) {
        t += &format!("       icacls \"{dir}\" /grant \"IIS AppPool\\{pool}:(OI)(CI)RX\"\n");
    }
    t += &format!(
        "  3. Open http://localhost{url} . Start-up failures are one line in {log};\n     \
         app exceptions give a 500 and a traceback there.\n  \
         4. After changing Python code or the settings, recycle the pool:\n       \
         %windir%\\system32\\inetsrv\\appcmd recycle apppool \"{pool}\"  (or iisreset)\n",
        log = plan.log
    );
    if plan.windows_auth {
        t += "\nKallithea with Windows logins (Admin > Authentication):\n  \
              - enable kallithea.lib.auth_modules.auth_container;\n  \
              - header: REMOTE_USER; Clean username: on (drops DOMAIN\\);\n  \
              - fallback header: empty (its default, HTTP_X_FORWARDED_USER, would let a\n    \
              client name its user if a request ever got through anonymously);\n  \
              - keep anonymous access off in IIS (done by install-iis.cmd) and in Kallithea.\n";
    } else if plan.settings.paste.is_some() {
        t += "\nFor Windows logins (Kallithea's container auth), run again with --windows-auth --force.\n";
    }
    if plan.settings.venv.is_none() && std::env::var_os("VIRTUAL_ENV").is_some() {
        t += "\nNote: a virtualenv is active here but --venv was not given; IIS workers do not see\n\
              $VIRTUAL_ENV, so the app only finds packages of the base Python.\n";
    }
    t
}
