//! `--timeout` and `--max-rss`: one thread that looks, once a tick, at the calls inside the
//! app and at the process's resident memory. A call inside the app (its response included)
//! for longer than `--timeout` is a hung request: logged once, with its request line, its age
//! and the Python stack of the thread running it, and counted (`metrics::hung_requests`). A worker
//! under a supervisor then retires (`retire`): the supervisor starts its replacement at once,
//! and this process finishes its other requests and exits after `--graceful-timeout`. A
//! worker whose memory passes `--max-rss` retires too. With both options off the thread is
//! not started and calls are not tracked (`WsgiApp::watch` is `None`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::retire::Reason;

/// The longest look interval, and how often `--max-rss` is read: once a second. A `--timeout`
/// of a few seconds is looked at four times per timeout.
const TICK_MAX: Duration = Duration::from_secs(1);
const TICK_MIN: Duration = Duration::from_millis(50);

/// The calls inside the app right now (only tracked when `--timeout` is on).
#[derive(Default)]
pub struct Calls {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    entries: Vec<Option<InApp>>,
    free: Vec<usize>,
}

struct InApp {
    since: Instant,
    /// `GET /path HTTP/1.1`, as the log shows it.
    line: String,
    /// The Python thread ident of the thread running the call (`threading.get_ident()`).
    ident: u64,
    reported: bool,
}

/// One call inside the app; it leaves the table when dropped (however the call ends).
pub struct InCall<'a> {
    calls: &'a Calls,
    idx: usize,
}

impl Drop for InCall<'_> {
    fn drop(&mut self) {
        let mut t = self.calls.table.lock();
        if let Some(e) = t.entries.get_mut(self.idx) {
            *e = None;
            t.free.push(self.idx);
        }
    }
}

/// A call found hung by a look.
struct Hung {
    line: String,
    age: Duration,
    ident: u64,
}

impl Calls {
    /// Notes that this thread starts a call for the request `line`.
    pub fn enter(&self, line: String) -> InCall<'_> {
        let call = InApp {
            since: Instant::now(),
            line,
            ident: thread_ident(),
            reported: false,
        };
        let mut t = self.table.lock();
        let idx = match t.free.pop() {
            Some(i) => {
                t.entries[i] = Some(call);
                i
            }
            None => {
                t.entries.push(Some(call));
                t.entries.len() - 1
            }
        };
        InCall { calls: self, idx }
    }

    /// The calls in for longer than `timeout` that no look reported yet (now they are).
    fn newly_hung(&self, timeout: Duration, now: Instant) -> Vec<Hung> {
        let mut t = self.table.lock();
        let mut hung = Vec::new();
        for call in t.entries.iter_mut().flatten() {
            let age = now.saturating_duration_since(call.since);
            if !call.reported && age > timeout {
                call.reported = true;
                hung.push(Hung {
                    line: call.line.clone(),
                    age,
                    ident: call.ident,
                });
            }
        }
        hung
    }
}

/// The ident Python gives this thread (`PyThread_get_thread_ident`: `pthread_self()`), the key
/// of `sys._current_frames()`.
#[cfg(unix)]
fn thread_ident() -> u64 {
    // SAFETY: pthread_self has no preconditions.
    (unsafe { libc::pthread_self() }) as u64
}

#[cfg(not(unix))]
fn thread_ident() -> u64 {
    0
}

/// What the thread watches for.
pub struct Limits {
    /// `--timeout` (`None`: off).
    pub timeout: Option<Duration>,
    /// `--max-rss` in bytes (`None`: off).
    pub max_rss: Option<u64>,
    /// A supervised worker: it retires (a lone process only logs and counts).
    pub supervised: bool,
}

impl Limits {
    fn tick(&self) -> Duration {
        let by_timeout = self.timeout.map_or(TICK_MAX, |t| t / 4);
        by_timeout.clamp(TICK_MIN, TICK_MAX)
    }
}

/// Starts the watchdog thread, unless both limits are off. `calls`: the table `WsgiApp::call`
/// fills (given when `--timeout` is on); `retire`: starts the worker's retirement
/// (`retire::retire` on the server's flag), `true` when this call started it.
pub fn start(
    limits: Limits,
    calls: Option<Arc<Calls>>,
    retire: Box<dyn Fn(Reason) -> bool + Send>,
) -> std::io::Result<()> {
    if limits.timeout.is_none() && limits.max_rss.is_none() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("wsgi-watchdog".into())
        .spawn(move || watch(&limits, calls.as_deref(), &*retire))?;
    Ok(())
}

