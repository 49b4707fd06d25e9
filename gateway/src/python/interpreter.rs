//! Starting CPython, making the app's code importable (chdir, pythonpath, venv) and loading
//! the WSGI callable (`module:callable`, a PasteDeploy ini, or the built-in welcome app).

use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::{PyList, PyModule};

/// What to load, and from where.
#[derive(Clone, Debug, Default)]
pub struct AppSpec {
    /// `module[:callable]`; `None` with no `paste` means the built-in welcome app.
    pub app: Option<String>,
    /// `INI[#NAME]` for PasteDeploy.
    pub paste: Option<String>,
    pub chdir: Option<PathBuf>,
    pub pythonpath: Vec<PathBuf>,
    pub venv: Option<PathBuf>,
}

/// A start-up failure, worded for the operator (printed after `wsgi-gateway: error: `). A
/// message, not an enum: Python not starting, an import failing, a bad APP all end start-up
/// the same way (a traceback worth keeping is logged where it is caught).
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

const WELCOME: &str = include_str!("../../python/welcome.py");

/// The Python the binary was built against (its libpython is linked by rpath).
const BUILD_PYTHON: Option<&str> = option_env!("WSGI_GATEWAY_PYTHON");
const BUILD_VERSION: &str = env!("WSGI_GATEWAY_PYTHON_VERSION");

/// Starts the interpreter (once per process) as the program `python` would be: the build's
/// interpreter, or with `venv` that venv's `python`, so `sys.executable`, `sys.prefix` and
/// `site` (the venv's packages and `.pth` files, and the base's only when the venv includes
/// them) are what that program has. Signals stay with the gateway, not Python.
pub fn start(venv: Option<&Path>) -> Result<(), LoadError> {
    // Already running: the extension-module shape (its `python` chose the venv), or a second
    // call.
    // SAFETY: Py_IsInitialized may be called at any time.
    if unsafe { pyo3::ffi::Py_IsInitialized() } != 0 {
        return Ok(());
    }
    let program = match venv {
        Some(v) => Some(venv_python(v)?),
        None => BUILD_PYTHON.map(PathBuf::from),
    };
    // Without a known program (a cross-built Windows library) Python finds its home from its
    // own DLL's folder. Either way errors come back as a status: Py_Initialize would abort the
    // host process (IIS's worker) instead.
    let name = program
        .as_ref()
        .map(|p| {
            std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
                .map_err(|_| LoadError(format!("{}: NUL in path", p.display())))
        })
        .transpose()?;
    let shown = program.as_ref().map_or_else(
        || "the embedded Python".to_string(),
        |p| p.display().to_string(),
    );
    let failed = |what: &str| LoadError(format!("starting Python as {shown}: {what}"));
    let mut config = std::mem::MaybeUninit::<pyo3::ffi::PyConfig>::uninit();
    let mut pre = std::mem::MaybeUninit::<pyo3::ffi::PyPreConfig>::uninit();
    // SAFETY: PyPreConfig_InitPythonConfig fills the struct before it is read. Coercing a C
    // locale would write LC_CTYPE into the environment the host gave us; UTF-8 mode (still on
    // under a C locale) gives the same UTF-8 file names without touching it.
    unsafe {
        pyo3::ffi::PyPreConfig_InitPythonConfig(pre.as_mut_ptr());
        let pre = pre.assume_init_mut();
        pre.coerce_c_locale = 0;
        pre.coerce_c_locale_warn = 0;
        if pyo3::ffi::PyStatus_Exception(pyo3::ffi::Py_PreInitialize(pre)) != 0 {
            return Err(failed("pre-initialization failed"));
        }
    }
    // SAFETY: PyConfig_InitPythonConfig fills the whole struct before it is read; the string
    // is copied by PyConfig_SetBytesString; the config is cleared exactly once, after use.
    unsafe {
        pyo3::ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let config = config.assume_init_mut();
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        if let Some(name) = &name {
            let program_name = std::ptr::addr_of_mut!(config.program_name);
            let status = pyo3::ffi::PyConfig_SetBytesString(config, program_name, name.as_ptr());
            if pyo3::ffi::PyStatus_Exception(status) != 0 {
                pyo3::ffi::PyConfig_Clear(config);
                return Err(failed("cannot set the program name"));
            }
        }
        let status = pyo3::ffi::Py_InitializeFromConfig(config);
        pyo3::ffi::PyConfig_Clear(config);
        if pyo3::ffi::PyStatus_Exception(status) != 0 {
            return Err(failed("initialization failed"));
        }
        // The initializing thread holds the GIL; hand it back (as pyo3's own start does) so
        // every thread takes it through `Python::attach` when it needs it.
        pyo3::ffi::PyEval_SaveThread();
    }
    Ok(())
}

