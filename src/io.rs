//! What the library does with connections: register, read, queue writes,
//! flush, close. The C surface (`ffi`) calls these; they call the table, the
//! pool, the queue and the transfer layer, and the program's callbacks —
//! always after releasing the slot lock.

use std::os::fd::RawFd;

use libc::c_void;
use nix::errno::Errno;
use parking_lot::MutexGuard;

use crate::callbacks;
use crate::pool::{self, PoolPacket};
use crate::queue::{Body, Entry, FileBody, Owner};
use crate::sys;
use crate::table::{self, CloseKind, Closed, Conn, Locked, close_locked, table, unpin};
use crate::transfer::{self, Sink};
use crate::types::{BUFFER_PACKET_SIZE, sock_packet_s, sock_rw_hook_s, sock_write_info_s};
use crate::uuid;

/// Runs closes handed back by [`unpin`] (the lock must be released).
fn finish_all(closed: Vec<Closed>) {
    for c in closed {
        table::finish(c);
    }
}

/// The connection's hooks, copied (the program may change them later).
fn hooks_of(c: &Conn) -> Option<sock_rw_hook_s> {
    // SAFETY: a non-null hook pointer was lent by the program through
    // sock_rw_hook_set and must stay valid while set.
    (!c.hooks.is_null()).then(|| unsafe { *c.hooks })
}

/// Registers `fd` and returns its new UUID. If the fd was still marked open
/// (closed behind the library's back and reused), the old connection is
/// closed first: its data dropped and its callbacks called.
pub fn register(fd: RawFd) -> Result<isize, Errno> {
    if fd < 0 {
        return Err(Errno::EBADF);
    }
    let slot = table().slot_or_create(fd).ok_or(Errno::EMFILE)?;
    let socket = sys::is_socket(fd);
    let listening = socket && sys::is_listening(fd);
    let mut c = slot.conn.lock();
    let old = c
        .open
        .then(|| close_locked(slot, &mut c, fd, CloseKind::Forget));
    // Closes still waiting for a thread to leave the fd: that fd number is
    // in use again, so they must not close it.
    for d in c.deferred.iter_mut() {
        d.kind = CloseKind::Forget;
    }
    c.counter = c.counter.wrapping_add(1);
    c.open = true;
    c.socket = socket;
    c.listening = listening;
    let id = uuid::encode(fd, c.counter);
    drop(c);
    if let Some(old) = old {
        old.complete();
    }
    Ok(id)
}

/// `sock_read`.
///
/// # Safety
/// `buf` must be NULL or valid for `count` bytes of writes.
pub unsafe fn read(id: isize, buf: *mut c_void, count: usize) -> isize {
    let Some(mut l) = table::lock(id) else {
        sys::set_errno(Errno::ENODEV);
        return -1;
    };
    if count == 0 {
        // The original called `read(fd, buf, 0)`, got 0 and took it as end
        // of stream; programs rely on that to drop a client whose input
        // overflows their buffer. Same outcome, without the system call.
        drop(l);
        close(id);
        return -1;
    }
    if buf.is_null() {
        sys::set_errno(Errno::EINVAL);
        return -1;
    }
    let hook = hooks_of(&l.conn).and_then(|h| h.read);
    l.conn.pins += 1;
    let (slot, fd) = (l.slot, l.fd);
    drop(l);
    let n = match hook {
        // SAFETY: the program's hook, given the caller's buffer, no lock held.
        Some(read) => unsafe { read(id, buf, count) },
        // SAFETY: the C caller guarantees `buf` holds `count` bytes.
        None => unsafe { sys::read(fd, buf, count) },
    };
    let err = Errno::last();
    let closes = unpin(&mut slot.conn.lock());
    finish_all(closes);
    if n > 0 {
        callbacks::touch(id);
        return n;
    }
    if n < 0 && matches!(err, Errno::EAGAIN | Errno::EINTR | Errno::ENOTCONN) {
        err.set();
        return 0;
    }
    // End of stream, or a connection error: close gracefully.
    close(id);
    if n < 0 {
        err.set();
    }
    -1
}

