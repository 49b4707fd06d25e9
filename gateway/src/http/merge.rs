//! Merging a response's small blocks into fewer TCP segments, without holding any for long.
//!
//! Under TCP_NODELAY every write is a segment of its own: a generator yielding 100 small
//! blocks costs 100 segments, each a trip through the stack for both ends, and a burst of
//! them can exceed the congestion window. So from a response's second block on, TCP_NODELAY
//! is off: the kernel (Nagle) holds a small block while an earlier small one is
//! unacknowledged and sends it with the blocks that follow. The first block still goes out
//! with the head at once, and the response's end switches TCP_NODELAY back on, which sends
//! what is held.
//!
//! What Nagle alone would hold for long is a block the app wrote just before pausing (a
//! server-sent event, a progress line): it waits for the client's acknowledgement, which a
//! client may delay by 40 ms (Linux) to 200 ms (Windows). PEP 3333 asks a server to keep
//! transmitting while the app produces its next block, so the pusher thread looks at the
//! merging connections every `PUSH_AFTER` and sends what a connection holds once it has seen
//! no write for a whole interval. A response that keeps writing is never pushed.
//!
//! `Merge` (one per connection, in `ConnIo`) holds all of this state and makes every switch;
//! the responder calls `later_write` and `end`, the pusher `push`.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::stream::Stream;

/// How often the pusher looks; a held block waits at most about twice this (longer saves
/// little CPU: bench/results/2026-12-06-readme-history.md).
const PUSH_AFTER: Duration = Duration::from_millis(2);
/// Only a block smaller than this starts merging: big ones fill segments by themselves, and
/// switching costs two system calls, which big blocks do not earn back.
const SMALL_BLOCK: usize = 16 * 1024;

/// One connection's merging state.
pub struct Merge {
    /// A TCP connection without --stream-nodelay: a response's later blocks may be merged.
    allowed: bool,
    /// The response being sent merges (from its first later small block until it ends). Set
    /// and cleared by the thread sending that response; between responses the connection's
    /// hand-over orders it.
    response: AtomicBool,
    /// TCP_NODELAY is off; the lock makes each switch and this flag one step, as the
    /// responder and the pusher both switch it.
    nodelay_off: Mutex<bool>,
    /// Body writes while merging, so the pusher can tell a paused response from a busy one.
    writes: AtomicU32,
}

impl Merge {
    /// `allowed`: a TCP connection without --stream-nodelay.
    pub fn new(allowed: bool) -> Merge {
        Merge {
            allowed,
            response: AtomicBool::new(false),
            nodelay_off: Mutex::new(false),
            writes: AtomicU32::new(0),
        }
    }

    /// `true`: TCP_NODELAY off, so the kernel holds a small write while an earlier small one
    /// is unacknowledged and sends it with what follows (Nagle). `false`: TCP_NODELAY on
    /// again, which also sends at once what the kernel holds. Returns whether the socket is
    /// now so.
    fn switch(&self, stream: &Stream, on: bool) -> bool {
        if !stream.is_tcp() {
            return !on;
        }
        let mut off = self.nodelay_off.lock();
        if *off != on && stream.set_nodelay(!on).is_ok() {
            *off = on;
        }
        *off == on
    }
}

/// What merging needs of a connection: its socket and its `Merge`. `ConnIo` is the one
/// implementor; the trait keeps this module from depending on `io`, which holds the `Merge`.
pub trait Merging: Send + Sync {
    fn merge(&self) -> &Merge;
    fn stream(&self) -> &Stream;
}

#[derive(Default)]
struct Watched {
    /// Merging connections and their write count at the pusher's last look.
    conns: Mutex<Vec<(Arc<dyn Merging>, u32)>>,
    wake: Condvar,
}

static WATCHED: OnceLock<Option<Arc<Watched>>> = OnceLock::new();

/// The pusher's list, starting the thread the first time; `None` if it could not start.
fn watched() -> Option<&'static Arc<Watched>> {
    WATCHED
        .get_or_init(|| {
            let w = Arc::new(Watched::default());
            let for_thread = w.clone();
            match std::thread::Builder::new()
                .name("wsgi-gw-push".into())
                .spawn(move || pusher(&for_thread))
            {
                Ok(_) => Some(w),
                Err(e) => {
                    tracing::warn!(
                        "cannot start the pusher thread ({e}); blocks go out one segment each"
                    );
                    None
                }
            }
        })
        .as_ref()
}

fn pusher(w: &Watched) {
    loop {
        {
            let mut conns = w.conns.lock();
            while conns.is_empty() {
                w.wake.wait(&mut conns);
            }
            for (io, seen) in conns.iter_mut() {
                push(&**io, seen);
            }
        }
        std::thread::sleep(PUSH_AFTER);
    }
}

/// The pusher's look at one connection: what it holds goes out if no write came since the
/// last look (`seen`).
fn push(io: &dyn Merging, seen: &mut u32) {
    let writes = io.merge().writes.load(Ordering::Relaxed);
    if writes == *seen {
        io.merge().switch(io.stream(), false);
    }
    *seen = writes;
}

/// Before a body write of `len` bytes that is not the response's first.
pub fn later_write<C: Merging + 'static>(io: &Arc<C>, len: usize) {
    let m = io.merge();
    if m.response.load(Ordering::Relaxed) {
        m.writes.fetch_add(1, Ordering::Relaxed);
        // After a push, merge again from this write on.
        m.switch(io.stream(), true);
        return;
    }
    if len >= SMALL_BLOCK || !m.allowed {
        return;
    }
    let Some(w) = watched() else {
        return;
    };
    if !m.switch(io.stream(), true) {
        return;
    }
    m.response.store(true, Ordering::Relaxed);
    let mut conns = w.conns.lock();
    // This write counts: the pusher's first look sees it and leaves the connection be.
    let conn: Arc<dyn Merging> = io.clone();
    conns.push((conn, m.writes.fetch_add(1, Ordering::Relaxed)));
    if conns.len() == 1 {
        w.wake.notify_one();
    }
}

/// The response has ended (or was dropped): TCP_NODELAY on again, which sends what is held,
/// so the connection's next response is not held back.
pub fn end<C: Merging + 'static>(io: &Arc<C>) {
    let m = io.merge();
    if !m.response.swap(false, Ordering::Relaxed) {
        return;
    }
    m.switch(io.stream(), false);
    if let Some(w) = watched() {
        let mut conns = w.conns.lock();
        if let Some(i) = conns
            .iter()
            .position(|(c, _)| std::ptr::addr_eq(Arc::as_ptr(c), Arc::as_ptr(io)))
        {
            conns.swap_remove(i);
        }
    }
}
