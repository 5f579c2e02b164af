//! libsock-rs: facil.io's `libsock` (interface 0.2.2) in Rust, as a C library.
//!
//! Data flows one way, from the C surface down to the system calls:
//!
//! - [`ffi`] — the C surface: every `libsock.h` function, argument checks,
//!   return values and `errno`, the panic boundary;
//! - [`io`] — what the library does with connections (register, read,
//!   close, queries);
//! - [`write`] — the write path: queuing bytes, packets and files;
//! - [`flush`] — the flusher: sending what is queued, with the lock released;
//! - [`state`] — the send life cycle of a connection and its liveness rule;
//! - [`waker`] — the library's own wake-ups for stalls no event reports;
//! - [`table`] — the connection table: per-fd slots, generation counters,
//!   the close life cycle;
//! - [`queue`] — the per-connection write queue and its entries;
//! - [`pool`] — the bounded packet pool;
//! - [`transfer`] — moving queued bytes to the kernel or a write hook;
//! - [`sys`] — thin wrappers around the system calls;
//! - [`callbacks`] — the program's overridable callbacks;
//! - [`boundary`] — the panic boundary;
//! - [`shadow`] — the warning about a program that shadows the library's
//!   functions with its own;
//! - [`types`] / [`uuid`] — the C types and the UUID encoding.

#![allow(non_camel_case_types)]

pub mod boundary;
pub mod callbacks;
pub mod ffi;
pub mod flush;
pub mod io;
pub mod pool;
pub mod queue;
pub mod shadow;
pub mod state;
pub mod sys;
pub mod table;
pub mod transfer;
pub mod types;
pub mod uuid;
pub mod waker;
pub mod write;

#[cfg(test)]
mod header_tests {
    /// The committed header must be what the build generates from these
    /// sources (`make` refreshes it).
    #[test]
    fn committed_header_is_current() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/libsock.h"));
        let committed = include_str!("../include/libsock.h");
        assert!(
            generated == committed,
            "include/libsock.h is stale: run `make` and commit it"
        );
    }
}