/// Waits while another write streams into the connection.
fn wait_turn(l: &mut Locked) -> Result<(), Errno> {
    while l.conn.streaming {
        l.slot.changed.wait(&mut l.conn);
        if !l.conn.is(l.counter) {
            return Err(Errno::ENODEV);
        }
    }
    Ok(())
}

/// Queues entries (normal or urgent) on a locked connection. On failure the
/// entries come back, to be dropped once the lock is released.
fn enqueue(l: &mut Locked, entries: Vec<Entry>, urgent: bool) -> Result<(), (Errno, Vec<Entry>)> {
    if urgent {
        // Urgent data never waits: while entries are out of the queue being
        // sent, or a write is queuing its parts, it waits aside (in order)
        // and is placed once the whole queue is back.
        let c = &mut *l.conn;
        c.urgent_waiting.extend(entries);
        place_urgent(c);
        return Ok(());
    }
    if l.conn.streaming_here() {
        l.conn.after_stream.extend(entries);
        return Ok(());
    }
    if let Err(e) = wait_turn(l) {
        return Err((e, entries));
    }
    for e in entries {
        l.conn.queue.push(e);
    }
    Ok(())
}

/// Queues `entries` on the connection `l` and flushes it.
fn enqueue_and_flush(
    mut l: Locked,
    id: isize,
    entries: Vec<Entry>,
    urgent: bool,
) -> Result<(), Errno> {
    let r = enqueue(&mut l, entries, urgent);
    drop(l);
    match r {
        Ok(()) => {
            schedule_flush(id);
            Ok(())
        }
        Err((e, entries)) => {
            drop(entries);
            Err(e)
        }
    }
}

/// Copies `data` into pool packets at the end of the queue. When the pool
/// runs dry, the connection is reserved (`streaming`) and the rest is queued
/// in parts as flushing frees packets, so several such writers never hold
/// packets outside a queue (no deadlock) and no other write lands inside
/// this one. Returns whether a new packet was queued (false: the bytes all
/// fit in the last queued packet).
fn copy_in(l: &mut Locked, id: isize, data: &[u8], sent_part: bool) -> Result<bool, Errno> {
    wait_turn(l)?;
    let took = if sent_part {
        0
    } else {
        l.conn.queue.append_to_tail(data)
    };
    let mut rest = &data[took..];
    let mut first = took == 0 && !sent_part;
    let mut pushed = false;
    let mut peer_failed = false;
    let result = loop {
        if rest.is_empty() {
            break Ok(pushed);
        }
        let packet = match pool::try_take() {
            Some(p) => p,
            None => {
                l.conn.streaming = true;
                l.conn.streaming_by = Some(std::thread::current().id());
                let (slot, counter, fd) = (l.slot, l.counter, l.fd);
                // Waiting is pointless once the connection closed, or its
                // peer reset it (with nothing queued, no flush would notice).
                let mut gone = || !slot.conn.lock().is(counter) || sys::peer_failed(fd);
                let p = MutexGuard::unlocked(&mut l.conn, || {
                    let _ = flush(id);
                    pool::take_unless(&mut gone, make_progress)
                });
                match p {
                    Some(p) if l.conn.is(l.counter) => p,
                    other => {
                        if let Some(p) = other {
                            pool::put(p);
                        }
                        // Still open here means its peer failed: it is
                        // closed below, and the write fails like any write
                        // whose connection closed meanwhile.
                        peer_failed = l.conn.is(l.counter);
                        break Err(Errno::ENODEV);
                    }
                }
            }
        };
        let n = rest.len().min(BUFFER_PACKET_SIZE);
        let storage = PoolPacket::storage(packet);
        // SAFETY: the packet's storage holds BUFFER_PACKET_SIZE bytes; n fits.
        unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), storage, n) };
        let mut entry = Entry::new(
            Body::Mem {
                ptr: storage,
                len: n,
                sent: 0,
            },
            Owner::Pool(packet),
            first,
        );
        // The rest of a write whose head the kernel already took: nothing
        // may be inserted before it.
        entry.started = sent_part && !pushed;
        l.conn.queue.push(entry);
        first = false;
        pushed = true;
        rest = &rest[n..];
    };
    if l.conn.is(l.counter) && l.conn.streaming {
        l.conn.streaming = false;
        l.conn.streaming_by = None;
        let c = &mut *l.conn;
        for e in c.after_stream.drain(..) {
            c.queue.push(e);
        }
        place_urgent(c);
        l.slot.changed.notify_all();
    }
    if peer_failed {
        // The peer is gone: close the connection (callbacks run after the
        // lock is released, through the usual path).
        let closing = close_locked(l.slot, &mut l.conn, l.fd, CloseKind::Force);
        MutexGuard::unlocked(&mut l.conn, || closing.complete());
    }
    result
}

