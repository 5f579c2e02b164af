//! The C surface: every function of `libsock.h`.
//!
//! Each function checks its arguments, turns them into checked Rust types,
//! and calls into `io`, `write` or `flush` through the boundary
//! ([`call`]/[`answer`]), which gives it the documented return value and
//! `errno` and stops panics. The doc comments below are the header's
//! documentation.

use std::ffi::{CStr, c_char};
use std::os::fd::RawFd;

use libc::{c_int, c_uint, c_void, size_t, ssize_t};
use nix::errno::Errno;

use crate::boundary::{answer, call};
use crate::callbacks::{self, TaskFn};
use crate::flush;
use crate::io;
use crate::pool;
use crate::queue::Owner;
use crate::sys;
use crate::table;
use crate::types::{sock_packet_s, sock_rw_hook_s, sock_write_info_s};
use crate::waker;
use crate::write;

/// The checked payload of `sock_write2` options. With `move` or `is_fd`,
/// the buffer or file is the library's from here, even when a check fails:
/// the error path drops its owner, which frees or closes it.
///
/// # Safety
/// A non-fd `buffer` must hold `length` readable bytes, or be a C string
/// when `length` is 0 (the C caller's promise).
unsafe fn payload(o: &sock_write_info_s) -> Result<write::Payload<'_>, Errno> {
    if o.is_fd() {
        let fd = RawFd::try_from(o.buffer as isize).map_err(|_| Errno::EBADF)?;
        if fd < 0 {
            return Err(Errno::EBADF);
        }
        if o.offset < 0 {
            // Refused: the file is closed, as on every failure.
            if sys::fd_is_open(fd) {
                sys::close(fd);
            }
            return Err(Errno::EINVAL);
        }
        return Ok(write::Payload::File {
            fd,
            offset: o.offset,
            // A file's length 0 means "to end of file", as for a packet.
            length: if o.length == 0 {
                u64::MAX
            } else {
                o.length as u64
            },
        });
    }
    if o.buffer.is_null() {
        return Err(Errno::EINVAL);
    }
    let owner = o.is_move().then(|| Owner::Malloc(o.buffer.cast_mut()));
    let len = match o.length {
        // SAFETY: a buffer with length 0 is a C string by contract.
        0 => unsafe { libc::strlen(o.buffer.cast()) },
        n => n,
    };
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let ptr = o.buffer.cast::<u8>();
    Ok(match owner {
        Some(owner) => write::Payload::Owned { owner, ptr, len },
        // SAFETY: the caller's buffer holds `len` bytes for this call.
        None => write::Payload::Borrowed(unsafe { std::slice::from_raw_parts(ptr, len) }),
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
    call(|| sys::set_non_block(fd))
}

/// Raises the soft `RLIMIT_NOFILE` limit to the hard limit (where allowed)
/// and returns the number of file descriptors the library can track
/// (highest fd + 1, at most 16,777,216). Computed once, on the first call (or
/// the first use of the library); later calls return the cached value.
#[unsafe(no_mangle)]
pub extern "C" fn sock_max_capacity() -> ssize_t {
    answer(|| table::max_capacity() as ssize_t)
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
    // SAFETY: NULL or C strings, as the API requires.
    let (address, port) = unsafe { (c_str(address), c_str(port)) };
    call(|| sys::listen(address, port.filter(|p| !p.is_empty())).and_then(register_or_close))
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
    call(|| io::accept(srv_uuid).and_then(register_or_close))
}

/// Starts a non-blocking connection to `address`:`port` (TCP; IPv4 or IPv6,
/// each resolved address tried in turn) or, when `port` is NULL or "", to the
/// Unix domain socket at the path `address`. Returns the UUID at once: the
/// connection is usually still in progress. `sock_write` may be called at
/// once: the data waits in the buffer and is sent when the connection
/// completes.
///
/// To wait for the connection, watch its fd (`sock_uuid2fd`) for
/// writability (`EPOLLOUT`, `POLLOUT`). When it is reported,
/// `getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)` gives 0 for a
/// connection, or the reason it failed; reading `SO_ERROR` clears the error,
/// so after a failure call `sock_force_close(uuid)`.
///
/// A connection that fails after this call returned (refused, timed out,
/// unreachable) is reported by the first `sock_read`, `sock_write2` or
/// `sock_flush` that meets the error: -1 with `errno` set to it
/// (`ECONNREFUSED`, `ETIMEDOUT`, ...). The connection is then closed
/// (`reactor_on_close` is called) and later calls with the UUID fail with
/// `ENODEV`. A `sock_flush` with nothing queued does not look at the socket.
///
/// Returns -1 on error with `errno` set (`EINVAL` for a NULL address or a bad
/// port, `EADDRNOTAVAIL` for a host that does not resolve, `ENAMETOOLONG` for
/// a long Unix path, or the error of `socket`/`connect`, e.g. `ECONNREFUSED`
/// or `ENOENT` for Unix sockets).
///
/// `address` and `port` are `char *`, as in the original header, but only
/// read. A string literal passed to them draws a warning from C with
/// `-Wwrite-strings` and from C++ (where literals are `const`): pass arrays
/// (`char host[] = "127.0.0.1";`) or cast (`(char *)"127.0.0.1"`).
///
/// # Safety
/// `address` and `port` must each be NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sock_connect(address: *mut c_char, port: *mut c_char) -> isize {
    // SAFETY: NULL or C strings, as the API requires.
    let (address, port) = unsafe { (c_str(address), c_str(port)) };
    call(|| sys::connect(address, port.filter(|p| !p.is_empty())).and_then(register_or_close))
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
    call(|| {
        if !sys::fd_is_open(fd) {
            return Err(Errno::EBADF);
        }
        io::register(fd)
    })
}

