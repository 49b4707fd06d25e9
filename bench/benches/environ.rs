//! `EnvironBuilder::build`: one environ dict from a parsed request, as the WSGI call makes it.
//!
//! `browser_get` is a typical browser GET (10 headers, query string, cookie); `wrk_hello` is
//! the one-header GET that compare.sh's `hello` scenario sends. The builder is the HTTP
//! front end's (multithread, default trust policy: an untrusted TCP peer). Timed: the template
//! copy, every key/value `str`, and dropping the dict (the server pays for that too). The
//! `Request` is built once, outside the loop; `wsgi.input` is one `WsgiInput` object reused.
//! The GIL is taken once for the whole group and held across all iterations.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use gateway_bench::{
    http_environ_builder, request_from, start_python, MemBody, BROWSER_GET, WRK_HELLO,
};
use pyo3::prelude::*;
use wsgi_gateway::internals::WsgiInput;

fn bench_environ(c: &mut Criterion) {
    start_python();
    Python::attach(|py| {
        let builder = http_environ_builder(py);
        let input = Bound::new(py, WsgiInput::new(Box::new(MemBody::empty())))
            .unwrap()
            .into_any();

        let mut g = c.benchmark_group("environ");
        for (name, raw) in [("browser_get", BROWSER_GET), ("wrk_hello", WRK_HELLO)] {
            let req = request_from(&Bytes::from_static(raw));
            let env = builder.build(py, &req, &input).unwrap();
            // Sanity: every header arrived, the environ has what PEP 3333 requires.
            assert_eq!(
                env.get_item("REQUEST_METHOD").unwrap().unwrap().to_string(),
                "GET"
            );
            assert!(env.len() >= 18 + req.headers.len(), "{}", env.len());
            g.bench_function(name, |b| {
                b.iter(|| builder.build(py, black_box(&req), &input).unwrap())
            });
        }
        g.finish();
    });
}

criterion_group!(benches, bench_environ);
criterion_main!(benches);
