//! parse_head on arbitrary bytes: never panics, results are self-consistent, and every prefix
//! of the input either asks for more or gives exactly the whole input's result (the caller
//! re-parses a growing buffer, so a split must never change the outcome).

#![no_main]

#[path = "common.rs"]
mod common;

use bytes::Bytes;
use common::SMALL;
use libfuzzer_sys::fuzz_target;
use wsgi_gateway::internals::{parse_head, HeadLimits};

fuzz_target!(|data: &[u8]| {
    check(data, &SMALL);
    check(data, &HeadLimits::default());
});

fn check(data: &[u8], limits: &HeadLimits) {
    let buf = Bytes::copy_from_slice(data);
    let full = parse_head(&buf, limits);
    match &full {
        Ok(Some(h)) => {
            assert!(h.head_len <= data.len() && h.head_len <= limits.max_head_size);
            assert!(data[..h.head_len].ends_with(b"\r\n\r\n"));
            assert!(h.headers.len() <= limits.max_headers);
            assert!(h.method.len() <= 32);
            // The head alone parses to the same head.
            let alone = parse_head(&buf.slice(..h.head_len), limits);
            assert_eq!(alone.as_ref().ok().and_then(Option::as_ref), Some(h));
        }
        Ok(None) => assert!(data.len() < limits.max_head_size),
        Err(e) => assert!(matches!(e.status, 400 | 414 | 417 | 431 | 501 | 505)),
    }
    // Every prefix for ordinary sizes; a sample beyond, to keep executions fast.
    let step = (data.len() / 1024).max(1);
    for k in (0..data.len()).step_by(step) {
        let part = parse_head(&buf.slice(..k), limits);
        match (&part, &full) {
            (Ok(None), _) => {}
            (Err(p), Err(f)) => assert_eq!(p, f, "prefix {k}"),
            (Ok(Some(p)), Ok(Some(f))) => assert_eq!(p, f, "prefix {k}"),
            _ => panic!("prefix {k}: {part:?} but whole: {full:?}"),
        }
    }
}
