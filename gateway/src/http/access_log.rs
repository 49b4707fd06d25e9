//! The access log: lines in the compiled `--access-log-format` (default: Apache combined
//! plus the request's duration in microseconds). Lines are formatted by the worker and written
//! by a thread of their own, off the GIL; SIGUSR1 reopens the file between two batches.

use std::io::Write;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{unbounded, Sender};

pub use super::access_format::{Entry, Format};

pub struct AccessLog {
    tx: Sender<Msg>,
    format: Format,
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

impl AccessLog {
    /// Opens `path` (`-` = stdout) for appending and starts the writer thread.
    pub fn open(path: &str, format: Format) -> std::io::Result<AccessLog> {
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
        Ok(AccessLog { tx, format })
    }

    /// A handle that asks the writer to reopen the file.
    pub fn reopener(&self) -> Reopener {
        Reopener(self.tx.clone())
    }

    pub fn log(&self, e: &Entry<'_>) {
        let line = self.format.line(e, SystemTime::now());
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
