//! The extension's life: `start` (GetExtensionVersion) loads the configuration, Python and the
//! app and starts the worker pool; `accept` (HttpExtensionProc) turns an ECB into a queued job
//! or an immediate answer; `stop` (TerminateExtension) drains and ends every request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::{Condvar, Mutex, RwLock};
use pyo3::prelude::*;

use super::body::EcbBody;
use super::config::{self, IsapiConfig};
use super::ecb::{Ecb, Session};
use super::ffi::{Dword, HSE_STATUS_PENDING};
use super::request::{read_request, EcbFields, IsapiRequest, ServerVariables};
use super::response::EcbResponder;
use crate::admit;
use crate::config::Underscores;
use crate::pool::{self, Next, Pool, WorkSource};
use crate::python::call::WsgiApp;
use crate::python::environ::FrontEndKind;

/// The running extension; `None` before GetExtensionVersion and after TerminateExtension.
/// Read-locked by every request (IIS threads do not serialise on it).
static RUNNING: RwLock<Option<Arc<Extension>>> = RwLock::new(None);

struct Extension {
    /// The configuration file it runs.
    config: std::path::PathBuf,
    /// Closed (taken) by TerminateExtension: nothing new is queued after that.
    queue: RwLock<Option<Sender<Job>>>,
    jobs: Arc<Jobs>,
    pool: Pool,
    mount: Option<Vec<u8>>,
    max_body: u64,
    graceful: Duration,
}

struct Job {
    id: u64,
    req: IsapiRequest,
    session: Arc<Session>,
}

/// Requests IIS has handed over and not yet taken back, so TerminateExtension can wait for
/// them and end the ones that outlast it. A session is listed exactly while it is queued or
/// running (`admit` lists it in the same step as it queues it), so one refused at the door
/// is never seen, let alone ended, by TerminateExtension.
#[derive(Default)]
struct InFlight {
    sessions: Mutex<HashMap<u64, Arc<Session>>>,
    /// Signalled whenever a session leaves the list.
    shrunk: Condvar,
    next_id: AtomicU64,
}

impl InFlight {
    /// Queues a job with `send` and lists its session, as one step under the list's lock
    /// (so its worker cannot finish it before it is listed). A refused job is never listed.
    fn admit(
        &self,
        id: u64,
        session: &Arc<Session>,
        send: impl FnOnce() -> Result<(), &'static str>,
    ) -> Result<(), &'static str> {
        let mut sessions = self.sessions.lock();
        send()?;
        sessions.insert(id, session.clone());
        Ok(())
    }

    /// The request is over (DONE_WITH_SESSION sent, by its worker or by TerminateExtension).
    fn remove(&self, id: u64) {
        self.sessions.lock().remove(&id);
        self.shrunk.notify_all();
    }

    /// Waits until nothing is listed or `patience` is over; returns what is still listed.
    fn wait_drained(&self, patience: Duration) -> Vec<Arc<Session>> {
        let deadline = Instant::now() + patience;
        let mut sessions = self.sessions.lock();
        while !sessions.is_empty() {
            if self.shrunk.wait_until(&mut sessions, deadline).timed_out() {
                break;
            }
        }
        sessions.values().cloned().collect()
    }
}

/// How long TerminateExtension lets a worker finish a call into IIS before it closes that
/// request's connection under it (a call that does not block returns in far less).
const CALL_PATIENCE: Duration = Duration::from_millis(200);

/// The worker pool's source: queued jobs, run through the app.
struct Jobs {
    rx: Receiver<Job>,
    app: WsgiApp,
    max_body: u64,
    in_flight: InFlight,
}

impl WorkSource for Jobs {
    type Work = Job;

    fn try_next(&self) -> Next<Job> {
        match self.rx.try_recv() {
            Ok(job) => Next::Ready(job),
            Err(crossbeam_channel::TryRecvError::Empty) => Next::Empty,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Next::Closed,
        }
    }

    fn wait_next(&self) -> Next<Job> {
        match self.rx.recv() {
            Ok(job) => Next::Ready(job),
            Err(_) => Next::Closed,
        }
    }

