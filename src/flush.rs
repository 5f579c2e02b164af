//! The flusher: sends a connection's queued bytes with the slot lock
//! released, one batch at a time, and settles the connection's send state
//! ([`crate::state::SendState`]) when it stops — the one place that decides
//! whether to keep sending, stop because the kernel refused data (an
//! `EPOLLOUT` is owed), hand the connection to the waker, or report the
//! queue drained (and complete a pending graceful close).

use std::os::fd::RawFd;
use std::time::Duration;

use libc::c_void;
use nix::errno::Errno;

use crate::callbacks;
use crate::queue::{Body, Entry, FileBody, Owner};
use crate::state::{Request, Round, SendState, Settle};
use crate::sys;
use crate::table::{self, CloseKind, Closed, Conn, ConnGuard, Locked, Pinned, Slot, table};
use crate::transfer::{self, Sink, Stall};
use crate::types::sock_rw_hook_s;
use crate::uuid;
use crate::waker;

/// Task handed to the program's `async_run`: flush one connection.
unsafe extern "C" fn flush_task(arg: *mut c_void) {
    crate::boundary::guard((), || {
        let _ = flush(arg as isize);
    });
}

/// Flushes after bytes were queued: through the program's task queue when
/// it has one, inline otherwise.
pub fn schedule(id: isize) {
    if !callbacks::defer(flush_task, id) {
        let _ = flush(id);
    }
}

thread_local! {
    static ME: std::thread::ThreadId = std::thread::current().id();
    /// A batch vector kept for this thread's next turn (one allocation less
    /// per flush).
    static SPARE_BATCH: std::cell::Cell<Vec<Entry>> = const { std::cell::Cell::new(Vec::new()) };
}

fn me() -> std::thread::ThreadId {
    ME.with(|id| *id)
}

/// `sock_flush`: writes what the kernel takes now; closes the connection
/// when it was marked for closing and nothing is left. A request that meets
/// another thread sending is recorded for that thread, which looks again
/// before it stops.
pub fn flush(id: isize) -> Result<(), Errno> {
    let mut l = table::lock(id).ok_or(Errno::ENODEV)?;
    // Whoever flushes now sends what an offered task would have: a write
    // from here on offers a task of its own.
    l.conn.flush_offered = false;
    match Flusher::start(l) {
        Some((mut f, c)) => f.run(c),
        None => Ok(()),
    }
}

