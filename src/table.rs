//! The connection table: one slot per fd number, each with the fd's
//! generation counter and the state of the connection open on it.
//!
//! Slots live in chunks of [`CHUNK`] allocated the first time an fd of their
//! range is registered, so memory follows the fds in use, not the fd limit.
//! Chunks are never freed: a slot reference stays valid for the life of the
//! process, which makes lookups lock-free; each slot has its own mutex.

use std::collections::{HashSet, VecDeque};
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::queue::{Entry, WriteQueue};
use crate::state::SendState;
use crate::sys;
use crate::types::sock_rw_hook_s;
use crate::uuid;

/// The limit of queued bytes new connections get (0: none); see
/// `sock_set_default_pending_limit`.
pub static DEFAULT_LIMIT: AtomicUsize = AtomicUsize::new(0);

/// Slots per chunk.
pub const CHUNK: usize = 256;
/// Highest number of fds the table tracks, whatever the process limit.
pub const MAX_TRACKED: usize = 1 << 24;

/// How a connection's fd is let go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CloseKind {
    /// Everything was sent: a socket's sending side is shut down and its
    /// input read and dropped until the peer closes its side (a lingering
    /// close, see [`crate::waker::linger`]), then `close`.
    Graceful,
    /// Drop what is queued: `shutdown` + `close`.
    Force,
    /// The fd number already belongs to something else (closed behind the
    /// library's back and reused): close nothing.
    Forget,
    /// The program took the fd back (`sock_hijack`): close nothing, call
    /// only the hook's `on_clear` (no `reactor_remove`, no
    /// `reactor_on_close`).
    Hijack,
}

/// A connection that was closed, whose fd and callbacks are still to be
/// dealt with outside the slot lock.
pub struct Closed {
    pub uuid: isize,
    pub fd: RawFd,
    pub kind: CloseKind,
    /// The fd is a socket.
    pub socket: bool,
    pub hooks: *mut sock_rw_hook_s,
}

// SAFETY: the hook pointer is only handed back to the program's `on_clear`;
// the library never dereferences it after the close.
unsafe impl Send for Closed {}

/// Stops the process when an invariant of the connection state does not
/// hold — in debug builds only (release builds check nothing). Like
/// `debug_assert!`, but an abort: the panic boundary would turn a panic
/// into an error return and hide it from the C tests.
macro_rules! invariant {
    ($cond:expr, $($msg:tt)+) => {
        if cfg!(debug_assertions) && !$cond {
            eprintln!("libsock: invariant broken: {}", format_args!($($msg)+));
            std::process::abort();
        }
    };
}

/// The state of the connection on one fd.
///
/// Invariants, whenever the slot lock is free (checked in debug builds by
/// [`Conn::check`] each time [`lock`] takes it):
/// - a closed connection holds nothing: no entries (queued, waiting aside
///   or after a large write), no bytes counted, no hooks, send state
///   `Idle`, no pending close, no large write;
/// - entries wait in `after_stream` only during a large write, and urgent
///   entries wait aside only while a sender has its batch out or a large
///   write queues its parts;
/// - a sender (`SendState::Sending`) is inside a call on the fd, so the fd
///   is pinned; closes wait in `deferred` only while it is pinned;
/// - with nothing queued anywhere and no sender, no bytes are counted.
pub struct Conn {
    /// Generation of the fd: bumped each time the fd is registered.
    pub counter: u32,
    pub open: bool,
    /// The fd is a socket (sends use `MSG_NOSIGNAL`).
    pub socket: bool,
    /// The fd is a listening socket: writes to it are refused.
    pub listening: bool,
    pub queue: WriteQueue,
    /// Urgent entries that arrived while a flush had entries out of the
    /// queue; placed when those are put back.
    pub urgent_waiting: VecDeque<Entry>,
    pub hooks: *mut sock_rw_hook_s,
    /// `sock_close` was called: close once everything is sent.
    pub close_when_done: bool,
    /// The flush hook reported bytes still buffered.
    pub hook_pending: bool,
    /// Who sends the queued bytes and what the kernel owes: see
    /// [`crate::state`] for the states and the liveness rule they keep.
    pub send: SendState,
    /// Flushes in a row that a write hook made no progress in (the waker's
    /// delay doubles with each).
    pub stalls: u8,
    /// Bytes of memory queued (in the queue, waiting aside, or out in a
    /// sender's batch); files are not counted.
    pub queued_bytes: usize,
    /// Writes are refused (`ENOBUFS`) while `queued_bytes` is at least this
    /// (0: no limit).
    pub limit: usize,
    /// The thread queuing a large write ([`Conn::streaming`]).
    pub streaming_by: Option<std::thread::ThreadId>,
    /// Writes that thread made from inside the large write (from a hook or
    /// callback), queued after it so they neither wait for it (a deadlock)
    /// nor land inside it.
    pub after_stream: VecDeque<Entry>,
    /// Threads inside a system call or hook on this fd without the lock; the
    /// fd is not closed (and so cannot be reused) until they are out.
    pub pins: u32,
    /// Closes decided while pinned, finished by the last thread out.
    pub deferred: Vec<Closed>,
    /// The fd is in the set of connections with data ([`mark_dirty`]).
    pub dirty: bool,
    /// A flush task offered to the program's `async_run` has not started
    /// yet: it will send what is queued meanwhile, so writers offer no other
    /// (see `write::offer_flush`). Cleared by every `flush`.
    pub flush_offered: bool,
}

