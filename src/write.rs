//! The write path: `sock_write2` and `sock_send_packet` queue entries on a
//! connection and flush them. An idle socket takes a caller's bytes
//! straight from its buffer. Copies of small writes gather in pool packets
//! without a flush of their own while an `EPOLLOUT` is owed
//! ([`crate::state::SendState::must_flush`]); bytes larger than the free
//! pool are queued in parts while the pool drains.

use std::os::fd::RawFd;

use libc::c_void;
use nix::errno::Errno;
use parking_lot::MutexGuard;

use crate::callbacks;
use crate::flush::{self, make_progress};
use crate::pool::{self, PoolPacket};
use crate::queue::{Body, Entry, FileBody, Owner};
use crate::state::SendState;
use crate::sys;
use crate::table::{self, CloseKind, Conn, Locked, close_locked};
use crate::types::{BUFFER_PACKET_SIZE, sock_packet_s};

/// Waits while another write streams into the connection.
fn wait_turn(l: &mut Locked) -> Result<(), Errno> {
    while l.conn.streaming() {
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
    let bytes: usize = entries.iter().map(Entry::mem_left).sum();
    if !urgent
        && !l.conn.streaming_here()
        && let Err(e) = wait_turn(l)
    {
        return Err((e, entries));
    }
    let c = &mut *l.conn;
    c.queued_bytes += bytes;
    if urgent {
        // Urgent data never waits: while entries are out of the queue being
        // sent, or a write is queuing its parts, it waits aside (in order)
        // and is placed once the whole queue is back.
        c.urgent_waiting.extend(entries);
        if !c.send.is_sending() {
            c.place_urgent();
        }
    } else if c.streaming_here() {
        c.after_stream.extend(entries);
    } else {
        for e in entries {
            c.queue.push(e);
        }
    }
    table::mark_dirty(l.fd, c);
    Ok(())
}

/// Under the lock, once bytes are queued and the writer is to flush them:
/// whether it must ask for that flush (`flush::schedule`). Not when the
/// program runs flushes as tasks and a task offered for this connection has
/// not started yet: its `flush` takes the lock after these bytes were
/// queued, so it sends them too. A burst of writes to one connection makes
/// one task, not one per write. The mark is set only by a writer that then
/// offers the task (or, declined, flushes inline), and every `flush` clears
/// it.
fn offer_flush(c: &mut Conn) -> bool {
    callbacks::flushes_inline() || !std::mem::replace(&mut c.flush_offered, true)
}

/// Queues `entries` on the connection `l` and flushes it. (Unlike a copy
/// into the pool, these entries take no pool space, so the pool's
/// back-pressure does not drive a writer that never waits for an event:
/// each of these writes tries to send, as the original's did.)
fn enqueue_and_flush(
    mut l: Locked,
    id: isize,
    entries: Vec<Entry>,
    urgent: bool,
) -> Result<(), Errno> {
    let r = enqueue(&mut l, entries, urgent);
    let offer = r.is_ok() && offer_flush(&mut l.conn);
    drop(l);
    // Entries refused are released here, the lock free.
    r.map_err(|(e, _entries)| e)?;
    if offer {
        flush::schedule(id);
    }
    Ok(())
}

/// Copies `data` into pool packets at the end of the queue. When the pool
/// runs dry, the connection is reserved (`streaming`) and the rest is queued
/// in parts as flushing frees packets, so several such writers never hold
/// packets outside a queue (no deadlock) and no other write lands inside
/// this one. Returns whether a new packet was queued (false: the bytes all
/// fit in the last queued packet).
fn copy_in(l: &mut Locked, data: &[u8], sent_part: bool) -> Result<bool, Errno> {
    wait_turn(l)?;
    let took = if sent_part {
        0
    } else {
        l.conn.queue.append_to_tail(data)
    };
    l.conn.queued_bytes += took;
    // A new packet is queued unless the last one took all the bytes.
    let mut result = Ok(took < data.len());
    let mut peer_failed = false;
    for (i, part) in data[took..].chunks(BUFFER_PACKET_SIZE).enumerate() {
        let packet = match pool::try_take() {
            Some(p) => p,
            None => {
                l.conn.streaming_by = Some(std::thread::current().id());
                let (slot, counter, fd) = (l.slot, l.counter, l.fd);
                // Waiting is pointless once the connection closed, or its
                // peer reset it (with nothing queued, no flush would notice:
                // make_progress watches the fd for that).
                let mut gone = || !slot.conn.lock().is(counter);
                // make_progress flushes what nobody sends, this connection
                // included, and waits for what the kernel refused.
                let p = MutexGuard::unlocked(&mut l.conn, || {
                    pool::take_unless(&mut gone, || make_progress(Some(fd)))
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
                        result = Err(Errno::ENODEV);
                        break;
                    }
                }
            }
        };
        let storage = PoolPacket::storage(packet);
        // SAFETY: the packet's storage holds BUFFER_PACKET_SIZE bytes; the
        // part fits.
        unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), storage, part.len()) };
        let first = i == 0 && took == 0 && !sent_part;
        let mut entry = Entry::new(Body::mem(storage, part.len()), Owner::Pool(packet), first);
        // The rest of a write whose head the kernel already took: nothing
        // may be inserted before it.
        entry.started = sent_part && i == 0;
        l.conn.queue.push(entry);
        l.conn.queued_bytes += part.len();
        table::mark_dirty(l.fd, &mut l.conn);
    }
    if l.conn.is(l.counter) && l.conn.streaming() {
        l.conn.streaming_by = None;
        let c = &mut *l.conn;
        for e in c.after_stream.drain(..) {
            c.queue.push(e);
        }
        if !c.send.is_sending() {
            c.place_urgent();
        }
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

/// Whether a write to this connection is sent at once by the writing
/// thread (bytes to a socket: [`send_now`]; a file:
/// [`flush::send_file_now`]): nothing queued or owed, no sender, no hook
/// (the read-and-write path) and flushes that run inline.
fn sends_now(c: &Conn) -> bool {
    c.send == SendState::Idle
        && c.queue.is_empty()
        && c.urgent_waiting.is_empty()
        && !c.streaming()
        && c.hooks.is_null()
        && callbacks::flushes_inline()
}

/// Sends `data` straight from the caller's buffer when nothing is queued,
/// nothing is owed or in flight (`SendState::Idle`), no hook is set and flushes
/// run inline: one system call, no copy (the common case of a reader that
/// keeps up). Returns the bytes the kernel took (`None` when the fast path
/// does not apply; fewer than asked: the kernel refused the rest), or the
/// connection's error.
fn send_now(l: &mut Locked, data: &[u8]) -> Result<Option<usize>, Errno> {
    let c = &mut *l.conn;
    if !c.socket || !sends_now(c) {
        return Ok(None);
    }
    let iov = [libc::iovec {
        iov_base: data.as_ptr() as *mut c_void,
        iov_len: data.len(),
    }];
    // The slot lock is held: the fd cannot be closed meanwhile, and the call
    // does not block (the socket is non-blocking).
    // SAFETY: the iovec describes the caller's buffer.
    let n = match unsafe { sys::write_vectored(l.fd, &iov, true) } {
        Err(Errno::EAGAIN) => 0,
        n => n?,
    };
    // A short write means the socket is full now.
    c.send.sent_inline(n < data.len());
    Ok(Some(n))
}

/// The common `sock_write`: bytes the caller keeps. Sent at once when the
/// socket is idle (see [`send_now`]); the rest is copied into pool packets
/// and flushed — unless someone else will send them (an `EPOLLOUT` is owed,
/// or a sender or the waker is at work).
fn write_copy(mut l: Locked, id: isize, data: &[u8]) -> Result<(), Errno> {
    let attempt = match send_now(&mut l, data) {
        Ok(n) => n,
        Err(e) => {
            table::close_now(l.slot, l.conn, l.fd, CloseKind::Force);
            return Err(e);
        }
    };
    let sent = attempt.unwrap_or(0);
    if sent == data.len() {
        drop(l);
        callbacks::touch(id);
        return Ok(());
    }
    let opened = copy_in(&mut l, &data[sent..], sent > 0);
    // The state decides after the bytes are queued (a large write waited
    // for the pool meanwhile, while flushes may have drained the socket).
    // While an EPOLLOUT is owed, try again only once a write opened a new
    // packet behind at least a full one: one attempt per packet of small
    // messages to a slow reader, not one per message — and not when this
    // very write just found the socket full.
    // A failed copy returns before the flush below, so it must not take the
    // offer (`offer_flush` marks the connection): asked last, and only then.
    let c = &mut *l.conn;
    let flush_now = opened.is_ok()
        && c.is(l.counter)
        && (c.send.must_flush()
            || (c.send == SendState::Owed
                && attempt.is_none()
                && opened == Ok(true)
                && c.queue.holds_full_packet()))
        && offer_flush(c);
    drop(l);
    if sent > 0 {
        callbacks::touch(id);
    }
    opened?;
    if flush_now {
        flush::schedule(id);
    }
    Ok(())
}

/// What a `sock_write2` hands over, checked by the C surface.
pub enum Payload<'a> {
    /// Bytes the caller keeps: sent at once, or copied.
    Borrowed(&'a [u8]),
    /// `len` bytes at `ptr` that the library owns from now (`move`),
    /// released by `owner` when sent or dropped.
    Owned {
        owner: Owner,
        ptr: *const u8,
        len: usize,
    },
    /// A window of a file handed over (`is_fd`): from `offset`, at most
    /// `length` bytes (`u64::MAX`: to its end). Not checked yet: the first
    /// `sendfile`, or a check before it is queued, tells whether the fd is
    /// open; the library owns it from then on.
    File {
        fd: RawFd,
        offset: libc::off_t,
        length: u64,
    },
}

impl Payload<'_> {
    /// A refused write releases what was handed over: an owned buffer is
    /// freed (its owner dropped), a file closed. A file that is not open is
    /// the error that counts (`EBADF`), whatever else was wrong.
    fn refuse(self, e: Errno) -> Errno {
        match self {
            Payload::File { fd, .. } if !sys::fd_is_open(fd) => Errno::EBADF,
            Payload::File { fd, .. } => {
                sys::close(fd);
                e
            }
            _ => e,
        }
    }
}