/// `sock_sendfile` (or `sock_write2(.is_fd)`) on a connection with nothing
/// queued, nothing owed and no sender, which flushes inline: this thread
/// becomes the sender and sends the file at once, with the lock released,
/// before it is queued — so the `sendfile` also tells whether `fd` is an
/// open, readable descriptor (`EBADF`: the file is refused, nothing is
/// queued, an fd that is not open is left alone), where a separate check
/// would cost a system call per file. What is left of the file goes to the
/// front of the queue (entries other threads queued meanwhile follow it),
/// and the turn goes on as any flush. Apart from `EBADF`, the file counts as
/// accepted (0), as a queued one would: a connection that fails or closes
/// meanwhile is closed, as it would be when the queued file's turn came.
/// (Only a file that is not urgent comes here, so the entry is
/// interruptible, as any such write's.)
pub fn send_file_now(l: Locked, mut file: FileBody) -> Result<(), Errno> {
    let Some((mut f, c)) = Flusher::start(l) else {
        debug_assert!(false, "send_file_now on a connection with a sender");
        return Err(Errno::EAGAIN);
    };
    let sink = Sink {
        fd: f.fd,
        uuid: f.id,
        socket: c.socket,
        hooks: None,
    };
    let pinned = Pinned::new(f.slot, c);
    let t = transfer::send_file_alone(&mut file, &sink);
    f.moved = t.moved > 0;
    let file_fd = file.fd;
    // Not the program's fd any more unless the kernel refused it as not open.
    let refused_fd = t.failed == Some(Errno::EBADF) && t.moved == 0 && !sys::fd_is_open(file_fd);
    let entry = (!refused_fd).then(|| Entry::new(Body::File(file), Owner::CloseFd(file_fd), true));
    let Some(mut c) = f.relock(pinned) else {
        // Closed meanwhile by another thread: the file was accepted (and
        // maybe sent), as when it is queued and the connection closes.
        drop(entry); // closes the file
        return if refused_fd {
            Err(Errno::EBADF)
        } else {
            Ok(())
        };
    };
    let Some(mut entry) = entry else {
        // Nothing sent, nothing queued: the turn goes on for what others
        // queued meanwhile.
        let _ = f.run(c);
        return Err(Errno::EBADF);
    };
    match t.failed {
        // An open fd the kernel cannot read from: refused, closed (it was
        // handed over); the connection is fine.
        Some(Errno::EBADF) if t.moved == 0 => {
            let _ = f.run(c);
            drop(entry);
            return Err(Errno::EBADF);
        }
        Some(_) => {
            // The connection failed: closed, as when a queued file meets
            // the failure; the file was accepted. Dropped (closed) once the
            // lock is released.
            let _release = entry;
            f.fail(c);
            return Ok(());
        }
        None => {}
    }
    entry.started |= t.moved > 0 || matches!(&entry.body, Body::File(b) if b.stage.is_some());
    // A file sent whole is released (closed) once the lock is released.
    let mut _release = None;
    if entry.is_done() {
        _release = Some(entry);
    } else {
        c.queue.put_back(std::iter::once(entry));
        table::mark_dirty(f.fd, &mut c);
    }
    f.stall = t.stalled;
    let round = if t.refused {
        Round::Refused
    } else if t.stalled.is_some() {
        Round::Stalled
    } else {
        Round::Progress
    };
    // The file is accepted: what the rest of the turn meets (a pending
    // close completed, a failure) is the connection's, not this write's.
    if let Some(c) = f.settle(c, round) {
        let _ = f.run(c);
    }
    Ok(())
}

/// One thread's turn as a connection's sender.
struct Flusher {
    id: isize,
    fd: RawFd,
    counter: u32,
    slot: &'static Slot,
    /// Bytes reached the kernel or the write hook (`sock_touch` is due).
    moved: bool,
    /// Entries taken out of the queue while sending them without the lock.
    batch: Vec<Entry>,
    /// Closes handed back when unpinning, finished once the lock is released.
    later: Vec<Closed>,
    /// Why the last round stalled.
    stall: Option<Stall>,
    /// The connection is still in `SendState::Sending` by this thread: cleared
    /// by every way out of the turn; a turn left by a panic is ended by
    /// `Drop`, so the connection is never wedged.
    turn: bool,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        if self.turn {
            // Left by a panic: put the batch back and hand the connection
            // to the waker, so what is queued is still sent.
            let mut c = self.slot.conn.lock();
            if c.is(self.counter) && c.send.sending_by(me()) {
                c.queue.put_back(self.batch.drain(..));
                c.send = SendState::Waiting;
                waker::watch(self.id, None, Duration::ZERO);
            }
            self.slot.changed.notify_all();
        }
        // What a closed connection left us is released outside the lock.
        self.batch.clear();
        let batch = std::mem::take(&mut self.batch);
        if batch.capacity() <= crate::queue::MAX_BATCH {
            SPARE_BATCH.with(|b| b.set(batch));
        }
        std::mem::take(&mut self.later)
            .into_iter()
            .for_each(table::finish);
        if self.moved {
            callbacks::touch(self.id);
        }
    }
}

/// What the lock-released part of a round leaves to do: the connection is
/// still ours, settle this round (`Ok`); or the turn ended with this error
/// (the connection closed or failed).
type Next = Result<(ConnGuard, Round), Errno>;

impl Flusher {
    /// Makes this thread the sender of the connection `l`; `None` when
    /// another turn is under way (the request was recorded for it).
    fn start(l: Locked) -> Option<(Flusher, ConnGuard)> {
        let Locked {
            fd,
            counter,
            slot,
            conn: mut c,
        } = l;
        if c.send.request(me()) != Request::Start {
            return None;
        }
        let f = Flusher {
            id: uuid::encode(fd, counter),
            fd,
            counter,
            slot,
            moved: false,
            batch: SPARE_BATCH.with(|b| b.take()),
            later: Vec::new(),
            stall: None,
            turn: true,
        };
        Some((f, c))
    }

