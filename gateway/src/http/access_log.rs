//! The access log: Apache combined format plus the request's duration in microseconds.
//! Lines are formatted by the worker and written by a thread of their own, off the GIL.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{unbounded, Sender};

pub struct AccessLog {
    tx: Sender<Msg>,
}

enum Msg {
    Line(String),
    /// Everything sent before has been written; say so on the channel.
    Flush(Sender<()>),
    /// Reopen the file by its path (SIGUSR1 after a rotation), between two whole batches.
    Reopen(Sender<()>),
}

/// Asks the access log's writer to reopen its file (held by the SIGUSR1 thread).
#[derive(Clone)]
pub struct Reopener(Sender<Msg>);

impl Reopener {
    /// Waits (up to `limit`) until the writer has reopened the file.
    pub fn reopen(&self, limit: Duration) {
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        if self.0.send(Msg::Reopen(ack_tx)).is_ok() {
            let _ = ack_rx.recv_timeout(limit);
        }
    }
}

/// One finished request, as the access log records it.
pub struct Entry<'a> {
    pub remote: &'a str,
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub version: &'a str,
    pub status: u16,
    pub bytes: u64,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub duration: Duration,
}

impl AccessLog {
    /// Opens `path` (`-` = stdout) for appending and starts the writer thread.
    pub fn open(path: &str) -> std::io::Result<AccessLog> {
        let file = path != "-";
        let mut out: Box<dyn Write + Send> = if file {
            Box::new(crate::logging::open_append(path)?)
        } else {
            Box::new(std::io::stdout())
        };
        let path = path.to_string();
        let (tx, rx) = unbounded::<Msg>();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut buf = Vec::with_capacity(64 * 1024);
                let mut acks = Vec::new();
                while let Ok(first) = rx.recv() {
                    // Batch whatever else is already waiting, then write once.
                    let mut next = Some(first);
                    let mut reopen = None;
                    while let Some(msg) = next.take() {
                        match msg {
                            Msg::Line(line) => buf.extend_from_slice(line.as_bytes()),
                            Msg::Flush(ack) => acks.push(ack),
                            // The batch so far goes to the old file; later lines to the new.
                            Msg::Reopen(ack) => reopen = Some(ack),
                        }
                        if buf.len() < 60 * 1024 && reopen.is_none() {
                            next = rx.try_recv().ok();
                        }
                    }
                    let _ = out.write_all(&buf).and_then(|_| out.flush());
                    buf.clear();
                    for ack in acks.drain(..) {
                        let _ = ack.send(());
                    }
                    if let Some(ack) = reopen {
                        if file {
                            match crate::logging::open_append(&path) {
                                Ok(f) => out = Box::new(f),
                                Err(e) => tracing::error!(
                                    "cannot reopen the access log {path}: {e}; still writing to the old file"
                                ),
                            }
                        }
                        let _ = ack.send(());
                    }
                }
            })?;
        Ok(AccessLog { tx })
    }

    /// A handle that asks the writer to reopen the file.
    pub fn reopener(&self) -> Reopener {
        Reopener(self.tx.clone())
    }

    pub fn log(&self, e: &Entry<'_>) {
        let bytes = if e.bytes == 0 {
            "-".to_string()
        } else {
            e.bytes.to_string()
        };
        let line = format!(
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {}\n",
            e.remote,
            clf_time(SystemTime::now()),
            escape(e.method),
            escape(e.target),
            e.version,
            e.status,
            bytes,
            e.referer.map_or("-".to_string(), escape),
            e.user_agent.map_or("-".to_string(), escape),
            e.duration.as_micros()
        );
        let _ = self.tx.send(Msg::Line(line));
    }

    /// Waits (up to `limit`) until every line logged so far is written.
    pub fn flush(&self, limit: std::time::Duration) {
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        if self.tx.send(Msg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv_timeout(limit);
        }
    }
}

/// Quotes and control bytes escaped so a client cannot forge log lines.
fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        match c {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

/// `10/Oct/2000:13:55:36 +0000`.
fn clf_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let d = super::date::format_date(secs);
    // From "Sun, 06 Nov 1994 08:49:37 GMT": day, month, year, time.
    let s = String::from_utf8_lossy(&d);
    format!(
        "{}/{}/{}:{} +0000",
        &s[5..7],
        &s[8..11],
        &s[12..16],
        &s[17..25]
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_quotes_and_controls() {
        assert_eq!(super::escape(b"a\"b\n"), "a\\\"b\\x0a");
    }
}
