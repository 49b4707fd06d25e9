//! All contact with CPython: the interpreter and app loading, environ, `wsgi.input`,
//! `wsgi.errors`, `start_response`, `wsgi.file_wrapper`, and the call itself.

pub(crate) mod call;
pub(crate) mod environ;
pub(crate) mod errors;
pub(crate) mod file_wrapper;
pub(crate) mod host;
pub(crate) mod input;
pub(crate) mod interpreter;
mod module;
#[cfg(unix)]
pub(crate) mod source_files;
mod start_response;

use pyo3::prelude::*;
use pyo3::types::PyString;

/// Runs a blocking wait with the GIL released, so other workers can run Python meanwhile.
/// Works whether or not this thread currently holds the GIL.
pub fn without_gil<T, F>(f: F) -> T
where
    F: Send + FnOnce() -> T,
    T: Send,
{
    Python::attach(|py| py.detach(f))
}

/// Bytes-as-latin-1 `str`, the type PEP 3333 wants for every CGI-style environ value.
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let len = isize::try_from(bytes.len())
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("value too long"))?;
    if bytes.is_ascii() {
        // The common case, as CPython builds ASCII text itself: one allocation and one copy,
        // no decoding.
        // SAFETY: PyUnicode_New(len, 127) returns a new compact ASCII string with room for
        // exactly `len` bytes (or NULL with an exception set); it is filled from `bytes`
        // before anything else can see it.
        unsafe {
            let s = pyo3::ffi::PyUnicode_New(len, 127);
            if s.is_null() {
                return Err(PyErr::fetch(py));
            }
            let data = pyo3::ffi::PyUnicode_DATA(s).cast::<u8>();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len());
            return Ok(Bound::from_owned_ptr(py, s).cast_into_unchecked());
        }
    }
    // SAFETY: the pointer and length describe `bytes`, which outlives the call; CPython copies
    // the data and returns a new reference or NULL with an exception set.
    unsafe {
        let ptr = pyo3::ffi::PyUnicode_DecodeLatin1(bytes.as_ptr().cast(), len, std::ptr::null());
        Bound::from_owned_ptr_or_err(py, ptr).map(|s| s.cast_into_unchecked())
    }
}

/// The name of an object's type, for error messages (`str`, `generator`, …).
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// Formats a Python exception with its full traceback, the way the error log wants it.
pub fn format_exception(py: Python<'_>, err: &PyErr) -> String {
    let formatted = (|| -> PyResult<String> {
        let tb = py.import("traceback")?;
        let lines = tb.call_method1(
            "format_exception",
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?;
        let joined: String = PyString::new(py, "")
            .call_method1("join", (lines,))?
            .extract()?;
        Ok(joined)
    })();
    match formatted {
        Ok(text) => text.trim_end().to_string(),
        Err(_) => err.to_string(),
    }
}
