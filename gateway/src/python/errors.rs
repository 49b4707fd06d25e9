//! `wsgi.errors`: a text stream whose lines go to the gateway's error log.

use parking_lot::Mutex;
use pyo3::prelude::*;

#[pyclass(module = "wsgi_gateway")]
pub struct WsgiErrors {
    /// Text written since the last newline; apps write partial lines.
    pending: Mutex<String>,
}

impl WsgiErrors {
    pub fn new() -> WsgiErrors {
        WsgiErrors {
            pending: Mutex::new(String::new()),
        }
    }
}

impl Default for WsgiErrors {
    fn default() -> Self {
        Self::new()
    }
}

#[pymethods]
impl WsgiErrors {
    fn write(&self, text: &str) -> usize {
        let mut pending = self.pending.lock();
        pending.push_str(text);
        while let Some(nl) = pending.find('\n') {
            let line: String = pending.drain(..=nl).collect();
            tracing::error!(target: "wsgi.errors", "{}", line.trim_end_matches(['\n', '\r']));
        }
        text.chars().count()
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            let line = line?;
            self.write(line.extract::<&str>()?);
        }
        Ok(())
    }

    fn flush(&self) {
        let mut pending = self.pending.lock();
        if !pending.is_empty() {
            tracing::error!(target: "wsgi.errors", "{}", pending.as_str());
            pending.clear();
        }
    }

    #[getter]
    fn encoding(&self) -> &'static str {
        "utf-8"
    }

    fn writable(&self) -> bool {
        true
    }
}