/// Returns 1 if `uuid` names an open connection, 0 otherwise (closed, stale
/// after fd reuse, or never valid).
#[unsafe(no_mangle)]
pub extern "C" fn sock_isvalid(uuid: isize) -> c_int {
    answer(|| c_int::from(table::lock(uuid).is_some()))
}

/// Returns the current UUID of `fd` if the library has it open, else -1.
/// Any `fd` value (negative, huge) is safe.
#[unsafe(no_mangle)]
pub extern "C" fn sock_fd2uuid(fd: c_int) -> isize {
    call(|| Ok(io::fd2uuid(fd)))
}

/// Reads up to `count` bytes from the connection into `buf`.
///
/// Returns the number of bytes read (> 0); **0 when nothing is available
/// now** (`EAGAIN`, `EWOULDBLOCK`, `EINTR`, a connection still in progress,
/// or a read hook with nothing yet); **-1 at end of stream (`errno` 0) or
/// on a connection error (`errno` tells which)**, and then the connection is
/// closed gracefully (as by `sock_close`: queued data is still sent, then
/// `reactor_on_close` is called). Uses the connection's `read` hook when
/// set. Calls `sock_touch` when data was read.
///
/// `count` 0 behaves as in the original library, whose `read(fd, buf, 0)`
/// answered 0, taken as end of stream: the connection is closed gracefully
/// and -1 returned with `errno` 0 (`buf` may then be NULL; neither `read`
/// nor the hook is called). Programs use it to drop a client whose input overflows their
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
    call(|| {
        let buf: &mut [u8] = match count {
            0 => &mut [],
            // An invalid UUID is reported first, as by every call.
            _ if buf.is_null() && table::lock(uuid).is_none() => return Err(Errno::ENODEV),
            _ if buf.is_null() => return Err(Errno::EINVAL),
            // SAFETY: the C caller guarantees `buf` holds `count` bytes.
            _ => unsafe { std::slice::from_raw_parts_mut(buf.cast(), count) },
        };
        io::read(uuid, buf).map(|n| n as ssize_t)
    })
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
/// is sent from `offset`, at most `length` bytes or to its end (`length` 0:
/// to its end, as for an `is_fd` packet), then closed — also when the call
/// fails; an `offset` at or past the end (up to `INT64_MAX`) sends nothing,
/// and the data queued after the file follows. Urgent data (not a file) is
/// copied outside the pool.
#[unsafe(no_mangle)]
pub extern "C" fn sock_write2_fn(options: sock_write_info_s) -> ssize_t {
    // SAFETY: the C caller's promises about `options` (the buffer holds
    // `length` bytes, or is a C string when `length` is 0).
    call(|| {
        write::write(
            options.fduuid,
            unsafe { payload(&options) }?,
            options.is_urgent(),
        )
        .map(|()| 0)
    })
}

