//! The C surface: every function of `libsock.h`.
//!
//! Each function checks its arguments, converts types, calls into `io`,
//! `write` or `flush`, and turns the result into the documented return value
//! and `errno`. Nothing panics across: [`guard`] catches a panic and returns
//! the function's error value with `errno` set to `EIO`. The doc comments
//! below are the header's documentation.

use std::ffi::{CStr, c_char};

use libc::{c_int, c_void, size_t, ssize_t};
use nix::errno::Errno;

use crate::boundary::guard;
use crate::callbacks::{self, TaskFn};
use crate::flush;
use crate::io;
use crate::pool;
use crate::sys;
use crate::table;
use crate::types::{sock_packet_s, sock_rw_hook_s, sock_write_info_s};
use crate::uuid::INVALID;
use crate::write;

/// `Ok(v)` → `v`; `Err(e)` → `fail` with `errno = e`.
fn ret<T>(r: Result<T, Errno>, fail: T) -> T {
    r.unwrap_or_else(|e| {
        sys::set_errno(e);
        fail
    })
}

/// A C string argument: `None` for NULL.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string (the C caller's promise).
unsafe fn c_str<'a>(p: *const c_char) -> Option<&'a CStr> {
    // SAFETY: forwarded from the caller.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) })
}

/// Sets `O_NONBLOCK` on `fd`.
///
/// Returns `fcntl`'s result: -1 on error, with `errno` set (`EBADF` for a
/// closed or negative fd).
#[unsafe(no_mangle)]
pub extern "C" fn sock_set_non_block(fd: c_int) -> c_int {
    guard(-1, || sys::set_non_block(fd))
}

/// Raises the soft `RLIMIT_NOFILE` limit to the hard limit (where allowed)
/// and returns the number of file descriptors the library can track
/// (highest fd + 1, at most 16,777,216). Computed once, on the first call (or
/// the first use of the library); later calls return the cached value.
#[unsafe(no_mangle)]
pub extern "C" fn sock_max_capacity() -> ssize_t {
    guard(-1, || table::max_capacity() as ssize_t)
}

/// Opens a non-blocking listening socket and returns its UUID.
///
/// With a `port` (a number, or a service name such as "http"): a TCP socket
/// bound to `address` (a host name or an IPv4/IPv6 literal), with
/// `SO_REUSEADDR`, listening with a backlog of `SOMAXCONN`. A NULL `address`
/// means any address, IPv4 and IPv6: the socket is bound to `::` with
/// `IPV6_V6ONLY` off (IPv4 clients appear as `::ffff:a.b.c.d`), or to
/// `0.0.0.0` where the machine has no IPv6.
/// With `port` NULL or "": a Unix domain socket bound to the path `address`.
/// A stale socket file at that path (one nobody accepts connections on: a
/// probing `connect` is refused) is removed first. The socket of a server
/// still listening there is left alone, and so is any other kind of file:
/// the call then fails with `EADDRINUSE` (the live server sees the probe as
/// a connection that closes at once).
///
/// Returns -1 on error with `errno` set: `EINVAL` (NULL Unix path, numeric
/// port above 65535, unknown service), `ENAMETOOLONG` (Unix path longer than
/// 107 bytes), `EADDRNOTAVAIL` (host name that does not resolve), or the
/// error of `socket`/`bind`/`listen` (e.g. `EADDRINUSE`, `EACCES`).
///
/// UUIDs are local to the process and predictable: never send them to peers.
///
/// # Safety
/// `address` and `port` must each be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sock_listen(address: *const c_char, port: *const c_char) -> isize {
    guard(INVALID, || {
        // SAFETY: NULL or C strings, as the API requires.
        let (address, port) = unsafe { (c_str(address), c_str(port)) };
        let port = port.filter(|p| !p.is_empty());
        ret(
            sys::listen(address, port).and_then(register_or_close),
            INVALID,
        )
    })
}

