//! The C types of `libsock.h`, laid out exactly as the 0.2.2 interface.
//!
//! cbindgen generates the header's struct definitions from these. C bit-fields
//! have no Rust equivalent, so each bit-field word is one `c_uint` field (the
//! first bit-field, which names the word in C) followed by zero-sized
//! [`SockBit`] markers for the other bit-fields of the same word. The markers
//! take no room in Rust; cbindgen prints them as `unsigned name : width`, so the
//! C compiler packs all of them into the one word, exactly as the original
//! header declared. Bits are read through the accessors below, which follow the
//! C ABI's bit allocation (the first declared field is the lowest bit on
//! little-endian targets, the highest on big-endian ones).

use libc::{c_int, c_uint, c_void, off_t, size_t, ssize_t};

/// Bytes of storage attached to every packet of the pool.
pub const BUFFER_PACKET_SIZE: usize = 1024 * 16;
/// Chunk size used when a file is sent by reading and writing it.
pub const BUFFER_FILE_READ_SIZE: usize = BUFFER_PACKET_SIZE;
/// Default number of packets in the pool.
pub const BUFFER_PACKET_POOL: usize = 1024;

/// A C bit-field other than the first of its word: no storage in Rust, the
/// word is the `c_uint` field declared before it. Only exists so that the
/// generated header names every bit-field of the original interface.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SockBit([u8; 0]);

/// Position of bit-field number `index` (0 = first declared) of a word.
const fn bit(index: u32) -> c_uint {
    if cfg!(target_endian = "little") {
        1 << index
    } else {
        1 << (c_uint::BITS - 1 - index)
    }
}

/// The `data` member of `fduuid_u`: the fd in the low 32 bits of the UUID and
/// the fd's generation counter in the high 32 bits (on little-endian LP64).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct fduuid_data_s {
    pub fd: c_int,
    pub counter: c_uint,
}

/// A connection UUID: the fd plus a per-fd generation counter.
#[repr(C)]
#[derive(Clone, Copy)]
pub union fduuid_u {
    pub uuid: isize,
    pub data: fduuid_data_s,
}

/// The named arguments of `sock_write2`.
///
/// `move`, `urgent`, `is_fd` and `rsv` are one-bit fields of a single
/// `unsigned` word (the Rust definition names that word `flags`).
/// cbindgen:field-names=[fduuid, buffer, length, offset, move, urgent, is_fd, rsv]
#[repr(C)]
#[derive(Clone, Copy)]
pub struct sock_write_info_s {
    /// The connection (UUID) to write to.
    pub fduuid: isize,
    /// The bytes to send, or (with `is_fd`) a file descriptor cast into the
    /// pointer: `.buffer = (void *)(intptr_t)fd`.
    pub buffer: *const c_void,
    /// Bytes to send. For a file: the most to send (sending stops at end of
    /// file); `0` sends to end of file, as for an `is_fd` packet. `0` with a
    /// byte buffer means `strlen(buffer)`.
    pub length: size_t,
    /// Where in the file to start (with `is_fd`).
    pub offset: off_t,
    /// The library takes ownership of `buffer` and `free`s it once sent, or
    /// at once when the call fails.
    /// cbindgen:bitfield=1
    pub flags: c_uint,
    /// Send as soon as possible: before the first queued packet that allows
    /// interruption, never inside a packet already being sent.
    /// cbindgen:bitfield=1
    pub urgent: SockBit,
    /// `buffer` holds a file descriptor; the file is closed after sending
    /// (or when the call fails).
    /// cbindgen:bitfield=1
    pub is_fd: SockBit,
    /// Reserved.
    /// cbindgen:bitfield=1
    pub rsv: SockBit,
}

impl sock_write_info_s {
    pub fn is_move(&self) -> bool {
        self.flags & bit(0) != 0
    }
    pub fn is_urgent(&self) -> bool {
        self.flags & bit(1) != 0
    }
    pub fn is_fd(&self) -> bool {
        self.flags & bit(2) != 0
    }
}