/// Writes as much queued data as the kernel (or the write hook) takes now;
/// then, if the connection was marked for closing (`sock_close`) and nothing
/// is left — the `flush` hook's buffer included — closes it.
///
/// **Call it when the event loop reports the fd writable** (`EPOLLOUT`,
/// `POLLOUT`). The library sends whenever it can: after every write, for
/// as long as the kernel takes the bytes. Once the kernel refused some
/// (`EAGAIN`, or a short write), only the kernel knows when it can take
/// more, and it tells by reporting the fd writable: the rest of the queue
/// waits for that `sock_flush`. An edge-triggered loop
/// (`EPOLLIN | EPOLLOUT | EPOLLET`) that calls it on every `EPOLLOUT` gets
/// every byte out; calls at other times are harmless.
///
/// Returns 0, or -1 when the UUID is invalid (`errno` `ENODEV`), when the
/// connection failed (it is then closed, `errno` tells why), or when it is
/// now closed. Calls `sock_touch` when bytes were moved.
#[unsafe(no_mangle)]
pub extern "C" fn sock_flush(uuid: isize) -> ssize_t {
    call(|| flush::flush(uuid).map(|()| 0))
}

/// Returns once everything queued on the connection was sent, or the
/// connection failed or closed. Waits for writability (poll) rather than
/// spinning. A peer that never reads blocks the caller until it goes away.
#[unsafe(no_mangle)]
pub extern "C" fn sock_flush_strong(uuid: isize) {
    answer(|| flush::flush_strong(uuid))
}

/// Calls `sock_flush` for every connection with queued data (skipping those
/// another thread is busy with right now).
#[unsafe(no_mangle)]
pub extern "C" fn sock_flush_all() {
    answer(flush::flush_all)
}

/// Marks the connection for closing once all queued data is sent, and
/// flushes it. The close happens in a later `sock_flush` if data remains.
/// Before the fd is closed, input the program never read is read and
/// dropped (up to 1 MiB), so the kernel ends the connection with a FIN
/// rather than a reset that would discard the last bytes still on their way
/// to the peer. Invalid UUIDs are ignored.
#[unsafe(no_mangle)]
pub extern "C" fn sock_close(uuid: isize) {
    answer(|| io::close(uuid))
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
    answer(|| io::force_close(uuid))
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
    call(io::checkout_packet)
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
    call(|| write::send_packet(uuid, packet).map(|()| 0))
}

/// Returns non-zero when the connection has data waiting to be sent (in its
/// queue, being sent, or buffered by its `flush` hook); 0 otherwise and for
/// invalid UUIDs.
#[unsafe(no_mangle)]
pub extern "C" fn sock_packets_pending(uuid: isize) -> c_int {
    answer(|| c_int::from(io::pending(uuid)))
}

/// Returns 1 when the connection is marked for a graceful close
/// (`sock_close` was called, or a read met end of stream) and waits for its
/// queued data to go out; 0 otherwise and for invalid UUIDs.
///
/// An extension for transport hooks: a TLS `flush` hook that sees 1 sends
/// its close_notify, so a plain `sock_close` ends the session properly.
#[unsafe(no_mangle)]
pub extern "C" fn sock_is_closing(uuid: isize) -> c_int {
    answer(|| c_int::from(io::is_closing(uuid)))
}

