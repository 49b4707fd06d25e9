//! HTTP/1.1 response framing: `HttpResponder` exactly as the server uses it, over a real
//! socket. `HttpResponder` writes through a `ConnIo`, which needs a socket, so each bench owns
//! a connected Unix socketpair: the gateway end non-blocking (as the server sets it), a thread
//! reading and discarding on the other end. What is measured is therefore framing *plus the
//! write syscalls* into the socket buffer (and, when the buffer is full, the GIL-released wait
//! for the drain thread); it is not the cost of a TCP loopback write or of the network.
//!
//! - `start_only`: `start` alone: status line, the app's header block, Server, Date (cached
//!   per second), keep-alive decision. No syscall: the pure framing CPU cost.
//! - `hello_13b`: `start` + `write(13 bytes)` + `finish` of a Content-Length response, as the
//!   hello app gives it: one `writev` (head and body together).
//! - `big_16x64k`: `start` + 16 × `write(64 KiB)` + `finish` (1 MiB with Content-Length):
//!   16 `writev`s, most of which fill the socket buffer and wait for the reader.
//!
//! The GIL is held across all iterations (a worker holds it while the app's response is
//! framed), so Python is started first: a full socket releases it through `without_gil`.

use std::hint::black_box;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway_bench::start_python;
use pyo3::prelude::*;
use wsgi_gateway::internals::{
    BodyLength, ConnIo, HttpResponder, Responder, ResponseHead, SendLimits, Stream, Version,
};

const HELLO: &[u8] = b"Hello, World!";
const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 16;

/// The head `start_response('200 OK', [Content-Type, Content-Length])` produces.
fn head(header_block: &[u8], len: u64) -> ResponseHead<'_> {
    ResponseHead {
        code: 200,
        status: b"200 OK",
        header_block,
        length: BodyLength::Known(len),
        app_content_length: true,
        body_allowed: true,
        has_date: false,
        has_server: false,
        close: false,
    }
}

/// A connection whose peer reads and discards everything; returns the gateway end and the
/// drain thread (which ends when the gateway end is dropped), with the byte count it read.
fn connection() -> (Arc<ConnIo>, JoinHandle<u64>) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let stream = Stream::unix(ours);
    stream.set_nonblocking(true).unwrap();
    let drain = std::thread::spawn(move || {
        let mut theirs = theirs;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match theirs.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
        }
    });
    (
        Arc::new(ConnIo::new(
            stream,
            &SendLimits::unqueued(Duration::from_secs(60)),
        )),
        drain,
    )
}

fn bench_framing(c: &mut Criterion) {
    start_python();
    let hello_block = format!(
        "Content-Type: text/plain\r\nContent-Length: {}\r\n",
        HELLO.len()
    );
    let big_len = (CHUNK * CHUNKS) as u64;
    let big_block =
        format!("Content-Type: application/octet-stream\r\nContent-Length: {big_len}\r\n");
    let chunk = vec![b'x'; CHUNK];

    Python::attach(|_py| {
        let mut g = c.benchmark_group("framing");

        let (io, drain) = connection();
        let mut r = HttpResponder::new(io.clone(), Version::Http11, false);
        let h = head(hello_block.as_bytes(), HELLO.len() as u64);
        g.bench_function("start_only", |b| b.iter(|| r.start(black_box(&h)).unwrap()));
        drop((r, io));
        assert_eq!(drain.join().unwrap(), 0);

        let (io, drain) = connection();
        g.throughput(Throughput::Bytes(HELLO.len() as u64));
        let mut responses = 0u64;
        g.bench_function("hello_13b", |b| {
            b.iter(|| {
                io.next_request();
                let mut r = HttpResponder::new(io.clone(), Version::Http11, false);
                r.start(&h).unwrap();
                r.write(black_box(HELLO)).unwrap();
                r.finish().unwrap();
                responses += 1;
                r.body_bytes_sent()
            })
        });
        drop(io);
        let wire = drain.join().unwrap();
        // Every response went out whole: same size each time, body included.
        assert!(
            responses > 0 && wire % responses == 0,
            "{wire} / {responses}"
        );
        assert!(wire / responses > HELLO.len() as u64 + hello_block.len() as u64);

        let (io, drain) = connection();
        let h = head(big_block.as_bytes(), big_len);
        g.throughput(Throughput::Bytes(big_len));
        let mut responses = 0u64;
        g.bench_function("big_16x64k", |b| {
            b.iter(|| {
                io.next_request();
                let mut r = HttpResponder::new(io.clone(), Version::Http11, false);
                r.start(&h).unwrap();
                for _ in 0..CHUNKS {
                    r.write(black_box(&chunk)).unwrap();
                }
                r.finish().unwrap();
                responses += 1;
                r.body_bytes_sent()
            })
        });
        drop(io);
        let wire = drain.join().unwrap();
        assert!(responses > 0 && wire % responses == 0 && wire / responses > big_len);
        g.finish();
    });
}

criterion_group!(benches, bench_framing);
criterion_main!(benches);
