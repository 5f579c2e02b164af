//! The program's callbacks: `reactor_on_close`, `reactor_remove`,
//! `sock_touch` and `async_run`.
//!
//! Each is resolved, at every call, in this order:
//! 1. a function registered at run time (`sock_register_*`), if any;
//! 2. otherwise the global symbol: the program's own definition when it has
//!    one (strong or weak), else the library's default from
//!    `callbacks/defaults.c`, which is weak so that a program definition wins
//!    both in `libsock.a` (the static linker picks the program's) and in
//!    `libsock.so` (the symbols are exported and called through the GOT, so
//!    the program's definition interposes).
//!
//! Callbacks are always called with no library lock held.

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_int, c_void};

/// `void (*)(intptr_t uuid)`
pub type UuidFn = unsafe extern "C" fn(uuid: isize);
/// `int (*)(intptr_t uuid)`
pub type RemoveFn = unsafe extern "C" fn(uuid: isize) -> c_int;
/// `void (*)(void *arg)`
pub type TaskFn = unsafe extern "C" fn(arg: *mut c_void);
/// `int (*)(void (*task)(void *), void *arg)`
pub type AsyncFn = unsafe extern "C" fn(task: TaskFn, arg: *mut c_void) -> c_int;

unsafe extern "C" {
    fn reactor_on_close(uuid: isize);
    fn reactor_remove(uuid: isize) -> c_int;
    fn sock_touch(uuid: isize);
    fn async_run(task: TaskFn, arg: *mut c_void) -> c_int;
    fn sock_default_async_run(task: TaskFn, arg: *mut c_void) -> c_int;
}

/// A registered function pointer (0 = none).
struct Registered(AtomicUsize);

impl Registered {
    const fn new() -> Registered {
        Registered(AtomicUsize::new(0))
    }
    fn set(&self, f: Option<usize>) {
        self.0.store(f.unwrap_or(0), Ordering::Release);
    }
    fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

static ON_CLOSE: Registered = Registered::new();
static REMOVE: Registered = Registered::new();
static TOUCH: Registered = Registered::new();
static ASYNC: Registered = Registered::new();

pub fn register_on_close(f: Option<UuidFn>) {
    ON_CLOSE.set(f.map(|f| f as usize));
}
pub fn register_remove(f: Option<RemoveFn>) {
    REMOVE.set(f.map(|f| f as usize));
}
pub fn register_touch(f: Option<UuidFn>) {
    TOUCH.set(f.map(|f| f as usize));
}
pub fn register_async(f: Option<AsyncFn>) {
    ASYNC.set(f.map(|f| f as usize));
}

/// Tells the program that `uuid` closed.
pub fn on_close(uuid: isize) {
    match ON_CLOSE.get() {
        // SAFETY: only valid `UuidFn` pointers are stored (register_on_close).
        0 => unsafe { reactor_on_close(uuid) },
        f => unsafe { std::mem::transmute::<usize, UuidFn>(f)(uuid) },
    }
}

/// Lets the program's event loop forget `uuid` (just before [`on_close`]).
pub fn remove(uuid: isize) {
    // The program's answer means nothing to the library.
    let _ = match REMOVE.get() {
        // SAFETY: only valid `RemoveFn` pointers are stored.
        0 => unsafe { reactor_remove(uuid) },
        f => unsafe { std::mem::transmute::<usize, RemoveFn>(f)(uuid) },
    };
}

/// Tells the program that `uuid` moved data (its timeout may restart).
pub fn touch(uuid: isize) {
    match TOUCH.get() {
        // SAFETY: only valid `UuidFn` pointers are stored.
        0 => unsafe { sock_touch(uuid) },
        f => unsafe { std::mem::transmute::<usize, UuidFn>(f)(uuid) },
    }
}

/// True when flushes run inline: no `async_run` was registered and the
/// program did not define its own (the symbol is the library's default).
/// Writes may then send at once, without offering the flush.
pub fn flushes_inline() -> bool {
    ASYNC.get() == 0
        && std::ptr::fn_addr_eq(async_run as AsyncFn, sock_default_async_run as AsyncFn)
}

/// Offers `task(uuid)` to the program's task queue (the UUID travels as the
/// `void *` argument). False when the program declined (returned non-zero,
/// the default's -1): run it inline then.
pub fn defer(task: TaskFn, uuid: isize) -> bool {
    let arg = uuid as *mut c_void;
    let rc = match ASYNC.get() {
        // SAFETY: only valid `AsyncFn` pointers are stored.
        0 => unsafe { async_run(task, arg) },
        f => unsafe { std::mem::transmute::<usize, AsyncFn>(f)(task, arg) },
    };
    rc == 0
}