// SAFETY: the raw hook pointer is the program's, shared by contract; all
// other fields are plain data guarded by the slot mutex.
unsafe impl Send for Conn {}

impl Conn {
    const fn new() -> Conn {
        Conn {
            counter: 0,
            open: false,
            socket: false,
            listening: false,
            queue: WriteQueue::new(),
            urgent_waiting: VecDeque::new(),
            hooks: std::ptr::null_mut(),
            close_when_done: false,
            hook_pending: false,
            send: SendState::Idle,
            stalls: 0,
            queued_bytes: 0,
            limit: 0,
            streaming_by: None,
            after_stream: VecDeque::new(),
            pins: 0,
            deferred: Vec::new(),
            dirty: false,
            flush_offered: false,
        }
    }

    /// A write larger than the free pool is being queued in parts; other
    /// writers wait so its bytes stay together.
    pub fn streaming(&self) -> bool {
        self.streaming_by.is_some()
    }

    /// True when the calling thread is the one queuing a large write here
    /// (it is writing again from inside it, through a hook or callback).
    pub fn streaming_here(&self) -> bool {
        self.streaming_by == Some(std::thread::current().id())
    }

    /// True when this is the live connection of generation `counter`.
    pub fn is(&self, counter: u32) -> bool {
        self.open && self.counter == counter
    }

    /// Has data waiting to be sent (queue, in flight, or in the hook).
    pub fn pending(&self) -> bool {
        !self.queue.is_empty()
            || self.send.is_sending()
            || !self.urgent_waiting.is_empty()
            || !self.after_stream.is_empty()
            || self.hook_pending
    }

    /// Checks the invariants stated on [`Conn`] (debug builds).
    pub fn check(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let nothing_queued =
            self.queue.is_empty() && self.urgent_waiting.is_empty() && self.after_stream.is_empty();
        invariant!(
            self.open
                || (nothing_queued
                    && self.queued_bytes == 0
                    && self.hooks.is_null()
                    && self.send == SendState::Idle
                    && !self.close_when_done
                    && !self.streaming()),
            "a closed connection holds state (send {:?})",
            self.send
        );
        invariant!(
            self.after_stream.is_empty() || self.streaming(),
            "entries after a large write that is not being queued"
        );
        invariant!(
            self.urgent_waiting.is_empty() || self.send.is_sending() || self.streaming(),
            "urgent data waits aside with no batch out (send {:?})",
            self.send
        );
        invariant!(
            !self.send.is_sending() || self.pins > 0,
            "a sender is not inside a call on the fd"
        );
        invariant!(
            self.deferred.is_empty() || self.pins > 0,
            "a close waits for a thread that is not there"
        );
        invariant!(
            !nothing_queued || self.send.is_sending() || self.queued_bytes == 0,
            "{} bytes counted with nothing queued",
            self.queued_bytes
        );
    }

