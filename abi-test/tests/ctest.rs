//! ctest2's checks of include/libsock.h against the Rust definitions (see
//! build.rs): a `main` that runs them all, prints `PASSED <n> tests` and
//! panics on any mismatch.

// The generated code is not ours to lint.
#![allow(
    bad_style,
    clippy::all,
    deprecated,
    improper_ctypes,
    unknown_lints,
    unused,
    function_casts_as_integer
)]

// Links this package's library, which carries the C side ctest2 compiled.
use libsock_abi_test as _;

use libc::*;
use sock::ffi::*;
use sock::types::*;

include!(concat!(env!("OUT_DIR"), "/abi_items.rs"));
include!(concat!(env!("OUT_DIR"), "/ctest.rs"));