    fn run(&self, py: Python<'_>, job: Job) {
        // Ended by TerminateExtension while it waited in the queue.
        if !job.session.is_done() {
            let body = EcbBody::new(job.session.clone(), job.req.content_length, self.max_body);
            let responder = EcbResponder::new(job.session.clone(), job.req.delimit);
            let outcome = self
                .app
                .call(py, &job.req.request, Box::new(body), Box::new(responder));
            let note = if outcome.app_error { "app error" } else { "" };
            let status = if outcome.status == 0 {
                500
            } else {
                outcome.status
            };
            job.session.finish(status, note, outcome.reusable);
        }
        self.in_flight.remove(job.id);
    }
}

/// GetExtensionVersion: everything that can fail does so here, with a message (IIS only learns
/// FALSE; the message goes to stderr and the error log, whatever the cause).
pub fn start() -> Result<(), String> {
    let mut running = RUNNING.write();
    let lib = super::library::own_path();
    let file = config::config_file(lib.as_deref().and_then(|p| p.parent())).map_err(|e| e.0)?;
    if let Some(ext) = running.as_ref() {
        // One interpreter per process: a second application loading the same core in this
        // worker process would run inside the first one's app.
        if ext.config != file {
            return Err(format!(
                "{}: this IIS worker process already runs the application of {}; give each \
                 application its own application pool",
                file.display(),
                ext.config.display()
            ));
        }
        return Ok(());
    }
    let cfg = config::load(&file).map_err(|e| e.0)?;
    crate::logging::init(&cfg.args.app.error_log, cfg.args.app.log_level)?;
    super::library::share_python_symbols();
    let ext = launch(cfg)?;
    // Threads stuck in an app must never run code IIS has unloaded.
    super::library::pin();
    *running = Some(ext);
    Ok(())
}

fn launch(cfg: IsapiConfig) -> Result<Arc<Extension>, String> {
    let args = &cfg.args;
    let policy = args
        .app
        .trust_policy(args.service.header_underscores == Underscores::Refuse)
        .map_err(|e| format!("{}: {e}", cfg.file.display()))?;
    let kind = FrontEndKind {
        multithread: true,
        // IIS recycles overlapped and runs web gardens: other processes serve the same app.
        multiprocess: true,
        run_once: false,
    };
    let app = crate::python::interpreter::load_wsgi_app(
        &args.app.app_spec(),
        policy,
        kind,
        args.app.debug,
        args.app.error_log != "-",
        Some(args.service.switch_interval),
    )
    .map_err(|e| e.0)?;
    let (tx, rx) = crossbeam_channel::bounded(args.queue_size as usize);
    let jobs = Arc::new(Jobs {
        rx,
        app,
        max_body: args.service.max_body_size,
        in_flight: InFlight::default(),
    });
    let threads = args.service.threads as usize;
    let pool = pool::start(threads, "wsgi-isapi", jobs.clone())
        .map_err(|e| format!("cannot start worker threads: {e}"))?;
    tracing::info!(
        "wsgi-gateway {} ISAPI extension ready ({threads} threads, queue {}, config {})",
        env!("CARGO_PKG_VERSION"),
        args.queue_size,
        cfg.file.display()
    );
    Ok(Arc::new(Extension {
        config: cfg.file.clone(),
        queue: RwLock::new(Some(tx)),
        jobs,
        pool,
        mount: cfg.mount,
        max_body: args.service.max_body_size,
        graceful: args.graceful_timeout,
    }))
}

/// GetServerVariable through the live ECB.
struct EcbVariables<'a>(&'a Ecb);

impl ServerVariables for EcbVariables<'_> {
    fn get(&mut self, name: &std::ffi::CStr) -> Option<Vec<u8>> {
        self.0.server_variable(name)
    }
}

