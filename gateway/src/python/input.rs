//! `wsgi.input`: the request body as a Python file-like object, EOF exactly at the body's end.
//! `read(n)` copies once (straight into the new `bytes`), `readinto` straight into the caller's
//! buffer; the front end's reader releases the GIL whenever it has to wait for the client.
//! No read allocates for bytes that have not arrived: a declared length is only a promise.

use std::io;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::request::{BodyFailure, BodyReader};

/// How much `readline`/chunked reads pull from the front end at a time.
const PULL: usize = 64 * 1024;
/// How far a read of a long body may allocate ahead of the bytes that have arrived.
const GROW: usize = 64 * 1024;

#[pyclass(module = "wsgi_gateway")]
pub struct WsgiInput {
    reader: Option<Box<dyn BodyReader>>,
    /// Read-ahead for `readline`: body bytes already pulled but not yet returned.
    ahead: Vec<u8>,
    pos: usize,
    eof: bool,
}

fn io_err(e: io::Error) -> PyErr {
    PyOSError::new_err(format!("reading the request body failed: {e}"))
}

impl WsgiInput {
    pub fn new(reader: Box<dyn BodyReader>) -> WsgiInput {
        WsgiInput {
            reader: Some(reader),
            ahead: Vec::new(),
            pos: 0,
            eof: false,
        }
    }

    /// Takes the front end's reader back once the call is over; the object then reads as empty.
    pub fn take_reader(&mut self) -> Option<Box<dyn BodyReader>> {
        self.eof = true;
        self.ahead.clear();
        self.pos = 0;
        self.reader.take()
    }

    /// Why the body could not be read, when the client caused it (see `BodyReader::failure`).
    pub fn body_failure(&self) -> Option<BodyFailure> {
        self.reader.as_ref().and_then(|r| r.failure())
    }

    fn buffered(&self) -> &[u8] {
        &self.ahead[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos >= self.ahead.len() {
            self.ahead.clear();
            self.pos = 0;
        }
    }

    /// Reads from the front end into `out`, honouring EOF. `Ok(0)` = end of body.
    fn read_reader(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.eof || out.is_empty() {
            return Ok(0);
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(0);
        };
        let n = reader.read(out)?;
        if n == 0 {
            self.eof = true;
        }
        Ok(n)
    }

    /// Pulls up to `PULL` more bytes into the read-ahead; returns how many arrived.
    fn pull(&mut self) -> io::Result<usize> {
        if self.pos > 0 && self.pos * 2 >= self.ahead.len() {
            self.ahead.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.ahead.len();
        self.ahead.resize(old + PULL, 0);
        let mut tmp = std::mem::take(&mut self.ahead);
        let got = self.read_reader(&mut tmp[old..]);
        self.ahead = tmp;
        let n = got.as_ref().map_or(0, |n| *n);
        self.ahead.truncate(old + n);
        got
    }

    /// Bytes still to come, when the front end knows (plus the read-ahead).
    fn known_remaining(&self) -> Option<u64> {
        if self.eof {
            return Some(self.buffered().len() as u64);
        }
        let rest = match &self.reader {
            Some(r) => r.remaining()?,
            None => 0,
        };
        rest.checked_add(self.buffered().len() as u64)
    }

    /// Exactly `len` bytes (fewer only at EOF, which is then an error for a known length).
    /// Memory follows the bytes that arrived, never the length the request declared.
    fn read_exact_known<'py>(
        &mut self,
        py: Python<'py>,
        len: usize,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let in_memory = self.reader.as_ref().map_or(0, |r| r.in_memory().len());
        // The usual case: the whole body came with the head. One copy, and no zero-filling of
        // the new `bytes` first (`new_with` below zeroes it).
        if self.buffered().is_empty() && in_memory >= len {
            if let Some(reader) = self.reader.as_mut() {
                let out = PyBytes::new(py, &reader.in_memory()[..len]);
                reader.consume(len);
                return Ok(out);
            }
        }
        let here = self.buffered().len().saturating_add(in_memory);
        if len <= here.saturating_add(GROW) {
            return PyBytes::new_with(py, len, |out| self.fill_exact(out));
        }
        // The rest is still on its way. Its first half goes into a buffer that grows as bytes
        // arrive; then the `bytes` is made and the second half read straight into it: at most
        // 3x what arrived is ever allocated, for one extra copy of only that first half.
        let half = len.div_ceil(2);
        let mut first = Vec::with_capacity(here.saturating_add(GROW).min(half));
        first.extend_from_slice(self.buffered());
        self.consume(first.len());
        if let Some(reader) = self.reader.as_mut() {
            let mem = reader.in_memory();
            let take = mem.len().min(half.saturating_sub(first.len()));
            first.extend_from_slice(&mem[..take]);
            reader.consume(take);
        }
        let mut filled = first.len();
        while filled < half {
            if filled == first.len() {
                // Zero (and so make resident) only what the next reads may fill.
                let grow_to = filled
                    .saturating_mul(2)
                    .max(filled.saturating_add(GROW))
                    .min(half);
                first.reserve_exact(grow_to - filled);
                first.resize(grow_to, 0);
            }
            filled += self.read_some(&mut first[filled..])?;
        }
        first.truncate(filled);
        PyBytes::new_with(py, len, |out| {
            let (head, rest) = out.split_at_mut(filled);
            head.copy_from_slice(&first);
            drop(std::mem::take(&mut first));
            self.fill_exact(rest)
        })
    }

    /// Fills all of `out`: the read-ahead first, then the front end.
    fn fill_exact(&mut self, out: &mut [u8]) -> PyResult<()> {
        let have = self.buffered().len().min(out.len());
        out[..have].copy_from_slice(&self.buffered()[..have]);
        self.consume(have);
        let mut filled = have;
        while filled < out.len() {
            filled += self.read_some(&mut out[filled..])?;
        }
        Ok(())
    }

    /// Some bytes of a known-length body from the front end; its early end is an error.
    fn read_some(&mut self, out: &mut [u8]) -> PyResult<usize> {
        match self.read_reader(out).map_err(io_err)? {
            0 => Err(PyOSError::new_err(
                "the client closed the connection before sending the whole body",
            )),
            n => Ok(n),
        }
    }

    /// Up to `limit` bytes (`None` = all) when the total is unknown (chunked bodies).
    fn read_unknown<'py>(
        &mut self,
        py: Python<'py>,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut out: Vec<u8> = Vec::new();
        let take = self.buffered().len().min(limit.unwrap_or(usize::MAX));
        out.extend_from_slice(&self.buffered()[..take]);
        self.consume(take);
        loop {
            let want = match limit {
                Some(l) if out.len() >= l => break,
                Some(l) => (l - out.len()).min(PULL),
                None => PULL,
            };
            let start = out.len();
            out.resize(start + want, 0);
            let n = self.read_reader(&mut out[start..]).map_err(io_err)?;
            out.truncate(start + n);
            if n == 0 {
                break;
            }
        }
        Ok(PyBytes::new(py, &out))
    }
}

