//! The WSGI call: environ in, app called, iterable drained into the responder, `close()`
//! always called. Runs on a worker thread that holds the GIL.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::environ::EnvironBuilder;
#[cfg(unix)]
use super::file_wrapper::FileWrapper;
use super::input::WsgiInput;
use super::start_response::{ResponseState, SendError, StartResponse};
use crate::request::{BodyFailure, BodyReader, Request};
use crate::responder::Responder;

/// A loaded app and everything needed to call it.
pub struct WsgiApp {
    pub app: Py<PyAny>,
    pub environ: EnvironBuilder,
    /// `--debug`: tracebacks in 500 bodies.
    pub debug: bool,
    /// What the access log's format reads from the call (empty: nothing is kept).
    pub capture: Capture,
    /// `--timeout`: the calls inside the app, for the watchdog (`None`: off, nothing tracked).
    #[cfg(unix)]
    pub watch: Option<std::sync::Arc<crate::watchdog::Calls>>,
}

/// What `--access-log-format` reads that only the call sees: environ values (`%{VAR}e`,
/// `%a`, `%V`: as the app receives them, read before it runs) and response headers
/// (`%{Header}o`: as the app gave them). Named once at start.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    environ: Vec<String>,
    /// Lower case.
    response_headers: Vec<Vec<u8>>,
}

impl Capture {
    pub fn is_empty(&self) -> bool {
        self.environ.is_empty() && self.response_headers.is_empty()
    }

    /// The index of environ key `key` among the captured values (added once).
    pub fn environ_key(&mut self, key: &str) -> usize {
        index_of(&mut self.environ, key.to_string())
    }

    /// The index of response header `name` (any case) among the captured values.
    pub fn response_header(&mut self, name: &str) -> usize {
        index_of(
            &mut self.response_headers,
            name.to_ascii_lowercase().into_bytes(),
        )
    }

    pub fn environ_keys(&self) -> &[String] {
        &self.environ
    }

    pub fn response_headers(&self) -> &[Vec<u8>] {
        &self.response_headers
    }
}

fn index_of<T: PartialEq>(list: &mut Vec<T>, item: T) -> usize {
    match list.iter().position(|x| *x == item) {
        Some(i) => i,
        None => {
            list.push(item);
            list.len() - 1
        }
    }
}

/// The values a `Capture` named, in its order (`None`: not there), as latin-1 bytes.
#[derive(Debug, Default)]
pub struct Captured {
    pub environ: Vec<Option<Vec<u8>>>,
    pub response_headers: Vec<Option<Vec<u8>>>,
}

/// What the front end needs to know after the call.
pub struct CallOutcome {
    pub status: u16,
    pub body_bytes: u64,
    /// The response is complete and self-delimited, and nobody asked to close.
    pub reusable: bool,
    /// The front end's body reader, back for connection reuse.
    pub reader: Option<Box<dyn BodyReader>>,
    /// The app failed (its traceback is in the error log), as opposed to the client.
    pub app_error: bool,
    /// What `WsgiApp::capture` named (`None` when it names nothing).
    pub captured: Option<Box<Captured>>,
}

impl CallOutcome {
    /// The call could not be seen through: the connection is given up.
    fn given_up(status: u16) -> CallOutcome {
        CallOutcome {
            status,
            body_bytes: 0,
            reusable: false,
            reader: None,
            app_error: false,
            captured: None,
        }
    }
}

