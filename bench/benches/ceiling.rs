//! The in-process ceiling: one thread, no sockets, the GIL held throughout. Each iteration
//! parses a request head (`parse_head`, as the server does per request), maps it to a
//! `Request`, and runs `WsgiApp::call` (environ, `wsgi.input`, `start_response`, the app,
//! draining its iterable, `close`) into a `NullResponder` that counts body bytes and discards
//! them. Time per iteration is the most one Python process can do per request with this
//! gateway: what remains of a real request is socket I/O, the reactor, and HTTP framing
//! (see the `framing` bench).
//!
//! - `hello`: the head wrk sends for compare.sh's `hello` (1 header); the app answers 13 bytes
//!   with Content-Length.
//! - `hello_browser`: the same app for a 10-header browser GET (a bigger environ).
//! - `echo_4k`: the `echo` POST (Content-Length: 4096, body already in memory, read through
//!   `wsgi.input` in one `read(4096)`); the app answers the length it read.
//!
//! The GIL is taken once (`Python::attach`) around the whole group and held across every
//! iteration and sample, as a worker holds it while it serves.

use std::hint::black_box;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use gateway_bench::{
    http_environ_builder, request_from, start_python, MemBody, NullResponder, BROWSER_GET,
    WRK_ECHO_4K, WRK_HELLO,
};
use pyo3::prelude::*;
use pyo3::types::PyModule;
use wsgi_gateway::internals::WsgiApp;

const APPS: &std::ffi::CStr = cr#"
def hello(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '13')])
    return [b'Hello, World!']


def echo(environ, start_response):
    # As bench/apps/bench_app.py's /echo: read exactly CONTENT_LENGTH in 64 KiB blocks.
    stream = environ['wsgi.input']
    remaining = int(environ.get('CONTENT_LENGTH') or 0)
    total = 0
    while remaining > 0:
        data = stream.read(min(65536, remaining))
        if not data:
            break
        total += len(data)
        remaining -= len(data)
    body = str(total).encode('ascii')
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])
    return [body]
"#;

/// The app as the binary's `load()` builds it for the HTTP front end.
fn wsgi_app(py: Python<'_>, module: &Bound<'_, PyModule>, name: &str) -> WsgiApp {
    WsgiApp {
        app: module.getattr(name).unwrap().unbind(),
        environ: http_environ_builder(py),
        debug: false,
        watch: None,
        capture: Default::default(),
    }
}

/// One request through the app, as the server's connection loop does it minus the socket.
fn serve(py: Python<'_>, app: &WsgiApp, head: &Bytes, body: &Bytes) -> u64 {
    let req = request_from(head);
    let outcome = app.call(
        py,
        &req,
        Box::new(MemBody::new(body.clone())),
        Box::new(NullResponder::default()),
    );
    debug_assert!(outcome.status == 200 && outcome.reusable);
    outcome.body_bytes
}

/// Runs one request with a capturing responder and checks the answer.
fn check(py: Python<'_>, app: &WsgiApp, head: &Bytes, body: &Bytes, expect: &[u8]) {
    let captured = Arc::new(Mutex::new(Vec::new()));
    let responder = NullResponder::capturing(captured.clone());
    let outcome = app.call(
        py,
        &request_from(head),
        Box::new(MemBody::new(body.clone())),
        Box::new(responder),
    );
    assert_eq!(outcome.status, 200);
    assert!(outcome.reusable);
    assert!(outcome.reader.is_some());
    assert_eq!(captured.lock().unwrap().as_slice(), expect);
}

fn bench_ceiling(c: &mut Criterion) {
    start_python();
    Python::attach(|py| {
        let module = PyModule::from_code(py, APPS, c"ceiling_apps.py", c"ceiling_apps").unwrap();
        let hello = wsgi_app(py, &module, "hello");
        let echo = wsgi_app(py, &module, "echo");
        let empty = Bytes::new();
        let upload = Bytes::from((0..4096u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let cases = [
            (
                "hello",
                &hello,
                Bytes::from_static(WRK_HELLO),
                &empty,
                &b"Hello, World!"[..],
            ),
            (
                "hello_browser",
                &hello,
                Bytes::from_static(BROWSER_GET),
                &empty,
                b"Hello, World!",
            ),
            (
                "echo_4k",
                &echo,
                Bytes::from_static(WRK_ECHO_4K),
                &upload,
                b"4096",
            ),
        ];

        let mut g = c.benchmark_group("ceiling");
        for (name, app, head, body, expect) in &cases {
            check(py, app, head, body, expect);
            g.bench_function(*name, |b| b.iter(|| serve(py, app, black_box(head), body)));
        }
        g.finish();
    });
}

criterion_group!(benches, bench_ceiling);
criterion_main!(benches);
