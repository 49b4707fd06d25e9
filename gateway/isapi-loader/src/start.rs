//! GetExtensionVersion's work before the core runs: read the configuration beside this DLL,
//! load Python and the core by the absolute paths it records, find the core's ISAPI entry
//! points and tell the core which configuration file to read.

use std::ffi::c_void;
use std::path::{Path, PathBuf};

use super::settings;
use super::win::{self, Export};

const CONFIG_NAME: &str = "wsgi-gateway.toml";
/// The core's default error log, beside the configuration (gateway/src/isapi/config.rs).
const LOG_NAME: &str = "wsgi-gateway.log";

pub type VersionFn = unsafe extern "system" fn(*mut c_void) -> i32;
pub type RequestFn = unsafe extern "system" fn(*mut c_void) -> u32;
pub type TerminateFn = unsafe extern "system" fn(u32) -> i32;
type ConfigureFn = unsafe extern "system" fn(*const u16) -> i32;

/// The core's ISAPI entry points.
pub struct Core {
    pub version: VersionFn,
    pub request: RequestFn,
    pub terminate: TerminateFn,
}

/// Why the loader could not hand over to the core, and the log that should say so.
pub struct Failure {
    pub msg: String,
    pub log: Option<PathBuf>,
}

pub fn start() -> Result<Core, Failure> {
    let own = win::own_path().map_err(|msg| Failure { msg, log: None })?;
    let dir = own.parent().unwrap_or(Path::new("")).to_path_buf();
    let config = dir.join(CONFIG_NAME);
    let mut log = Some(dir.join(LOG_NAME));
    let fail = |log: &Option<PathBuf>, msg: String| Failure {
        msg: format!("{}: {msg}", config.display()),
        log: log.clone(),
    };
    let text = std::fs::read_to_string(&config).map_err(|e| {
        fail(
            &log,
            format!("cannot read it ({e}); run `wsgi-gateway install-iis` to write it"),
        )
    })?;
    let s = settings::read(&text).map_err(|why| fail(&log, why))?;
    log = match s.error_log.as_deref() {
        Some("-") => None,
        // Relative to the configuration's folder, as the core reads it.
        Some(file) => Some(dir.join(file)),
        None => log,
    };
    let python_dll = absolute(
        s.python_dll.as_deref(),
        "python-dll",
        "the python3X.dll of the Python the venv was made from",
    )
    .map_err(|why| fail(&log, why))?;
    let core_file = absolute(
        s.core.as_deref(),
        "core",
        "the wsgi_gateway _core .pyd in the venv's site-packages",
    )
    .map_err(|why| fail(&log, why))?;

    win::load(&python_dll).map_err(|code| {
        fail(
            &log,
            format!(
                "python-dll {}: {}",
                python_dll.display(),
                win::load_error_text(code)
            ),
        )
    })?;
    let core = win::load(&core_file).map_err(|code| {
        let hint = if code == 126 {
            " (its python3X.dll must be python-dll's: the same Python version)"
        } else {
            ""
        };
        fail(
            &log,
            format!(
                "core {}: {}{hint}",
                core_file.display(),
                win::load_error_text(code)
            ),
        )
    })?;
    let entry = |name: &'static [u8]| {
        win::export(core, name).ok_or_else(|| {
            let name = String::from_utf8_lossy(&name[..name.len() - 1]);
            fail(
                &log,
                format!(
                    "core {}: no {name} in it: not a wsgi-gateway core of this version",
                    core_file.display()
                ),
            )
        })
    };
    let version = entry(b"GetExtensionVersion\0")?;
    let request = entry(b"HttpExtensionProc\0")?;
    let terminate = entry(b"TerminateExtension\0")?;
    let configure = entry(b"WsgiGatewayIsapiConfigure\0")?;
    // SAFETY: the core exports these names with exactly these signatures
    // (gateway/src/isapi/mod.rs); both sides use the "system" calling convention.
    let (configure, core) = unsafe {
        (
            std::mem::transmute::<Export, ConfigureFn>(configure),
            Core {
                version: std::mem::transmute::<Export, VersionFn>(version),
                request: std::mem::transmute::<Export, RequestFn>(request),
                terminate: std::mem::transmute::<Export, TerminateFn>(terminate),
            },
        )
    };
    // Not an environment variable: several applications may share one worker process.
    let path = win::wide(config.as_os_str());
    // SAFETY: `path` is NUL-terminated and outlives the call; the core copies it.
    if unsafe { configure(path.as_ptr()) } == 0 {
        return Err(fail(
            &log,
            "the core refused this configuration path".into(),
        ));
    }
    Ok(core)
}

/// A required path key: present and absolute (LOAD_WITH_ALTERED_SEARCH_PATH is defined for
/// absolute paths only, and IIS's working directory is not the application's).
fn absolute(value: Option<&str>, key: &str, what: &str) -> Result<PathBuf, String> {
    let value = value.ok_or_else(|| {
        format!("no {key} key ({what}); run `wsgi-gateway install-iis` again from the venv")
    })?;
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        return Err(format!("{key} {value:?}: not an absolute path"));
    }
    Ok(path)
}
