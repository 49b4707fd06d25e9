// Link the benches with an rpath to the libpython the gateway was built against, as
// gateway/build.rs does for the binary; without it the loader may pick another libpython
// (a system one) and the benches would time a different interpreter than the server runs.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
}
