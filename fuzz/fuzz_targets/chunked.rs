//! ChunkedDecoder on arbitrary bytes: never panics, and feeding the input in arbitrary pieces
//! into arbitrarily small output buffers gives exactly what one call with a big buffer gives.

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use wsgi_gateway::internals::{ChunkedDecoder, Reject};

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Body bytes, input consumed, finished.
    Decoded(Vec<u8>, usize, bool),
    /// Output of a failing call is not reported, so only the error compares.
    Failed(Reject),
}

fuzz_target!(|data: &[u8]| {
    for (ext, trailers) in [(16, 64), (4096, 8192)] {
        let whole = decode(data, ext, trailers, &mut |_| usize::MAX, 1 << 16);
        // Pieces and out sizes from a generator seeded by the input, so seeds stay plain bodies.
        let mut next = common::seeded(data);
        assert_eq!(
            decode(data, ext, trailers, &mut |_| 1, 1),
            whole,
            "byte by byte"
        );
        for _ in 0..4 {
            let max_piece = 1 + (next() % 24) as usize;
            let out_len = 1 + (next() % 17) as usize;
            let mut piece = |_| 1 + (next() as usize % max_piece);
            assert_eq!(
                decode(data, ext, trailers, &mut piece, out_len),
                whole,
                "split"
            );
        }
    }
});

fn decode(
    data: &[u8],
    ext: usize,
    trailers: usize,
    piece: &mut dyn FnMut(usize) -> usize,
    out_len: usize,
) -> Outcome {
    let mut d = ChunkedDecoder::new(ext, trailers);
    let mut out = vec![0u8; out_len];
    let mut body = Vec::new();
    let mut at = 0;
    while at < data.len() && !d.is_done() {
        let end = at.saturating_add(piece(at)).min(data.len());
        let mut p = at;
        while p < end && !d.is_done() {
            match d.decode(&data[p..end], &mut out) {
                Ok((c, o)) => {
                    assert!(c <= end - p && o <= out.len());
                    assert!(c > 0 || o > 0 || d.is_done(), "no progress");
                    body.extend_from_slice(&out[..o]);
                    p += c;
                }
                Err(e) => return Outcome::Failed(e),
            }
        }
        at = p;
    }
    Outcome::Decoded(body, at, d.is_done())
}
