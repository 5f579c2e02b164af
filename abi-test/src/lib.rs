//! The C side of the bit-field checks: `c/bits.c`, compiled against
//! `include/libsock.h` by build.rs. See `tests/bitfields.rs`.

use libc::{c_char, c_int, c_uint, off_t, size_t, ssize_t};
use sock::types::{sock_packet_s, sock_write_info_s};

unsafe extern "C" {
    /// Sets bit-field `field` (declaration order) of a zeroed struct to all
    /// ones; -1 for an unknown field.
    pub fn abi_write_info_set(field: c_uint, out: *mut sock_write_info_s) -> c_int;
    /// Bit `n` set when bit-field `n` is non-zero (struct passed by value).
    pub fn abi_write_info_get(info: sock_write_info_s) -> c_uint;
    /// Sets metadata bit-field `field` of a zeroed packet to all ones; -1 for
    /// an unknown field.
    pub fn abi_packet_set(field: c_uint, out: *mut sock_packet_s) -> c_int;
    /// Bit `n` set when metadata bit-field `n` is non-zero.
    pub fn abi_packet_get(packet: *const sock_packet_s) -> c_uint;
    /// `(sock_write_info_s){.fduuid, .buffer = fd, .length, .offset, .is_fd = 1}`.
    pub fn abi_write_info_literal(
        uuid: isize,
        fd: c_int,
        offset: off_t,
        length: size_t,
    ) -> sock_write_info_s;
    /// `*packet = (sock_packet_s){.buffer = "\x89\x00", .length = 2, .metadata.urgent = 1}`.
    pub fn abi_packet_literal(packet: *mut sock_packet_s);
    /// The header's `sock_sendfile` (static inline).
    pub fn abi_sendfile(uuid: isize, fd: c_int, offset: off_t, length: size_t) -> ssize_t;
    /// The header's `sock_write(uuid, text, 0)` macro.
    pub fn abi_write(uuid: isize, text: *const c_char) -> ssize_t;
    /// A UUID built through `fduuid_u`'s `data.fd` and `data.counter`.
    pub fn abi_uuid_make(fd: c_int, counter: c_uint) -> isize;
    /// The header's `sock_uuid2fd`.
    pub fn abi_uuid2fd(uuid: isize) -> c_int;
    /// `fduuid_u`'s `data.counter` of a UUID.
    pub fn abi_uuid_counter(uuid: isize) -> c_uint;
    /// The header's `FDUUID_FAIL`.
    pub fn abi_uuid_fail(uuid: isize) -> c_int;
}