/// Registers a new fd, closing it if the table cannot take it.
fn register_or_close(fd: c_int) -> Result<isize, Errno> {
    io::register(fd).inspect_err(|_| sys::close(fd))
}

/// Accepts one pending connection on the listening socket `srv_uuid` and
/// returns the new connection's UUID (its fd is non-blocking and
/// close-on-exec).
///
/// Returns -1 when no connection is pending (`errno` `EAGAIN`) or on error:
/// `ENODEV` for an invalid `srv_uuid`, `EMFILE`/`ENFILE` when out of fds, or
/// another error of `accept`.
#[unsafe(no_mangle)]
pub extern "C" fn sock_accept(srv_uuid: isize) -> isize {
    guard(INVALID, || {
        let Some(l) = table::lock(srv_uuid) else {
            sys::set_errno(Errno::ENODEV);
            return INVALID;
        };
        let fd = l.fd;
        // Held across accept so the listening fd cannot be closed (and its
        // number reused) meanwhile; accept on a non-blocking socket does not
        // block.
        let accepted = sys::accept(fd);
        drop(l);
        ret(accepted.and_then(register_or_close), INVALID)
    })
}

/// Starts a non-blocking connection to `address`:`port` (TCP; IPv4 or IPv6,
/// each resolved address tried in turn) or, when `port` is NULL or "", to the
/// Unix domain socket at the path `address`. Returns the UUID at once: the
/// connection is usually still in progress. Wait for writability (poll,
/// epoll) before relying on it; `sock_write` may be called at once, the data
/// is sent when the connection completes.
///
/// Returns -1 on error with `errno` set (`EINVAL` for a NULL address or a bad
/// port, `EADDRNOTAVAIL` for a host that does not resolve, `ENAMETOOLONG` for
/// a long Unix path, or the error of `socket`/`connect`, e.g. `ECONNREFUSED`
/// or `ENOENT` for Unix sockets).
///
/// # Safety
/// `address` and `port` must each be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sock_connect(address: *mut c_char, port: *mut c_char) -> isize {
    guard(INVALID, || {
        // SAFETY: NULL or C strings, as the API requires.
        let (address, port) = unsafe { (c_str(address), c_str(port)) };
        let port = port.filter(|p| !p.is_empty());
        ret(
            sys::connect(address, port).and_then(register_or_close),
            INVALID,
        )
    })
}

/// Registers an existing file descriptor (a pipe, a socket, any fd) with the
/// library and returns a fresh UUID for it. The fd's flags are not changed:
/// call `sock_set_non_block` for the non-blocking behaviour the library's
/// reads and flushes assume.
///
/// If the library still considered `fd` open (it was closed behind the
/// library's back and the number reused), the old connection is treated as
/// closed first: its queued data is dropped and `reactor_remove`, `on_clear`
/// and `reactor_on_close` are called for the *old* UUID.
///
/// Returns -1 with `errno` `EBADF` when `fd` is not an open descriptor, or
/// `EMFILE` when it is beyond `sock_max_capacity()`.
#[unsafe(no_mangle)]
pub extern "C" fn sock_open(fd: c_int) -> isize {
    guard(INVALID, || {
        if !sys::fd_is_open(fd) {
            sys::set_errno(Errno::EBADF);
            return INVALID;
        }
        ret(io::register(fd), INVALID)
    })
}

/// Returns 1 if `uuid` names an open connection, 0 otherwise (closed, stale
/// after fd reuse, or never valid).
#[unsafe(no_mangle)]
pub extern "C" fn sock_isvalid(uuid: isize) -> c_int {
    guard(0, || c_int::from(table::lock(uuid).is_some()))
}

/// Returns the current UUID of `fd` if the library has it open, else -1.
/// Any `fd` value (negative, huge) is safe.
#[unsafe(no_mangle)]
pub extern "C" fn sock_fd2uuid(fd: c_int) -> isize {
    guard(INVALID, || io::fd2uuid(fd))
}

