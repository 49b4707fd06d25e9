//! `start_response` and `write()`: the app's status and headers are validated once, here, and
//! every body byte passes through `ResponseState`, which enforces Content-Length and decides
//! when the head goes out (with the first non-empty chunk, or at the end).

use std::io;

use pyo3::exceptions::{PyAssertionError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::reject::ErrorDocument;
use crate::responder::{
    body_allowed, parse_status, BodyLength, HeaderBlock, Responder, ResponseHead,
};

/// What happened to the response, for the connection and the access log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub headers_sent: bool,
    /// The client went away (a write failed); not an app error.
    pub client_gone: bool,
    /// The response could not be completed and was cut off.
    pub aborted: bool,
    /// The app offered more bytes than its Content-Length; the rest was dropped.
    pub truncated: bool,
    /// The app raised (or broke the protocol); its traceback is in the error log.
    pub app_error: bool,
}

pub struct ResponseState {
    responder: Box<dyn Responder>,
    is_head: bool,
    /// The status code, once `start_response` gave one; its text is in `headers`.
    code: Option<u16>,
    headers: HeaderBlock,
    sent: u64,
    pub used_write: bool,
    pub outcome: Outcome,
}

/// Why a body chunk could not be sent.
pub enum SendError {
    Client(io::Error),
    NoStatus,
}