    /// The bytes queued reached the connection's limit: writes are refused.
    pub fn over_limit(&self) -> bool {
        self.limit > 0 && self.queued_bytes >= self.limit
    }

    /// The connection's hooks, copied (the program may change them later).
    pub fn hooks(&self) -> Option<sock_rw_hook_s> {
        // SAFETY: a non-null hook pointer was lent by the program through
        // sock_rw_hook_set and must stay valid while set.
        (!self.hooks.is_null()).then(|| unsafe { *self.hooks })
    }

    /// Places urgent entries that waited aside: before the first queued
    /// entry that may be interrupted. They wait while a large write queues
    /// its parts (so they never land inside it); the sender calls this when
    /// its batch is back in the queue.
    pub fn place_urgent(&mut self) {
        if !self.urgent_waiting.is_empty() && !self.streaming() {
            let waiting: Vec<Entry> = self.urgent_waiting.drain(..).collect();
            self.queue.push_urgent(waiting);
        }
    }
}

/// One fd's slot.
pub struct Slot {
    pub conn: Mutex<Conn>,
    /// Signalled when `streaming` ends, a sender takes the lock back, or the
    /// connection closes.
    pub changed: Condvar,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            conn: Mutex::new(Conn::new()),
            changed: Condvar::new(),
        }
    }
}

/// Entries to drop and a close to finish, both outside the lock.
#[must_use]
pub struct Closing {
    pub dropped: Vec<Entry>,
    pub finish: Option<Closed>,
}

impl Closing {
    /// Releases the dropped data, then closes the fd and runs the callbacks.
    pub fn complete(self) {
        drop(self.dropped);
        if let Some(c) = self.finish {
            finish(c);
        }
    }
}

/// Marks the connection closed and takes its data. The fd itself is closed
/// (and the callbacks run) by [`Closing::complete`] — or, while another
/// thread is inside a system call on the fd, by that thread when it leaves
/// (a forced close then shuts the socket down at once).
pub fn close_locked(slot: &Slot, c: &mut Conn, fd: RawFd, kind: CloseKind) -> Closing {
    let closed = Closed {
        uuid: uuid::encode(fd, c.counter),
        fd,
        kind,
        socket: c.socket,
        hooks: std::mem::replace(&mut c.hooks, std::ptr::null_mut()),
    };
    c.open = false;
    c.close_when_done = false;
    c.hook_pending = false;
    c.send = SendState::Idle;
    c.stalls = 0;
    c.queued_bytes = 0;
    c.streaming_by = None;
    let mut dropped: Vec<Entry> = c.queue.take_all().into();
    dropped.extend(c.urgent_waiting.drain(..));
    dropped.extend(c.after_stream.drain(..));
    slot.changed.notify_all();
    let finish = if c.pins > 0 {
        // The fd number stays ours until the threads inside a call on it are
        // out, so the close and the callbacks wait for them; but a forced
        // close shuts the socket down now, which wakes a thread blocked
        // reading or writing it (and the peer sees the end at once).
        if kind == CloseKind::Force {
            sys::shutdown(fd);
        }
        c.deferred.push(closed);
        None
    } else {
        Some(closed)
    };
    Closing { dropped, finish }
}

/// Closes the connection on `fd` now ([`close_locked`]), releases its lock,
/// then drops its data and finishes the close ([`Closing::complete`]).
pub fn close_now(slot: &Slot, mut c: ConnGuard, fd: RawFd, kind: CloseKind) {
    let closing = close_locked(slot, &mut c, fd, kind);
    drop(c);
    closing.complete();
}