/// Lets pool waiters make progress: flush every connection, then wait a
/// little for the kernel to accept more.
fn make_progress() {
    flush_all();
    if pool::available() > 0 {
        return;
    }
    let mut fds = Vec::new();
    table().for_each(|fd, slot| {
        if fds.len() < 256
            && let Some(c) = slot.conn.try_lock()
            && c.open
            && c.pending()
            && !c.flushing
        {
            fds.push(fd);
        }
    });
    sys::wait_writable(&fds, 10);
}

/// Sends `data` straight from the caller's buffer when nothing is queued,
/// nobody is flushing, no hook is set and flushes run inline: one system
/// call, no copy (the common case of a reader that keeps up). Returns the
/// bytes the kernel took (0 when the fast path does not apply or the socket
/// is full), or the connection's error.
fn send_now(l: &mut Locked, data: &[u8]) -> Result<usize, Errno> {
    let c = &mut *l.conn;
    if !c.queue.is_empty()
        || c.flushing
        || c.streaming
        || c.blocked
        || !c.urgent_waiting.is_empty()
        || !c.hooks.is_null()
        || !c.socket
        || !callbacks::flushes_inline()
    {
        return Ok(0);
    }
    let iov = [libc::iovec {
        iov_base: data.as_ptr() as *mut c_void,
        iov_len: data.len(),
    }];
    // The slot lock is held: the fd cannot be closed meanwhile, and the call
    // does not block (the socket is non-blocking).
    // SAFETY: the iovec describes the caller's buffer.
    let n = unsafe { sys::write_vectored(l.fd, &iov, true) };
    if n >= 0 {
        let n = n as usize;
        // A short write means the socket is full now.
        c.blocked = n < data.len();
        return Ok(n);
    }
    match Errno::last() {
        Errno::EAGAIN => {
            c.blocked = true;
            Ok(0)
        }
        e => Err(e),
    }
}

/// The common `sock_write`: bytes the caller keeps. Sent at once when the
/// socket is idle (see [`send_now`]); the rest is copied into pool packets
/// and flushed — unless the socket is known full and the bytes only joined
/// the last packet.
fn write_copy(mut l: Locked, id: isize, data: &[u8]) -> Result<(), Errno> {
    let sent = match send_now(&mut l, data) {
        Ok(n) => n,
        Err(e) => {
            let closing = close_locked(l.slot, &mut l.conn, l.fd, CloseKind::Force);
            drop(l);
            closing.complete();
            return Err(e);
        }
    };
    if sent == data.len() {
        drop(l);
        callbacks::touch(id);
        return Ok(());
    }
    let opened = copy_in(&mut l, id, &data[sent..], sent > 0);
    // While the socket is full, try again only once a write opened a new
    // packet behind at least a full one: one attempt per packet of small
    // messages, not one per message. (A partly sent write means the socket
    // is full right now.)
    let flush_now =
        sent == 0 && (!l.conn.blocked || (opened == Ok(true) && l.conn.queue.holds_full_packet()));
    drop(l);
    if sent > 0 {
        callbacks::touch(id);
    }
    opened?;
    if flush_now {
        schedule_flush(id);
    }
    Ok(())
}