impl WsgiApp {
    /// Calls the app for one request and streams its response through `responder`.
    pub fn call(
        &self,
        py: Python<'_>,
        req: &Request,
        body: Box<dyn BodyReader>,
        responder: Box<dyn Responder>,
    ) -> CallOutcome {
        #[cfg(unix)]
        let _in_app = self.watch.as_ref().map(|w| {
            w.enter(format!(
                "{} {} {}",
                String::from_utf8_lossy(&req.method),
                String::from_utf8_lossy(&req.target),
                req.version.as_str()
            ))
        });
        let is_head = req.method.as_ref() == b"HEAD";
        let where_ = || {
            format!(
                "{} {}",
                String::from_utf8_lossy(&req.method),
                String::from_utf8_lossy(&req.target)
            )
        };
        let input = match Bound::new(py, WsgiInput::new(body)) {
            Ok(i) => i,
            Err(e) => {
                let mut state = ResponseState::new(responder, is_head);
                self.report(py, &mut state, &e, &where_());
                return finish_outcome(state, None, None);
            }
        };
        let sr = match Bound::new(
            py,
            StartResponse {
                state: ResponseState::new(responder, is_head),
            },
        ) {
            Ok(sr) => sr,
            Err(e) => {
                tracing::error!("{}: cannot create start_response: {e}", where_());
                return CallOutcome::given_up(500);
            }
        };
        let mut kept_environ = None;
        let result = self
            .environ
            .build(py, req, input.as_any())
            .and_then(|environ| {
                if !self.capture.is_empty() {
                    kept_environ = Some(self.capture_environ(&environ));
                }
                self.app.bind(py).call1((environ, &sr))
            });
        match result {
            Err(e) => self.report_sr(py, &sr, &input, &e, &where_()),
            Ok(iterable) => {
                self.drain(py, &sr, &input, &iterable, &where_);
                // PEP 3333: close() on every path: normal end, app error, client gone.
                // Lists and tuples have no close(); asking would build an AttributeError.
                let plain = iterable.is_exact_instance_of::<PyList>()
                    || iterable.is_exact_instance_of::<PyTuple>();
                if !plain && matches!(iterable.hasattr("close"), Ok(true)) {
                    if let Err(e) = iterable.call_method0("close") {
                        self.report_sr(py, &sr, &input, &e, &where_());
                    }
                }
                // Another thread of the app may be inside write() right now: never panic on it.
                let Ok(mut this) = sr.try_borrow_mut() else {
                    return busy_outcome(&input, &where_());
                };
                let state = &mut this.state;
                if !state.outcome.aborted && !state.outcome.client_gone {
                    if !state.has_status() {
                        tracing::error!(
                            "{}: the app returned without calling start_response",
                            where_()
                        );
                        state.outcome.app_error = true;
                        state.fail(None);
                    } else if let Err(SendError::Client(e)) = state.finish() {
                        tracing::debug!("{}: client went away: {e}", where_());
                    }
                }
            }
        }
        let Ok(mut this) = sr.try_borrow_mut() else {
            return busy_outcome(&input, &where_());
        };
        let reader = take_reader(&input);
        let state = std::mem::replace(
            &mut this.state,
            ResponseState::new(Box::new(NoResponder), false),
        );
        let captured = (!self.capture.is_empty()).then(|| {
            Box::new(Captured {
                environ: kept_environ.unwrap_or_default(),
                response_headers: self
                    .capture
                    .response_headers
                    .iter()
                    .map(|name| state.header_value(name).map(<[u8]>::to_vec))
                    .collect(),
            })
        });
        finish_outcome(state, reader, captured)
    }

    /// The environ values the access log's format names, before the app can change them.
    fn capture_environ(&self, environ: &Bound<'_, pyo3::types::PyDict>) -> Vec<Option<Vec<u8>>> {
        use pyo3::types::PyDictMethods;
        self.capture
            .environ
            .iter()
            .map(|key| {
                let v = environ.get_item(key.as_str()).ok().flatten()?;
                let text = v.str().ok()?;
                let text = text.to_cow().ok()?;
                // PEP 3333 values are latin-1; anything wider is kept as UTF-8.
                Some(
                    text.chars()
                        .map(|c| u8::try_from(u32::from(c)).ok())
                        .collect::<Option<Vec<u8>>>()
                        .unwrap_or_else(|| text.as_bytes().to_vec()),
                )
            })
            .collect()
    }