fn size_arg(size: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    match size {
        None => Ok(None),
        Some(s) if s.is_none() => Ok(None),
        Some(s) => {
            let n: i64 = s.extract()?;
            Ok(usize::try_from(n).ok())
        }
    }
}

#[pymethods]
impl WsgiInput {
    #[pyo3(signature = (size=None))]
    fn read<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let size = size_arg(size)?;
        if let Some(n) = size {
            if self.buffered().len() >= n {
                let out = PyBytes::new(py, &self.buffered()[..n]);
                self.consume(n);
                return Ok(out);
            }
        }
        match self.known_remaining() {
            Some(rest) => {
                let rest =
                    usize::try_from(rest).map_err(|_| PyValueError::new_err("body too large"))?;
                let len = size.map_or(rest, |n| n.min(rest));
                self.read_exact_known(py, len)
            }
            None => self.read_unknown(py, size),
        }
    }

    #[pyo3(signature = (size=None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let limit = size_arg(size)?;
        let mut searched = 0;
        loop {
            let buf = self.buffered();
            let window = limit.map_or(buf.len(), |l| buf.len().min(l));
            if let Some(i) = buf[searched..window].iter().position(|&b| b == b'\n') {
                let end = searched + i + 1;
                let line = PyBytes::new(py, &buf[..end]);
                self.consume(end);
                return Ok(line);
            }
            if limit.is_some_and(|l| buf.len() >= l) || self.eof {
                let line = PyBytes::new(py, &buf[..window]);
                self.consume(window);
                return Ok(line);
            }
            searched = window;
            if self.pull().map_err(io_err)? == 0 {
                let len = self.buffered().len();
                let line = PyBytes::new(py, self.buffered());
                self.consume(len);
                return Ok(line);
            }
        }
    }

    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = size_arg(hint)?.filter(|h| *h > 0);
        let lines = PyList::empty(py);
        let mut total = 0usize;
        loop {
            let line = self.readline(py, None)?;
            let len = line.as_bytes().len();
            if len == 0 {
                break;
            }
            lines.append(line)?;
            total = total.saturating_add(len);
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    /// Reads into a writable buffer (bytearray, memoryview); returns the count, 0 at EOF.
    fn readinto(&mut self, buffer: &Bound<'_, PyAny>) -> PyResult<usize> {
        let view = PyUntypedBuffer::get(buffer)?;
        if view.readonly() || !view.is_c_contiguous() {
            return Err(PyValueError::new_err(
                "readinto() needs a writable contiguous buffer",
            ));
        }
        let len = view.len_bytes();
        // SAFETY: the buffer export pins the memory (and stops resizes) until `view` drops;
        // we checked it is writable and C-contiguous, and `len` is its size in bytes.
        let out = unsafe { std::slice::from_raw_parts_mut(view.buf_ptr().cast::<u8>(), len) };
        let have = self.buffered().len().min(len);
        if have > 0 {
            out[..have].copy_from_slice(&self.buffered()[..have]);
            self.consume(have);
            return Ok(have);
        }
        self.read_reader(out).map_err(io_err)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.readline(py, None)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }

    /// Apps must not close `wsgi.input` (PEP 3333); tolerate it rather than break them.
    fn close(&self) {}

    fn readable(&self) -> bool {
        true
    }
}
