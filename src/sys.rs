//! Thin, typed wrappers around the system calls the library makes.
//!
//! Every `unsafe` block of the networking layer lives here. Functions return
//! `Result<_, Errno>` (or the raw count of a transfer call, whose errors the
//! caller classifies); none of them touches library state.

use std::ffi::CStr;
use std::mem::{size_of, zeroed};
use std::os::fd::{BorrowedFd, RawFd};

use libc::{c_int, iovec, off_t};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// A libc system call's result as a `Result`: -1 means `errno` (mio's
/// `syscall!`). The call site states why the call is sound.
macro_rules! syscall {
    ($name:ident($($arg:expr),* $(,)?)) => {{
        #[allow(unused_unsafe)]
        let r = unsafe { libc::$name($($arg),*) };
        Errno::result(r)
    }};
}

/// Runs `call` again while it fails with `EINTR`: for system calls whose
/// interruption means nothing to the caller.
fn retry_eintr<T>(mut call: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    loop {
        match call() {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// Borrows a raw fd for a nix call.
///
/// The library only calls this with fds it was handed and still tracks; a
/// stale number at worst makes the call fail with `EBADF`.
fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: BorrowedFd only requires the number not to be -1 during the
    // call; callers check `fd >= 0`, and the kernel validates the number.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Sets `O_NONBLOCK` on `fd`; `fcntl`'s result.
pub fn set_non_block(fd: RawFd) -> Result<c_int, Errno> {
    if fd < 0 {
        return Err(Errno::EBADF);
    }
    let fd = borrow(fd);
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))
}

/// True when `fd` is an open file descriptor of this process.
pub fn fd_is_open(fd: RawFd) -> bool {
    fd >= 0 && fcntl(borrow(fd), FcntlArg::F_GETFD).is_ok()
}

/// True when `fd` is a socket (so `MSG_NOSIGNAL` sends work on it).
pub fn is_socket(fd: RawFd) -> bool {
    // SAFETY: a zeroed stat is a valid value; fstat writes into it.
    let mut st: libc::stat = unsafe { zeroed() };
    syscall!(fstat(fd, &mut st)).is_ok() && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
}

/// True when the socket `fd` is listening for connections (`SO_ACCEPTCONN`).
pub fn is_listening(fd: RawFd) -> bool {
    let mut v: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`, which we own.
    let rc = syscall!(getsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_ACCEPTCONN,
        (&mut v as *mut c_int).cast(),
        &mut len,
    ));
    rc.is_ok() && v != 0
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit where allowed and
/// returns the soft limit in force (the number of fds the process may use).
pub fn raise_fd_limit() -> u64 {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                return hard;
            }
            soft
        }
        Err(_) => 1024,
    }
}

/// `close`, retried on nothing: on Linux the fd is released even on EINTR.
pub fn close(fd: RawFd) {
    // SAFETY: closing a number we own; an already-closed number gives EBADF.
    let _ = syscall!(close(fd));
}

/// `shutdown(fd, SHUT_RDWR)`; errors (not a socket, not connected) ignored.
pub fn shutdown(fd: RawFd) {
    // SAFETY: plain system call on a number; errors are harmless here.
    let _ = syscall!(shutdown(fd, libc::SHUT_RDWR));
}

/// What [`discard_input`] found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Drained {
    /// Nothing was waiting, and the peer has not closed its side.
    Quiet,
    /// Input was waiting (dropped): the peer is still sending.
    Sending,
    /// The peer closed its side, or the socket failed.
    Ended,
}

/// Reads and drops the input waiting on a socket, without blocking, before
/// a graceful close: a `close` with unread input makes the kernel reset the
/// connection, which throws away what it still holds for the peer (the end
/// of the last response) and hands the peer `ECONNRESET` instead of EOF.
/// Bounded (1 MiB), so a peer that keeps sending cannot hold the closing
/// thread; `errno` is left as it was.
pub fn discard_input(fd: RawFd) -> Drained {
    let saved = Errno::last_raw();
    let mut buf = [0u8; 16 * 1024];
    let mut rounds = 0;
    let drained = loop {
        if rounds == 64 {
            break Drained::Sending;
        }
        // SAFETY: `buf` is ours and valid for `buf.len()` bytes of writes.
        let n = retry_eintr(|| {
            syscall!(recv(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT
            ))
        });
        match n {
            Ok(0) => break Drained::Ended,
            Ok(_) => rounds += 1,
            Err(Errno::EAGAIN) if rounds == 0 => break Drained::Quiet,
            Err(Errno::EAGAIN) => break Drained::Sending,
            Err(_) => break Drained::Ended,
        }
    };
    Errno::set_raw(saved);
    drained
}

/// `shutdown(fd, SHUT_WR)`: the peer gets EOF after the bytes already
/// sent; errors ignored.
pub fn shutdown_write(fd: RawFd) {
    // SAFETY: plain system call on a number; errors are harmless here.
    let _ = syscall!(shutdown(fd, libc::SHUT_WR));
}

/// `getpeername`.
///
/// # Safety
/// `addr` must be valid for `*addrlen` bytes of writes; `addrlen` valid.
pub unsafe fn peer_name(
    fd: RawFd,
    addr: *mut libc::sockaddr,
    addrlen: *mut libc::socklen_t,
) -> Result<(), Errno> {
    // SAFETY: forwarded from the caller.
    syscall!(getpeername(fd, addr, addrlen)).map(drop)
}

/// `read` into `buf`: the bytes read (0 at end of stream).
pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<isize, Errno> {
    // SAFETY: `buf` is a valid exclusive slice for its length.
    syscall!(read(fd, buf.as_mut_ptr().cast(), buf.len()))
}

/// Gathers `iov` into `fd`: `sendmsg(MSG_NOSIGNAL)` on sockets (so a vanished
/// peer gives `EPIPE`, not `SIGPIPE`), `writev` otherwise (the caller has
/// called [`block_sigpipe`] for those). Returns the bytes taken.
///
/// # Safety
/// Every iovec must describe readable memory.
pub unsafe fn write_vectored(fd: RawFd, iov: &[iovec], socket: bool) -> Result<usize, Errno> {
    let iov = &iov[..iov.len().min(libc::UIO_MAXIOV as usize)];
    retry_eintr(|| {
        let n = match iov {
            // One buffer: `send`/`write` are lighter in the kernel than the
            // vectored calls.
            // SAFETY (all three): the caller guarantees the iovecs; the
            // msghdr is zeroed, then pointed at them for the call.
            [one] if socket => syscall!(send(fd, one.iov_base, one.iov_len, libc::MSG_NOSIGNAL)),
            [one] => syscall!(write(fd, one.iov_base, one.iov_len)),
            _ if socket => {
                let mut msg: libc::msghdr = unsafe { zeroed() };
                msg.msg_iov = iov.as_ptr().cast_mut();
                msg.msg_iovlen = iov.len() as _;
                syscall!(sendmsg(fd, &msg, libc::MSG_NOSIGNAL))
            }
            _ => syscall!(writev(fd, iov.as_ptr(), iov.len() as c_int)),
        };
        n.map(|n| n as usize)
    })
}

/// `sendfile` from `file` at `*offset` (advanced by the bytes sent).
pub fn sendfile(out: RawFd, file: RawFd, offset: &mut off_t, count: usize) -> Result<usize, Errno> {
    // SAFETY: `offset` is a valid exclusive reference for the call.
    retry_eintr(|| syscall!(sendfile(out, file, &mut *offset, count)).map(|n| n as usize))
}

/// Reads up to `buf.len()` bytes of `file` at `offset`; falls back to a plain
/// `read` for files that cannot seek (pipes), which then must be sent whole.
pub fn pread(file: RawFd, buf: &mut [u8], offset: off_t) -> Result<usize, Errno> {
    let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len());
    // SAFETY: `buf` is a valid exclusive slice for its length.
    retry_eintr(|| match syscall!(pread(file, ptr, len, offset)) {
        Err(Errno::ESPIPE) => syscall!(read(file, ptr, len)),
        r => r,
    })
    .map(|n| n as usize)
}

/// A `poll` entry: `fd`, watched for `events`.
pub fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// `poll` on `fds` for at most `timeout_ms`: the
/// number of entries with events, 0 on timeout, -1 on error.
pub fn poll_fds(fds: &mut [libc::pollfd], timeout_ms: c_int) -> c_int {
    // SAFETY: `fds` is a valid array of pollfd for its length.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) }
}

/// Waits until `fd` is writable (or hung up), at most `timeout_ms`.
pub fn wait_writable(fd: RawFd, timeout_ms: c_int) {
    poll_fds(&mut [pollfd(fd, libc::POLLOUT)], timeout_ms);
}

/// Waits until one of `fds` is readable (or fails), at most `timeout`
/// (`None`: no limit);
/// returns, for each fd, whether it is. Negative fds are never ready (they
/// only make the call wait for the timeout).
pub fn wait_readable(fds: &[RawFd], timeout: Option<std::time::Duration>) -> Vec<bool> {
    let mut polled: Vec<libc::pollfd> = fds.iter().map(|&fd| pollfd(fd, libc::POLLIN)).collect();
    // Rounded up: a deadline must not be polled for again and again.
    let ms = timeout.map_or(-1, |t| {
        c_int::try_from(t.as_micros().div_ceil(1000)).unwrap_or(c_int::MAX)
    });
    // Entries with a negative fd are ignored.
    let n = poll_fds(&mut polled, ms);
    polled.iter().map(|p| n > 0 && p.revents != 0).collect()
}

thread_local! {
    /// This thread's `SIGPIPE` is blocked (by [`block_sigpipe`]).
    static SIGPIPE_BLOCKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn sigpipe_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise the set we own.
    unsafe {
        let mut set: libc::sigset_t = zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        set
    }
}

/// Blocks `SIGPIPE` in the calling thread before a write that could raise
/// it (to a pipe, through `sendfile`, or by a hook writing to its socket
/// without `MSG_NOSIGNAL`), so that writing to a vanished peer fails with
/// `EPIPE` instead of killing the process. Done once per thread and left
/// blocked: one system call in the thread's life instead of four per write.
/// The signal such a write raises stays pending until
/// [`consume_sigpipe`] takes it.
pub fn block_sigpipe() {
    SIGPIPE_BLOCKED.with(|blocked| {
        if !blocked.get() {
            let set = sigpipe_set();
            // SAFETY: pthread_sigmask reads `set`; the old mask is not wanted.
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
            blocked.set(true);
        }
    });
}

/// After a guarded write or hook failed: takes the `SIGPIPE` it may have
/// raised (pending, since [`block_sigpipe`] blocked it), so it is never
/// delivered later. Costs one system call, on failures only; `errno` is
/// kept.
pub fn consume_sigpipe() {
    let errno = Errno::last_raw();
    let set = sigpipe_set();
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the set and timeout are valid for the call; with nothing
    // pending it returns at once (EAGAIN).
    unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) };
    Errno::set_raw(errno);
}

/* ---------------------------------------------------------------------------
 * Addresses and sockets
 * ------------------------------------------------------------------------ */

/// A numeric port must be 0..=65535 (its number; `EINVAL` otherwise);
/// names ("http") go to the resolver (`None`).
fn numeric_port(port: &CStr) -> Result<Option<u16>, Errno> {
    let bytes = port.to_bytes();
    if !bytes.iter().all(u8::is_ascii_digit) {
        return Ok(None);
    }
    let number = std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok());
    number.map(Some).ok_or(Errno::EINVAL)
}

fn gai_errno(code: c_int) -> Errno {
    match code {
        libc::EAI_SYSTEM => Errno::last(),
        libc::EAI_MEMORY => Errno::ENOMEM,
        libc::EAI_AGAIN => Errno::EAGAIN,
        libc::EAI_SERVICE | libc::EAI_BADFLAGS | libc::EAI_SOCKTYPE | libc::EAI_FAMILY => {
            Errno::EINVAL
        }
        _ => Errno::EADDRNOTAVAIL,
    }
}

/// Resolves `address`/`port` for TCP and calls `each` on every candidate
/// address until it returns `Ok`.
fn with_tcp_addresses<T>(
    address: Option<&CStr>,
    port: &CStr,
    passive: bool,
    mut each: impl FnMut(&libc::addrinfo) -> Result<T, Errno>,
) -> Result<T, Errno> {
    let number = numeric_port(port)?;
    if let Some(result) = with_numeric_address(address, number, &mut each) {
        return result;
    }
    // SAFETY: hints is zero-initialised (a valid addrinfo), getaddrinfo reads
    // the NUL-terminated strings and hands back a list we free below.
    unsafe {
        let mut hints: libc::addrinfo = zeroed();
        hints.ai_family = libc::AF_UNSPEC;
        hints.ai_socktype = libc::SOCK_STREAM;
        hints.ai_flags = if passive { libc::AI_PASSIVE } else { 0 };
        let mut list: *mut libc::addrinfo = std::ptr::null_mut();
        let host = address.map_or(std::ptr::null(), CStr::as_ptr);
        let rc = libc::getaddrinfo(host, port.as_ptr(), &hints, &mut list);
        if rc != 0 {
            return Err(gai_errno(rc));
        }
        let mut result = Err(Errno::EADDRNOTAVAIL);
        let mut cur = list;
        while !cur.is_null() && result.is_err() {
            result = each(&*cur);
            cur = (*cur).ai_next;
        }
        libc::freeaddrinfo(list);
        result
    }
}

/// The common case of a numeric address and port ("127.0.0.1", "::1",
/// "8080") without `getaddrinfo`, which would give the same single address
/// but runs the C library's resolver (its configuration files, and ~100 KiB
/// more of the C library's code resident). `None`: not numeric, resolve.
fn with_numeric_address<T>(
    address: Option<&CStr>,
    port: Option<u16>,
    each: &mut impl FnMut(&libc::addrinfo) -> Result<T, Errno>,
) -> Option<Result<T, Errno>> {
    let text = address?.to_str().ok()?;
    let port = port?.to_be();
    // The addrinfo handed to `each` points at a socket address on this
    // stack frame, alive for the call.
    // SAFETY: addrinfo is plain data (integers and pointers); zero is valid.
    let mut ai: libc::addrinfo = unsafe { zeroed() };
    ai.ai_socktype = libc::SOCK_STREAM;
    ai.ai_protocol = libc::IPPROTO_TCP;
    if let Ok(ip) = text.parse::<std::net::Ipv4Addr>() {
        // SAFETY: sockaddr_in is plain data; zero is a valid value.
        let mut sin: libc::sockaddr_in = unsafe { zeroed() };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = port;
        sin.sin_addr.s_addr = u32::from_ne_bytes(ip.octets());
        ai.ai_family = libc::AF_INET;
        ai.ai_addr = (&mut sin as *mut libc::sockaddr_in).cast();
        ai.ai_addrlen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        return Some(each(&ai));
    }
    if let Ok(ip) = text.parse::<std::net::Ipv6Addr>() {
        // SAFETY: sockaddr_in6 is plain data; zero is a valid value.
        let mut sin6: libc::sockaddr_in6 = unsafe { zeroed() };
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_port = port;
        sin6.sin6_addr.s6_addr = ip.octets();
        ai.ai_family = libc::AF_INET6;
        ai.ai_addr = (&mut sin6 as *mut libc::sockaddr_in6).cast();
        ai.ai_addrlen = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        return Some(each(&ai));
    }
    None
}

/// A new non-blocking, close-on-exec stream socket.
fn stream_socket(family: c_int) -> Result<RawFd, Errno> {
    // SAFETY: plain system call.
    syscall!(socket(
        family,
        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        0,
    ))
}

fn sock_call(rc: c_int, fd: RawFd) -> Result<(), Errno> {
    if rc == 0 {
        Ok(())
    } else {
        let e = Errno::last();
        close(fd);
        Err(e)
    }
}

/// A Unix socket address for `path` (must fit `sun_path` with its NUL).
fn unix_address(path: &CStr) -> Result<(libc::sockaddr_un, libc::socklen_t), Errno> {
    let bytes = path.to_bytes();
    // SAFETY: sockaddr_un is plain data; zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { zeroed() };
    if bytes.is_empty() {
        return Err(Errno::EINVAL);
    }
    if bytes.len() >= addr.sun_path.len() {
        return Err(Errno::ENAMETOOLONG);
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let len = (size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    Ok((addr, len))
}

/// True when nobody accepts connections on the Unix socket at `addr`: a
/// connect is refused (or the file is gone). A server that answers — or
/// any other outcome, which cannot prove the socket stale — is left alone.
/// The probe connection, if one is made, is closed at once.
fn unix_socket_is_stale(addr: &libc::sockaddr_un, len: libc::socklen_t) -> Result<bool, Errno> {
    let fd = stream_socket(libc::AF_UNIX)?;
    // SAFETY: addr/len describe a valid sockaddr_un owned by the caller.
    let rc = syscall!(connect(fd, (addr as *const libc::sockaddr_un).cast(), len));
    close(fd);
    Ok(matches!(rc, Err(Errno::ECONNREFUSED | Errno::ENOENT)))
}

/// A listening TCP socket on the address `ai` describes. With `dual_stack`,
/// an IPv6 socket also takes IPv4 connections (`IPV6_V6ONLY` off); where
/// that cannot be set, `EAFNOSUPPORT`.
fn listen_tcp(ai: &libc::addrinfo, dual_stack: bool) -> Result<RawFd, Errno> {
    let fd = stream_socket(ai.ai_family)?;
    let one: c_int = 1;
    let zero: c_int = 0;
    let int_len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: the option values are live c_ints; ai_addr/ai_addrlen come
    // from getaddrinfo (or with_numeric_address) and describe a valid address.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const c_int).cast(),
            int_len,
        );
        if dual_stack && ai.ai_family == libc::AF_INET6 {
            let rc = libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                (&zero as *const c_int).cast(),
                int_len,
            );
            if rc != 0 {
                close(fd);
                return Err(Errno::EAFNOSUPPORT);
            }
        }
        sock_call(libc::bind(fd, ai.ai_addr, ai.ai_addrlen), fd)?;
        sock_call(libc::listen(fd, libc::SOMAXCONN), fd)?;
    }
    Ok(fd)
}

/// A listening socket: TCP on `address:port`, or a Unix socket at `address`
/// when `port` is `None`. Non-blocking, `SO_REUSEADDR`, backlog `SOMAXCONN`.
/// No `address` (any address) means IPv4 and IPv6: one socket on `::` that
/// takes both, or `0.0.0.0` where the machine has no IPv6.
pub fn listen(address: Option<&CStr>, port: Option<&CStr>) -> Result<RawFd, Errno> {
    match port {
        Some(port) if address.is_some() => {
            with_tcp_addresses(address, port, true, |ai| listen_tcp(ai, false))
        }
        Some(port) => {
            match with_tcp_addresses(Some(c"::"), port, true, |ai| listen_tcp(ai, true)) {
                // No IPv6 here (no such family, or no address of it).
                Err(Errno::EAFNOSUPPORT | Errno::EADDRNOTAVAIL) => {
                    with_tcp_addresses(Some(c"0.0.0.0"), port, true, |ai| listen_tcp(ai, false))
                }
                r => r,
            }
        }
        None => {
            let path = address.ok_or(Errno::EINVAL)?;
            let (addr, len) = unix_address(path)?;
            // A stale socket file from an earlier run would make bind fail;
            // remove it, but never a file of another kind, nor the socket
            // of a server that is still listening there.
            // SAFETY: lstat reads the NUL-terminated path into `st`.
            let socket_file = unsafe {
                let mut st: libc::stat = zeroed();
                libc::lstat(path.as_ptr(), &mut st) == 0
                    && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
            };
            if socket_file {
                if !unix_socket_is_stale(&addr, len)? {
                    return Err(Errno::EADDRINUSE);
                }
                // SAFETY: unlink reads the NUL-terminated path.
                unsafe { libc::unlink(path.as_ptr()) };
            }
            let fd = stream_socket(libc::AF_UNIX)?;
            // SAFETY: addr/len describe a valid sockaddr_un we own.
            unsafe {
                sock_call(
                    libc::bind(fd, (&addr as *const libc::sockaddr_un).cast(), len),
                    fd,
                )?;
                sock_call(libc::listen(fd, libc::SOMAXCONN), fd)?;
            }
            Ok(fd)
        }
    }
}

/// Starts a non-blocking connect (TCP, or Unix when `port` is `None`).
/// `EINPROGRESS` counts as success.
pub fn connect(address: Option<&CStr>, port: Option<&CStr>) -> Result<RawFd, Errno> {
    fn start(fd: RawFd, addr: *const libc::sockaddr, len: libc::socklen_t) -> Result<RawFd, Errno> {
        // SAFETY: addr/len describe a valid socket address owned by the caller.
        match syscall!(connect(fd, addr, len)) {
            Ok(_) | Err(Errno::EINPROGRESS) => Ok(fd),
            Err(e) => {
                close(fd);
                Err(e)
            }
        }
    }
    match port {
        Some(port) => {
            let address = address.ok_or(Errno::EINVAL)?;
            with_tcp_addresses(Some(address), port, false, |ai| {
                let fd = stream_socket(ai.ai_family)?;
                start(fd, ai.ai_addr, ai.ai_addrlen)
            })
        }
        None => {
            let (addr, len) = unix_address(address.ok_or(Errno::EINVAL)?)?;
            let fd = stream_socket(libc::AF_UNIX)?;
            start(fd, (&addr as *const libc::sockaddr_un).cast(), len)
        }
    }
}

/// Accepts one pending connection as a non-blocking, close-on-exec fd.
pub fn accept(listener: RawFd) -> Result<RawFd, Errno> {
    // SAFETY: NULL address arguments are allowed by accept4.
    syscall!(accept4(
        listener,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
    ))
}
