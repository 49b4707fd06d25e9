// Two builds of one crate (gateway/src/python/host.rs):
//
// - The embedder (`cargo build`: the binary, the ISAPI library, the tests) links libpython with
//   an rpath to the one it was built against, so it runs that CPython (and its pip packages)
//   rather than whichever libpython the loader finds first, and records that interpreter's own
//   executable and version: the embedded interpreter starts as that program (sys.executable,
//   the prefix search), or as a venv's python with --venv.
// - The extension module (maturin sets PYO3_BUILD_EXTENSION_MODULE): the user's `python`
//   hosts it, so nothing of the build machine may be baked in. pyo3 then links no libpython
//   and adds no rpath; this script records no interpreter path either (`strings` on the
//   wheel's `.so` finds none: tests/test_wheel.py).
//
// Free-threaded CPython (3.14t) is not supported: the module declares `gil_used = true` and the
// embedder's start-up was never audited without a GIL, so such a build stops here with one line
// rather than producing a module that would switch the GIL back on with a warning.
fn main() {
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-env-changed=PYO3_BUILD_EXTENSION_MODULE");
    let config = pyo3_build_config::get();
    if config.is_free_threaded() {
        println!(
            "cargo::error=wsgi-gateway does not support free-threaded Python ({}.{}t, {}): build with a \
             regular CPython (set PYO3_PYTHON, or maturin -i python3.X)",
            config.version().major,
            config.version().minor,
            config.executable().unwrap_or("from PYO3_CONFIG_FILE"),
        );
        return;
    }
    println!(
        "cargo:rustc-env=WSGI_GATEWAY_PYTHON_VERSION={}.{}",
        config.version().major,
        config.version().minor
    );
    if std::env::var_os("PYO3_BUILD_EXTENSION_MODULE").is_some() {
        return;
    }
    pyo3_build_config::add_libpython_rpath_link_args();
    // The base interpreter's real path, even when the build ran a venv's python or a shim.
    let base = config.executable().and_then(|exe| {
        let out = std::process::Command::new(exe)
            .args([
                "-c",
                "import os, sys; print(os.path.realpath(getattr(sys, '_base_executable', sys.executable)))",
            ])
            .output()
            .ok()?;
        let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !path.is_empty()).then_some(path)
    });
    if let Some(exe) = base.or_else(|| config.executable().map(str::to_string)) {
        println!("cargo:rustc-env=WSGI_GATEWAY_PYTHON={exe}");
    }
}
