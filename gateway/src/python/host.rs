//! The two shapes of one core: the embedder (the `wsgi-gateway` binary and the ISAPI library
//! start CPython themselves) and the extension module (`wsgi_gateway._core`, imported by the
//! user's own `python` from the venv pip installed it into). Only start-up differs: which
//! program a worker process is, whether `--venv` can still choose the interpreter, and what
//! `install-iis` knows about the Python it installs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use pyo3::prelude::*;

/// Which shape this process is.
#[derive(Clone, Debug)]
pub enum Shape {
    /// This program embeds CPython and starts it (the binary, the ISAPI library).
    Embedder,
    /// A `python` process imported the extension module and called it.
    Extension(HostPython),
}

/// The interpreter hosting the extension module, read from `sys` while it held the GIL. Kept
/// as the interpreter reports them (text, not the host's `Path` semantics): `install-iis`
/// reads them as Windows paths.
#[derive(Clone, Debug)]
pub struct HostPython {
    /// `sys.executable`: the venv's `python`, which `current_exe()` is not (it resolves to the
    /// base interpreter on Linux).
    pub executable: OsString,
    /// `sys.prefix` (the venv) and `sys.base_prefix` (the installation it was made from).
    pub prefix: OsString,
    pub base_prefix: OsString,
    /// `sys.version_info[:2]`.
    pub version: (u8, u8),
    /// The `wsgi_gateway` package's directory (beside `_core`, the ISAPI loader on Windows).
    pub package_dir: OsString,
    /// The `_core` extension module's file.
    pub core_file: OsString,
    /// The interpreter options the process was started with (`-X dev`, `-W …`), which a worker
    /// started from it keeps (`subprocess._args_from_interpreter_flags()`).
    pub interpreter_flags: Vec<OsString>,
}

impl HostPython {
    /// Reads the running interpreter's facts. `core_file` is the extension module's `__file__`.
    pub fn read(py: Python<'_>, core_file: OsString) -> PyResult<HostPython> {
        let sys = py.import("sys")?;
        let text = |name: &str| -> PyResult<OsString> {
            Ok(OsString::from(sys.getattr(name)?.extract::<String>()?))
        };
        let info = sys.getattr("version_info")?;
        let (major, minor): (u8, u8) = (info.get_item(0)?.extract()?, info.get_item(1)?.extract()?);
        // Private but stable: multiprocessing's spawn start method builds its command with it.
        let interpreter_flags = py
            .import("subprocess")
            .and_then(|s| s.call_method0("_args_from_interpreter_flags"))
            .and_then(|f| f.extract::<Vec<String>>())
            .map(|v| v.into_iter().map(OsString::from).collect())
            .unwrap_or_default();
        let package_dir = Path::new(&core_file)
            .parent()
            .map(|p| p.as_os_str().to_os_string())
            .unwrap_or_default();
        Ok(HostPython {
            executable: text("executable")?,
            prefix: text("prefix")?,
            base_prefix: text("base_prefix")?,
            version: (major, minor),
            package_dir,
            core_file,
            interpreter_flags,
        })
    }

    /// The command line that starts this program again as a fresh process of the same
    /// interpreter: `sys.executable [flags] -m wsgi_gateway`.
    pub fn program(&self) -> (PathBuf, Vec<OsString>) {
        let mut args = self.interpreter_flags.clone();
        args.extend(["-m", "wsgi_gateway"].map(OsString::from));
        (PathBuf::from(&self.executable), args)
    }

    /// `--venv` cannot choose the interpreter of a process that is already running: it is
    /// accepted only when it names this one's venv. `Err`: the message start-up fails with.
    pub fn check_venv(&self, venv: &Path) -> Result<(), String> {
        let same = match (venv.canonicalize(), Path::new(&self.prefix).canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return Ok(());
        }
        Err(format!(
            "--venv {}: this wsgi-gateway runs inside the Python of {} ({}); install it into \
             the app's venv with that venv's pip and run its wsgi-gateway, without --venv",
            venv.display(),
            Path::new(&self.prefix).display(),
            Path::new(&self.executable).display()
        ))
    }
}

impl Shape {
    /// How to start this program again (a worker process): the program and the arguments
    /// that come before this process's own command line. `Err`: the message start-up fails with.
    pub fn program(&self) -> Result<(PathBuf, Vec<OsString>), String> {
        match self {
            Shape::Embedder => std::env::current_exe()
                .map(|exe| (exe, Vec::new()))
                .map_err(|e| format!("cannot find this program: {e}")),
            Shape::Extension(host) => Ok(host.program()),
        }
    }

    /// Removes a variable this process was handed, so the app's child processes do not see
    /// it. Python keeps its own copy (`os.environ`, read at start-up), which `subprocess` uses.
    ///
    /// # Safety
    /// No other thread may exist in this process: changing the environment while another
    /// thread reads it (`getenv` in libc, CPython or a library) is undefined behaviour.
    pub unsafe fn forget_env(&self, name: &str) {
        match self {
            Shape::Embedder => std::env::remove_var(name),
            Shape::Extension(_) => {
                // `os.environ.pop` unsets the process variable too.
                let popped = Python::attach(|py| {
                    py.import("os")?
                        .getattr("environ")?
                        .call_method1("pop", (name, py.None()))
                        .map(drop)
                });
                if popped.is_err() {
                    std::env::remove_var(name);
                }
            }
        }
    }
}