/// `sock_write2_fn`.
pub fn write(o: &sock_write_info_s) -> Result<(), Errno> {
    // With `move` or `is_fd`, the buffer or file is ours from here, even when
    // the call fails: `owned` releases it on every early return.
    let fd = o.buffer as isize;
    let owned = if o.is_fd() {
        if fd < 0 || fd > i32::MAX as isize || !sys::fd_is_open(fd as RawFd) {
            return Err(Errno::EBADF);
        }
        Some(Owner::CloseFd(fd as RawFd))
    } else if o.buffer.is_null() {
        return Err(Errno::EINVAL);
    } else if o.is_move() {
        Some(Owner::Malloc(o.buffer as *mut c_void))
    } else {
        None
    };
    let mut length = o.length;
    if length == 0 && !o.is_fd() {
        // SAFETY: a non-fd buffer with length 0 is a C string by contract.
        length = unsafe { libc::strlen(o.buffer.cast()) };
    }
    if length == 0 || (o.is_fd() && o.offset < 0) {
        drop(owned);
        return Err(Errno::EINVAL);
    }
    let Some(l) = table::lock(o.fduuid) else {
        drop(owned);
        return Err(Errno::ENODEV);
    };
    if l.conn.listening {
        drop(l);
        drop(owned);
        return Err(Errno::ENOTCONN);
    }
    let urgent = o.is_urgent();
    // Urgent entries never let later urgent data jump ahead of them.
    let interruptible = !urgent;
    let entry = match owned {
        Some(owner) if o.is_fd() => Entry::new(
            Body::File(FileBody {
                fd: fd as RawFd,
                offset: o.offset,
                remaining: length as u64,
                no_sendfile: false,
                stage: None,
                eof: false,
            }),
            owner,
            interruptible,
        ),
        Some(owner) => Entry::new(
            Body::Mem {
                ptr: o.buffer.cast(),
                len: length,
                sent: 0,
            },
            owner,
            interruptible,
        ),
        None => {
            // SAFETY: the caller guarantees `length` readable bytes.
            let data = unsafe { std::slice::from_raw_parts(o.buffer.cast::<u8>(), length) };
            if urgent || l.conn.streaming_here() {
                // Urgent data, or a write from inside this thread's own
                // large write: a heap copy that never waits for the pool.
                let copy: Box<[u8]> = data.into();
                Entry::new(
                    Body::Mem {
                        ptr: copy.as_ptr(),
                        len: copy.len(),
                        sent: 0,
                    },
                    Owner::Heap(copy),
                    interruptible,
                )
            } else {
                return write_copy(l, o.fduuid, data);
            }
        }
    };
    enqueue_and_flush(l, o.fduuid, vec![entry], urgent)
}

