//! The GIL-aware worker pool. Each worker attaches to Python once and runs queued jobs back to
//! back while it holds the GIL; it detaches only to wait for work (and the front ends detach
//! around socket waits), so one slow client or slow app blocks one worker, never the process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use pyo3::prelude::*;

/// Runs one job on a worker that holds the GIL.
pub type Handler<J> = Arc<dyn Fn(Python<'_>, J) + Send + Sync>;

pub struct Pool<J: Send + 'static> {
    tx: Option<Sender<J>>,
    workers: Vec<JoinHandle<()>>,
    busy: Arc<AtomicUsize>,
}

impl<J: Send + 'static> Pool<J> {
    /// Starts `threads` workers behind a queue of `queue` jobs.
    pub fn new(threads: usize, queue: usize, handler: Handler<J>) -> std::io::Result<Pool<J>> {
        let (tx, rx) = bounded::<J>(queue.max(1));
        let busy = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let handler = handler.clone();
            let busy = busy.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("wsgi-worker-{i}"))
                    .spawn(move || worker(rx, handler, busy))?,
            );
        }
        Ok(Pool {
            tx: Some(tx),
            workers,
            busy,
        })
    }

    /// Queues a job, or hands it back when the queue is full (the front end answers 503).
    pub fn try_submit(&self, job: J) -> Result<(), J> {
        match &self.tx {
            Some(tx) => tx.try_send(job).map_err(|e| match e {
                TrySendError::Full(j) | TrySendError::Disconnected(j) => j,
            }),
            None => Err(job),
        }
    }

    /// Jobs being run right now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Acquire)
    }

    /// Stops taking jobs, lets the workers finish what is queued, and joins them.
    pub fn shutdown(mut self) {
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = Python::attach(|py| py.detach(|| w.join()));
        }
    }
}

fn worker<J: Send>(rx: Receiver<J>, handler: Handler<J>, busy: Arc<AtomicUsize>) {
    Python::attach(|py| loop {
        // Ready work is run without giving up the GIL; only an empty queue is waited on detached.
        let job = match rx.try_recv() {
            Ok(job) => job,
            Err(crossbeam_channel::TryRecvError::Disconnected) => return,
            Err(crossbeam_channel::TryRecvError::Empty) => match py.detach(|| rx.recv()) {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        busy.fetch_add(1, Ordering::AcqRel);
        // A bug in a handler must cost one request, not a worker.
        let run = std::panic::AssertUnwindSafe(|| handler(py, job));
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!("a request handler panicked; the worker carries on");
        }
        busy.fetch_sub(1, Ordering::AcqRel);
    });
}