    fn run(&mut self, mut c: ConnGuard) -> Result<(), Errno> {
        // The flush hook reported nothing buffered since the queue was last
        // found non-empty.
        let mut hook_clean = false;
        loop {
            c.place_urgent();
            let hooks = c.hooks();
            let next = if !c.queue.is_empty() {
                hook_clean = false;
                self.send_batch(c, hooks)
            } else if let Some(hook_flush) = hooks.and_then(|h| h.flush)
                && !hook_clean
            {
                // Bytes the hook buffers (TLS records) are queued data too.
                let next = self.hook_flush(c, hook_flush);
                if let Ok((c, _)) = &next {
                    hook_clean = !c.hook_pending;
                }
                next
            } else {
                return self.drained(c);
            };
            let (guard, round) = next?;
            c = match self.settle(guard, round) {
                Some(c) => c,
                None => return Ok(()),
            };
        }
    }

    /// Settles the state after a round that left something to send: the
    /// guard back when the turn goes on; `None` when it ended (an `EPOLLOUT`
    /// is owed, or the waker will flush).
    fn settle(&mut self, mut c: ConnGuard, round: Round) -> Option<ConnGuard> {
        match c.send.settle(round) {
            Settle::Continue => return Some(c),
            Settle::Owed => {}
            Settle::Watch => self.watch(&mut c),
        }
        self.end(c);
        None
    }

    /// Ends the turn (the state was settled), releasing the lock. Urgent
    /// data that came in during the last round takes its place now.
    fn end(&mut self, mut c: ConnGuard) {
        self.turn = false;
        c.place_urgent();
        drop(c);
        self.slot.changed.notify_all();
    }

    /// Hands the connection to the waker: for a source with no data yet,
    /// when it is readable; for a hook that wrote nothing, after a delay
    /// that doubles with each stall in a row.
    fn watch(&mut self, c: &mut Conn) {
        let (fd, delay) = match self.stall {
            Some(Stall::Source(fd)) => (Some(fd), Duration::from_millis(100)),
            _ => {
                c.stalls = c.stalls.saturating_add(1);
                let ms = 1u64 << (c.stalls - 1).min(6);
                (None, Duration::from_millis(ms))
            }
        };
        waker::watch(self.id, fd, delay);
    }

    /// Sends a batch of entries with the lock released.
    fn send_batch(&mut self, mut c: ConnGuard, hooks: Option<sock_rw_hook_s>) -> Next {
        c.queue
            .take_batch(hooks.is_some_and(|h| h.write.is_some()), &mut self.batch);
        let sink = Sink {
            fd: self.fd,
            uuid: self.id,
            socket: c.socket,
            hooks,
        };
        let before: usize = self.batch.iter().map(Entry::mem_left).sum();
        let pinned = Pinned::new(self.slot, c);
        let t = transfer::send(&mut self.batch, &sink);
        let done = self.batch.iter().take_while(|e| e.is_done()).count();
        // Finished entries are released before the lock is taken back.
        self.batch.drain(..done);
        self.moved |= t.moved > 0;
        let after: usize = self.batch.iter().map(Entry::mem_left).sum();
        let mut c = self.relock(pinned).ok_or(Errno::ENODEV)?;
        c.queued_bytes = c.queued_bytes.saturating_sub(before - after);
        c.queue.put_back(self.batch.drain(..));
        if let Some(e) = t.failed {
            self.fail(c);
            return Err(e);
        }
        self.stall = t.stalled;
        let round = if t.refused {
            Round::Refused
        } else if t.stalled.is_some() {
            Round::Stalled
        } else if t.moved > 0 || done > 0 {
            c.stalls = 0;
            Round::Progress
        } else {
            // Nothing moved and nothing said why: never spin on it.
            self.stall = Some(Stall::Hook);
            Round::Stalled
        };
        Ok((c, round))
    }