/// Reads up to `count` bytes from the connection into `buf`.
///
/// Returns the number of bytes read (> 0); **0 when nothing is available
/// now** (`EAGAIN`, `EWOULDBLOCK`, `EINTR`, a connection still in progress,
/// or a read hook with nothing yet); **-1 at end of stream or on a
/// connection error**, and then the connection is closed gracefully (as by
/// `sock_close`: queued data is still sent, then `reactor_on_close` is
/// called). Uses the connection's `read` hook when set. Calls `sock_touch`
/// when data was read.
///
/// `count` 0 behaves as in the original library, whose `read(fd, buf, 0)`
/// answered 0, taken as end of stream: the connection is closed gracefully
/// and -1 returned (`buf` may then be NULL; neither `read` nor the hook is
/// called). Programs use it to drop a client whose input overflows their
/// buffer.
///
/// An invalid UUID gives -1 with `errno` `ENODEV`; a NULL `buf` with a
/// non-zero `count` gives -1 with `errno` `EINVAL` and leaves the connection
/// open.
///
/// # Safety
/// `buf` must be NULL or point to `count` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sock_read(uuid: isize, buf: *mut c_void, count: size_t) -> ssize_t {
    // SAFETY: the C caller guarantees `buf` holds `count` bytes.
    guard(-1, || unsafe { io::read(uuid, buf, count) })
}

/// The function behind the `sock_write2` and `sock_write` macros: queues data
/// in the connection's user-land buffer and flushes it (through `async_run`
/// when the program provides a task queue).
///
/// Returns 0 when **all** bytes were accepted — never a partial write — and
/// -1 otherwise, with `errno`: `ENODEV` (invalid UUID, or the connection
/// closed while a large write waited for room), `EINVAL` (NULL buffer, zero
/// length after the `strlen` rule, negative file offset), `EBADF` (`is_fd`
/// with a descriptor that is not open, or not open for reading: the
/// connection is unaffected), `ENOTCONN` (the UUID is a listening
/// socket: nothing is queued and the listener stays open), or the socket's
/// error (`EPIPE`, `ECONNRESET`, ...) when the write was sent at once and the
/// peer was gone — the connection is then closed (`reactor_on_close` was
/// called).
///
/// Data larger than the free part of the packet pool blocks the caller,
/// flushing connections, until all of it is queued; no other write to the
/// same connection lands inside it. With `move`, the buffer belongs to the
/// library even when the call fails (it is `free`d). With `is_fd`, the file
/// is sent from `offset`, at most `length` bytes or to its end, then closed
/// — also when the call fails; an `offset` at or past the end (up to
/// `INT64_MAX`) sends nothing, and the data queued after the file follows.
/// Urgent data (not a file) is copied outside the pool.
#[unsafe(no_mangle)]
pub extern "C" fn sock_write2_fn(options: sock_write_info_s) -> ssize_t {
    guard(-1, || ret(write::write(&options).map(|()| 0), -1))
}

/// Writes as much queued data as the kernel (or the write hook) takes now;
/// then, if the connection was marked for closing (`sock_close`) and nothing
/// is left — the `flush` hook's buffer included — closes it.
///
/// Returns 0, or -1 when the UUID is invalid (`errno` `ENODEV`), when the
/// connection failed (it is then closed, `errno` tells why), or when it is
/// now closed. Calls `sock_touch` when bytes were moved.
#[unsafe(no_mangle)]
pub extern "C" fn sock_flush(uuid: isize) -> ssize_t {
    guard(-1, || ret(flush::flush(uuid).map(|()| 0), -1))
}

/// Returns once everything queued on the connection was sent, or the
/// connection failed or closed. Waits for writability (poll) rather than
/// spinning. A peer that never reads blocks the caller until it goes away.
#[unsafe(no_mangle)]
pub extern "C" fn sock_flush_strong(uuid: isize) {
    guard((), || flush::flush_strong(uuid))
}