/// HttpExtensionProc: queue the request (PENDING), or answer it at once.
pub fn accept(ecb: Ecb) -> Dword {
    let Some(ext) = RUNNING.read().clone() else {
        return ecb.answer(503, "shutting down");
    };
    let total = ecb.total_bytes();
    let fields = EcbFields {
        method: ecb.method(),
        query: ecb.query(),
        content_type: ecb.content_type(),
        total_bytes: (total != super::ffi::UNKNOWN_LENGTH).then_some(u64::from(total)),
    };
    let req = match read_request(fields, &mut EcbVariables(&ecb), ext.mount.as_deref()) {
        Ok(r) => r,
        Err(refusal) => {
            tracing::info!("{} for an IIS request: {}", refusal.status, refusal.reason);
            return ecb.answer(refusal.status, "");
        }
    };
    let policy = ext.jobs.app.environ.policy();
    if let Err(refused) = admit::check(
        ext.max_body,
        policy,
        req.content_length,
        &req.request.headers,
    ) {
        return ecb.answer(refused.status, &refused.reason);
    }
    let in_flight = &ext.jobs.in_flight;
    let id = in_flight.next_id.fetch_add(1, Ordering::Relaxed);
    // IIS's ECB stays valid until DONE_WITH_SESSION; only the session touches it from now on.
    let session = Arc::new(Session::new(ecb));
    let job = Job {
        id,
        req,
        session: session.clone(),
    };
    // A refused job is dropped with its error, so `session` is then the only reference.
    let admitted = in_flight.admit(id, &session, || match &*ext.queue.read() {
        Some(tx) => tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => "queue full",
            TrySendError::Disconnected(_) => "shutting down",
        }),
        None => Err("shutting down"),
    });
    let why = match admitted {
        // A worker (or TerminateExtension) sends the one DONE_WITH_SESSION.
        Ok(()) => return HSE_STATUS_PENDING,
        Err(why) => why,
    };
    tracing::warn!("503 for an IIS request: {why}");
    // Never queued nor listed: this call alone has the ECB, and ends the request with its
    // return value (no DONE_WITH_SESSION).
    match Arc::try_unwrap(session).ok().and_then(Session::into_ecb) {
        Some(ecb) => ecb.answer(503, why),
        // Unreachable: nobody else was given the session. Whoever held it would be a
        // worker or TerminateExtension, which send DONE_WITH_SESSION: never complete the
        // request a second time here.
        None => {
            tracing::error!("a refused IIS request is held elsewhere; left to its holder");
            HSE_STATUS_PENDING
        }
    }
}

/// TerminateExtension: stop queueing, let requests finish within the graceful timeout, end
/// the rest, and wait for the workers to leave.
pub fn stop() {
    let Some(ext) = RUNNING.write().take() else {
        return;
    };
    // Workers finish what is queued, then see the queue closed and exit.
    drop(ext.queue.write().take());
    let stuck = ext.jobs.in_flight.wait_drained(ext.graceful);
    if !stuck.is_empty() {
        tracing::warn!(
            "TerminateExtension: {} request(s) still running after {:?}; ending them with 503",
            stuck.len(),
            ext.graceful
        );
    }
    end_all(stuck);
    let still = ext.pool.wait_exit(Duration::from_secs(2));
    if still > 0 {
        tracing::warn!("TerminateExtension: {still} worker thread(s) still inside the app; they no longer hold any request");
    }
    tracing::info!("wsgi-gateway ISAPI extension stopped");
}

/// Ends every session with one DONE_WITH_SESSION, and returns only when no worker is inside
/// a call into IIS for any of them and none can start one: IIS frees the ECBs and unloads
/// the library after TerminateExtension returns.
fn end_all(stuck: Vec<Arc<Session>>) {
    let blocked: Vec<Arc<Session>> = stuck
        .into_iter()
        .filter(|s| !s.cancel(CALL_PATIENCE))
        .collect();
    if blocked.is_empty() {
        return;
    }
    tracing::warn!(
        "TerminateExtension: closing {} connection(s) whose worker is blocked inside IIS",
        blocked.len()
    );
    // All closed first, then waited for: the blocked calls end together.
    for session in &blocked {
        session.interrupt();
    }
    for session in blocked {
        session.cancel_blocked();
    }
}