    /// Iterates the app's response into the responder until it ends, fails, or the client goes.
    fn drain(
        &self,
        py: Python<'_>,
        sr: &Bound<'_, StartResponse>,
        input: &Bound<'_, WsgiInput>,
        iterable: &Bound<'_, PyAny>,
        where_: &dyn Fn() -> String,
    ) {
        #[cfg(unix)]
        if let Ok(wrapper) = iterable.cast::<FileWrapper>() {
            let file = wrapper
                .try_borrow()
                .ok()
                .and_then(|w| w.as_regular_file(py));
            if let (Some((fd, offset, len)), Ok(mut this)) = (file, sr.try_borrow_mut()) {
                // SAFETY: `fd` is the descriptor of the file object `wrapper` holds, and
                // `iterable` (that wrapper) stays referenced for this whole call, so the file
                // stays open while its bytes are sent.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                if !this.state.used_write {
                    match this.state.send_file(fd, offset, len) {
                        Ok(true) => return,
                        Ok(false) => {}
                        Err(SendError::Client(e)) => {
                            tracing::debug!("{}: client went away: {e}", where_());
                            return;
                        }
                        Err(SendError::NoStatus) => {}
                    }
                }
            }
        }
        // PEP 3333: trust len(); a one-element response gets a computed Content-Length.
        let len = if let Ok(list) = iterable.cast::<PyList>() {
            Some(list.len())
        } else if let Ok(tuple) = iterable.cast::<PyTuple>() {
            Some(tuple.len())
        } else {
            None
        };
        let single = len == Some(1);
        if len.is_some_and(|n| n > 1) && self.send_list(sr, iterable, where_) {
            return;
        }
        let iter = match iterable.try_iter() {
            Ok(it) => it,
            Err(_) => {
                let ty = super::type_name(iterable);
                let e = pyo3::exceptions::PyTypeError::new_err(format!(
                    "the app returned a {ty}, which is not an iterable of bytes"
                ));
                self.report_sr(py, sr, input, &e, &where_());
                return;
            }
        };
        for item in iter {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    self.report_sr(py, sr, input, &e, &where_());
                    return;
                }
            };
            let Ok(chunk) = item.cast::<PyBytes>() else {
                let ty = super::type_name(&item);
                let e = pyo3::exceptions::PyTypeError::new_err(format!(
                    "the app's iterable yielded a {ty}, not bytes"
                ));
                self.report_sr(py, sr, input, &e, &where_());
                return;
            };
            let Ok(mut this) = sr.try_borrow_mut() else {
                let e = super::start_response::busy();
                self.report_sr(py, sr, input, &e, &where_());
                return;
            };
            let last = single && !this.state.used_write;
            match this.state.send(chunk.as_bytes(), last) {
                Ok(()) => {}
                Err(SendError::Client(e)) => {
                    tracing::debug!("{}: client went away: {e}", where_());
                    return;
                }
                Err(SendError::NoStatus) => {
                    drop(this);
                    let e = pyo3::exceptions::PyAssertionError::new_err(
                        "the app produced body bytes before calling start_response",
                    );
                    self.report_sr(py, sr, input, &e, &where_());
                    return;
                }
            }
        }
    }

    /// A list (or tuple) of several `bytes` goes out in one call: its chunks are all there,
    /// so nothing is delayed. Anything else (a subclass, an item that is not exactly `bytes`,
    /// or `write()` used) takes the item-by-item path; `true` when the list was handled here.
    fn send_list(
        &self,
        sr: &Bound<'_, StartResponse>,
        iterable: &Bound<'_, PyAny>,
        where_: &dyn Fn() -> String,
    ) -> bool {
        let items: Vec<Bound<'_, PyAny>> = if let Ok(list) = iterable.cast_exact::<PyList>() {
            list.iter().collect()
        } else if let Ok(tuple) = iterable.cast_exact::<PyTuple>() {
            tuple.iter().collect()
        } else {
            return false;
        };
        let Some(chunks) = items
            .iter()
            .map(|i| i.cast_exact::<PyBytes>().ok().map(|b| b.as_bytes()))
            .collect::<Option<Vec<&[u8]>>>()
        else {
            return false;
        };
        let Ok(mut this) = sr.try_borrow_mut() else {
            return false;
        };
        if this.state.used_write || !this.state.has_status() {
            return false;
        }
        if let Err(SendError::Client(e)) = this.state.send_many(&chunks) {
            tracing::debug!("{}: client went away: {e}", where_());
        }
        true
    }

    fn report_sr(
        &self,
        py: Python<'_>,
        sr: &Bound<'_, StartResponse>,
        input: &Bound<'_, WsgiInput>,
        err: &PyErr,
        where_: &str,
    ) {
        let body_failure = input.try_borrow().ok().and_then(|i| i.body_failure());
        match (sr.try_borrow_mut(), body_failure) {
            // The client broke, stalled or abandoned its body; the app only tripped over it.
            (Ok(mut this), Some(failure)) => {
                let status = match failure {
                    BodyFailure::Invalid(reject) => Some(reject.status),
                    BodyFailure::TimedOut => Some(408),
                    BodyFailure::ClientGone => None,
                };
                match status {
                    Some(s) if !this.state.outcome.headers_sent => {
                        tracing::info!("{s} for {where_}: request body: {err}");
                        this.state.fail_status(s);
                    }
                    _ => {
                        tracing::info!("{where_}: request body: {err}; connection closed");
                        this.state.abort();
                    }
                }
            }
            (Ok(mut this), None) => self.report(py, &mut this.state, err, where_),
            (Err(_), _) => tracing::error!("{where_}: {}", super::format_exception(py, err)),
        }
    }

    /// Logs an app failure with its traceback and answers 500 (or cuts the response off).
    fn report(&self, py: Python<'_>, state: &mut ResponseState, err: &PyErr, where_: &str) {
        if state.outcome.client_gone {
            tracing::debug!("{where_}: client went away");
            return;
        }
        state.outcome.app_error = true;
        let tb = super::format_exception(py, err);
        if state.outcome.headers_sent {
            tracing::error!("error in WSGI app after the response started ({where_}); connection aborted:\n{tb}");
        } else {
            tracing::error!("error in WSGI app ({where_}):\n{tb}");
        }
        state.fail(self.debug.then_some(tb.as_str()));
    }
}

