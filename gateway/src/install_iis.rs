//! `wsgi-gateway install-iis`, the successor of Kallithea's `paster install-iis`: writes into
//! the application's directory what IIS needs to run the app through the ISAPI extension —
//! web.config, wsgi-gateway.toml, the loader DLL, and appcmd scripts that register it. It
//! only writes files: Python is not started and IIS is not touched until the operator runs
//! the script. Every path the files state is a Windows path (`winpath`), taken from the
//! running interpreter on the IIS machine or, with --for-windows, from the options
//! (`target`).

mod inputs;
mod pe;
mod scripts;
mod settings;
mod target;
mod web_config;
mod winpath;

use std::path::{Path, PathBuf};

use crate::config::{Bitness, ConfigError, InstallIisArgs};
use settings::Settings;
use winpath::WinPath;

/// The ISAPI loader (gateway/isapi-loader), IIS's scriptProcessor: in the wheel under
/// wsgi_gateway\isapi\, installed into the application's directory.
const LOADER_NAME: &str = "wsgi_gateway_isapi.dll";
const LOG_NAME: &str = "wsgi-gateway.log";
const CONFIG_NAME: &str = "wsgi-gateway.toml";
const INSTALL_NAME: &str = "install-iis.cmd";
const UNINSTALL_NAME: &str = "uninstall-iis.cmd";

/// The checked inputs, as the files will state them.
pub(crate) struct Plan {
    /// Where the files are written on this machine: --out itself on the IIS machine, the
    /// --for-windows directory otherwise.
    write_dir: PathBuf,
    /// The application's physical directory on the IIS machine.
    out: WinPath,
    /// Where the loader is installed (in `out`): the handler's scriptProcessor.
    dll: WinPath,
    log: WinPath,
    site: String,
    /// `/` or `/a/b`.
    vdir: String,
    pool: String,
    bitness: Bitness,
    windows_auth: bool,
    settings: Settings,
    /// For the next steps: what the pool identity must be able to read.
    venv: Option<WinPath>,
    base_python: WinPath,
    paste_ini: Option<WinPath>,
    /// The loader given, and its bytes (already checked to be a DLL of the right bitness).
    library: PathBuf,
    image: Vec<u8>,
}

impl Plan {
    fn is_ascii(&self) -> bool {
        [self.out.as_str(), &self.site, &self.vdir, &self.pool]
            .iter()
            .all(|s| s.is_ascii())
    }
}

pub fn run(args: &InstallIisArgs, shape: &crate::python::host::Shape) -> Result<(), ConfigError> {
    let target = target::describe(args, shape)?;
    let plan = inputs::plan(args, &target)?;
    let dir = &plan.write_dir;
    std::fs::create_dir_all(dir).map_err(|e| ConfigError(format!("{}: {e}", dir.display())))?;

    let dll_path = dir.join(LOADER_NAME);
    // Installing the DLL that is already in place must not truncate it by copying onto itself.
    let copy_dll = !same_file(&plan.library, &dll_path);
    let mut files = vec![
        (
            dir.join("web.config"),
            web_config::render(plan.dll.as_str(), plan.bitness).into_bytes(),
        ),
        (
            dir.join(CONFIG_NAME),
            settings::render(&plan.settings)?.into_bytes(),
        ),
        (dir.join(INSTALL_NAME), scripts::install(&plan).into_bytes()),
        (
            dir.join(UNINSTALL_NAME),
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
            let hint = if path.ends_with(LOADER_NAME) {
                " (if IIS has it loaded, stop the application pool first)"
            } else {
                ""
            };
            ConfigError(format!("cannot write {}: {e}{hint}", path.display()))
        })?;
    }
    // The log must exist for install-iis.cmd to grant the pool write access to it; an existing
    // log is kept as it is.
    let log = dir.join(LOG_NAME);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| ConfigError(format!("cannot create {}: {e}", log.display())))?;

    print!(
        "{}",
        next_steps(&plan, copy_dll, target.write_dir.is_some())
    );
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn next_steps(plan: &Plan, copied: bool, elsewhere: bool) -> String {
    let dir = &plan.out;
    let pool = &plan.pool;
    let url = if plan.vdir == "/" { "/" } else { &plan.vdir };
    let bits = match plan.bitness {
        Bitness::Bits64 => "64",
        Bitness::Bits32 => "32",
    };
    let mut t = if elsewhere {
        format!(
            "wsgi-gateway install-iis: wrote into {} (for {dir} on the Windows machine):\n",
            plan.write_dir.display()
        )
    } else {
        format!("wsgi-gateway install-iis: wrote into {dir}:\n")
    };
    t += "  web.config               handler mapping: every request to the application goes to the DLL\n";
    t += "  wsgi-gateway.toml        the app settings, and the Python and core the DLL loads\n";
    if copied {
        t += &format!("  {LOADER_NAME}   copy of {}\n", plan.library.display());
    }
    t += "  install-iis.cmd          registers it with IIS (pool, application, ISAPI allow-list)\n";
    t += "  uninstall-iis.cmd        reverses install-iis.cmd\n";
    t += "\nNext steps:\n";
    if elsewhere {
        t += &format!("  0. Copy these files to {dir} on the Windows machine.\n");
    }
    t += &format!("  1. As administrator, run: \"{dir}\\{INSTALL_NAME}\"\n");
    t += &format!(
        "     (site \"{}\", application {url}, pool \"{pool}\", {bits}-bit)\n",
        plan.site
    );
    t += &format!(
        "  2. The DLL loads {}\n     \
         by its full path: Python need not be on the system PATH. The pool identity\n     \
         \"IIS AppPool\\{pool}\" needs read access to that Python and the app's files, e.g.\n",
        plan.settings.python_dll
    );
    // install-iis.cmd grants the application's directory; the ini may live elsewhere.
    let ini_dir = plan
        .paste_ini
        .as_ref()
        .and_then(WinPath::parent)
        .filter(|d| !d.starts_with(&plan.out));
    let readable = std::iter::once(plan.base_python.to_string())
        .chain(plan.venv.as_ref().map(WinPath::to_string))
        .chain(plan.settings.chdir.clone())
        .chain(ini_dir.as_ref().map(WinPath::to_string));
    for dir in readable {
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
    t
}
