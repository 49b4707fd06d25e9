//! What several fuzz targets share (each includes it with `#[path = "common.rs"] mod common;`).

#![allow(dead_code)]

use wsgi_gateway::internals::HeadLimits;

/// Small limits reach the 414/431 decisions with short inputs.
pub const SMALL: HeadLimits = HeadLimits {
    max_request_line: 64,
    max_headers: 6,
    max_field_size: 48,
    max_head_size: 256,
};

/// A xorshift generator seeded by the input (FNV-1a of its bytes), so the choices a target
/// makes (splits, sizes, knobs) come from the input while seeds stay plain requests.
pub fn seeded(data: &[u8]) -> impl FnMut() -> u64 {
    let mut rng = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    }
}