/// A venv's `python`, after checking the venv was made with the Python we embed.
fn venv_python(venv: &Path) -> Result<PathBuf, LoadError> {
    let cfg = venv.join("pyvenv.cfg");
    let text = std::fs::read_to_string(&cfg).map_err(|e| {
        LoadError(format!(
            "--venv {}: not a virtualenv ({}: {e})",
            venv.display(),
            cfg.display()
        ))
    })?;
    let made_with = text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        let k = k.trim();
        (k == "version" || k == "version_info").then(|| v.trim().to_string())
    });
    if let Some(made) = made_with {
        if made != BUILD_VERSION && !made.starts_with(&format!("{BUILD_VERSION}.")) {
            return Err(LoadError(format!(
                "--venv {}: made with Python {made}, but wsgi-gateway runs Python {BUILD_VERSION}",
                venv.display()
            )));
        }
    }
    // Windows venvs have `Lib\site-packages` and `Scripts\python.exe`.
    let (site, bin, exe) = if cfg!(windows) {
        (venv.join("Lib").join("site-packages"), "Scripts", ".exe")
    } else {
        // A free-threaded venv of the same version keeps its packages in `pythonX.Yt`: their
        // extension modules are built for another ABI, so say why rather than "missing".
        if venv
            .join("lib")
            .join(format!("python{BUILD_VERSION}t"))
            .is_dir()
        {
            return Err(LoadError(format!(
                "--venv {}: made with free-threaded Python {BUILD_VERSION}t, which wsgi-gateway \
                 does not support; make the venv with the GIL build of Python {BUILD_VERSION}",
                venv.display()
            )));
        }
        let lib = venv.join("lib").join(format!("python{BUILD_VERSION}"));
        (lib.join("site-packages"), "bin", "")
    };
    if !site.is_dir() {
        return Err(LoadError(format!(
            "--venv {}: {} does not exist",
            venv.display(),
            site.display()
        )));
    }
    ["python", "python3", &format!("python{BUILD_VERSION}")]
        .iter()
        .map(|name| venv.join(bin).join(format!("{name}{exe}")))
        .find(|p| p.exists())
        .ok_or_else(|| {
            LoadError(format!(
                "--venv {}: no {bin}/python{exe} in it",
                venv.display()
            ))
        })
}

/// Starts Python and loads everything a front end calls: the app, and its environ builder.
/// `std_streams_to_log`: `sys.stdout`/`sys.stderr` go to the error log (no console).
/// `switch_interval`: `sys.setswitchinterval` for a front end with worker threads (the app
/// may still set its own).
pub fn load_wsgi_app(
    spec: &AppSpec,
    policy: crate::trust::TrustPolicy,
    kind: super::environ::FrontEndKind,
    debug: bool,
    std_streams_to_log: bool,
    switch_interval: Option<std::time::Duration>,
) -> Result<super::call::WsgiApp, LoadError> {
    start(spec.venv.as_deref())?;
    Python::attach(|py| {
        let py_err = |e: PyErr| LoadError(super::format_exception(py, &e));
        if let Some(interval) = switch_interval {
            // The worker holding the poller role keeps the GIL while requests are ready, so a
            // thread whose blocking call returned waits for it until this interval forces a
            // switch: 1 ms (the default) lets slow calls return near their full rate
            // (bench/results/2026-12-06-readme-history.md).
            py.import("sys")
                .and_then(|sys| sys.call_method1("setswitchinterval", (interval.as_secs_f64(),)))
                .map_err(|e| {
                    LoadError(format!(
                        "--switch-interval: {}",
                        super::format_exception(py, &e)
                    ))
                })?;
        }
        let errors = Bound::new(py, super::errors::WsgiErrors::new())
            .map_err(py_err)?
            .into_any();
        if std_streams_to_log {
            // A host with no console (IIS): print() and logging's default stderr handlers,
            // bound while the app is imported, must reach the error log too.
            streams_to_log(py, &errors).map_err(py_err)?;
        }
        let app = load_app(py, spec)?;
        let wrapper = py.get_type::<super::file_wrapper::FileWrapper>().into_any();
        let environ = super::environ::EnvironBuilder::new(py, kind, policy, errors, wrapper)
            .map_err(py_err)?;
        Ok(super::call::WsgiApp {
            app,
            environ,
            debug,
            #[cfg(unix)]
            watch: None,
            capture: Default::default(),
        })
    })
}

