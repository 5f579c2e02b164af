//! The library's own thread, for the waits no event of the program's loop
//! covers. Most programs never start it: it starts at the first need.
//!
//! - **Wake-ups** ([`watch`]): flushes of connections whose sending stopped
//!   for a reason the kernel will not report on the socket
//!   ([`crate::state::SendState::Waiting`]): a file source with no data yet
//!   (an empty non-blocking pipe), flushed again as soon as it is readable;
//!   a write hook that wrote nothing without refusing, flushed again after a
//!   short delay. A watch is one-shot and holds no reference to the
//!   connection: when it fires, the UUID is flushed on this thread (not
//!   through the program's task queue, which may be full of writers waiting
//!   for the pool space that flush frees); a flush of a UUID that closed
//!   meanwhile does nothing.
//! - **Lingering closes** ([`linger`]): a graceful close of a socket whose
//!   peer is still sending (input was waiting at the close: pipelined
//!   requests, a body the program did not read — the heuristic of nginx's
//!   `lingering_close on`). The library has shut down its side (the peer
//!   gets every byte, then EOF); this thread reads and drops what the peer
//!   still sends until it closes its side or the time limit passes, and
//!   only then closes the fd — so the kernel never answers the peer's late
//!   bytes with a reset that would throw away the end of the response.
//!   The fd number stays the library's until then, so it cannot be reused
//!   early. At most [`MAX_LINGERING`] closes linger at once (each holds one
//!   fd and a few bytes here); beyond that a close does not linger.
//!
//! - **Giving memory back** ([`trim_after`]) once a burst is over
//!   ([`crate::pool::trim`]).
//!
//! One `poll` covers the watched sources and the lingering sockets, with the
//! nearest deadline as timeout, but at most [`TICK`] while it waits on fds
//! (new work is picked up by then: no fd of the library's own is needed to
//! interrupt it); with nothing to wait for, the thread sleeps on a condition
//! variable. After `fork`, the child starts a thread of its own at its first
//! need.

use std::collections::HashSet;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::sys;

/// Longest `poll` while fds are watched: new work waits at most this long.
const TICK: Duration = Duration::from_millis(10);
/// Lingering closes held at once, at most.
pub const MAX_LINGERING: usize = 4096;
/// Default time limit of a lingering close, in milliseconds.
pub const DEFAULT_LINGER_MS: u32 = 2000;

/// The time limit of lingering closes (0: closes do not linger). Read once
/// from `LIBSOCK_LINGER_MS`, changed by `sock_set_linger`.
static LINGER_MS: AtomicU32 = AtomicU32::new(u32::MAX);

/// The time limit of lingering closes, in milliseconds (0: off).
pub fn linger_ms() -> u32 {
    match LINGER_MS.load(Ordering::Relaxed) {
        u32::MAX => {
            let ms = std::env::var("LIBSOCK_LINGER_MS")
                .ok()
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|&ms| ms != u32::MAX)
                .unwrap_or(DEFAULT_LINGER_MS);
            // A concurrent sock_set_linger wins over the environment.
            let _ = LINGER_MS.compare_exchange(u32::MAX, ms, Ordering::Relaxed, Ordering::Relaxed);
            LINGER_MS.load(Ordering::Relaxed)
        }
        ms => ms,
    }
}

/// Sets the time limit of lingering closes (0 turns lingering off).
pub fn set_linger_ms(ms: u32) {
    LINGER_MS.store(ms.min(u32::MAX - 1), Ordering::Relaxed);
}

struct Watch {
    uuid: isize,
    /// Flush when this fd is readable (or fails); -1: only the deadline.
    fd: RawFd,
    due: Instant,
}

struct Lingering {
    fd: RawFd,
    until: Instant,
}

struct State {
    watches: Vec<Watch>,
    lingering: Vec<Lingering>,
    /// When to give memory back ([`crate::pool::trim`]).
    trim_due: Option<Instant>,
    /// The process that started the thread (a forked child has none).
    thread_of: Option<u32>,
}

static STATE: Mutex<State> = Mutex::new(State {
    watches: Vec::new(),
    lingering: Vec::new(),
    trim_due: None,
    thread_of: None,
});
/// Signalled when work is added while the thread has none.
static ADDED: Condvar = Condvar::new();

