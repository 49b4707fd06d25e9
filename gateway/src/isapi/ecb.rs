//! One request's ECB behind a lock: every call into IIS for a request goes through `Session`,
//! which refuses once `HSE_REQ_DONE_WITH_SESSION` was sent, so the ECB is never touched after
//! IIS took it back (by the worker, or by `TerminateExtension` ending a stuck request).
//! The one call made without that lock is `HSE_REQ_CLOSE_CONNECTION` from
//! `TerminateExtension`, to end a ReadClient/WriteClient a worker is blocked in.

use std::ffi::{c_void, CStr};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::ffi::*;
use crate::reject::ErrorDocument;

/// Largest server variable we accept (IIS's own request limits are far below this).
const MAX_VARIABLE: u32 = 16 << 20;
/// First buffer for a server variable; most fit, the rest are retried at their real size.
const FIRST_TRY: usize = 512;

/// Safe calls on a live ECB. Only built from a pointer IIS handed to `HttpExtensionProc` and
/// has not taken back yet.
pub struct Ecb(*mut ExtensionControlBlock);

// SAFETY: IIS lets any thread use an ECB until DONE_WITH_SESSION (the asynchronous model);
// `Session` serialises the uses and ends them at DONE_WITH_SESSION.
unsafe impl Send for Ecb {}

impl Ecb {
    /// # Safety
    /// `ecb` is the pointer IIS passed to `HttpExtensionProc`, still owned by this request.
    pub unsafe fn new(ecb: *mut ExtensionControlBlock) -> Option<Ecb> {
        (!ecb.is_null()).then_some(Ecb(ecb))
    }

    fn raw(&self) -> &ExtensionControlBlock {
        // SAFETY: a live ECB (see `new`), only read here.
        unsafe { &*self.0 }
    }

    fn c_string(ptr: *const u8) -> Vec<u8> {
        if ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: IIS's string fields are NUL-terminated and live as long as the ECB.
        unsafe { CStr::from_ptr(ptr.cast()) }.to_bytes().to_vec()
    }

    pub fn method(&self) -> Vec<u8> {
        Ecb::c_string(self.raw().lpsz_method)
    }

    pub fn query(&self) -> Vec<u8> {
        Ecb::c_string(self.raw().lpsz_query_string)
    }

    pub fn content_type(&self) -> Vec<u8> {
        Ecb::c_string(self.raw().lpsz_content_type)
    }

    pub fn total_bytes(&self) -> u32 {
        self.raw().cb_total_bytes
    }

    /// The body bytes IIS read ahead (`lpbData[..cbAvailable]`).
    pub fn preloaded(&self) -> &[u8] {
        let raw = self.raw();
        if raw.lpb_data.is_null() || raw.cb_available == 0 {
            return &[];
        }
        let len = usize::try_from(raw.cb_available).unwrap_or(0);
        // SAFETY: IIS guarantees `cbAvailable` readable bytes at `lpbData` for the ECB's life.
        unsafe { std::slice::from_raw_parts(raw.lpb_data, len) }
    }

    /// A server variable's bytes (without the NUL), or `None` when IIS does not know it.
    /// Variables of any size: a FALSE with `*size` raised means "retry with this much".
    pub fn server_variable(&self, name: &CStr) -> Option<Vec<u8>> {
        let get = self.raw().get_server_variable?;
        let conn = self.raw().conn_id;
        let mut buf = vec![0u8; FIRST_TRY];
        for _ in 0..3 {
            let offered = u32::try_from(buf.len()).ok()?;
            let mut size = offered;
            // SAFETY: `buf` has `size` writable bytes; the name is NUL-terminated.
            let ok = unsafe {
                get(
                    conn,
                    name.as_ptr().cast(),
                    buf.as_mut_ptr().cast::<c_void>(),
                    &mut size,
                )
            };
            if ok != 0 {
                let len = usize::try_from(size).ok()?.min(buf.len());
                buf.truncate(len);
                // The count includes the terminating NUL; a value never contains one.
                if let Some(end) = buf.iter().position(|&b| b == 0) {
                    buf.truncate(end);
                }
                return Some(buf);
            }
            if size <= offered || size > MAX_VARIABLE {
                // Unknown variable (size untouched), or larger than any sane request.
                return None;
            }
            buf = vec![0u8; usize::try_from(size).ok()?];
        }
        None
    }