/// Real text streams (with `.buffer`, `.fileno()` failing as for any pipe-less stream) whose
/// lines go to `errors`, installed as `sys.stdout` and `sys.stderr`.
fn streams_to_log(py: Python<'_>, errors: &Bound<'_, PyAny>) -> PyResult<()> {
    let globals = pyo3::types::PyDict::new(py);
    globals.set_item("errors", errors)?;
    py.run(
        c"
import io, sys

class _ToLog(io.RawIOBase):
    def writable(self):
        return True

    def write(self, data):
        errors.write(bytes(data).decode('utf-8', 'backslashreplace'))
        return len(data)

def _stream():
    raw = io.BufferedWriter(_ToLog())
    return io.TextIOWrapper(raw, encoding='utf-8', errors='backslashreplace', line_buffering=True)

sys.stdout = _stream()
sys.stderr = _stream()
",
        Some(&globals),
        None,
    )
}

/// Prepares `sys.path` and imports the app. Returns the WSGI callable.
pub fn load_app(py: Python<'_>, spec: &AppSpec) -> Result<Py<PyAny>, LoadError> {
    if let Some(dir) = &spec.chdir {
        std::env::set_current_dir(dir)
            .map_err(|e| LoadError(format!("--chdir {}: {e}", dir.display())))?;
    }
    let cwd = std::env::current_dir()
        .map_err(|e| LoadError(format!("cannot read the current directory: {e}")))?;
    prepare_sys_path(py, &cwd, spec).map_err(|e| LoadError(describe(py, &e)))?;

    let app = match (&spec.paste, &spec.app) {
        (Some(_), Some(app)) => {
            return Err(LoadError(format!(
                "give either an APP ({app}) or --paste, not both"
            )))
        }
        (Some(ini), None) => load_paste(py, ini, &cwd)?,
        (None, Some(target)) => load_target(py, target)?,
        (None, None) => load_welcome(py)?,
    };
    if !app.bind(py).is_callable() {
        let ty = super::type_name(app.bind(py));
        let name = spec
            .app
            .as_deref()
            .or(spec.paste.as_deref())
            .unwrap_or("welcome");
        return Err(LoadError(format!("{name} is not callable (it is a {ty})")));
    }
    Ok(app)
}

fn describe(py: Python<'_>, err: &PyErr) -> String {
    let value = err.value(py).to_string();
    let ty = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    format!("{ty}: {value}")
}

fn prepare_sys_path(py: Python<'_>, cwd: &Path, spec: &AppSpec) -> PyResult<()> {
    let sys = py.import("sys")?;
    let path = sys.getattr("path")?.cast_into::<PyList>()?;
    let mut front: Vec<String> = vec![cwd.to_string_lossy().into_owned()];
    for dir in &spec.pythonpath {
        let abs = if dir.is_absolute() {
            dir.clone()
        } else {
            cwd.join(dir)
        };
        front.push(abs.to_string_lossy().into_owned());
    }
    for (i, dir) in front.iter().enumerate() {
        path.insert(i, dir)?;
    }
    Ok(())
}