/// Calls `sock_flush` for every connection with queued data (skipping those
/// another thread is busy with right now).
#[unsafe(no_mangle)]
pub extern "C" fn sock_flush_all() {
    guard((), flush::flush_all)
}

/// Marks the connection for closing once all queued data is sent, and
/// flushes it. The close happens in a later `sock_flush` if data remains.
/// Before the fd is closed, input the program never read is read and
/// dropped (up to 1 MiB), so the kernel ends the connection with a FIN
/// rather than a reset that would discard the last bytes still on their way
/// to the peer. Invalid UUIDs are ignored.
#[unsafe(no_mangle)]
pub extern "C" fn sock_close(uuid: isize) {
    guard((), || io::close(uuid))
}

/// Closes the connection now, dropping queued data: `shutdown`, then
/// `reactor_remove` (while the fd number is still the connection's), then
/// `close`, `on_clear` and `reactor_on_close` for the UUID. Invalid UUIDs
/// are ignored.
///
/// While another thread is inside a system call or hook on the fd (e.g.
/// blocked in `sock_read` on a blocking fd), the `shutdown` still happens at
/// once, which wakes that thread and shows the peer the end of the stream;
/// `reactor_remove`, `close` and the other callbacks then come when that
/// thread is out (the fd number cannot be reused meanwhile).
#[unsafe(no_mangle)]
pub extern "C" fn sock_force_close(uuid: isize) {
    guard((), || io::force_close(uuid))
}

/// Takes a packet from the pool: `length` 0, metadata zeroed, `buffer`
/// pointing at the packet's own `BUFFER_PACKET_SIZE` bytes. When the pool is
/// exhausted, flushes connections and waits until a packet is free (queued
/// data drains, or another thread gives a packet back).
///
/// Returns NULL with `errno` `ENOMEM` when waiting cannot help: every packet
/// in use was checked out by the calling thread and is still held (not
/// sent, not freed), so only this thread could free one.
///
/// The packet must be given back with `sock_send_packet` or
/// `sock_free_packet`, never `free`.
#[unsafe(no_mangle)]
pub extern "C" fn sock_checkout_packet() -> *mut sock_packet_s {
    guard(std::ptr::null_mut(), io::checkout_packet)
}

/// Appends a packet (or a chain linked through `metadata.next`) to the
/// connection's queue — before the first interruptible queued packet when the
/// first packet is `urgent` — and flushes. The library owns the packets from
/// here, **even on error**.
///
/// Returns 0, or -1: `ENODEV` for an invalid UUID and `ENOTCONN` for a
/// listening socket's UUID (the packets are released as by
/// `sock_free_packet`; a listener stays open), `EINVAL` when the chain holds
/// a pointer that is not a checked-out packet (packets before it are
/// released, nothing after it is touched).
#[unsafe(no_mangle)]
pub extern "C" fn sock_send_packet(uuid: isize, packet: *mut sock_packet_s) -> ssize_t {
    guard(-1, || ret(write::send_packet(uuid, packet).map(|()| 0), -1))
}

/// Returns non-zero when the connection has data waiting to be sent (in its
/// queue, being sent, or buffered by its `flush` hook); 0 otherwise and for
/// invalid UUIDs.
#[unsafe(no_mangle)]
pub extern "C" fn sock_packets_pending(uuid: isize) -> c_int {
    guard(0, || c_int::from(io::pending(uuid)))
}

/// Returns 1 when the connection is marked for a graceful close
/// (`sock_close` was called, or a read met end of stream) and waits for its
/// queued data to go out; 0 otherwise and for invalid UUIDs.
///
/// An extension for transport hooks: a TLS `flush` hook that sees 1 sends
/// its close_notify, so a plain `sock_close` ends the session properly.
#[unsafe(no_mangle)]
pub extern "C" fn sock_is_closing(uuid: isize) -> c_int {
    guard(0, || c_int::from(io::is_closing(uuid)))
}