    /// `ReadClient`: up to `buf.len()` more body bytes; 0 = the body (or the client) ended.
    pub fn read_client(&self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self
            .raw()
            .read_client
            .ok_or_else(|| io::Error::other("no ReadClient"))?;
        let mut size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        // SAFETY: `buf` has at least `size` writable bytes.
        let ok = unsafe { read(self.raw().conn_id, buf.as_mut_ptr().cast(), &mut size) };
        if ok == 0 {
            return Err(gone("ReadClient failed"));
        }
        Ok(usize::try_from(size).unwrap_or(0).min(buf.len()))
    }

    /// Synchronous `WriteClient` of all of `buf`.
    pub fn write_client(&self, mut buf: &[u8]) -> io::Result<()> {
        let write = self
            .raw()
            .write_client
            .ok_or_else(|| io::Error::other("no WriteClient"))?;
        while !buf.is_empty() {
            let mut size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
            // SAFETY: `buf` has at least `size` readable bytes.
            let ok = unsafe {
                write(
                    self.raw().conn_id,
                    buf.as_ptr().cast(),
                    &mut size,
                    HSE_IO_SYNC,
                )
            };
            let sent = usize::try_from(size).unwrap_or(0).min(buf.len());
            if ok == 0 || sent == 0 {
                return Err(gone("WriteClient failed"));
            }
            buf = &buf[sent..];
        }
        Ok(())
    }

    /// `ServerSupportFunction(request, buffer)`.
    ///
    /// # Safety
    /// `buffer` is what IIS reads or writes for `request` (null where it takes none), valid
    /// for the call.
    unsafe fn support(&self, request: Dword, buffer: *mut c_void) -> bool {
        let Some(ssf) = self.raw().server_support_function else {
            return false;
        };
        // SAFETY: a live ECB's own connection and function; `buffer` as the caller promised.
        unsafe {
            ssf(
                self.raw().conn_id,
                request,
                buffer,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            ) != 0
        }
    }

    /// `HSE_REQ_SEND_RESPONSE_HEADER_EX`: `status` without the HTTP version, `headers` ending
    /// with the blank line.
    pub fn send_headers(&self, status: &[u8], headers: &[u8], keep_conn: bool) -> io::Result<()> {
        let status_z = nul_terminated(status);
        let headers_z = nul_terminated(headers);
        let mut info = HseSendHeaderExInfo {
            psz_status: status_z.as_ptr(),
            psz_header: headers_z.as_ptr(),
            cch_status: u32::try_from(status.len()).map_err(io::Error::other)?,
            cch_header: u32::try_from(headers.len()).map_err(io::Error::other)?,
            f_keep_conn: Bool::from(keep_conn),
        };
        // SAFETY: HSE_REQ_SEND_RESPONSE_HEADER_EX reads an HSE_SEND_HEADER_EX_INFO, whose
        // strings (`status_z`, `headers_z`) outlive the call.
        let sent = unsafe {
            self.support(
                HSE_REQ_SEND_RESPONSE_HEADER_EX,
                std::ptr::addr_of_mut!(info).cast(),
            )
        };
        if sent {
            Ok(())
        } else {
            Err(gone("sending the response header failed"))
        }
    }

    /// The status and a short note for IIS's log.
    pub fn set_log(&self, status: u16, note: &str) {
        let mut log = [0u8; HSE_LOG_BUFFER_LEN];
        let n = note.len().min(HSE_LOG_BUFFER_LEN - 1);
        log[..n].copy_from_slice(&note.as_bytes()[..n]);
        // SAFETY: a live ECB. Only these two fields are written, through the pointer (no `&mut`
        // to the whole block, which `raw()` readers may be looking at); nothing of ours reads
        // them, and IIS reads them only after the request ends.
        unsafe {
            std::ptr::addr_of_mut!((*self.0).dw_http_status_code).write(Dword::from(status));
            std::ptr::addr_of_mut!((*self.0).lpsz_log_data).write(log);
        }
    }

    /// A complete response of the gateway's own (`status` and its reason as a text body);
    /// the connection closes, since the request body may not have been read.
    pub fn answer(&self, status: u16, note: &str) -> Dword {
        let doc = ErrorDocument::new(status, None);
        let head = format!(
            "Content-Type: {}\r\nContent-Length: {}\r\n\r\n",
            ErrorDocument::CONTENT_TYPE,
            doc.body.len()
        );
        self.set_log(status, note);
        let sent = self
            .send_headers(doc.status_line.as_bytes(), head.as_bytes(), false)
            .and_then(|()| self.write_client(&doc.body));
        match sent {
            Ok(()) => HSE_STATUS_SUCCESS,
            Err(_) => HSE_STATUS_ERROR,
        }
    }