fn watch(limits: &Limits, calls: Option<&Calls>, retire: &dyn Fn(Reason) -> bool) {
    let tick = limits.tick();
    let mut memory_done = false;
    let mut memory_read: Option<Instant> = None;
    loop {
        // A coarse periodic look, not a synchronisation: a call is reported within a tick of
        // passing the timeout.
        std::thread::sleep(tick);
        if let (Some(timeout), Some(calls)) = (limits.timeout, calls) {
            let hung = calls.newly_hung(timeout, Instant::now());
            if !hung.is_empty() {
                crate::metrics::hung_requests(hung.len());
                // First the retirement, which needs no GIL: the stacks below wait for it.
                let retires = limits.supervised && retire(Reason::Timeout);
                report(&hung, timeout, retires);
            }
        }
        let memory_due = memory_read.is_none_or(|at| at.elapsed() >= TICK_MAX);
        if let (Some(limit), false, true) = (limits.max_rss, memory_done, memory_due) {
            memory_read = Some(Instant::now());
            if let Some(rss) = resident_bytes() {
                if rss > limit && limits.supervised {
                    memory_done = true;
                    if retire(Reason::MaxRss) {
                        tracing::warn!(
                            "resident memory {} MiB is over --max-rss {} MiB; worker pid {} \
                             retires (a replacement starts; in-flight requests finish)",
                            rss >> 20,
                            limit >> 20,
                            std::process::id()
                        );
                    }
                }
            }
        }
    }
}

/// Logs each hung call once, with the Python stack of its thread.
fn report(hung: &[Hung], timeout: Duration, retires: bool) {
    let idents: Vec<u64> = hung.iter().map(|h| h.ident).collect();
    let stacks = Python::attach(|py| stacks(py, &idents));
    for (h, stack) in hung.iter().zip(stacks) {
        let stack = match stack {
            Ok(Some(s)) => s,
            Ok(None) => "  (the thread has left the app meanwhile)\n".to_string(),
            Err(e) => format!("  (no stack: {e})\n"),
        };
        let action = if retires {
            format!(
                "; worker pid {} retires (a replacement starts; the call gets \
                 --graceful-timeout)",
                std::process::id()
            )
        } else {
            String::new()
        };
        tracing::warn!(
            "hung request: {} has been in the app for {:.1} s (--timeout {} s){action}; \
             its thread's Python stack:\n{}",
            h.line,
            h.age.as_secs_f64(),
            timeout.as_secs_f64(),
            stack.trim_end()
        );
    }
}

/// `traceback.format_stack` of each thread's current frame (`None`: the thread runs no
/// Python now).
fn stacks(py: Python<'_>, idents: &[u64]) -> Vec<PyResult<Option<String>>> {
    let frames = py
        .import("sys")
        .and_then(|sys| sys.getattr("_current_frames"))
        .and_then(|f| f.call0());
    let format = py
        .import("traceback")
        .and_then(|tb| tb.getattr("format_stack"));
    idents
        .iter()
        .map(|&ident| {
            let frames = frames.as_ref().map_err(|e| e.clone_ref(py))?;
            let format = format.as_ref().map_err(|e| e.clone_ref(py))?;
            let Some(frame) = frames.cast::<PyDict>()?.get_item(ident)? else {
                return Ok(None);
            };
            let lines = format.call1((frame,))?;
            let text = PyString::new(py, "").call_method1("join", (lines,))?;
            Ok(Some(text.extract::<String>()?))
        })
        .collect()
}

/// This process's resident memory, from `/proc/self/statm` (its second field, in pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.checked_mul(u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_reported_once_and_leaves_the_table_when_it_ends() {
        let calls = Calls::default();
        let start = Instant::now();
        let call = calls.enter("GET /slow HTTP/1.1".into());
        let other = calls.enter("GET /fast HTTP/1.1".into());
        drop(other);
        assert!(calls.newly_hung(Duration::from_secs(5), start).is_empty());
        let later = Instant::now() + Duration::from_secs(6);
        let hung = calls.newly_hung(Duration::from_secs(5), later);
        assert_eq!(hung.len(), 1);
        assert_eq!(hung[0].line, "GET /slow HTTP/1.1");
        assert_eq!(hung[0].ident, thread_ident());
        assert!(calls.newly_hung(Duration::from_secs(5), later).is_empty());
        drop(call);
        // The places are reused: the table does not grow with the requests served.
        let again = calls.enter("GET /next HTTP/1.1".into());
        assert!(calls.table.lock().entries.len() <= 2);
        drop(again);
        assert!(calls.table.lock().entries.iter().all(Option::is_none));
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }

    #[test]
    fn the_tick_is_coarse() {
        let l = |t: Option<u64>| Limits {
            timeout: t.map(Duration::from_secs),
            max_rss: None,
            supervised: false,
        };
        assert_eq!(l(None).tick(), TICK_MAX);
        assert_eq!(l(Some(2)).tick(), Duration::from_millis(500));
        assert_eq!(l(Some(3600)).tick(), TICK_MAX);
    }
}