/// Releases a chain of packets that was never sent: for each packet, closes
/// its fd (`is_fd` without `keep_open`) or frees an `external` buffer (with
/// `dealloc`, or `free`), and returns it to the pool. NULL is a no-op; a
/// pointer that is not a checked-out packet (or one already released) stops
/// the walk and is left alone.
#[unsafe(no_mangle)]
pub extern "C" fn sock_free_packet(packet: *mut sock_packet_s) {
    answer(|| io::free_packet(packet))
}

/// Returns the connection's read/write hooks, or NULL when none are set or
/// the UUID is invalid.
#[unsafe(no_mangle)]
pub extern "C" fn sock_rw_hook_get(uuid: isize) -> *mut sock_rw_hook_s {
    answer(|| io::hooks_get(uuid))
}

/// Sets the connection's read/write hooks (NULL clears them). The struct is
/// borrowed, not copied: it must stay valid until the connection closes (its
/// `on_clear` may free it) or the hooks are replaced.
///
/// Returns 0, or -1 with `errno` `ENODEV` for an invalid UUID.
#[unsafe(no_mangle)]
pub extern "C" fn sock_rw_hook_set(uuid: isize, rw_hooks: *mut sock_rw_hook_s) -> c_int {
    call(|| io::hooks_set(uuid, rw_hooks).map(|()| 0))
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
    call(|| {
        if packets == 0 {
            return Err(Errno::EINVAL);
        }
        pool::set_limit(packets);
        Ok(0)
    })
}

/// Returns the number of packets the pool may hand out.
#[unsafe(no_mangle)]
pub extern "C" fn sock_packet_pool_size() -> size_t {
    answer(pool::limit)
}

/// Sets the time limit of a lingering close, in milliseconds; 0 turns
/// lingering off. An extension.
///
/// When a graceful close (`sock_close`, or a read that met the end of the
/// stream) completes on a socket whose peer is still sending (input the
/// program did not read is waiting: pipelined requests, a request body), the
/// library shuts down its sending side (the peer receives every byte, then
/// EOF), keeps reading and dropping the peer's input until the peer closes
/// its side or this limit passes, and only then closes the fd. Closing at
/// once would make the kernel answer the peer's late bytes with a reset that
/// discards the end of the response still on its way. The UUID is invalid
/// and `reactor_on_close` has been called as soon as the close completes;
/// the fd number stays the library's until the real close, so it is not
/// reused early. At most 4096 closes linger at once (beyond that a close
/// does not linger). The default is 2000 ms, or the value of the environment
/// variable `LIBSOCK_LINGER_MS` at the library's first use.
/// `sock_force_close` never lingers.
#[unsafe(no_mangle)]
pub extern "C" fn sock_set_linger_timeout(milliseconds: c_uint) {
    answer(|| waker::set_linger_ms(milliseconds))
}

/// Returns the time limit of a lingering close, in milliseconds (0: closes
/// do not linger). An extension; see `sock_set_linger_timeout`.
#[unsafe(no_mangle)]
pub extern "C" fn sock_linger_timeout() -> c_uint {
    answer(waker::linger_ms)
}

/// Limits the bytes a connection may hold queued in memory: once it holds
/// `bytes` or more (its peer reads slowly, or not at all), `sock_write2` and
/// `sock_send_packet` on it fail with `ENOBUFS` and change nothing, so one
/// slow peer cannot take the whole packet pool (shared by all connections)
/// and make every writer wait. The program chooses what to do: close the
/// connection, or wait for it to drain (`sock_pending_bytes`, writability).
/// A write is accepted whole while the connection holds less than the
/// limit, so it may pass the limit by one write. Files (`.is_fd`) are not
/// counted. 0 removes the limit. An extension.
///
/// Returns 0, or -1 with `errno` `ENODEV` for an invalid UUID.
#[unsafe(no_mangle)]
pub extern "C" fn sock_set_pending_limit(uuid: isize, bytes: size_t) -> c_int {
    call(|| io::set_limit(uuid, bytes).map(|()| 0))
}