    /// Closes the client connection, so a cut-off response cannot look complete.
    pub fn close_connection(&self) {
        // SAFETY: HSE_REQ_CLOSE_CONNECTION takes no buffer.
        unsafe { self.support(HSE_REQ_CLOSE_CONNECTION, std::ptr::null_mut()) };
    }

    /// What `HSE_REQ_CLOSE_CONNECTION` needs, copied out of the ECB (IIS never changes these
    /// fields), so it can be sent while another thread is inside a call on this ECB.
    fn closer(&self) -> Option<Closer> {
        Some(Closer {
            conn: self.raw().conn_id,
            ssf: self.raw().server_support_function?,
        })
    }

    /// `HSE_REQ_DONE_WITH_SESSION`: IIS takes the ECB back.
    fn done(self, status: Dword) {
        let mut status = status;
        // SAFETY: HSE_REQ_DONE_WITH_SESSION reads one DWORD status, which outlives the call.
        unsafe {
            self.support(
                HSE_REQ_DONE_WITH_SESSION,
                std::ptr::addr_of_mut!(status).cast(),
            )
        };
    }
}

/// `HSE_REQ_CLOSE_CONNECTION` for one request, usable while its worker is blocked inside a
/// synchronous ReadClient/WriteClient (which holds the session's lock): IIS closes the
/// socket at once, even under pending I/O, and the blocked call fails.
struct Closer {
    conn: Hconn,
    ssf: ServerSupportFunctionFn,
}

// SAFETY: the connection handle is an opaque token IIS accepts from any thread until
// DONE_WITH_SESSION; `Session` drops the `Closer` before sending that.
unsafe impl Send for Closer {}

impl Closer {
    fn close(&self) {
        // SAFETY: a live request (see the Send impl); this request code takes no buffers.
        unsafe {
            (self.ssf)(
                self.conn,
                HSE_REQ_CLOSE_CONNECTION,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }
}

fn gone(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, what)
}

fn nul_terminated(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len() + 1);
    v.extend_from_slice(bytes);
    v.push(0);
    v
}

/// How the response ended, noted by the responder for `DONE_WITH_SESSION`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ending {
    /// The response is self-delimited and nobody asked to close: IIS may keep the connection.
    pub keep_conn: bool,
    /// The response was cut off (app error after it started, or the client left).
    pub aborted: bool,
    /// The response head went to IIS, with this status.
    pub headers_sent: bool,
    pub status: u16,
    pub client_gone: bool,
}

struct Inner {
    /// `None` once DONE_WITH_SESSION was sent.
    ecb: Option<Ecb>,
    ending: Ending,
}

/// A pending request's ECB, shared by its worker and `TerminateExtension`.
pub struct Session {
    /// Held for the length of every call into IIS (so a worker blocked in a synchronous
    /// ReadClient/WriteClient holds it until that call returns).
    inner: Mutex<Inner>,
    /// `None` once DONE_WITH_SESSION is sent; locked around each CLOSE_CONNECTION it sends,
    /// so taking it away waits for one in progress. Lock order: `inner`, then `closer`.
    closer: Mutex<Option<Closer>>,
    /// TerminateExtension closed the connection under the worker.
    interrupted: AtomicBool,
}

/// The request is over on IIS's side (ended by `TerminateExtension`).
pub fn ended() -> io::Error {
    gone("the request was ended by TerminateExtension")
}

impl Session {
    pub fn new(ecb: Ecb) -> Session {
        Session {
            closer: Mutex::new(ecb.closer()),
            inner: Mutex::new(Inner {
                ecb: Some(ecb),
                ending: Ending::default(),
            }),
            interrupted: AtomicBool::new(false),
        }
    }

    /// The ECB of a session nobody else holds (a request refused before it was queued).
    pub fn into_ecb(self) -> Option<Ecb> {
        self.inner.into_inner().ecb
    }

