//! The GIL-aware worker pool. Each worker attaches to Python once, then takes ready work
//! back to back while it holds the GIL; it detaches only to *wait* for work (and the front
//! ends detach around socket waits), so one slow client or slow app blocks one worker, never
//! the process, and a busy worker pays no GIL hand-off between requests.

use std::sync::Arc;
use std::thread::JoinHandle;

use pyo3::prelude::*;

/// What a worker found when it looked for work.
pub enum Next<W> {
    Ready(W),
    /// Nothing ready right now (a non-blocking look), or a spurious wake-up.
    Empty,
    /// The source is shut down: the worker exits.
    Closed,
}

/// Where workers get their work from: a front end's readiness set or job queue.
pub trait WorkSource: Send + Sync + 'static {
    type Work: Send;
    /// A look that never blocks; called while holding the GIL.
    fn try_next(&self) -> Next<Self::Work>;
    /// Blocks until there is work; called with the GIL released.
    fn wait_next(&self) -> Next<Self::Work>;
    /// Runs one piece of work with the GIL held.
    fn run(&self, py: Python<'_>, work: Self::Work);
}

pub struct Pool {
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `threads` workers on `source`.
    pub fn start<S: WorkSource>(
        threads: usize,
        name: &str,
        source: Arc<S>,
    ) -> std::io::Result<Pool> {
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let source = source.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || worker(&*source))?,
            );
        }
        Ok(Pool { workers })
    }

    /// Waits for every worker to exit (after the source reports `Closed`).
    pub fn join(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }
}

fn worker<S: WorkSource>(source: &S) {
    Python::attach(|py| loop {
        let work = match source.try_next() {
            Next::Ready(w) => w,
            Next::Closed => return,
            // Nothing ready: let other threads run Python while this one waits.
            Next::Empty => match py.detach(|| source.wait_next()) {
                Next::Ready(w) => w,
                Next::Empty => continue,
                Next::Closed => return,
            },
        };
        // A bug in a handler must cost one request, not a worker.
        let run = std::panic::AssertUnwindSafe(|| source.run(py, work));
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!("a request handler panicked; the worker carries on");
        }
    });
}