/// Sets the limit of `sock_set_pending_limit` that connections registered
/// from now on start with (0, the default: no limit). Connections open
/// already keep theirs. An extension.
#[unsafe(no_mangle)]
pub extern "C" fn sock_set_default_pending_limit(bytes: size_t) {
    answer(|| table::DEFAULT_LIMIT.store(bytes, std::sync::atomic::Ordering::Relaxed))
}

/// Returns the bytes the connection holds queued in memory (not yet handed
/// to the kernel; files not counted); 0 for invalid UUIDs. An extension.
#[unsafe(no_mangle)]
pub extern "C" fn sock_pending_bytes(uuid: isize) -> size_t {
    answer(|| io::pending_bytes(uuid))
}

/// Writes the address of the connection's peer into `addr` (at most
/// `*addrlen` bytes) and sets `*addrlen` to its full size, as
/// `getpeername(2)` does (`sock_accept` does not keep it). An extension.
///
/// Returns 0, or -1 with `errno`: `ENODEV` for an invalid UUID, `EINVAL`
/// for a NULL pointer, `ENOTCONN` when the socket is not connected,
/// `ENOTSOCK` when the fd is not a socket.
///
/// # Safety
/// `addr` must be valid for `*addrlen` bytes of writes and `addrlen` for
/// one `socklen_t` (or NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sock_peer_addr(
    uuid: isize,
    addr: *mut libc::sockaddr,
    addrlen: *mut libc::socklen_t,
) -> c_int {
    call(|| {
        if addr.is_null() || addrlen.is_null() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: non-NULL pointers, valid as the caller promised.
        unsafe { io::peer_addr(uuid, addr, addrlen) }.map(|()| 0)
    })
}

/// Hands the connection's fd back to the program, which owns it from then
/// on (to give it to another library or process, or to kernel TLS): the
/// library forgets the connection without closing the fd and without
/// calling `reactor_remove` or `reactor_on_close`; the hooks' `on_clear` is
/// called, so a hook may free itself. The UUID is invalid afterwards. An
/// extension.
///
/// Queued data is never dropped: it is first sent as far as the kernel
/// takes it now, and if anything is left (or a write is being queued), the
/// call fails with `EAGAIN` and changes nothing — wait for writability (or
/// call `sock_flush_strong`) and call it again.
///
/// Returns the fd, or -1 with `errno`: `ENODEV` for an invalid UUID,
/// `EAGAIN` while data is queued.
#[unsafe(no_mangle)]
pub extern "C" fn sock_hijack(uuid: isize) -> c_int {
    call(|| io::hijack(uuid))
}

/// Registers `callback` to be called instead of `reactor_on_close` (NULL
/// restores the symbol: the program's definition or the default). Takes
/// effect at once for every later close; safe from any thread.
#[unsafe(no_mangle)]
pub extern "C" fn sock_register_on_close(callback: Option<unsafe extern "C" fn(uuid: isize)>) {
    answer(|| callbacks::register_on_close(callback))
}

/// Registers `callback` to be called instead of `reactor_remove` (NULL
/// restores the symbol).
#[unsafe(no_mangle)]
pub extern "C" fn sock_register_remove(
    callback: Option<unsafe extern "C" fn(uuid: isize) -> c_int>,
) {
    answer(|| callbacks::register_remove(callback))
}

/// Registers `callback` to be called instead of `sock_touch` when data moved
/// (NULL restores the symbol).
#[unsafe(no_mangle)]
pub extern "C" fn sock_register_touch(callback: Option<unsafe extern "C" fn(uuid: isize)>) {
    answer(|| callbacks::register_touch(callback))
}

/// Registers `callback` to be called instead of `async_run` when a flush can
/// be deferred (NULL restores the symbol). It returns 0 when it took the
/// task, -1 to have the library flush inline.
#[unsafe(no_mangle)]
pub extern "C" fn sock_register_async_run(
    callback: Option<unsafe extern "C" fn(task: TaskFn, arg: *mut c_void) -> c_int>,
) {
    answer(|| callbacks::register_async(callback))
}