    /// Calls the connection's flush hook with the lock released.
    fn hook_flush(
        &mut self,
        c: ConnGuard,
        hook_flush: unsafe extern "C" fn(isize) -> isize,
    ) -> Next {
        let pinned = Pinned::new(self.slot, c);
        sys::block_sigpipe();
        // SAFETY: the program's hook, called with no lock held.
        let left = unsafe { hook_flush(self.id) };
        let err = Errno::last();
        if left < 0 {
            sys::consume_sigpipe();
        }
        let mut c = self.relock(pinned).ok_or(Errno::ENODEV)?;
        if left < 0 && !matches!(err, Errno::EAGAIN | Errno::EINTR) {
            self.fail(c);
            return Err(err);
        }
        c.hook_pending = left != 0;
        if c.hook_pending {
            table::mark_dirty(self.fd, &mut c);
        }
        let round = match left {
            0 => Round::Progress,
            // EINTR: nothing said about the transport; try again later.
            _ if left < 0 && err == Errno::EINTR => {
                self.stall = Some(Stall::Hook);
                Round::Stalled
            }
            // The hook still holds bytes: its transport refused them.
            _ => Round::Refused,
        };
        Ok((c, round))
    }

    /// Nothing left to send: nothing is owed. Completes a pending graceful
    /// close — unless a write is still queuing its parts (it flushes again
    /// when done), so that no write is cut short by the close.
    fn drained(&mut self, mut c: ConnGuard) -> Result<(), Errno> {
        c.send.drained();
        c.stalls = 0;
        c.queue.shrink_when_empty();
        if c.close_when_done && !c.hook_pending && !c.streaming() {
            self.turn = false;
            table::close_now(self.slot, c, self.fd, CloseKind::Graceful);
            return Err(Errno::ENODEV);
        }
        self.end(c);
        Ok(())
    }

    /// Takes the lock back after a system call or hook; returns the guard if
    /// the connection is still the one being flushed (else the turn ended
    /// with the close, which reset the state).
    fn relock(&mut self, pinned: Pinned) -> Option<ConnGuard> {
        let (c, closes) = pinned.relock();
        self.later.extend(closes);
        self.slot.changed.notify_all();
        if !c.is(self.counter) {
            self.turn = false;
            return None;
        }
        Some(c)
    }

    /// The connection failed: close it now, dropping what is queued.
    fn fail(&mut self, c: ConnGuard) {
        self.turn = false;
        table::close_now(self.slot, c, self.fd, CloseKind::Force);
    }
}

/// `sock_flush_strong`: flush until nothing is pending or the connection is
/// gone, waiting for writability in between. From inside a hook or callback
/// of the connection's own sender it returns at once (that sender goes on
/// when the hook returns; waiting for it would wait for ourselves).
pub fn flush_strong(id: isize) {
    loop {
        if flush(id).is_err() {
            return;
        }
        let Some(mut l) = table::lock(id) else {
            return;
        };
        if !l.conn.pending() {
            return;
        }
        match l.conn.send {
            SendState::Sending { by, .. } if by == me() => return,
            SendState::Sending { .. } | SendState::Waiting => {
                // Another thread, or the waker, will send: wait for it.
                l.slot
                    .changed
                    .wait_for(&mut l.conn, Duration::from_millis(50));
            }
            SendState::Idle | SendState::Owed => {
                let fd = l.fd;
                drop(l);
                sys::wait_writable(fd, 50);
            }
        }
    }
}

/// `sock_flush_all`: a flush request for every connection with data
/// waiting (recorded for those another thread is sending). Visits only the
/// connections listed with data ([`table::mark_dirty`]), not every slot.
pub fn flush_all() {
    for fd in table::dirty_fds() {
        if let Some((id, _)) = with_data(fd) {
            let _ = flush(id);
        }
    }
}

/// The connection on `fd`, if it has data: its UUID and send state. Takes
/// it off the list of connections with data when it has none.
fn with_data(fd: RawFd) -> Option<(isize, SendState)> {
    let slot = table().slot(fd)?;
    let mut c = slot.conn.lock();
    if c.open && c.pending() {
        Some((uuid::encode(fd, c.counter), c.send))
    } else {
        table::clear_dirty(fd, &mut c);
        None
    }
}

