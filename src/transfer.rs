//! Moving queued bytes to the kernel (or to a write hook): gathered writes
//! for memory, `sendfile` for files, and the read-and-write path for files
//! that cannot use `sendfile` or must pass through a hook (TLS).
//!
//! Runs with no library lock held, on a batch of entries the flusher took
//! out of the queue, so nothing else touches them meanwhile.

use std::os::fd::RawFd;

use libc::iovec;
use nix::errno::Errno;

use crate::queue::{Body, Entry, FileBody, Stage};
use crate::sys;
use crate::types::{BUFFER_FILE_READ_SIZE, sock_rw_hook_s};

/// What one transfer round achieved.
#[derive(Default)]
pub struct Transfer {
    /// Bytes handed to the kernel or to the write hook.
    pub moved: usize,
    /// The kernel took nothing more: `EAGAIN`, or a short write straight to
    /// the fd (the kernel then owes an `EPOLLOUT`). A write hook's short
    /// write is not a refusal: a TLS hook takes one record per call.
    pub refused: bool,
    /// Nothing more moved for a reason the kernel will not report on the
    /// socket.
    pub stalled: Option<Stall>,
    /// The connection failed (the error), or a file could not be read.
    pub failed: Option<Errno>,
}

impl Transfer {
    /// A write that took nothing more failed with `e`: `EAGAIN` is the
    /// kernel's (or the hook's transport's) refusal, any other error the
    /// connection's failure.
    fn stop(&mut self, e: Errno) {
        if e == Errno::EAGAIN {
            self.refused = true;
        } else {
            self.failed = Some(e);
        }
    }
}

/// Why a transfer stopped without a refusal.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stall {
    /// The file source has no data yet (an empty non-blocking pipe): look
    /// again when this fd is readable.
    Source(RawFd),
    /// The write hook wrote nothing without refusing (0, or `EINTR` again
    /// and again).
    Hook,
}

/// Largest `sendfile` request (Linux transfers at most this much per call).
const SENDFILE_MAX: usize = 0x7fff_f000;
/// System calls one round may make on a single file before yielding.
const FILE_ROUNDS: usize = 16;
/// `EINTR` answers of a write hook retried at once, in a row.
const HOOK_EINTR_RETRIES: usize = 8;

/// Where bytes go: the socket itself, or the connection's write hook.
pub struct Sink {
    pub fd: RawFd,
    pub uuid: isize,
    pub socket: bool,
    pub hooks: Option<sock_rw_hook_s>,
}

impl Sink {
    fn write_hook(
        &self,
    ) -> Option<unsafe extern "C" fn(isize, *const libc::c_void, usize) -> isize> {
        self.hooks.and_then(|h| h.write)
    }

    /// Writes one buffer through the hook or straight to the fd, and
    /// accounts for it in `t`: the bytes taken, or `None` when the sink took
    /// nothing more (`t` says why).
    fn write_one(&self, buf: &[u8], t: &mut Transfer) -> Option<usize> {
        let Some(w) = self.write_hook() else {
            let iov = [iovec {
                iov_base: buf.as_ptr() as *mut _,
                iov_len: buf.len(),
            }];
            // SAFETY: the iovec describes `buf`.
            let n = unsafe { sys::write_vectored(self.fd, &iov, self.socket) };
            return took_direct(n, buf.len(), t);
        };
        for _ in 0..HOOK_EINTR_RETRIES {
            // SAFETY: the hook receives a valid buffer for the call; it is
            // the program's code, called with no library lock held.
            let n = unsafe { w(self.uuid, buf.as_ptr().cast(), buf.len()) };
            match n {
                n if n > 0 => {
                    t.moved += n as usize;
                    return Some(n as usize);
                }
                0 => break,
                _ => match Errno::last() {
                    Errno::EINTR => continue,
                    e => {
                        t.stop(e);
                        return None;
                    }
                },
            }
        }
        t.stalled = Some(Stall::Hook);
        None
    }

    /// Whether a write can raise `SIGPIPE` (so it must be blocked).
    pub fn may_raise_sigpipe(&self, batch: &[Entry]) -> bool {
        !self.socket
            || self.hooks.is_some()
            || batch.iter().any(|e| matches!(e.body, Body::File(_)))
    }
}

/// Accounts for a system call that wrote `n` of `wanted` bytes straight to
/// the fd (`EINTR` was retried below): a short count or `EAGAIN` is a
/// refusal. Returns the bytes taken, `None` when it took nothing more.
fn took_direct(n: Result<usize, Errno>, wanted: usize, t: &mut Transfer) -> Option<usize> {
    let n = n.inspect_err(|&e| t.stop(e)).ok()?;
    t.moved += n;
    if n < wanted {
        t.refused = true;
    }
    (n > 0).then_some(n)
}