/// Starts the thread in this process if needed (the first need, or the
/// first in a forked child, which inherited the state but not the thread);
/// wakes it. The caller holds the state lock and has just added work.
fn kick(s: &mut State) {
    let pid = std::process::id();
    if s.thread_of != Some(pid) {
        let started = std::thread::Builder::new()
            .name("libsock-waker".into())
            .spawn(run)
            .is_ok();
        // Without a thread (out of resources), the next need tries again.
        s.thread_of = started.then_some(pid);
    }
    ADDED.notify_one();
}

/// Flushes `uuid` once `fd` is readable (`Some`), or after `delay`
/// (whichever comes first).
pub fn watch(uuid: isize, fd: Option<RawFd>, delay: Duration) {
    let mut s = STATE.lock();
    let due = Instant::now() + delay;
    let fd = fd.unwrap_or(-1);
    if let Some(w) = s.watches.iter_mut().find(|w| w.uuid == uuid) {
        w.fd = fd;
        w.due = due;
    } else {
        s.watches.push(Watch { uuid, fd, due });
    }
    kick(&mut s);
}

/// Calls [`crate::pool::trim`] after `delay` (and again after the delay
/// it returns, while it returns one).
pub fn trim_after(delay: Duration) {
    let mut s = STATE.lock();
    s.trim_due = Some(Instant::now() + delay);
    kick(&mut s);
}

/// Closes the socket `fd` gracefully: drops the input waiting and closes,
/// or, when the peer is still sending, shuts down the sending side and
/// lingers (see the module doc). Everything queued must already be with the
/// kernel.
pub fn linger(fd: RawFd) {
    if sys::discard_input(fd) != sys::Drained::Sending || linger_ms() == 0 {
        sys::close(fd);
        return;
    }
    let ms = linger_ms();
    sys::shutdown_write(fd);
    let mut s = STATE.lock();
    if s.lingering.len() >= MAX_LINGERING {
        drop(s);
        sys::close(fd);
        return;
    }
    s.lingering.push(Lingering {
        fd,
        until: Instant::now() + Duration::from_millis(ms.into()),
    });
    kick(&mut s);
}

/// The thread.
fn run() {
    loop {
        // What to wait for: watched sources, lingering sockets, and the
        // nearest deadline.
        let (fds, timeout) = {
            let mut s = STATE.lock();
            while s.watches.is_empty() && s.lingering.is_empty() && s.trim_due.is_none() {
                ADDED.wait(&mut s);
            }
            let now = Instant::now();
            if s.trim_due.is_some_and(|due| due <= now) {
                s.trim_due = None;
                drop(s);
                let again = crate::boundary::guard(None, crate::pool::trim);
                let mut s = STATE.lock();
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
                .chain(s.lingering.iter().map(|l| l.until))
                .chain(s.trim_due)
                .min();
            let timeout = next.map_or(TICK, |t| t.saturating_duration_since(now).min(TICK));
            let fds: Vec<RawFd> = s
                .watches
                .iter()
                .map(|w| w.fd)
                .chain(s.lingering.iter().map(|l| l.fd))
                .collect();
            (fds, timeout)
        };
        let ready = sys::wait_readable(&fds, Some(timeout));
        let now = Instant::now();
        let (fired, closing) = {
            let ready: HashSet<RawFd> = fds
                .iter()
                .zip(&ready)
                .filter(|&(&fd, &r)| r && fd >= 0)
                .map(|(&fd, _)| fd)
                .collect();
            let readable = |fd: RawFd| ready.contains(&fd);
            let mut s = STATE.lock();
            let fired: Vec<isize> = s
                .watches
                .extract_if(.., |w| w.due <= now || readable(w.fd))
                .map(|w| w.uuid)
                .collect();
            // Lingering sockets: read what came; close on the peer's end,
            // an error, or the time limit.
            let closing: Vec<RawFd> = s
                .lingering
                .extract_if(.., |l| {
                    l.until <= now
                        || (readable(l.fd) && sys::discard_input(l.fd) == sys::Drained::Ended)
                })
                .map(|l| l.fd)
                .collect();
            (fired, closing)
        };
        for fd in closing {
            sys::close(fd);
        }
        for uuid in fired {
            // Inline, on this thread: a flush does not block, and the
            // program's task queue may be busy with writers waiting for the
            // very pool space this flush frees.
            crate::boundary::guard((), || {
                let _ = crate::flush::flush(uuid);
            });
        }
    }
}