/// Lets a thread waiting for a pool packet make progress, in one step that
/// blocks at most once: flushes the connections with data that nobody is
/// sending and that the kernel owes no event (their flush is due, or was
/// handed to `async_run`); then, unless that freed packets, waits (a single
/// `poll`) until a socket that refused data is writable again and flushes
/// those that are — or, with none to watch, waits a little for a packet
/// released elsewhere. `own` is the waiter's connection: true means its
/// peer failed (error or hang-up), so waiting is pointless.
pub fn make_progress(own: Option<RawFd>) -> bool {
    // Sockets that refused data: (fd, UUID), watched below.
    let mut owed: Vec<(RawFd, isize)> = Vec::new();
    // Another thread, or the waker, is sending some: packets may come
    // back without any event on a socket.
    let mut elsewhere = false;
    for fd in table::dirty_fds() {
        let mut found = with_data(fd);
        if let Some((id, SendState::Idle)) = found {
            let _ = flush(id);
            found = with_data(fd);
        }
        match found {
            Some((id, SendState::Owed)) => owed.push((fd, id)),
            Some(_) => elsewhere = true,
            None => {}
        }
    }
    if crate::pool::available() > 0 {
        return false;
    }
    let timeout_ms = if elsewhere { 1 } else { 10 };
    if owed.is_empty() && own.is_none() {
        crate::pool::wait_freed(Duration::from_millis(timeout_ms));
        return false;
    }
    let mut polled: Vec<libc::pollfd> = owed
        .iter()
        .map(|&(fd, _)| sys::pollfd(fd, libc::POLLOUT))
        .collect();
    if let Some(fd) = own {
        // Errors and hang-ups are always reported; its writability only
        // matters when it is among those that refused data.
        polled.push(sys::pollfd(fd, 0));
    }
    if sys::poll_fds(&mut polled, timeout_ms as i32) <= 0 {
        return false;
    }
    for (p, &(_, id)) in polled.iter().zip(owed.iter()) {
        if p.revents != 0 {
            let _ = flush(id);
        }
    }
    own.is_some() && polled[polled.len() - 1].revents & (libc::POLLERR | libc::POLLHUP) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Body, Owner};

    /// A panic while a batch is out of the queue (lock released, fd
    /// pinned) must leave the connection unpinned, out of `Sending`, with
    /// its bytes queued — and still sent, by the waker.
    #[test]
    fn a_panic_in_a_send_wedges_nothing_and_loses_nothing() {
        let mut sv = [0; 2];
        // SAFETY: socketpair fills the two-int array we own.
        assert_eq!(
            unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_NONBLOCK,
                    0,
                    sv.as_mut_ptr(),
                )
            },
            0
        );
        let id = crate::io::register(sv[0]).unwrap();
        let data: Box<[u8]> = b"still delivered"[..].into();
        let (ptr, len) = (data.as_ptr(), data.len());
        {
            let mut l = table::lock(id).unwrap();
            l.conn.queue.push(Entry::new(
                Body::Mem { ptr, len, sent: 0 },
                Owner::Heap(data),
                true,
            ));
        }
        transfer::PANIC_IN_SEND.with(|p| p.set(true));
        let r = std::panic::catch_unwind(|| flush(id));
        assert!(r.is_err(), "the injected panic unwinds out of flush");
        {
            let l = table::lock(id).expect("the connection is still open");
            assert_eq!(l.conn.pins, 0, "unpinned on the way out");
            assert!(!l.conn.send.is_sending(), "not wedged in Sending");
        }
        // Nobody flushes: the waker must deliver the bytes.
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while got.len() < len && std::time::Instant::now() < deadline {
            let ready = sys::wait_readable(&[sv[1]], Some(Duration::from_millis(100)));
            if ready[0] {
                let mut buf = [0u8; 64];
                // SAFETY: reading into our own buffer.
                let n = unsafe { libc::read(sv[1], buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    got.extend_from_slice(&buf[..n as usize]);
                }
            }
        }
        assert_eq!(&got[..], b"still delivered");
        crate::io::force_close(id);
        sys::close(sv[1]);
    }
}