    /// Takes the ECB for DONE_WITH_SESSION: after this no call of ours reaches IIS.
    fn take_ecb(&self, inner: &mut Inner) -> Option<Ecb> {
        let ecb = inner.ecb.take()?;
        *self.closer.lock() = None;
        Some(ecb)
    }

    /// Runs `f` on the live ECB; `Err` once the session has ended.
    pub fn with<T>(&self, f: impl FnOnce(&Ecb) -> io::Result<T>) -> io::Result<T> {
        let inner = self.inner.lock();
        match &inner.ecb {
            Some(ecb) => f(ecb),
            None => Err(ended()),
        }
    }

    /// `with`, and the request's `Ending` to note what the call did, under the same lock.
    pub fn with_ending<T>(
        &self,
        f: impl FnOnce(&Ecb, &mut Ending) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut inner = self.inner.lock();
        let Inner { ecb, ending } = &mut *inner;
        match ecb {
            Some(ecb) => f(ecb, ending),
            None => Err(ended()),
        }
    }

    pub fn is_done(&self) -> bool {
        self.inner.lock().ecb.is_none()
    }

    pub fn note(&self, f: impl FnOnce(&mut Ending)) {
        f(&mut self.inner.lock().ending);
    }

    /// Ends the request: log fields, then exactly one DONE_WITH_SESSION.
    pub fn finish(&self, status: u16, note: &str, reusable: bool) {
        let mut inner = self.inner.lock();
        let ending = inner.ending;
        if let Some(ecb) = self.take_ecb(&mut inner) {
            end(ecb, status, note, ending, reusable);
        }
    }

    /// Ends a request its worker has not finished (TerminateExtension after the graceful
    /// timeout), unless the worker is inside a call into IIS that does not return within
    /// `patience` (false: see `interrupt` and `cancel_blocked`).
    pub fn cancel(&self, patience: Duration) -> bool {
        match self.inner.try_lock_for(patience) {
            Some(mut inner) => {
                self.end_cancelled(&mut inner);
                true
            }
            None => false,
        }
    }

    /// Closes the connection under a worker blocked in ReadClient/WriteClient (a client
    /// that neither sends nor reads), so that the call fails and the worker leaves IIS.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        if let Some(closer) = &*self.closer.lock() {
            closer.close();
        }
    }

    /// `cancel` for a session whose worker is blocked inside IIS: after `interrupt`, waits
    /// for the worker to leave IIS's call, however long that takes (IIS frees the ECB and
    /// unloads the library once TerminateExtension returns, so returning earlier would
    /// leave the worker to come back into freed memory), closing again now and then.
    pub fn cancel_blocked(&self) {
        let mut waited = 0u64;
        let mut inner = loop {
            if let Some(inner) = self.inner.try_lock_for(Duration::from_secs(RECLOSE_SECS)) {
                break inner;
            }
            waited = waited.saturating_add(RECLOSE_SECS);
            tracing::warn!(
                "TerminateExtension: a worker is still inside a call into IIS {waited} s after its connection was closed; waiting for it"
            );
            self.interrupt();
        };
        self.end_cancelled(&mut inner);
    }

    fn end_cancelled(&self, inner: &mut Inner) {
        let Some(ecb) = self.take_ecb(inner) else {
            return;
        };
        if inner.ending.headers_sent || self.interrupted.load(Ordering::SeqCst) {
            // The response is cut off (or the connection is gone): IIS must not keep it.
            let status = if inner.ending.headers_sent {
                inner.ending.status
            } else {
                503
            };
            let ending = Ending {
                aborted: true,
                ..inner.ending
            };
            end(ecb, status, "shutting down", ending, false);
        } else {
            // Nothing went out yet: the client gets a proper 503.
            let status = ecb.answer(503, "shutting down");
            ecb.done(status);
        }
    }
}

/// How often `cancel_blocked` closes the connection again while it waits.
const RECLOSE_SECS: u64 = 10;

fn end(ecb: Ecb, status: u16, note: &str, ending: Ending, reusable: bool) {
    let note = if note.is_empty() && ending.client_gone {
        "client disconnected"
    } else {
        note
    };
    ecb.set_log(status, note);
    let code = if ending.aborted || ending.client_gone {
        ecb.close_connection();
        HSE_STATUS_ERROR
    } else if ending.keep_conn && reusable {
        HSE_STATUS_SUCCESS_AND_KEEP_CONN
    } else {
        HSE_STATUS_SUCCESS
    };
    ecb.done(code);
}
