//! The boundary between C and the library, in one shape: every export runs
//! its body through [`call`] (it may fail: `errno` and the documented
//! failure value) or [`answer`] (a query or setter that cannot fail), and no
//! Rust panic unwinds into C. Tasks the library hands to the program
//! (`async_run`) or runs on its own thread go through [`guard`].
//!
//! The failure value is the return type's ([`Failure`]): -1 for counts,
//! UUIDs and status codes, NULL for pointers; so each export states it once,
//! in its signature.

use std::panic::{AssertUnwindSafe, catch_unwind};

use libc::c_int;
use nix::errno::Errno;

/// What an export returns when it fails, `errno` telling why.
pub trait Failure {
    const FAILED: Self;
}

/// `ssize_t` counts and UUIDs: -1 (the one certainly invalid UUID).
impl Failure for isize {
    const FAILED: isize = -1;
}

/// Status codes and fds: -1.
impl Failure for c_int {
    const FAILED: c_int = -1;
}

/// Pointers: NULL.
impl<T> Failure for *mut T {
    const FAILED: *mut T = std::ptr::null_mut();
}

/// `errno` 0 with a failure value: the end of a stream, which is no error.
pub const END_OF_STREAM: Errno = Errno::UnknownErrno;

/// Runs `f`, turning a panic into `on_panic` (errno `EIO`).
pub fn guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            Errno::EIO.set();
            on_panic
        }
    }
}

/// An export that may fail: `Ok(v)` returns `v`; `Err(e)` returns the
/// failure value with `errno` `e`; a panic, the failure value with `errno`
/// `EIO`. The first call of the process also checks that the program does
/// not shadow the library's functions ([`crate::shadow`]).
pub fn call<T: Failure>(f: impl FnOnce() -> Result<T, Errno>) -> T {
    guard(Err(Errno::EIO), || {
        crate::shadow::check_once();
        f()
    })
    .unwrap_or_else(|e| {
        e.set();
        T::FAILED
    })
}

/// An export that cannot fail (a query, a setter): its answer; on a panic
/// the type's default (0, nothing) with `errno` `EIO`.
pub fn answer<T: Default>(f: impl FnOnce() -> T) -> T {
    guard(T::default(), || {
        crate::shadow::check_once();
        f()
    })
}
