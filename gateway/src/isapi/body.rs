//! `wsgi.input` under IIS: the bytes IIS read ahead (`lpbData`), then `ReadClient`, streamed
//! as the app reads (a body is never buffered whole).

use std::any::Any;
use std::io;
use std::sync::Arc;

use super::ecb::Session;
use crate::reject::Reject;
use crate::request::{read_window, BodyFailure, BodyReader};

pub struct EcbBody {
    session: Arc<Session>,
    /// How much of `lpbData` the app has read.
    preload_used: usize,
    /// Body bytes still to come; `None` = unknown length, read until ReadClient gives 0.
    remaining: Option<u64>,
    max_body: u64,
    read: u64,
    failure: Option<BodyFailure>,
}

impl EcbBody {
    pub fn new(session: Arc<Session>, content_length: Option<u64>, max_body: u64) -> EcbBody {
        EcbBody {
            session,
            preload_used: 0,
            remaining: content_length,
            max_body,
            read: 0,
            failure: None,
        }
    }

    fn fail(&mut self, failure: BodyFailure, e: io::Error) -> io::Error {
        self.failure = Some(failure);
        e
    }
}

impl BodyReader for EcbBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = read_window(self.remaining, buf.len());
        if want == 0 {
            return Ok(0);
        }
        let buf = &mut buf[..want];
        let used = self.preload_used;
        // Read-ahead bytes are a copy from memory; only ReadClient can wait (GIL released).
        let from_preload = self.session.with(|ecb| {
            let pre = ecb.preloaded();
            let n = pre.len().saturating_sub(used).min(buf.len());
            buf[..n].copy_from_slice(&pre[used..used + n]);
            Ok(n)
        });
        let n = match from_preload {
            Ok(0) => {
                let session = &self.session;
                crate::python::without_gil(|| session.with(|ecb| ecb.read_client(buf)))
            }
            Ok(n) => {
                self.preload_used = used + n;
                Ok(n)
            }
            Err(e) => Err(e),
        };
        let n = match n {
            Ok(n) => n,
            Err(e) => return Err(self.fail(BodyFailure::ClientGone, e)),
        };
        if n == 0 {
            return match self.remaining {
                // IIS knew the length, so an early end is the client going away.
                Some(left) => Err(self.fail(
                    BodyFailure::ClientGone,
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the client went away {left} bytes before the body's end"),
                    ),
                )),
                None => Ok(0),
            };
        }
        self.read = self.read.saturating_add(n as u64);
        if self.max_body > 0 && self.read > self.max_body {
            let reject = Reject::new(413, "request body larger than max-body-size");
            let e = io::Error::new(io::ErrorKind::InvalidData, reject.reason.clone());
            return Err(self.fail(BodyFailure::Invalid(reject), e));
        }
        if let Some(left) = self.remaining.as_mut() {
            *left = left.saturating_sub(n as u64);
        }
        Ok(n)
    }

    fn remaining(&self) -> Option<u64> {
        self.remaining
    }

    fn failure(&self) -> Option<BodyFailure> {
        self.failure.clone()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}