/// `sock_send_packet`: the chain is ours from here, even on failure.
pub fn send_packet(id: isize, packet: *mut sock_packet_s) -> Result<(), Errno> {
    let mut entries = Vec::new();
    let mut urgent = false;
    let mut p = packet;
    let mut foreign = false;
    while !p.is_null() {
        let Some(pp) = pool::give_back(p) else {
            foreign = true;
            break;
        };
        // SAFETY: the pool confirmed this is a live packet lent to the
        // program, now handed back to us.
        let head = unsafe { &(*pp.as_ptr()).head };
        let meta = head.metadata;
        if p == packet {
            urgent = meta.urgent();
        }
        let body = if meta.is_fd() {
            Body::File(FileBody {
                fd: head.buffer as isize as RawFd,
                offset: meta.offset,
                remaining: if head.length > 0 {
                    head.length as u64
                } else {
                    u64::MAX
                },
                no_sendfile: false,
                stage: None,
                eof: false,
            })
        } else {
            let len = if head.buffer.is_null() {
                0
            } else {
                head.length.max(0) as usize
            };
            Body::Mem {
                ptr: head.buffer.cast(),
                len,
                sent: 0,
            }
        };
        entries.push(Entry::new(body, Owner::Packet(pp), meta.can_interrupt()));
        p = meta.next;
    }
    if foreign {
        drop(entries);
        return Err(Errno::EINVAL);
    }
    // Empty packets are done already: release them now, outside any lock.
    let (done, entries): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(Entry::is_done);
    drop(done);
    let Some(l) = table::lock(id) else {
        drop(entries);
        return Err(Errno::ENODEV);
    };
    if l.conn.listening {
        drop(l);
        drop(entries);
        return Err(Errno::ENOTCONN);
    }
    enqueue_and_flush(l, id, entries, urgent)
}

/// Task handed to the program's `async_run`: flush one connection.
unsafe extern "C" fn flush_task(arg: *mut c_void) {
    crate::ffi::guard((), || {
        let _ = flush(arg as isize);
    });
}

/// Flushes after a write: through the program's task queue when it has one,
/// inline otherwise.
fn schedule_flush(id: isize) {
    if !callbacks::defer(flush_task, id) {
        let _ = flush(id);
    }
}

/// What a flush step leaves to do.
enum Next {
    /// Keep flushing, lock held.
    Again(MutexGuard<'static, Conn>),
    /// Stop with this result.
    Stop(Result<(), Errno>),
}

/// Outcome of one transfer round, before the lock is taken again.
enum Step {
    Again,
    Done(Result<(), Errno>),
}

/// One `sock_flush` call on one connection.
struct Flusher {
    id: isize,
    fd: RawFd,
    counter: u32,
    slot: &'static table::Slot,
    /// Bytes reached the kernel or the write hook (`sock_touch` is due).
    moved: bool,
    /// Entries taken out of the queue while sending them without the lock.
    batch: Vec<Entry>,
    /// Closes handed to us by `unpin`, finished once the lock is released.
    later: Vec<Closed>,
}

/// `sock_flush`: writes what the kernel takes now; closes the connection
/// when it was marked for closing and nothing is left.
pub fn flush(id: isize) -> Result<(), Errno> {
    let Some(l) = table::lock(id) else {
        return Err(Errno::ENODEV);
    };
    let mut f = Flusher {
        id,
        fd: l.fd,
        counter: l.counter,
        slot: l.slot,
        moved: false,
        batch: Vec::new(),
        later: Vec::new(),
    };
    let result = f.run(l.conn);
    finish_all(std::mem::take(&mut f.later));
    if f.moved {
        callbacks::touch(id);
    }
    result
}

impl Flusher {
    fn run(&mut self, mut c: MutexGuard<'static, Conn>) -> Result<(), Errno> {
        // The flush hook already reported nothing buffered in this call.
        let mut hook_clean = false;
        loop {
            if c.flushing {
                // Another thread is sending; it goes on until it blocks.
                return Ok(());
            }
            place_urgent(&mut c);
            let hooks = hooks_of(&c);
            let next = if !c.queue.is_empty() {
                hook_clean = false;
                self.send_batch(c, hooks)
            } else if let Some(hook_flush) = hooks.and_then(|h| h.flush)
                && !hook_clean
            {
                // Bytes the hook buffers (TLS records) are queued data too.
                hook_clean = true;
                self.hook_flush(c, hook_flush)
            } else {
                return self.idle(c);
            };
            match next {
                Next::Again(guard) => c = guard,
                Next::Stop(result) => return result,
            }
        }
    }