impl ResponseState {
    /// The first value of response header `lower_name` (lower case) the app gave, if any.
    pub fn header_value(&self, lower_name: &[u8]) -> Option<&[u8]> {
        self.headers
            .lines()
            .split(|&b| b == b'\n')
            .find_map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|&b| b == b':')?;
                let (name, value) = line.split_at(colon);
                name.eq_ignore_ascii_case(lower_name)
                    .then(|| value.get(1..).unwrap_or_default().trim_ascii())
            })
    }

    pub fn new(responder: Box<dyn Responder>, is_head: bool) -> ResponseState {
        ResponseState {
            responder,
            is_head,
            code: None,
            headers: HeaderBlock::default(),
            sent: 0,
            used_write: false,
            outcome: Outcome::default(),
        }
    }

    pub fn code(&self) -> u16 {
        self.code.unwrap_or(0)
    }

    pub fn has_status(&self) -> bool {
        self.code.is_some()
    }

    pub fn body_bytes_sent(&self) -> u64 {
        self.responder.body_bytes_sent()
    }

    /// The app asked for `Connection: close`, or the response ended in a way that leaves the
    /// connection unusable.
    pub fn must_close(&self) -> bool {
        self.headers.close
            || self.outcome.aborted
            || self.outcome.client_gone
            || self.outcome.truncated
    }

    fn set(&mut self, status: &str, headers: &Bound<'_, PyAny>) -> PyResult<()> {
        let code = parse_status(status).map_err(|e| PyValueError::new_err(e.0))?;
        // The app gives the final response: a 1xx would go out with no final one after it
        // (a proxy in front then pairs the next response with this request), and there is no
        // status above 599. Checked here, once, for every front end.
        if !(200..=599).contains(&code) {
            return Err(PyValueError::new_err(format!(
                "invalid status {status:?}: a final response status must be 200-599"
            )));
        }
        let mut block = HeaderBlock::new(status, code);
        if let Ok(list) = headers.cast::<PyList>() {
            push_headers(&mut block, list.iter(), code)?;
        } else if let Ok(tuple) = headers.cast::<PyTuple>() {
            push_headers(&mut block, tuple.iter(), code)?;
        } else {
            return Err(PyTypeError::new_err(format!(
                "start_response headers must be a list of (name, value) tuples, not {}",
                headers.get_type().name()?
            )));
        }
        self.code = Some(code);
        self.headers = block;
        Ok(())
    }

    fn start(&mut self, length: BodyLength) -> io::Result<()> {
        let Some(code) = self.code else {
            return Err(io::Error::other("no status"));
        };
        let head = ResponseHead {
            code,
            status: self.headers.status(),
            header_block: self.headers.lines(),
            length,
            app_content_length: self.headers.content_length.is_some()
                && !((100..200).contains(&code) || code == 204),
            body_allowed: body_allowed(code, self.is_head),
            has_date: self.headers.has_date,
            has_server: self.headers.has_server,
            close: self.headers.close,
        };
        self.outcome.headers_sent = true;
        self.responder.start(&head)
    }

    fn client_error(&mut self, e: io::Error) -> SendError {
        self.outcome.client_gone = true;
        self.responder.abort();
        SendError::Client(e)
    }

    /// Sends one body chunk. `last` says the app promised this is its only chunk (so the
    /// length is known without chunked framing).
    pub fn send(&mut self, chunk: &[u8], last: bool) -> Result<(), SendError> {
        if chunk.is_empty() || !self.open_body(last.then_some(chunk.len() as u64))? {
            return Ok(());
        }
        let chunk = self.clip(chunk);
        if chunk.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.responder.write(chunk) {
            return Err(self.client_error(e));
        }
        Ok(())
    }

    /// Sends the chunks of a list the app returned, in one go where the front end can.
    pub fn send_many(&mut self, chunks: &[&[u8]]) -> Result<(), SendError> {
        if !self.open_body(None)? {
            return Ok(());
        }
        let clipped: Vec<&[u8]> = chunks.iter().map(|c| self.clip(c)).collect();
        if let Err(e) = self.responder.write_many(&clipped) {
            return Err(self.client_error(e));
        }
        Ok(())
    }

    /// Starts the response unless it has started (`only`: the length of the app's only
    /// chunk, when it promised one) and says whether body bytes go out at all.
    fn open_body(&mut self, only: Option<u64>) -> Result<bool, SendError> {
        let Some(code) = self.code else {
            return Err(SendError::NoStatus);
        };
        if self.outcome.client_gone || self.outcome.aborted {
            return Ok(false);
        }
        if !self.outcome.headers_sent {
            let length = match self.headers.content_length.or(only) {
                Some(n) => BodyLength::Known(n),
                None => BodyLength::Unknown,
            };
            if let Err(e) = self.start(length) {
                return Err(self.client_error(e));
            }
        }
        Ok(body_allowed(code, self.is_head))
    }

    /// What of `chunk` fits within the app's Content-Length (the excess is dropped, with one
    /// warning), counted as sent.
    fn clip<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        let mut chunk = chunk;
        if let Some(limit) = self.headers.content_length {
            let room = limit.saturating_sub(self.sent);
            if chunk.len() as u64 > room {
                if !self.outcome.truncated {
                    tracing::warn!(
                        "app sent more than its Content-Length ({limit}); the excess is dropped"
                    );
                }
                self.outcome.truncated = true;
                chunk = &chunk[..usize::try_from(room).unwrap_or(0)];
            }
        }
        self.sent = self.sent.saturating_add(chunk.len() as u64);
        chunk
    }

    /// Sends a regular file without copying it through Python; `Ok(false)` = use `send`.
    #[cfg(unix)]
    pub fn send_file(
        &mut self,
        fd: std::os::fd::BorrowedFd<'_>,
        offset: u64,
        len: u64,
    ) -> Result<bool, SendError> {
        let Some(code) = self.code else {
            return Err(SendError::NoStatus);
        };
        if self.outcome.headers_sent || !body_allowed(code, self.is_head) {
            return Ok(false);
        }
        let len = self.headers.content_length.map_or(len, |cl| cl.min(len));
        if self.headers.content_length.is_some_and(|cl| cl > len) {
            return Ok(false);
        }
        if let Err(e) = self.start(BodyLength::Known(len)) {
            return Err(self.client_error(e));
        }
        match self.responder.send_file(fd, offset, len) {
            Ok(true) => {
                self.sent = len;
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => Err(self.client_error(e)),
        }
    }

    /// Ends a response whose app finished normally.
    pub fn finish(&mut self) -> Result<(), SendError> {
        if self.outcome.client_gone || self.outcome.aborted {
            return Ok(());
        }
        if !self.outcome.headers_sent {
            let length = BodyLength::Known(self.headers.content_length.unwrap_or(0));
            if let Err(e) = self.start(length) {
                return Err(self.client_error(e));
            }
        }
        let code = self.code();
        if body_allowed(code, self.is_head) {
            if let Some(cl) = self.headers.content_length {
                if self.sent < cl {
                    tracing::warn!(
                        "app sent {} bytes but its Content-Length said {cl}; closing the connection",
                        self.sent
                    );
                    self.abort();
                    return Ok(());
                }
            }
        }
        if let Err(e) = self.responder.finish() {
            return Err(self.client_error(e));
        }
        Ok(())
    }

    /// Cuts the response off so it cannot look complete.
    pub fn abort(&mut self) {
        self.outcome.aborted = true;
        self.responder.abort();
    }

    /// The client's request turned out invalid mid-call (its body): answer `status` and close.
    pub fn fail_status(&mut self, status: u16) {
        self.headers.close = true;
        self.error_response(status, None);
    }

    /// An error before or during the response: a plain 500 if nothing was sent yet, else abort.
    pub fn fail(&mut self, detail: Option<&str>) {
        self.error_response(500, detail);
    }

    fn error_response(&mut self, code: u16, detail: Option<&str>) {
        if self.outcome.headers_sent {
            self.abort();
            return;
        }
        let doc = ErrorDocument::new(code, detail);
        self.code = Some(code);
        let mut headers = HeaderBlock::new(&doc.status_line, code);
        let close = self.headers.close;
        let cl = doc.body.len().to_string();
        let pushed = headers
            .push("Content-Type", ErrorDocument::CONTENT_TYPE, code)
            .and_then(|_| headers.push("Content-Length", &cl, code));
        if pushed.is_err() {
            self.abort();
            return;
        }
        headers.close = close;
        self.headers = headers;
        self.sent = 0;
        if self.send(&doc.body, true).is_ok() {
            let _ = self.finish();
        }
    }
}

