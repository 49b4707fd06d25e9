//! Micro-benchmarks of the HTTP parsers: a typical browser GET head, and a 64 KiB chunked body
//! sent in 4 KiB chunks.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wsgi_gateway::http::chunked::ChunkedDecoder;
use wsgi_gateway::http::head::{parse_head, HeadLimits};

const BROWSER_GET: &[u8] =
    b"GET /articles/2024/rust-http-parsing?utm_source=feed&page=2 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/articles/\r\n\
Connection: keep-alive\r\n\
Cookie: session=4f6e2a9c1b7d; theme=dark; consent=1\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
\r\n";

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
