//! `wsgi.file_wrapper`: iterates a file-like in blocks, and lets the call send a real file
//! with `sendfile` instead of through Python.

use pyo3::prelude::*;

#[pyclass(module = "wsgi_gateway")]
pub struct FileWrapper {
    pub filelike: Py<PyAny>,
    pub blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> FileWrapper {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let block = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        if block.is_truthy()? {
            Ok(Some(block))
        } else {
            Ok(None)
        }
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr("close")? {
            f.call_method0("close")?;
        }
        Ok(())
    }
}

impl FileWrapper {
    /// The file descriptor and current offset when the file-like is a real regular file
    /// (so it can be sent with `sendfile`), and its remaining length.
    #[cfg(unix)]
    pub fn as_regular_file(&self, py: Python<'_>) -> Option<(std::os::fd::RawFd, u64, u64)> {
        let f = self.filelike.bind(py);
        let fd: i32 = f.call_method0("fileno").ok()?.extract().ok()?;
        let offset: u64 = f.call_method0("tell").ok()?.extract().ok()?;
        let os = py.import("os").ok()?;
        let st = os.call_method1("fstat", (fd,)).ok()?;
        let mode: u32 = st.getattr("st_mode").ok()?.extract().ok()?;
        let is_reg: bool = py
            .import("stat")
            .ok()?
            .call_method1("S_ISREG", (mode,))
            .ok()?
            .extract()
            .ok()?;
        if !is_reg {
            return None;
        }
        let size: u64 = st.getattr("st_size").ok()?.extract().ok()?;
        Some((fd, offset, size.saturating_sub(offset)))
    }
}
