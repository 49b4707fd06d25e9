//! `--reload`: the source files the app imported, which the supervisor watches.
//!
//! Every module in `sys.modules` with a `__file__` on disk, as gunicorn's `--reload` and
//! Django's autoreloader watch, except the standard library's: it does not change while one
//! develops, and it is most of the modules (hundreds of directories to watch for nothing).
//! Site-packages stay in, also where they lie inside the standard library's directory (a
//! Python built with its own prefix): `pip install -U` in the venv restarts the app too.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

/// Paths as bytes (`os.fsencode`, so any file name comes through), symlinks resolved: an
/// edit lands in the directory the file really is in, which is the one to watch.
const LIST: &std::ffi::CStr = c"
import os, site, sys, sysconfig

def _roots(keys):
    paths = sysconfig.get_paths()
    return {os.path.realpath(paths[k]) for k in keys if paths.get(k)}

def _under(path, roots):
    return any(path == r or path.startswith(r + os.sep) for r in roots)

_stdlib = _roots(('stdlib', 'platstdlib'))
_keep = _roots(('purelib', 'platlib'))
try:
    _keep.update(os.path.realpath(p) for p in site.getsitepackages())
except AttributeError:
    pass
files = set()
for _module in list(sys.modules.values()):
    _file = getattr(_module, '__file__', None)
    if not isinstance(_file, str) or not _file:
        continue
    _file = os.path.realpath(_file)
    if _under(_file, _stdlib) and not _under(_file, _keep):
        continue
    if os.path.isfile(_file):
        files.add(os.fsencode(_file))
files = sorted(files)
";

/// The files of the modules imported so far; none if the interpreter never started (the app
/// could not be loaded).
pub fn imported() -> Result<Vec<PathBuf>, String> {
    // SAFETY: Py_IsInitialized may be called at any time.
    if unsafe { pyo3::ffi::Py_IsInitialized() } == 0 {
        return Ok(Vec::new());
    }
    Python::attach(|py| {
        let globals = PyDict::new(py);
        let listed = py.run(LIST, Some(&globals), None).and_then(|()| {
            let Some(files) = globals.get_item("files")? else {
                return Ok(Vec::new());
            };
            files.extract::<Vec<Bound<'_, PyBytes>>>().map(|files| {
                files
                    .iter()
                    .map(|f| PathBuf::from(OsString::from_vec(f.as_bytes().to_vec())))
                    .collect()
            })
        });
        listed.map_err(|e| super::format_exception(py, &e))
    })
}