#[cfg(test)]
thread_local! {
    /// Test-only fault: the next [`send`] on this thread panics.
    pub static PANIC_IN_SEND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Sends what it can of `batch` (taken with `WriteQueue::take_batch`).
pub fn send(batch: &mut [Entry], sink: &Sink) -> Transfer {
    #[cfg(test)]
    if PANIC_IN_SEND.with(|p| p.replace(false)) {
        panic!("fault injected into a send");
    }
    let mut t = Transfer::default();
    let guarded = sink.may_raise_sigpipe(batch);
    if guarded {
        sys::block_sigpipe();
    }
    match batch {
        [
            Entry {
                body: Body::File(file),
                started,
                ..
            },
        ] => {
            send_file(file, sink, &mut t);
            *started |= t.moved > 0 || file.stage.is_some();
        }
        _ if sink.write_hook().is_some() => {
            for e in batch.iter_mut() {
                send_mem_one(e, sink, &mut t);
                if !e.is_done() {
                    break;
                }
            }
        }
        _ => send_mem_gathered(batch, sink, &mut t),
    }
    if guarded && t.failed.is_some() {
        sys::consume_sigpipe();
    }
    t
}

/// Sends what it can of one file window that is not in any queue yet
/// (`sock_sendfile` on an idle connection, see
/// [`crate::flush::send_file_now`]).
pub fn send_file_alone(file: &mut FileBody, sink: &Sink) -> Transfer {
    let mut t = Transfer::default();
    sys::block_sigpipe();
    send_file(file, sink, &mut t);
    if t.failed.is_some() {
        sys::consume_sigpipe();
    }
    t
}

/// One gathered write of every memory entry of the batch.
fn send_mem_gathered(batch: &mut [Entry], sink: &Sink, t: &mut Transfer) {
    // Left uninitialised: only the first `n` are written and read (no 1 KiB
    // of zeroing per flush).
    let mut slots = [const { std::mem::MaybeUninit::<iovec>::uninit() }; crate::queue::MAX_BATCH];
    let mut n = 0;
    for e in batch.iter() {
        if let Body::Mem { ptr, len, sent } = e.body
            && sent < len
            && n < slots.len()
        {
            slots[n].write(iovec {
                // SAFETY: sent < len, so ptr + sent is inside the buffer.
                iov_base: unsafe { ptr.add(sent) } as *mut _,
                iov_len: len - sent,
            });
            n += 1;
        }
    }
    if n == 0 {
        return;
    }
    // SAFETY: the first `n` slots were written just above.
    let iov = unsafe { std::slice::from_raw_parts(slots.as_ptr().cast::<iovec>(), n) };
    let wanted: usize = iov.iter().map(|v| v.iov_len).sum();
    // SAFETY: each iovec describes unsent bytes of an entry we own.
    let wrote = unsafe { sys::write_vectored(sink.fd, iov, sink.socket) };
    let Some(mut left) = took_direct(wrote, wanted, t) else {
        return;
    };
    for e in batch.iter_mut() {
        if let Body::Mem { len, sent, .. } = &mut e.body {
            let step = (*len - *sent).min(left);
            *sent += step;
            left -= step;
            e.started |= step > 0;
        }
    }
}

/// Writes one memory entry through the hook until done or the hook takes
/// nothing more.
fn send_mem_one(e: &mut Entry, sink: &Sink, t: &mut Transfer) {
    while let Body::Mem { ptr, len, sent } = &mut e.body {
        if *sent >= *len {
            return;
        }
        // SAFETY: sent < len: the rest of the entry's buffer.
        let rest = unsafe { std::slice::from_raw_parts(ptr.add(*sent), *len - *sent) };
        let Some(n) = sink.write_one(rest, t) else {
            return;
        };
        *sent += n;
        e.started = true;
    }
}

/// The most bytes a file request at `offset` may ask for. The kernel
/// refuses (`EINVAL`) a `sendfile` or `pread` whose end would pass the
/// largest file offset, and no file holds data beyond it: 0 is end of file.
fn room_at(offset: libc::off_t) -> u64 {
    libc::off_t::MAX.saturating_sub(offset) as u64
}

fn send_file(f: &mut FileBody, sink: &Sink, t: &mut Transfer) {
    if sink.write_hook().is_some() {
        f.no_sendfile = true;
    }
    for _ in 0..FILE_ROUNDS {
        let staged = f.stage.as_ref().is_some_and(|s| s.start < s.end);
        if !staged && (f.eof || f.remaining == 0) {
            return;
        }
        if !f.no_sendfile && !staged {
            let want = f.remaining.min(SENDFILE_MAX as u64).min(room_at(f.offset)) as usize;
            if want == 0 {
                f.eof = true;
                return;
            }
            match sys::sendfile(sink.fd, f.fd, &mut f.offset, want) {
                Ok(0) => {
                    f.eof = true;
                    return;
                }
                Ok(sent) => {
                    f.remaining -= sent as u64;
                    t.moved += sent;
                    continue;
                }
                // The file (or this kernel) cannot do sendfile: read and write.
                Err(
                    Errno::EINVAL
                    | Errno::ENOSYS
                    | Errno::EOPNOTSUPP
                    | Errno::ESPIPE
                    | Errno::EOVERFLOW,
                ) => {
                    f.no_sendfile = true;
                    continue;
                }
                Err(e) => {
                    t.stop(e);
                    return;
                }
            }
        }
        // Read-and-write path.
        let stage = f.stage.get_or_insert_with(Stage::new);
        if stage.start >= stage.end {
            let want = f
                .remaining
                .min(BUFFER_FILE_READ_SIZE as u64)
                .min(room_at(f.offset)) as usize;
            if want == 0 {
                f.eof = true;
                return;
            }
            let got = match sys::pread(f.fd, &mut stage.buf[..want], f.offset) {
                Ok(0) => {
                    f.eof = true;
                    return;
                }
                Ok(got) => got,
                Err(Errno::EAGAIN) => {
                    // The source has nothing yet (an empty pipe): the
                    // socket is not full, so no EPOLLOUT will come.
                    t.stalled = Some(Stall::Source(f.fd));
                    return;
                }
                Err(e) => {
                    t.failed = Some(e);
                    return;
                }
            };
            stage.start = 0;
            stage.end = got;
            f.offset += got as libc::off_t;
            f.remaining -= got as u64;
        }
        let Some(n) = sink.write_one(&stage.buf[stage.start..stage.end], t) else {
            return;
        };
        stage.start += n;
        if t.refused {
            return;
        }
        // Keep the buffer for the next chunk unless the file is done.
        if stage.start >= stage.end && f.remaining == 0 {
            f.stage = None;
        }
    }
}
