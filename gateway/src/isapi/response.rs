//! The response through IIS: status and headers with `HSE_REQ_SEND_RESPONSE_HEADER_EX` (IIS
//! writes the status line, `Date` and `Server`), the body with `WriteClient`, chunk-encoded by
//! us when the app gives no length on an HTTP/1.1 connection (IIS sends an extension's bytes
//! as they are).

use std::io;
use std::sync::Arc;

use super::ecb::Session;
use super::request::Delimit;
use crate::chunk_frame::{ChunkSize, CHUNK_END, LAST_CHUNK};
use crate::responder::{computed_length, BodyLength, Responder, ResponseHead};

/// A chunk this small goes out in one WriteClient together with its chunk framing.
const COALESCE: usize = 16 * 1024;

pub struct EcbResponder {
    session: Arc<Session>,
    delimit: Delimit,
    body_allowed: bool,
    chunked: bool,
    sent: u64,
}

impl EcbResponder {
    pub fn new(session: Arc<Session>, delimit: Delimit) -> EcbResponder {
        EcbResponder {
            session,
            delimit,
            body_allowed: false,
            chunked: false,
            sent: 0,
        }
    }

    fn write_client(&self, bytes: &[u8]) -> io::Result<()> {
        let session = &self.session;
        crate::python::without_gil(|| {
            session.with_ending(|ecb, ending| {
                let sent = ecb.write_client(bytes);
                ending.client_gone |= sent.is_err();
                sent
            })
        })
    }
}

impl Responder for EcbResponder {
    fn start(&mut self, head: &ResponseHead<'_>) -> io::Result<()> {
        let status = head.status;
        let mut block = Vec::with_capacity(head.header_block.len() + 64);
        block.extend_from_slice(head.header_block);
        self.body_allowed = head.body_allowed;
        // Whether the response ends by itself (so IIS may keep the connection).
        if let Some(n) = computed_length(head) {
            block.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
        }
        let self_delimited = match (head.body_allowed, head.length) {
            (false, _) | (true, BodyLength::Known(_)) => true,
            (true, BodyLength::Unknown) => match self.delimit {
                Delimit::Chunked => {
                    block.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                    self.chunked = true;
                    true
                }
                Delimit::Server => true,
                Delimit::Close => false,
            },
        };
        block.extend_from_slice(b"\r\n");
        let keep = self_delimited && !head.close;
        let code = head.code;
        let session = &self.session;
        // Noted under the same lock as the call: TerminateExtension, ending the request,
        // must never see the head sent but not noted (it would send a 503 head as well).
        crate::python::without_gil(|| {
            session.with_ending(|ecb, ending| {
                ending.keep_conn = keep;
                let sent = ecb.send_headers(status, &block, keep);
                match &sent {
                    Ok(()) => {
                        ending.headers_sent = true;
                        ending.status = code;
                    }
                    Err(_) => ending.client_gone = true,
                }
                sent
            })
        })
    }

    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if chunk.is_empty() || !self.body_allowed {
            return Ok(());
        }
        if self.chunked {
            let size = ChunkSize::new(chunk.len());
            let framed = [size.as_bytes(), chunk, CHUNK_END];
            if chunk.len() <= COALESCE {
                self.write_client(&framed.concat())?;
            } else {
                for part in framed {
                    self.write_client(part)?;
                }
            }
        } else {
            self.write_client(chunk)?;
        }
        self.sent = self.sent.saturating_add(chunk.len() as u64);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.chunked {
            self.chunked = false;
            self.write_client(LAST_CHUNK)?;
        }
        Ok(())
    }

    fn abort(&mut self) {
        self.chunked = false;
        self.session.note(|e| e.aborted = true);
    }

    fn body_bytes_sent(&self) -> u64 {
        self.sent
    }
}
