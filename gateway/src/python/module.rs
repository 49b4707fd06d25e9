//! `wsgi_gateway._core`: the extension-module shape. The package's console script and
//! `python -m wsgi_gateway` call `main(sys.argv)`, which runs the same command line as the
//! binary inside the interpreter that imported it.

use std::ffi::OsString;

use pyo3::prelude::*;

use super::host::{HostPython, Shape};

/// Runs a `wsgi-gateway` command line and returns its exit status. Call it from the main
/// thread; `serve` returns only on a start-up failure (a server exits the process itself).
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<OsString>) -> PyResult<u8> {
    let core_file: OsString = py
        .import("wsgi_gateway._core")?
        .getattr("__file__")?
        .extract()?;
    let host = HostPython::read(py, core_file)?;
    // The binary starts Python without its signal handlers; so does this shape: SIGINT is the
    // server's (graceful stop), not a KeyboardInterrupt raised in whatever Python code the
    // main thread runs next. Only the main thread may change it (else it stays as it is).
    if let Ok(signal) = py.import("signal") {
        let _ = signal.call_method1(
            "signal",
            (signal.getattr("SIGINT")?, signal.getattr("SIG_DFL")?),
        );
    }
    let shape = Shape::Extension(host);
    // Every thread takes the GIL when it runs Python; this one runs none until it returns.
    Ok(py.detach(|| crate::cli::main(argv, &shape)))
}

#[pymodule(gil_used = true)]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
