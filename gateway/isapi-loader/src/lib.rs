//! `wsgi_gateway_isapi.dll`: the ISAPI extension IIS loads (the handler's `scriptProcessor`)
//! for a wsgi-gateway installed with pip. It imports nothing from Python, so IIS can load it
//! whatever w3wp.exe's DLL search path holds. In `GetExtensionVersion` it reads
//! `wsgi-gateway.toml` beside itself, loads the recorded `python3X.dll` by absolute path, then
//! the wsgi-gateway core (the `_core` extension module of the venv, which is also an ISAPI
//! extension) the same way, so the core's import of `python3X.dll` is satisfied by the module
//! already loaded. It tells the core which configuration to read and forwards the three ISAPI
//! calls to it.
//!
//! Why not load the core directly: Windows resolves a DLL's imports by module name through the
//! process's search path (w3wp.exe's folder, System32, …, PATH), not the folder of the Python
//! the venv was made from. Delay-loading cannot help (the core imports Python's data symbols),
//! and changing the search path of the whole worker process (`SetDefaultDllDirectories`) would
//! change how IIS itself loads DLLs.
//!
//! Everything but the TOML reading is Windows-only; on other systems this crate builds to an
//! empty library, so the workspace builds, tests and lints everywhere.

#[cfg(any(windows, test))]
mod settings;

#[cfg(windows)]
mod entry;
#[cfg(windows)]
mod report;
#[cfg(windows)]
mod start;
#[cfg(windows)]
mod win;
