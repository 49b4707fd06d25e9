//! The `--metrics-bind` listener: `GET /metrics` (or HEAD) answers the page, anything else
//! 404 (405 for another method on /metrics). One thread of its own, one connection at a time
//! (a scraper's request is small; a client that stalls is cut off after `CLIENT_TIMEOUT`),
//! each answered and closed. It never touches Python.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use super::area::Aggregate;
use super::render::{render, CONTENT_TYPE};
use super::{Counters, Totals};
use crate::http::listener::{self, Bound, Sock};

/// How long one scrape's connection may take to send its request or read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest request head read; the rest is not looked at.
const MAX_HEAD: usize = 8 * 1024;

/// Where the page's numbers come from.
#[derive(Clone, Copy)]
pub enum Counts {
    /// This process serves and counts by itself.
    Own(&'static Counters),
    /// The supervisor: its workers' seats and its own counts.
    Workers(&'static Aggregate),
}

/// The counts and the listening sockets (copies) whose accept queues are read at a scrape.
pub struct Source {
    pub counts: Counts,
    pub listeners: Vec<OwnedFd>,
}

impl Source {
    fn page(&self) -> String {
        let (mut t, workers) = match self.counts {
            Counts::Own(c) => {
                let mut t = Totals::default();
                t.add(c, true);
                (t, None)
            }
            Counts::Workers(a) => (a.totals(), Some(a)),
        };
        t.waiting = t
            .waiting
            .saturating_add(super::backlog::queued(&self.listeners));
        render(&t, workers)
    }
}

/// Binds `addr` (as `--bind` does: HOST:PORT, [V6]:PORT or unix:PATH; a socket file is
/// `owner`'s, `--user`'s); `Err` is the message.
pub fn bind(addr: &str, owner: Option<(Option<u32>, u32)>) -> Result<Bound, String> {
    let file = listener::UnixFile { mode: None, owner };
    listener::bind_with(addr, 64, file).map_err(|e| e.replacen("--bind", "--metrics-bind", 1))
}

/// The endpoint while it serves: dropped as the process ends, it removes a `unix:` socket's
/// file (the next start would remove a stale one anyway, as `--bind` does).
pub struct Running(Option<PathBuf>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Serves `/metrics` from `bound` on a new thread, for as long as the process runs.
pub fn start(bound: Bound, source: Source) -> io::Result<Running> {
    tracing::info!("metrics on {}/metrics", bound.display);
    let path = match &bound.sock {
        Sock::Unix(_, path) => Some(path.clone()),
        Sock::Tcp(_) => None,
    };
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || serve(bound, source))?;
    Ok(Running(path))
}

fn serve(bound: Bound, source: Source) {
    // TCP or Unix, the page is served the same way: through one socket type.
    let sock = socket2::Socket::from(match bound.sock {
        Sock::Tcp(l) => OwnedFd::from(l),
        Sock::Unix(l, _) => OwnedFd::from(l),
    });
    let _ = sock.set_nonblocking(false);
    loop {
        match sock.accept() {
            Ok((s, _)) => {
                let _ = s.set_read_timeout(Some(CLIENT_TIMEOUT));
                let _ = s.set_write_timeout(Some(CLIENT_TIMEOUT));
                answer(s, &source);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => pause(&e),
        }
    }
}

/// After a failed accept (out of file descriptors): rest a moment rather than spin.
fn pause(e: &io::Error) {
    tracing::warn!("metrics: accept failed: {e}");
    std::thread::sleep(Duration::from_millis(100));
}

fn answer(mut s: impl Read + Write, source: &Source) {
    let Some(head) = read_head(&mut s) else {
        return;
    };
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next());
    let path = target.map(|t| t.split(|&b| b == b'?').next().unwrap_or_default());
    let (status, body) = match (method, path) {
        (b"GET" | b"HEAD", Some(b"/metrics")) => ("200 OK", source.page()),
        (_, Some(b"/metrics")) => ("405 Method Not Allowed", "GET /metrics\n".to_string()),
        _ => ("404 Not Found", "metrics are at /metrics\n".to_string()),
    };
    let (kind, allow) = match status {
        "200 OK" => (CONTENT_TYPE, ""),
        "405 Method Not Allowed" => ("text/plain", "Allow: GET, HEAD\r\n"),
        _ => ("text/plain", ""),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != b"HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    let _ = s.write_all(&out);
}

/// The request head, up to its blank line (or `MAX_HEAD` bytes); `None` if the client
/// closed or stalled first.
fn read_head(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
        if head.windows(4).any(|w| w == b"\r\n\r\n")
            || head.windows(2).any(|w| w == b"\n\n")
            || head.len() >= MAX_HEAD
        {
            return Some(head);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's bytes in, the server's out.
    struct Pipe {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn ask(request: &str) -> String {
        static C: std::sync::LazyLock<Counters> = std::sync::LazyLock::new(Counters::default);
        let mut p = Pipe {
            input: io::Cursor::new(request.as_bytes().to_vec()),
            output: Vec::new(),
        };
        let source = Source {
            counts: Counts::Own(&C),
            listeners: Vec::new(),
        };
        answer(&mut p, &source);
        String::from_utf8(p.output).unwrap()
    }

    #[test]
    fn only_get_metrics_gets_the_page() {
        let page = ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("version=0.0.4"));
        assert!(page.contains("# TYPE wsgi_gateway_requests_total counter"));
        let head = ask("HEAD /metrics?x=1 HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
        assert!(ask("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(ask("GET /metricsx HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(ask("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
        assert_eq!(
            ask("GET /metrics HTTP/1.1\r\n"),
            "",
            "no answer to half a head"
        );
    }
}