/// The metadata of a `sock_packet_s` (an anonymous struct in the original
/// header; named here so that the header can declare it).
///
/// cbindgen:field-names=[next, offset, dealloc, can_interrupt, is_fd, keep_open, external, urgent, internal_flag, rsrv]
#[repr(C)]
#[derive(Clone, Copy)]
pub struct sock_packet_metadata_s {
    /// The next packet of a chain, or NULL.
    pub next: *mut sock_packet_s,
    /// Where in the file to start (with `is_fd`).
    pub offset: off_t,
    /// Frees an `external` buffer once sent; NULL means `free`.
    pub dealloc: Option<unsafe extern "C" fn(buffer: *mut c_void)>,
    /// An urgent packet may be placed before this one.
    /// cbindgen:bitfield=1
    pub flags: c_uint,
    /// `buffer` holds a file descriptor value, not a pointer.
    /// cbindgen:bitfield=1
    pub is_fd: SockBit,
    /// Leave that file descriptor open when done.
    /// cbindgen:bitfield=1
    pub keep_open: SockBit,
    /// `buffer` is the caller's memory, owned by the packet from now on:
    /// `dealloc` (or `free`) it when done.
    /// cbindgen:bitfield=1
    pub external: SockBit,
    /// Insert this packet (or chain) before the first queued packet that
    /// allows interruption, rather than at the end of the queue.
    /// cbindgen:bitfield=1
    pub urgent: SockBit,
    /// Library-private.
    /// cbindgen:bitfield=1
    pub internal_flag: SockBit,
    /// Reserved.
    /// cbindgen:bitfield=2
    pub rsrv: SockBit,
}

impl sock_packet_metadata_s {
    pub const fn zeroed() -> Self {
        sock_packet_metadata_s {
            next: std::ptr::null_mut(),
            offset: 0,
            dealloc: None,
            flags: 0,
            is_fd: SockBit([]),
            keep_open: SockBit([]),
            external: SockBit([]),
            urgent: SockBit([]),
            internal_flag: SockBit([]),
            rsrv: SockBit([]),
        }
    }
    pub fn can_interrupt(&self) -> bool {
        self.flags & bit(0) != 0
    }
    pub fn is_fd(&self) -> bool {
        self.flags & bit(1) != 0
    }
    pub fn keep_open(&self) -> bool {
        self.flags & bit(2) != 0
    }
    pub fn external(&self) -> bool {
        self.flags & bit(3) != 0
    }
    pub fn urgent(&self) -> bool {
        self.flags & bit(4) != 0
    }
}

/// A user-land buffer packet, checked out of the pool with
/// `sock_checkout_packet`.
#[repr(C)]
pub struct sock_packet_s {
    /// Bytes of data in the packet (for a file: the most to send; 0 or less
    /// sends to end of file).
    pub length: ssize_t,
    /// The data: initially the packet's own `BUFFER_PACKET_SIZE` bytes; may
    /// point at the caller's memory (see `metadata.external`) or hold a file
    /// descriptor value (see `metadata.is_fd`).
    pub buffer: *mut c_void,
    /// How the packet is linked, owned and sent.
    pub metadata: sock_packet_metadata_s,
}

/// Transport-layer hooks (e.g. TLS) that replace the system calls of one
/// connection. Any member may be NULL.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct sock_rw_hook_s {
    /// Replaces `read`; behaves like it (-1 with errno `EAGAIN` when nothing
    /// is available yet, 0 at end of stream).
    pub read:
        Option<unsafe extern "C" fn(fduuid: isize, buf: *mut c_void, count: size_t) -> ssize_t>,
    /// Replaces `write`; behaves like it (may write less than asked; -1 with
    /// errno `EAGAIN` when the transport can take nothing now).
    pub write:
        Option<unsafe extern "C" fn(fduuid: isize, buf: *const c_void, count: size_t) -> ssize_t>,
    /// Writes out data the hook buffers internally; returns the bytes still
    /// buffered (0 = all written) or -1 on error.
    pub flush: Option<unsafe extern "C" fn(fduuid: isize) -> ssize_t>,
    /// Called once when the connection's data is cleared (close, or fd
    /// reused), so the hook may release itself.
    pub on_clear: Option<unsafe extern "C" fn(fduuid: isize, hook: *mut sock_rw_hook_s)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, size_of};

    #[test]
    fn layouts_match_the_lp64_interface() {
        assert_eq!(size_of::<fduuid_u>(), 8);
        assert_eq!(size_of::<sock_write_info_s>(), 40);
        assert_eq!(size_of::<sock_packet_s>(), 48);
        assert_eq!(size_of::<sock_rw_hook_s>(), 32);
        assert_eq!(align_of::<sock_packet_s>(), 8);
    }

    #[test]
    fn uuid_union_puts_fd_in_the_low_half() {
        let u = fduuid_u {
            data: fduuid_data_s { fd: 12, counter: 3 },
        };
        // SAFETY: both members are plain integers covering the same 8 bytes.
        let raw = unsafe { u.uuid };
        assert_eq!(raw, (3isize << 32) | 12);
    }
}