/// Locks the connection `id` for a write: `ENODEV` when it is not open,
/// `ENOTCONN` for a listening socket, `ENOBUFS` when it holds its limit.
fn lock_for_write(id: isize) -> Result<Locked, Errno> {
    let l = table::lock(id).ok_or(Errno::ENODEV)?;
    if l.conn.listening {
        return Err(Errno::ENOTCONN);
    }
    if l.conn.over_limit() {
        return Err(Errno::ENOBUFS);
    }
    Ok(l)
}

/// `sock_write2_fn`: queues `payload` on the connection `id` and flushes.
/// What the payload owns is released on every failure.
pub fn write(id: isize, payload: Payload, urgent: bool) -> Result<(), Errno> {
    let l = match lock_for_write(id) {
        Ok(l) => l,
        Err(e) => return Err(payload.refuse(e)),
    };
    // Urgent entries never let later urgent data jump ahead of them.
    let interruptible = !urgent;
    let entry = match payload {
        Payload::File { fd, offset, length } => {
            if !urgent && sends_now(&l.conn) {
                // The sendfile itself says whether the fd is open.
                return flush::send_file_now(l, FileBody::new(fd, offset, length));
            }
            if !sys::fd_is_open(fd) {
                return Err(Errno::EBADF);
            }
            Entry::new(
                Body::File(FileBody::new(fd, offset, length)),
                Owner::CloseFd(fd),
                interruptible,
            )
        }
        Payload::Owned { owner, ptr, len } => Entry::new(Body::mem(ptr, len), owner, interruptible),
        Payload::Borrowed(data) if urgent || l.conn.streaming_here() => {
            // Urgent data, or a write from inside this thread's own large
            // write: a heap copy that never waits for the pool.
            let copy: Box<[u8]> = data.into();
            Entry::new(
                Body::mem(copy.as_ptr(), copy.len()),
                Owner::Heap(copy),
                interruptible,
            )
        }
        Payload::Borrowed(data) => return write_copy(l, id, data),
    };
    enqueue_and_flush(l, id, vec![entry], urgent)
}