    /// Sends a batch of entries with the lock released.
    fn send_batch(
        &mut self,
        mut c: MutexGuard<'static, Conn>,
        hooks: Option<sock_rw_hook_s>,
    ) -> Next {
        c.queue
            .take_batch(hooks.is_some_and(|h| h.write.is_some()), &mut self.batch);
        let sink = Sink {
            fd: self.fd,
            uuid: self.id,
            socket: c.socket,
            hooks,
        };
        c.flushing = true;
        c.pins += 1;
        drop(c);
        let step = send_step(&mut self.batch, &sink, &mut self.moved);
        let Some(mut c) = self.relock() else {
            // Closed meanwhile: what we hold goes with it.
            self.batch.clear();
            return Next::Stop(Err(Errno::ENODEV));
        };
        c.queue.put_back(self.batch.drain(..));
        place_urgent(&mut c);
        match step {
            Step::Again => Next::Again(c),
            Step::Done(Ok(())) => {
                c.blocked = !c.queue.is_empty();
                Next::Stop(Ok(()))
            }
            Step::Done(Err(e)) => self.fail(c, e),
        }
    }

    /// Calls the connection's flush hook with the lock released.
    fn hook_flush(
        &mut self,
        mut c: MutexGuard<'static, Conn>,
        hook_flush: unsafe extern "C" fn(isize) -> isize,
    ) -> Next {
        c.flushing = true;
        c.pins += 1;
        drop(c);
        let left = {
            let _guard = sys::SigpipeGuard::block();
            // SAFETY: the program's hook, called with no lock held.
            unsafe { hook_flush(self.id) }
        };
        let err = Errno::last();
        let Some(mut c) = self.relock() else {
            return Next::Stop(Err(Errno::ENODEV));
        };
        place_urgent(&mut c);
        if left < 0 && !matches!(err, Errno::EAGAIN | Errno::EINTR) {
            return self.fail(c, err);
        }
        c.hook_pending = left != 0;
        if c.hook_pending && c.queue.is_empty() {
            return Next::Stop(Ok(()));
        }
        Next::Again(c)
    }

    /// Nothing left to send: complete a pending graceful close — unless a
    /// write is still queuing its parts (it flushes again when done), so
    /// that no write is cut short by the close.
    fn idle(&mut self, mut c: MutexGuard<'static, Conn>) -> Result<(), Errno> {
        // Everything queued went out. (Writes are held back only while the
        // kernel refuses data: that is what guarantees the program a
        // writability event to flush them on.)
        c.blocked = false;
        if c.close_when_done && !c.hook_pending && !c.streaming {
            let closing = close_locked(self.slot, &mut c, self.fd, CloseKind::Graceful);
            drop(c);
            closing.complete();
            return Err(Errno::ENODEV);
        }
        Ok(())
    }

    /// Takes the lock back after a system call or hook: unpins, and returns
    /// the guard if the connection is still the one being flushed.
    fn relock(&mut self) -> Option<MutexGuard<'static, Conn>> {
        let mut c = self.slot.conn.lock();
        self.later.extend(unpin(&mut c));
        if !c.is(self.counter) {
            return None;
        }
        c.flushing = false;
        self.slot.changed.notify_all();
        Some(c)
    }

    /// The connection failed: close it now, dropping what is queued.
    fn fail(&mut self, mut c: MutexGuard<'static, Conn>, e: Errno) -> Next {
        let closing = close_locked(self.slot, &mut c, self.fd, CloseKind::Force);
        drop(c);
        closing.complete();
        Next::Stop(Err(e))
    }
}

/// Places urgent entries that arrived while a batch was out of the queue.
fn place_urgent(c: &mut Conn) {
    if !c.urgent_waiting.is_empty() && !c.flushing && !c.streaming {
        let waiting: Vec<Entry> = c.urgent_waiting.drain(..).collect();
        c.queue.push_urgent(waiting);
    }
}

