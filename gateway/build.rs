// Link the binary with an rpath to the libpython it was built against, so it runs that
// CPython (and its pip packages) rather than whichever libpython the loader finds first.
// Also record that interpreter's own executable and version: the embedded interpreter starts
// as that program (sys.executable, the prefix search), or as a venv's python with --venv.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    let config = pyo3_build_config::get();
    println!(
        "cargo:rustc-env=WSGI_GATEWAY_PYTHON_VERSION={}.{}",
        config.version().major,
        config.version().minor
    );
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
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