/// The front end's reader back, unless another thread of the app is still reading from it
/// (then the connection cannot be reused).
fn take_reader(input: &Bound<'_, WsgiInput>) -> Option<Box<dyn BodyReader>> {
    input
        .try_borrow_mut()
        .ok()
        .and_then(|mut i| i.take_reader())
}

/// The response state is held by another thread of the app: the connection is given up
/// (and the body reader withdrawn from `wsgi.input`).
fn busy_outcome(input: &Bound<'_, WsgiInput>, where_: &str) -> CallOutcome {
    tracing::error!("{where_}: the app was still writing from another thread when its call returned; connection closed");
    drop(take_reader(input));
    CallOutcome::given_up(0)
}

fn finish_outcome(
    state: ResponseState,
    reader: Option<Box<dyn BodyReader>>,
    captured: Option<Box<Captured>>,
) -> CallOutcome {
    CallOutcome {
        status: state.code(),
        body_bytes: state.body_bytes_sent(),
        reusable: !state.must_close() && state.outcome.headers_sent,
        reader,
        app_error: state.outcome.app_error,
        captured,
    }
}

/// Stands in for the real responder once it has been taken out of the `StartResponse`.
struct NoResponder;

impl Responder for NoResponder {
    fn start(&mut self, _: &crate::responder::ResponseHead<'_>) -> std::io::Result<()> {
        Err(std::io::Error::other("response already finished"))
    }
    fn write(&mut self, _: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::other("response already finished"))
    }
    fn finish(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn abort(&mut self) {}
    fn body_bytes_sent(&self) -> u64 {
        0
    }
}