/// Sends one batch with no lock held and releases the entries it finished.
fn send_step(batch: &mut Vec<Entry>, sink: &Sink, moved: &mut bool) -> Step {
    let t = transfer::send(batch, sink);
    let done = batch.iter().take_while(|e| e.is_done()).count();
    batch.drain(..done);
    *moved |= t.moved > 0;
    if let Some(e) = t.failed {
        Step::Done(Err(e))
    } else if t.blocked || (t.moved == 0 && done == 0) {
        Step::Done(Ok(()))
    } else {
        Step::Again
    }
}

/// `sock_flush_strong`: flush until nothing is pending or the connection is
/// gone, waiting for writability in between.
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
        if l.conn.flushing {
            // Another thread is sending: wait for it to put data back.
            l.slot
                .changed
                .wait_for(&mut l.conn, std::time::Duration::from_millis(50));
            continue;
        }
        let fd = l.fd;
        drop(l);
        sys::wait_writable(&[fd], 50);
    }
}

/// `sock_flush_all`: flush every connection with data waiting (connections
/// another thread is working on are skipped).
pub fn flush_all() {
    table().for_each(|fd, slot| {
        let id = slot
            .conn
            .try_lock()
            .filter(|c| c.open && c.pending() && !c.flushing)
            .map(|c| uuid::encode(fd, c.counter));
        if let Some(id) = id {
            let _ = flush(id);
        }
    });
}

/// `sock_close`: close once everything queued is sent.
pub fn close(id: isize) {
    let Some(mut l) = table::lock(id) else {
        return;
    };
    l.conn.close_when_done = true;
    drop(l);
    let _ = flush(id);
}

/// `sock_force_close`: close now, dropping what is queued.
pub fn force_close(id: isize) {
    let Some(mut l) = table::lock(id) else {
        return;
    };
    let closing = close_locked(l.slot, &mut l.conn, l.fd, CloseKind::Force);
    drop(l);
    closing.complete();
}

/// `sock_packets_pending`.
pub fn pending(id: isize) -> bool {
    table::lock(id).is_some_and(|l| l.conn.pending())
}

/// `sock_is_closing`.
pub fn is_closing(id: isize) -> bool {
    table::lock(id).is_some_and(|l| l.conn.close_when_done)
}

/// `sock_rw_hook_get`.
pub fn hooks_get(id: isize) -> *mut sock_rw_hook_s {
    table::lock(id).map_or(std::ptr::null_mut(), |l| l.conn.hooks)
}

/// `sock_rw_hook_set`.
pub fn hooks_set(id: isize, hooks: *mut sock_rw_hook_s) -> Result<(), Errno> {
    let mut l = table::lock(id).ok_or(Errno::ENODEV)?;
    l.conn.hooks = hooks;
    Ok(())
}

/// `sock_fd2uuid`.
pub fn fd2uuid(fd: RawFd) -> isize {
    table()
        .slot(fd)
        .and_then(|slot| {
            let c = slot.conn.lock();
            c.open.then(|| uuid::encode(fd, c.counter))
        })
        .unwrap_or(uuid::INVALID)
}

/// `sock_checkout_packet`: NULL (`ENOMEM`) when only the calling thread
/// could free a packet.
pub fn checkout_packet() -> *mut sock_packet_s {
    match pool::checkout(make_progress) {
        Some(p) => p.as_ptr().cast(),
        None => {
            sys::set_errno(Errno::ENOMEM);
            std::ptr::null_mut()
        }
    }
}

/// `sock_free_packet`.
pub fn free_packet(mut p: *mut sock_packet_s) {
    while let Some(pp) = (!p.is_null()).then(|| pool::give_back(p)).flatten() {
        // SAFETY: the pool confirmed a live packet lent to the program.
        p = unsafe { (*pp.as_ptr()).head.metadata.next };
        crate::queue::release_packet(pp);
    }
}
