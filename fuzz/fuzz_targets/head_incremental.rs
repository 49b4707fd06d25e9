//! parse_head_incremental on arbitrary bytes delivered in pieces, as a server's reads grow its
//! buffer: after every piece the answer is exactly parse_head's on the same prefix (so the
//! kept scan never hides an error, reports one early, or misses the end of the head), and a
//! final answer leaves the scan ready for the next head. Piece sizes come from a generator
//! seeded by the input: byte by byte, and three random patterns.

#![no_main]

#[path = "common.rs"]
mod common;

use bytes::Bytes;
use common::SMALL;
use libfuzzer_sys::fuzz_target;
use wsgi_gateway::internals::{parse_head, parse_head_incremental, HeadLimits, HeadScan};

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);
    let mut next = common::seeded(data);
    for limits in [&SMALL, &HeadLimits::default()] {
        // Byte by byte compares every prefix: keep that to ordinary sizes.
        let one = if data.len() <= 1024 { 1 } else { 8 };
        feed(&buf, limits, &mut |_| one);
        for _ in 0..3 {
            let max_piece = 1 + (next() % 40) as usize;
            let mut piece = |_| 1 + (next() as usize % max_piece);
            feed(&buf, limits, &mut piece);
        }
    }
});

/// Grows a prefix of `buf` by `piece(len)` bytes at a time until the answer is final or the
/// input ends, checking each answer against parse_head's.
fn feed(buf: &Bytes, limits: &HeadLimits, piece: &mut dyn FnMut(usize) -> usize) {
    let mut scan = HeadScan::default();
    let mut end = 0;
    loop {
        let prefix = buf.slice(..end);
        let got = parse_head_incremental(&prefix, limits, &mut scan);
        assert_eq!(got, parse_head(&prefix, limits), "prefix {end}");
        if !matches!(got, Ok(None)) {
            assert_eq!(scan, HeadScan::default(), "scan not reset after a final answer");
            return;
        }
        if end == buf.len() {
            return;
        }
        end = end.saturating_add(piece(end).max(1)).min(buf.len());
    }
}
