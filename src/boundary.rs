//! The panic boundary: no Rust panic unwinds into C. Every exported function
//! and every task the library hands to the program (`async_run`) or runs on
//! its own thread goes through [`guard`].

use std::panic::{AssertUnwindSafe, catch_unwind};

use nix::errno::Errno;

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
