//! `wsgi-gateway`, the embedder shape: this program starts CPython itself (linked against the
//! libpython it was built with) and runs the command line.

use std::process::ExitCode;

use wsgi_gateway::Shape;

fn main() -> ExitCode {
    ExitCode::from(wsgi_gateway::main(
        std::env::args_os().collect(),
        &Shape::Embedder,
    ))
}