fn load_target(py: Python<'_>, target: &str) -> Result<Py<PyAny>, LoadError> {
    let (module, attr) = match target.split_once(':') {
        Some((m, a)) => (m, a),
        None => (target, "application"),
    };
    if module.is_empty() || attr.is_empty() {
        return Err(LoadError(format!(
            "APP {target:?}: expected module[:callable], e.g. myproject.wsgi:application"
        )));
    }
    let m = py.import(module).map_err(|e| {
        let missing = e.is_instance_of::<pyo3::exceptions::PyModuleNotFoundError>(py)
            && e.value(py)
                .getattr("name")
                .ok()
                .and_then(|n| n.extract::<String>().ok())
                .as_deref()
                == Some(module);
        if missing {
            LoadError(format!(
                "cannot import module {module:?}: no module named {module:?} (looked in sys.path)"
            ))
        } else {
            tracing::error!(
                "importing {module} failed:\n{}",
                super::format_exception(py, &e)
            );
            LoadError(format!(
                "importing module {module:?} failed: {}",
                describe(py, &e)
            ))
        }
    })?;
    let mut obj: Bound<'_, PyAny> = m.into_any();
    for part in attr.split('.') {
        obj = obj.getattr(part).map_err(|_| {
            LoadError(format!(
                "module {module:?} has no attribute {attr:?} (APP {target:?})"
            ))
        })?;
    }
    // Whether it is callable is checked once, in `load_app`, for every way of loading.
    Ok(obj.unbind())
}

fn load_paste(py: Python<'_>, spec: &str, cwd: &Path) -> Result<Py<PyAny>, LoadError> {
    let (ini, name) = match spec.split_once('#') {
        Some((i, n)) => (i, Some(n)),
        None => (spec, None),
    };
    let path = cwd.join(ini);
    if !path.is_file() {
        return Err(LoadError(format!(
            "--paste {}: no such file",
            path.display()
        )));
    }
    let path_str = path.to_string_lossy().into_owned();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| LoadError(format!("--paste {path_str}: {e}")))?;
    let fail = |e: PyErr| {
        tracing::error!(
            "loading {path_str} failed:\n{}",
            super::format_exception(py, &e)
        );
        LoadError(format!("--paste {path_str}: {}", describe(py, &e)))
    };
    let deploy = py.import("paste.deploy").map_err(|_| {
        LoadError(format!(
            "--paste {path_str}: PasteDeploy is not installed (pip install PasteDeploy in the app's venv)"
        ))
    })?;
    // Kallithea-style ini files carry their own logging configuration; apply it as gunicorn does.
    if text.lines().any(|l| l.trim() == "[loggers]") {
        let here = path
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let defaults = pyo3::types::PyDict::new(py);
        defaults.set_item("__file__", &path_str).map_err(fail)?;
        defaults.set_item("here", here).map_err(fail)?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs
            .set_item("disable_existing_loggers", false)
            .map_err(fail)?;
        py.import("logging.config")
            .and_then(|lc| lc.call_method("fileConfig", (&path_str, defaults), Some(&kwargs)))
            .map_err(fail)?;
    }
    let uri = format!("config:{path_str}");
    let kwargs = pyo3::types::PyDict::new(py);
    if let Some(n) = name {
        kwargs.set_item("name", n).map_err(fail)?;
    }
    let app = deploy
        .call_method("loadapp", (uri,), Some(&kwargs))
        .map_err(fail)?;
    Ok(app.unbind())
}

fn load_welcome(py: Python<'_>) -> Result<Py<PyAny>, LoadError> {
    let code =
        std::ffi::CString::new(WELCOME).map_err(|e| LoadError(format!("welcome app: {e}")))?;
    let module = PyModule::from_code(
        py,
        &code,
        c"wsgi_gateway_welcome.py",
        c"wsgi_gateway_welcome",
    )
    .map_err(|e| LoadError(format!("welcome app: {}", describe(py, &e))))?;
    let app = module
        .getattr("application")
        .map_err(|e| LoadError(format!("welcome app: {}", describe(py, &e))))?;
    Ok(app.unbind())
}
