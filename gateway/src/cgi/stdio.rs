//! The CGI program's wire: the request body on stdin, the CGI response (RFC 3875 §6) on stdout.

use std::any::Any;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;

use crate::reject::{ErrorDocument, Reject};
use crate::request::{read_window, BodyFailure, BodyReader};
use crate::responder::{BodyLength, Responder, ResponseHead};

/// stdin, unbuffered, so not one byte past CONTENT_LENGTH is ever read (RFC 3875 §4.2).
pub struct StdinBody {
    stdin: File,
    /// `None`: no CONTENT_LENGTH, the body runs to EOF.
    remaining: Option<u64>,
    cut_short: bool,
}

impl StdinBody {
    pub fn new(content_length: Option<u64>) -> io::Result<StdinBody> {
        Ok(StdinBody {
            stdin: File::from(io::stdin().as_fd().try_clone_to_owned()?),
            remaining: content_length,
            cut_short: false,
        })
    }
}

impl BodyReader for StdinBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = read_window(self.remaining, buf.len());
        if want == 0 {
            // Nothing due, or an empty buffer: not an early end of stdin.
            return Ok(0);
        }
        let buf = &mut buf[..want];
        let stdin = &mut self.stdin;
        let n = crate::python::without_gil(|| loop {
            match stdin.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        })?;
        if let Some(left) = self.remaining.as_mut() {
            if n == 0 {
                self.cut_short = true;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("stdin ended {left} bytes before CONTENT_LENGTH"),
                ));
            }
            *left = left.saturating_sub(n as u64);
        }
        Ok(n)
    }

    fn remaining(&self) -> Option<u64> {
        self.remaining
    }

    fn failure(&self) -> Option<BodyFailure> {
        // The body is shorter than the host announced: a 400 document (the host's client may
        // be gone, but the host itself always gets a complete response).
        self.cut_short
            .then(|| BodyFailure::Invalid(Reject::new(400, "stdin ended before CONTENT_LENGTH")))
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// Writes `Status:` + headers + blank line, then the body as the app yields it. stdout is
/// unbuffered here, so every chunk reaches the host at once (streaming responses work).
pub struct StdoutResponder {
    stdout: File,
    head: Vec<u8>,
    head_pending: bool,
    body_allowed: bool,
    sent: u64,
}

/// Chunks up to this size go out in one write together with the head.
const COALESCE: usize = 16 * 1024;

impl StdoutResponder {
    pub fn new() -> io::Result<StdoutResponder> {
        Ok(StdoutResponder {
            stdout: File::from(io::stdout().as_fd().try_clone_to_owned()?),
            head: Vec::with_capacity(256),
            head_pending: false,
            body_allowed: false,
            sent: 0,
        })
    }

    fn send(&mut self, chunk: &[u8]) -> io::Result<()> {
        if std::mem::take(&mut self.head_pending) {
            if chunk.len() <= COALESCE {
                self.head.extend_from_slice(chunk);
                return self.stdout.write_all(&self.head);
            }
            self.stdout.write_all(&self.head)?;
        }
        self.stdout.write_all(chunk)
    }
}

impl Responder for StdoutResponder {
    fn start(&mut self, head: &ResponseHead<'_>) -> io::Result<()> {
        let h = &mut self.head;
        h.clear();
        h.extend_from_slice(b"Status: ");
        h.extend_from_slice(head.status);
        h.extend_from_slice(b"\r\n");
        h.extend_from_slice(head.header_block);
        // A length the core worked out saves the host from chunking. Never for HEAD: the host
        // would wait for a body that is not coming.
        if let (true, false, BodyLength::Known(n)) =
            (head.body_allowed, head.app_content_length, head.length)
        {
            h.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
        }
        h.extend_from_slice(b"\r\n");
        self.head_pending = true;
        self.body_allowed = head.body_allowed;
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if chunk.is_empty() || !self.body_allowed {
            return Ok(());
        }
        self.sent = self.sent.saturating_add(chunk.len() as u64);
        self.send(chunk)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.send(b"")
    }

    fn abort(&mut self) {
        // Nothing more goes out; the host sees the response end early.
        self.head_pending = false;
    }

    fn body_bytes_sent(&self) -> u64 {
        self.sent
    }
}

/// A complete CGI document for a response the gateway itself gives (no app response exists).
pub fn error_document(status: u16) -> Vec<u8> {
    let doc = ErrorDocument::new(status, None);
    let mut out = format!(
        "Status: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        doc.status_line,
        ErrorDocument::CONTENT_TYPE,
        doc.body.len()
    )
    .into_bytes();
    out.extend_from_slice(&doc.body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_document_frames_the_shared_body() {
        assert_eq!(
            error_document(400),
            b"Status: 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\n\r\n400 Bad Request\n"
        );
    }
}
