// Link the binary with an rpath to the libpython it was built against, so it runs that
// CPython (and its pip packages) rather than whichever libpython the loader finds first.
fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}