#[pyclass(module = "wsgi_gateway")]
pub struct StartResponse {
    pub state: ResponseState,
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__<'py>(
        slf: Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            // Another thread of the app may be inside write() (GIL released while the client
            // reads): an exception for the app, never a panic.
            let mut this = slf.try_borrow_mut().map_err(|_| busy())?;
            let state = &mut this.state;
            match exc_info {
                Some(info) if state.outcome.headers_sent => {
                    // PEP 3333: too late to change the response; re-raise the app's error.
                    let value = info.get_item(1)?;
                    return Err(PyErr::from_value(value));
                }
                None if state.has_status() => {
                    return Err(PyAssertionError::new_err(
                        "start_response called a second time without exc_info",
                    ))
                }
                _ => {}
            }
            let status = status.cast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!("status must be a str, not {}", status.get_type()))
            })?;
            state.set(&status.to_cow()?, headers)?;
        }
        slf.getattr(pyo3::intern!(slf.py(), "write"))
    }

    /// The legacy `write()` callable PEP 3333 returns from `start_response`.
    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!("write() takes bytes, not {}", data.get_type()))
        })?;
        // As in `__call__`: another app thread may be writing right now.
        let mut this = slf.try_borrow_mut().map_err(|_| busy())?;
        let state = &mut this.state;
        state.used_write = true;
        match state.send(bytes.as_bytes(), false) {
            Ok(()) => Ok(()),
            Err(SendError::NoStatus) => {
                Err(PyAssertionError::new_err("write() before start_response"))
            }
            Err(SendError::Client(e)) => {
                Err(PyOSError::new_err(format!("client disconnected: {e}")))
            }
        }
    }
}

/// The response is in use by another thread of the app (PEP 3333 gives one thread the call).
pub(crate) fn busy() -> PyErr {
    PyRuntimeError::new_err("start_response/write is being used from another thread")
}

/// Validates the app's `(name, value)` pairs into `block`.
fn push_headers<'py>(
    block: &mut HeaderBlock,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    code: u16,
) -> PyResult<()> {
    for item in items {
        let pair = item.cast::<PyTuple>().map_err(|_| {
            PyTypeError::new_err(format!("header {item} is not a (name, value) tuple"))
        })?;
        if pair.len() != 2 {
            return Err(PyTypeError::new_err(format!(
                "header {pair} is not a (name, value) pair"
            )));
        }
        let name = pair.get_item(0)?;
        let value = pair.get_item(1)?;
        let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
            return Err(PyTypeError::new_err(format!(
                "header {pair}: name and value must be str"
            )));
        };
        block
            .push(&name.to_cow()?, &value.to_cow()?, code)
            .map_err(|e| PyValueError::new_err(e.0))?;
    }
    Ok(())
}