/// `sock_send_packet`: the chain is ours from here, even on failure.
pub fn send_packet(id: isize, packet: *mut sock_packet_s) -> Result<(), Errno> {
    let mut entries = Vec::new();
    let mut urgent = false;
    let mut p = packet;
    while !p.is_null() {
        // A pointer that is not a checked-out packet: the packets before it
        // are released (dropped on return), nothing after it is touched.
        let Some(pp) = pool::give_back(p) else {
            return Err(Errno::EINVAL);
        };
        // SAFETY: the pool confirmed this is a live packet lent to the
        // program, now handed back to us.
        let head = unsafe { &(*pp.as_ptr()).head };
        let meta = head.metadata;
        if p == packet {
            urgent = meta.urgent();
        }
        let body = if meta.is_fd() {
            let fd = head.buffer as isize as RawFd;
            let remaining = if head.length > 0 {
                head.length as u64
            } else {
                u64::MAX
            };
            Body::File(FileBody::new(fd, meta.offset, remaining))
        } else {
            let len = if head.buffer.is_null() {
                0
            } else {
                head.length.max(0) as usize
            };
            Body::mem(head.buffer.cast(), len)
        };
        entries.push(Entry::new(body, Owner::Packet(pp), meta.can_interrupt()));
        p = meta.next;
    }
    // Empty packets are done already: release them now, outside any lock.
    let (done, entries): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(Entry::is_done);
    drop(done);
    // Refused: the entries are released on return, the lock already free.
    let l = lock_for_write(id)?;
    enqueue_and_flush(l, id, entries, urgent)
}