/// Releases a chain of packets that was never sent: for each packet, closes
/// its fd (`is_fd` without `keep_open`) or frees an `external` buffer (with
/// `dealloc`, or `free`), and returns it to the pool. NULL is a no-op; a
/// pointer that is not a checked-out packet (or one already released) stops
/// the walk and is left alone.
#[unsafe(no_mangle)]
pub extern "C" fn sock_free_packet(packet: *mut sock_packet_s) {
    guard((), || io::free_packet(packet))
}

/// Returns the connection's read/write hooks, or NULL when none are set or
/// the UUID is invalid.
#[unsafe(no_mangle)]
pub extern "C" fn sock_rw_hook_get(uuid: isize) -> *mut sock_rw_hook_s {
    guard(std::ptr::null_mut(), || io::hooks_get(uuid))
}

/// Sets the connection's read/write hooks (NULL clears them). The struct is
/// borrowed, not copied: it must stay valid until the connection closes (its
/// `on_clear` may free it) or the hooks are replaced.
///
/// Returns 0, or -1 with `errno` `ENODEV` for an invalid UUID.
#[unsafe(no_mangle)]
pub extern "C" fn sock_rw_hook_set(uuid: isize, rw_hooks: *mut sock_rw_hook_s) -> c_int {
    guard(-1, || ret(io::hooks_set(uuid, rw_hooks).map(|()| 0), -1))
}

/// Sets the number of packets the pool may hand out (the bound of the
/// user-land buffer: `packets` x `BUFFER_PACKET_SIZE` bytes). The initial
/// bound is `BUFFER_PACKET_POOL`, or the value of the environment variable
/// `LIBSOCK_PACKET_POOL` when set to a positive number at the library's first
/// use. Lowering the bound never takes back packets in use.
///
/// Returns 0, or -1 with `errno` `EINVAL` when `packets` is 0.
#[unsafe(no_mangle)]
pub extern "C" fn sock_set_packet_pool_size(packets: size_t) -> c_int {
    guard(-1, || {
        if packets == 0 {
            sys::set_errno(Errno::EINVAL);
            return -1;
        }
        pool::set_limit(packets);
        0
    })
}

/// Returns the number of packets the pool may hand out.
#[unsafe(no_mangle)]
pub extern "C" fn sock_packet_pool_size() -> size_t {
    guard(0, pool::limit)
}

/// Registers `callback` to be called instead of `reactor_on_close` (NULL
/// restores the symbol: the program's definition or the default). Takes
/// effect at once for every later close; safe from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn sock_register_on_close(callback: Option<unsafe extern "C" fn(uuid: isize)>) {
    callbacks::register_on_close(callback)
}

/// Registers `callback` to be called instead of `reactor_remove` (NULL
/// restores the symbol).
#[unsafe(no_mangle)]
pub extern "C" fn sock_register_remove(
    callback: Option<unsafe extern "C" fn(uuid: isize) -> c_int>,
) {
    callbacks::register_remove(callback)
}

/// Registers `callback` to be called instead of `sock_touch` when data moved
/// (NULL restores the symbol).
#[unsafe(no_mangle)]
pub extern "C" fn sock_register_touch(callback: Option<unsafe extern "C" fn(uuid: isize)>) {
    callbacks::register_touch(callback)
}

/// Registers `callback` to be called instead of `async_run` when a flush can
/// be deferred (NULL restores the symbol). It returns 0 when it took the
/// task, -1 to have the library flush inline.
#[unsafe(no_mangle)]
pub extern "C" fn sock_register_async_run(
    callback: Option<unsafe extern "C" fn(task: TaskFn, arg: *mut c_void) -> c_int>,
) {
    callbacks::register_async(callback)
}
