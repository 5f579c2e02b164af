//! What the library does with connections besides writing and flushing:
//! register, read, close, and the small queries. The C surface (`ffi`)
//! calls these; the write path is [`crate::write`], the flusher
//! [`crate::flush`]. Callbacks are always called after releasing the slot
//! lock.

use std::os::fd::RawFd;

use libc::c_void;
use nix::errno::Errno;

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
    let Some(l) = table::lock(id) else {
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
    let hook = l.conn.hooks().and_then(|h| h.read);
    let fd = l.fd;
    let pinned = Pinned::new(l.slot, l.conn);
    let n = match hook {
        // A TLS read hook may write (handshake, alerts).
        Some(read) => {
            sys::block_sigpipe();
            // SAFETY: the program's hook, given the caller's buffer, no lock
            // held.
            let n = unsafe { read(id, buf, count) };
            if n < 0 {
                sys::consume_sigpipe();
            }
            n
        }
        // SAFETY: the C caller guarantees `buf` holds `count` bytes.
        None => unsafe { sys::read(fd, buf, count) },
    };
    let err = Errno::last();
    let (c, closes) = pinned.relock();
    drop(c);
    closes.into_iter().for_each(table::finish);
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

/// `sock_close`: close once everything queued is sent.
pub fn close(id: isize) {
    let Some(mut l) = table::lock(id) else {
        return;
    };
    l.conn.close_when_done = true;
    drop(l);
    let _ = flush::flush(id);
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
    match pool::checkout(|| make_progress(None)) {
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
