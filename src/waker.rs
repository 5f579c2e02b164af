//! The library's own wake-ups: flushes of connections whose sending stopped
//! for a reason the kernel will not report on the socket, so the program's
//! event loop gets no event for them ([`crate::state::Send::Waiting`]):
//! - a file source with no data yet (an empty non-blocking pipe): flushed
//!   again as soon as the source is readable;
//! - a write hook that wrote nothing without refusing (`0`, or `EINTR` more
//!   than a few times in a row): flushed again after a short delay that
//!   doubles while it goes on (1 ms up to 64 ms).
//!
//! It also gives memory back once a burst is over ([`crate::pool::trim`]).
//!
//! One thread, started at the first such stall or burst (a program whose
//! writes never queue more than a few packets never starts it), waits with
//! `poll` on the watched sources and the nearest deadline.
//! A watch is one-shot and holds no reference to the connection: when it
//! fires, the UUID is flushed through the usual path, which does nothing if
//! the connection closed meanwhile. After `fork`, the child starts its own
//! thread at its first stall.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Longest the thread sleeps before it looks at new watches (a new watch
/// also wakes it at once).
const TICK: Duration = Duration::from_millis(50);

struct Watch {
    uuid: isize,
    /// Flush when this fd is readable (or fails); -1: only the deadline.
    fd: RawFd,
    due: Instant,
}

struct State {
    watches: Vec<Watch>,
    /// When to give memory back ([`crate::pool::trim`]).
    trim_due: Option<Instant>,
    /// The process that started the thread (a forked child has none).
    thread_of: Option<u32>,
}

struct Waker {
    state: Mutex<State>,
    added: Condvar,
}

static WAKER: Waker = Waker {
    state: Mutex::new(State {
        watches: Vec::new(),
        trim_due: None,
        thread_of: None,
    }),
    added: Condvar::new(),
};

/// Flushes `uuid` once `fd` is readable (`Some`), or after `delay`
/// (whichever comes first).
pub fn watch(uuid: isize, fd: Option<RawFd>, delay: Duration) {
    let mut s = WAKER.state.lock();
    if let Some(w) = s.watches.iter_mut().find(|w| w.uuid == uuid) {
        w.fd = fd.unwrap_or(-1);
        w.due = Instant::now() + delay;
    } else {
        s.watches.push(Watch {
            uuid,
            fd: fd.unwrap_or(-1),
            due: Instant::now() + delay,
        });
    }
    start(&mut s);
    drop(s);
    WAKER.added.notify_one();
}

/// Calls [`crate::pool::trim`] after `delay` (and again after the delay
/// it returns, while it returns one).
pub fn trim_after(delay: Duration) {
    let mut s = WAKER.state.lock();
    s.trim_due = Some(Instant::now() + delay);
    start(&mut s);
    drop(s);
    WAKER.added.notify_one();
}

/// Starts the thread in this process unless it runs.
fn start(s: &mut State) {
    let pid = std::process::id();
    if s.thread_of != Some(pid) {
        let started = std::thread::Builder::new()
            .name("libsock-waker".into())
            .spawn(run)
            .is_ok();
        // Without a thread (out of resources), the next call tries again.
        s.thread_of = started.then_some(pid);
    }
}

/// The waker thread.
fn run() {
    loop {
        let (uuids, fds, timeout) = {
            let mut s = WAKER.state.lock();
            while s.watches.is_empty() && s.trim_due.is_none() {
                WAKER.added.wait(&mut s);
            }
            let now = Instant::now();
            if s.trim_due.is_some_and(|due| due <= now) {
                s.trim_due = None;
                drop(s);
                let again = crate::boundary::guard(None, crate::pool::trim);
                let mut s = WAKER.state.lock();
                if let Some(delay) = again
                    && s.trim_due.is_none()
                {
                    s.trim_due = Some(Instant::now() + delay);
                }
                continue;
            }
            let next = s
                .watches
                .iter()
                .map(|w| w.due)
                .chain(s.trim_due)
                .min()
                .unwrap_or(now);
            let timeout = next.saturating_duration_since(now).min(TICK);
            let uuids: Vec<isize> = s.watches.iter().map(|w| w.uuid).collect();
            let fds: Vec<RawFd> = s.watches.iter().map(|w| w.fd).collect();
            (uuids, fds, timeout)
        };
        let ready = crate::sys::wait_readable(&fds, timeout);
        let now = Instant::now();
        let fired: Vec<isize> = {
            let mut s = WAKER.state.lock();
            let mut fired = Vec::new();
            s.watches.retain(|w| {
                let by_fd = uuids
                    .iter()
                    .zip(&ready)
                    .any(|(u, r)| *u == w.uuid && *r && w.fd >= 0);
                let due = w.due <= now;
                if by_fd || due {
                    fired.push(w.uuid);
                }
                !(by_fd || due)
            });
            fired
        };
        for uuid in fired {
            crate::boundary::guard((), || crate::flush::schedule(uuid));
        }
    }
}