/// Calls `reactor_remove` for the closed UUID while its fd number is still
/// its own (an event loop's `epoll_ctl(EPOLL_CTL_DEL, fd)` cannot hit a
/// connection that reused the number), closes the fd (as `kind` says), then
/// calls `on_clear` and `reactor_on_close`. No lock is held.
pub fn finish(c: Closed) {
    if c.kind != CloseKind::Hijack {
        crate::callbacks::remove(c.uuid);
    }
    match c.kind {
        CloseKind::Force => {
            sys::shutdown(c.fd);
            sys::close(c.fd);
        }
        CloseKind::Graceful if c.socket => crate::waker::linger(c.fd),
        CloseKind::Graceful => sys::close(c.fd),
        CloseKind::Forget | CloseKind::Hijack => {}
    }
    if !c.hooks.is_null() {
        // SAFETY: the program lent this hook struct until `on_clear`; we read
        // its `on_clear` member and hand the pointer back.
        if let Some(on_clear) = unsafe { (*c.hooks).on_clear } {
            // SAFETY: the program's callback, called with no lock held.
            unsafe { on_clear(c.uuid, c.hooks) };
        }
    }
    if c.kind != CloseKind::Hijack {
        crate::callbacks::on_close(c.uuid);
    }
}

/// Leaves a system call made while pinned: unpins, and hands back closes
/// that were waiting for the last thread out.
fn unpin(c: &mut Conn) -> Vec<Closed> {
    c.pins -= 1;
    if c.pins == 0 {
        std::mem::take(&mut c.deferred)
    } else {
        Vec::new()
    }
}

/// A connection left unlocked while this thread is inside a system call or
/// hook on its fd. Its fd stays open (pinned: a close waits for the last
/// thread out, so the number cannot be reused under it) until
/// [`Pinned::relock`] — or until the guard is dropped unused, on a panic,
/// which unpins and finishes the closes that waited, so nothing is wedged.
#[must_use]
pub struct Pinned {
    slot: &'static Slot,
    relocked: bool,
}

impl Pinned {
    /// Pins the connection and releases its lock.
    pub fn new(slot: &'static Slot, mut c: ConnGuard) -> Pinned {
        c.pins += 1;
        drop(c);
        Pinned {
            slot,
            relocked: false,
        }
    }

    /// Takes the lock back and unpins; returns the closes that waited for
    /// this thread (to be finished once the lock is released).
    pub fn relock(mut self) -> (ConnGuard, Vec<Closed>) {
        self.relocked = true;
        let mut c = self.slot.conn.lock();
        let closes = unpin(&mut c);
        (c, closes)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if !self.relocked {
            let closes = unpin(&mut self.slot.conn.lock());
            closes.into_iter().for_each(finish);
        }
    }
}

/// A connection's state, its slot lock held.
pub type ConnGuard = MutexGuard<'static, Conn>;

/// All slots.
pub struct Table {
    chunks: Box<[AtomicPtr<Slot>]>,
    capacity: usize,
}

impl Table {
    fn new(capacity: usize) -> Table {
        let capacity = capacity.clamp(CHUNK, MAX_TRACKED);
        let chunks = capacity.div_ceil(CHUNK);
        Table {
            chunks: (0..chunks)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            capacity,
        }
    }

    fn index(&self, fd: RawFd) -> Option<(usize, usize)> {
        let fd = usize::try_from(fd).ok().filter(|&f| f < self.capacity)?;
        Some((fd / CHUNK, fd % CHUNK))
    }

    /// The slot of `fd`, if its chunk exists (lookups never allocate).
    pub fn slot(&self, fd: RawFd) -> Option<&'static Slot> {
        let (chunk, i) = self.index(fd)?;
        let base = self.chunks[chunk].load(Ordering::Acquire);
        // SAFETY: a non-null chunk pointer is a leaked, never-freed array of
        // CHUNK slots, and i < CHUNK.
        (!base.is_null()).then(|| unsafe { &*base.add(i) })
    }

    /// The slot of `fd`, allocating its chunk on first use.
    pub fn slot_or_create(&self, fd: RawFd) -> Option<&'static Slot> {
        let (chunk, i) = self.index(fd)?;
        let cell = &self.chunks[chunk];
        let mut base = cell.load(Ordering::Acquire);
        if base.is_null() {
            let fresh: Box<[Slot]> = (0..CHUNK).map(|_| Slot::new()).collect();
            let fresh = Box::into_raw(fresh) as *mut Slot;
            match cell.compare_exchange(
                std::ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => base = fresh,
                Err(winner) => {
                    // SAFETY: `fresh` came from Box::into_raw of a CHUNK-long
                    // slice just above and was never shared.
                    drop(unsafe {
                        Box::from_raw(std::ptr::slice_from_raw_parts_mut(fresh, CHUNK))
                    });
                    base = winner;
                }
            }
        }
        // SAFETY: as in `slot`.
        Some(unsafe { &*base.add(i) })
    }
}

