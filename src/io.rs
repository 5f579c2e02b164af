//! What the library does with connections besides writing and flushing:
//! register, read, close, and the small queries. The C surface (`ffi`)
//! calls these; the write path is [`crate::write`], the flusher
//! [`crate::flush`]. Callbacks are always called after releasing the slot
//! lock.

use std::os::fd::RawFd;

use nix::errno::Errno;

use crate::boundary::END_OF_STREAM;
use crate::callbacks;
use crate::flush::{self, make_progress};
use crate::pool;
use crate::sys;
use crate::table::{self, CloseKind, Pinned, close_locked, table};
use crate::types::{sock_packet_s, sock_rw_hook_s};
use crate::uuid;

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
    for d in c
        .deferred
        .iter_mut()
        .filter(|d| d.kind != CloseKind::Hijack)
    {
        d.kind = CloseKind::Forget;
    }
    c.counter = c.counter.wrapping_add(1);
    c.open = true;
    // A task offered for the last connection here does not flush this one.
    c.flush_offered = false;
    c.socket = socket;
    c.listening = listening;
    c.limit = table::DEFAULT_LIMIT.load(std::sync::atomic::Ordering::Relaxed);
    let id = uuid::encode(fd, c.counter);
    drop(c);
    if let Some(old) = old {
        old.complete();
    }
    Ok(id)
}

/// `sock_accept`: accepts one pending connection on the listener `id`.
pub fn accept(id: isize) -> Result<RawFd, Errno> {
    let l = table::lock(id).ok_or(Errno::ENODEV)?;
    // Held across accept so the listening fd cannot be closed (and its
    // number reused) meanwhile; accept on a non-blocking socket does not
    // block.
    sys::accept(l.fd)
}

/// `sock_read`: bytes read (> 0), 0 when nothing is there now; an error
/// (`END_OF_STREAM` at the end of the stream) once the connection closed.
/// An empty `buf` is taken as the end of the stream, as the original's
/// `read(fd, buf, 0)` answering 0 was: programs rely on it to drop a client
/// whose input overflows their buffer.
pub fn read(id: isize, buf: &mut [u8]) -> Result<usize, Errno> {
    let l = table::lock(id).ok_or(Errno::ENODEV)?;
    if buf.is_empty() {
        drop(l);
        close(id);
        return Err(END_OF_STREAM);
    }
    let hook = l.conn.hooks().and_then(|h| h.read);
    let fd = l.fd;
    let pinned = Pinned::new(l.slot, l.conn);
    let n = match hook {
        // A TLS read hook may write (handshake, alerts).
        Some(read) => {
            sys::block_sigpipe();
            // SAFETY: the program's hook, given the caller's buffer, no lock
            // held.
            let n = unsafe { read(id, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                sys::consume_sigpipe();
            }
            Errno::result(n)
        }
        None => sys::read(fd, buf),
    };
    let (c, closes) = pinned.relock();
    drop(c);
    closes.into_iter().for_each(table::finish);
    match n {
        Ok(n) if n > 0 => {
            callbacks::touch(id);
            Ok(n as usize)
        }
        Err(Errno::EAGAIN | Errno::EINTR | Errno::ENOTCONN) => Ok(0),
        // End of stream, or a connection error: close gracefully.
        end => {
            close(id);
            Err(end.err().unwrap_or(END_OF_STREAM))
        }
    }
}

/// `sock_close`: close once everything queued is sent.
pub fn close(id: isize) {
    if let Some(mut l) = table::lock(id) {
        l.conn.close_when_done = true;
        drop(l);
        let _ = flush::flush(id);
    }
}

/// `sock_force_close`: close now, dropping what is queued.
pub fn force_close(id: isize) {
    if let Some(l) = table::lock(id) {
        table::close_now(l.slot, l.conn, l.fd, CloseKind::Force);
    }
}

/// `sock_packets_pending`.
pub fn pending(id: isize) -> bool {
    table::lock(id).is_some_and(|l| l.conn.pending())
}

/// `sock_is_closing`.
pub fn is_closing(id: isize) -> bool {
    table::lock(id).is_some_and(|l| l.conn.close_when_done)
}

/// `sock_peer_addr`: the peer's address, as `getpeername` gives it.
///
/// # Safety
/// `addr` must be valid for `*addrlen` bytes of writes; `addrlen` valid.
pub unsafe fn peer_addr(
    id: isize,
    addr: *mut libc::sockaddr,
    addrlen: *mut libc::socklen_t,
) -> Result<(), Errno> {
    let l = table::lock(id).ok_or(Errno::ENODEV)?;
    // The slot lock is held: the fd cannot be closed (and reused) meanwhile.
    // SAFETY: forwarded from the caller.
    unsafe { sys::peer_name(l.fd, addr, addrlen) }
}

/// `sock_hijack`: hands the fd to the program. What is queued is sent as
/// far as the kernel takes it now; if anything is left the call fails with
/// `EAGAIN` and nothing changes.
pub fn hijack(id: isize) -> Result<RawFd, Errno> {
    let _ = flush::flush(id);
    let l = table::lock(id).ok_or(Errno::ENODEV)?;
    if l.conn.pending() || l.conn.streaming() {
        return Err(Errno::EAGAIN);
    }
    table::close_now(l.slot, l.conn, l.fd, CloseKind::Hijack);
    Ok(l.fd)
}

/// `sock_set_pending_limit`.
pub fn set_limit(id: isize, bytes: usize) -> Result<(), Errno> {
    table::lock(id).ok_or(Errno::ENODEV)?.conn.limit = bytes;
    Ok(())
}

/// `sock_pending_bytes`.
pub fn pending_bytes(id: isize) -> usize {
    table::lock(id).map_or(0, |l| l.conn.queued_bytes)
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

/// `sock_checkout_packet`: `ENOMEM` when only the calling thread could
/// free a packet.
pub fn checkout_packet() -> Result<*mut sock_packet_s, Errno> {
    pool::checkout(|| make_progress(None))
        .map(|p| p.as_ptr().cast())
        .ok_or(Errno::ENOMEM)
}

/// `sock_free_packet`.
pub fn free_packet(mut p: *mut sock_packet_s) {
    while let Some(pp) = (!p.is_null()).then(|| pool::give_back(p)).flatten() {
        // SAFETY: the pool confirmed a live packet lent to the program.
        p = unsafe { (*pp.as_ptr()).head.metadata.next };
        crate::queue::release_packet(pp);
    }
}
