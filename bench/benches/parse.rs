//! Micro-benchmarks of the HTTP parsers: a typical browser GET head, and a 64 KiB chunked body
//! sent in 4 KiB chunks.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway_bench::BROWSER_GET;
use wsgi_gateway::internals::{parse_head, ChunkedDecoder, HeadLimits};

const SMALL_GET: &[u8] = b"GET /hello?name=world HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

fn bench_head(c: &mut Criterion) {
    let limits = HeadLimits::default();
    let mut g = c.benchmark_group("parse_head");
    for (name, raw) in [("browser_get", BROWSER_GET), ("small_get", SMALL_GET)] {
        // Refcounted like a real read buffer, so slicing costs what it costs in the server.
        let buf = Bytes::copy_from_slice(raw);
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_function(name, |b| b.iter(|| parse_head(black_box(&buf), &limits)));
    }
    g.finish();
}

fn bench_chunked(c: &mut Criterion) {
    let body: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut wire = Vec::with_capacity(body.len() + 256);
    for chunk in body.chunks(4096) {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    let mut out = vec![0u8; 16 * 1024];

    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("64k_in_4k_chunks", |b| {
        b.iter(|| {
            let mut d = ChunkedDecoder::new(4096, 8192);
            let mut input = black_box(&wire[..]);
            let mut produced = 0;
            while !d.is_done() {
                match d.decode(input, &mut out) {
                    Ok((consumed, n)) => {
                        input = &input[consumed..];
                        produced += n;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(produced, body.len());
            produced
        })
    });
    g.finish();
}

criterion_group!(benches, bench_head, bench_chunked);
criterion_main!(benches);