/* ---------------------------------------------------------------------------
 * The connections with data
 * ------------------------------------------------------------------------ */

/// Hashes an fd number (a multiplicative hash: the numbers are small and
/// dense, SipHash would only cost time).
#[derive(Default, Clone, Copy)]
pub struct FdHasher(u64);

impl std::hash::Hasher for FdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_i32(&mut self, n: i32) {
        self.0 = (n as u32 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type FdSet = HashSet<RawFd, std::hash::BuildHasherDefault<FdHasher>>;

/// The fds whose connection may have data waiting to be sent:
/// `sock_flush_all` and the pool's waiters visit these instead of every
/// slot, so their cost follows the connections with data, not the highest
/// fd ever used. Invariant: a connection with data ([`Conn::pending`]) has
/// its `dirty` flag set and its fd in the set; the flag and the set change
/// together, under the slot lock. An fd leaves the set only when a visit
/// finds its connection without data ([`clear_dirty`]), not when a flush
/// drains it: a connection that queues and drains on every request (a
/// flush handed to `async_run`) costs the set nothing after its first
/// time. Lock order: a slot's lock, then this one (held only for the set
/// operation, never while taking a slot's lock).
static DIRTY: Mutex<FdSet> = Mutex::new(HashSet::with_hasher(std::hash::BuildHasherDefault::new()));

/// Lists the connection on `fd` among those with data: called, under its
/// slot lock, wherever bytes are queued on it (or left in its hook).
pub fn mark_dirty(fd: RawFd, c: &mut Conn) {
    if !c.dirty {
        c.dirty = true;
        DIRTY.lock().insert(fd);
    }
}

/// Takes the connection on `fd` off the list when it has no data left
/// (under its slot lock): when a visit (`sock_flush_all`, a pool wait)
/// finds it empty or closed.
pub fn clear_dirty(fd: RawFd, c: &mut Conn) {
    if c.dirty && !c.pending() {
        c.dirty = false;
        DIRTY.lock().remove(&fd);
    }
}

/// The fds listed with data right now, in ascending order.
pub fn dirty_fds() -> Vec<RawFd> {
    let mut fds: Vec<RawFd> = DIRTY.lock().iter().copied().collect();
    fds.sort_unstable();
    fds
}

/// The process-wide table, sized by `sock_max_capacity` on first use.
pub fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| Table::new(max_capacity()))
}

/// The number of fds the process may use, after raising the soft limit to
/// the hard one; cached after the first call.
pub fn max_capacity() -> usize {
    static CAP: OnceLock<usize> = OnceLock::new();
    *CAP.get_or_init(|| (sys::raise_fd_limit() as usize).clamp(1, MAX_TRACKED))
}

/// A locked, valid connection named by a UUID.
pub struct Locked {
    pub fd: RawFd,
    pub counter: u32,
    pub slot: &'static Slot,
    pub conn: ConnGuard,
}

/// Locks the connection `uuid` names, if it is valid and open.
pub fn lock(uuid: isize) -> Option<Locked> {
    if uuid == uuid::INVALID {
        return None;
    }
    let (fd, counter) = uuid::decode(uuid);
    let slot = table().slot(fd)?;
    let conn = slot.conn.lock();
    conn.check();
    conn.is(counter).then_some(Locked {
        fd,
        counter,
        slot,
        conn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The invariant checks really check: a closed connection that still
    /// counts queued bytes stops a debug build (in a child process, since
    /// it aborts).
    #[test]
    fn a_broken_invariant_aborts_in_debug_builds() {
        if !cfg!(debug_assertions) {
            return;
        }
        if std::env::var_os("LIBSOCK_INVARIANT_CHILD").is_some() {
            let mut c = Conn::new();
            c.queued_bytes = 5;
            c.check();
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "table::tests::a_broken_invariant_aborts_in_debug_builds",
                "--nocapture",
            ])
            .env("LIBSOCK_INVARIANT_CHILD", "1")
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(libc::SIGABRT));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("invariant broken"), "{err}");
    }
}
