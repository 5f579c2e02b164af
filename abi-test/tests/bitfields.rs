//! The bit-fields of libsock.h against the Rust definitions.
//!
//! C bit-fields have no Rust equivalent: `src/types.rs` models each word of
//! bit-fields as one `flags: c_uint` field read through accessors. ctest2
//! cannot address bit-fields, so here the C side (`c/bits.c`, compiled
//! against the header) sets or reads them by name, and the Rust side reads or
//! builds the same bytes through `flags` and the accessors, in both
//! directions:
//! - C sets one bit-field to all ones: the bit lands in Rust's `flags` word
//!   (nothing else of the struct changes) and exactly the matching accessor
//!   reports it;
//! - Rust sets each of the 32 bits of `flags` in turn: C's bit-fields and
//!   Rust's accessors agree on every one;
//! - compound literals and the header's macros, as programs write them.

use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{FromRawFd, IntoRawFd};

use libc::c_uint;
use libsock_abi_test::*;
use sock::types::{sock_packet_s, sock_write_info_s};

/// sock_write_info_s bit-fields in declaration order, with the accessor that
/// reads each (None: no accessor, reserved).
type WriteAccessor = fn(&sock_write_info_s) -> bool;
const WRITE_FIELDS: [(&str, Option<WriteAccessor>); 4] = [
    ("move", Some(sock_write_info_s::is_move)),
    ("urgent", Some(sock_write_info_s::is_urgent)),
    ("is_fd", Some(sock_write_info_s::is_fd)),
    ("rsv", None),
];

type MetaAccessor = fn(&sock::types::sock_packet_metadata_s) -> bool;
const META_FIELDS: [(&str, Option<MetaAccessor>); 7] = [
    (
        "can_interrupt",
        Some(sock::types::sock_packet_metadata_s::can_interrupt),
    ),
    ("is_fd", Some(sock::types::sock_packet_metadata_s::is_fd)),
    (
        "keep_open",
        Some(sock::types::sock_packet_metadata_s::keep_open),
    ),
    (
        "external",
        Some(sock::types::sock_packet_metadata_s::external),
    ),
    ("urgent", Some(sock::types::sock_packet_metadata_s::urgent)),
    ("internal_flag", None),
    ("rsrv", None),
];

/// The bytes of a value.
fn bytes<T>(v: &T) -> &[u8] {
    // SAFETY: any initialized value can be viewed as size_of::<T>() bytes;
    // the callers pass structs that C zeroed (memset) before setting fields,
    // so padding bytes are initialized too.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }
}

/// The bytes of `v` outside the `flags` word at `flags_offset`.
fn bytes_outside<T>(v: &T, flags_offset: usize) -> Vec<u8> {
    let b = bytes(v);
    let mut out = b[..flags_offset].to_vec();
    out.extend_from_slice(&b[flags_offset + size_of::<c_uint>()..]);
    out
}

fn write_info_set_by_c(field: c_uint) -> Option<sock_write_info_s> {
    let mut v = MaybeUninit::<sock_write_info_s>::zeroed();
    // SAFETY: `v` is a writable sock_write_info_s; C writes only inside it.
    let rc = unsafe { abi_write_info_set(field, v.as_mut_ptr()) };
    // SAFETY: zeroed, then (maybe) written by C: every byte is initialized,
    // and all-zero is a valid sock_write_info_s (null pointer, zero numbers).
    (rc == 0).then(|| unsafe { v.assume_init() })
}

fn packet_set_by_c(field: c_uint) -> Option<sock_packet_s> {
    let mut v = MaybeUninit::<sock_packet_s>::zeroed();
    // SAFETY: `v` is a writable sock_packet_s; C writes only inside it.
    let rc = unsafe { abi_packet_set(field, v.as_mut_ptr()) };
    // SAFETY: as above; all-zero is a valid sock_packet_s (null pointers,
    // `dealloc` None).
    (rc == 0).then(|| unsafe { v.assume_init() })
}

fn zero_write_info() -> sock_write_info_s {
    // SAFETY: all-zero is a valid sock_write_info_s.
    unsafe { MaybeUninit::zeroed().assume_init() }
}

fn zero_packet() -> sock_packet_s {
    // SAFETY: all-zero is a valid sock_packet_s.
    unsafe { MaybeUninit::zeroed().assume_init() }
}

#[test]
fn c_has_exactly_the_bitfields_listed_here() {
    let n = WRITE_FIELDS.len() as c_uint;
    assert!(write_info_set_by_c(n - 1).is_some());
    assert!(
        write_info_set_by_c(n).is_none(),
        "bits.c knows more sock_write_info_s bit-fields"
    );
    let n = META_FIELDS.len() as c_uint;
    assert!(packet_set_by_c(n - 1).is_some());
    assert!(
        packet_set_by_c(n).is_none(),
        "bits.c knows more metadata bit-fields"
    );
}

#[test]
fn write_info_bitfield_set_in_c_is_read_by_its_rust_accessor() {
    let flags_at = std::mem::offset_of!(sock_write_info_s, flags);
    let mut seen: c_uint = 0;
    for (i, (name, accessor)) in WRITE_FIELDS.iter().enumerate() {
        let v = write_info_set_by_c(i as c_uint).unwrap();
        assert!(
            bytes_outside(&v, flags_at).iter().all(|&b| b == 0),
            "C's `{name}` is not in the Rust `flags` word (offset {flags_at})"
        );
        assert_ne!(v.flags, 0, "C's `{name}` did not reach `flags`");
        assert_eq!(seen & v.flags, 0, "`{name}` overlaps an earlier bit-field");
        seen |= v.flags;
        for (other, other_accessor) in &WRITE_FIELDS {
            if let Some(get) = other_accessor {
                assert_eq!(
                    get(&v),
                    other == name,
                    "C set `{name}` (flags {:#x}); Rust's `{other}` accessor disagrees",
                    v.flags
                );
            }
        }
        assert!(accessor.is_none() || accessor.unwrap()(&v));
    }
}

#[test]
fn write_info_every_bit_of_flags_decodes_alike_in_c_and_rust() {
    for bit in 0..c_uint::BITS {
        let mut v = zero_write_info();
        v.flags = 1 << bit;
        // Passed by value, as programs pass it to sock_write2_fn.
        // SAFETY: plain function of bits.c taking the struct by value.
        let c = unsafe { abi_write_info_get(v) };
        for (i, (name, accessor)) in WRITE_FIELDS.iter().enumerate() {
            if let Some(get) = accessor {
                assert_eq!(
                    c & (1 << i) != 0,
                    get(&v),
                    "flags bit {bit}: C's `{name}` and Rust's accessor disagree"
                );
            }
        }
    }
}

#[test]
fn metadata_bitfield_set_in_c_is_read_by_its_rust_accessor() {
    let flags_at = std::mem::offset_of!(sock_packet_s, metadata)
        + std::mem::offset_of!(sock::types::sock_packet_metadata_s, flags);
    let mut seen: c_uint = 0;
    for (i, (name, accessor)) in META_FIELDS.iter().enumerate() {
        let p = packet_set_by_c(i as c_uint).unwrap();
        assert!(
            bytes_outside(&p, flags_at).iter().all(|&b| b == 0),
            "C's `metadata.{name}` is not in the Rust `metadata.flags` word (offset {flags_at})"
        );
        let word = p.metadata.flags;
        assert_ne!(word, 0, "C's `metadata.{name}` did not reach `flags`");
        assert_eq!(seen & word, 0, "`{name}` overlaps an earlier bit-field");
        seen |= word;
        for (other, other_accessor) in &META_FIELDS {
            if let Some(get) = other_accessor {
                assert_eq!(
                    get(&p.metadata),
                    other == name,
                    "C set `metadata.{name}` (flags {word:#x}); Rust's `{other}` accessor disagrees"
                );
            }
        }
        assert!(accessor.is_none() || accessor.unwrap()(&p.metadata));
    }
    // rsrv is 2 bits wide: the seven fields take 8 bits.
    assert_eq!(seen.count_ones(), 8);
}

#[test]
fn metadata_every_bit_of_flags_decodes_alike_in_c_and_rust() {
    for bit in 0..c_uint::BITS {
        let mut p = zero_packet();
        p.metadata.flags = 1 << bit;
        // SAFETY: `p` is a valid packet for the duration of the call.
        let c = unsafe { abi_packet_get(&p) };
        for (i, (name, accessor)) in META_FIELDS.iter().enumerate() {
            if let Some(get) = accessor {
                assert_eq!(
                    c & (1 << i) != 0,
                    get(&p.metadata),
                    "flags bit {bit}: C's `metadata.{name}` and Rust's accessor disagree"
                );
            }
        }
    }
}

#[test]
fn compound_literal_write_info_is_read_by_rust() {
    // SAFETY: plain function of bits.c returning the struct by value.
    let v = unsafe { abi_write_info_literal(0x1234_5678_9abc, 7, 5, 100) };
    assert_eq!(v.fduuid, 0x1234_5678_9abc);
    assert_eq!(v.buffer as usize, 7);
    assert_eq!(v.length, 100);
    assert_eq!(v.offset, 5);
    assert!(v.is_fd());
    assert!(!v.is_move());
    assert!(!v.is_urgent());
}

#[test]
fn compound_literal_packet_is_read_by_rust() {
    let mut p = zero_packet();
    p.metadata.flags = !0;
    // SAFETY: `p` is a writable packet; C overwrites the whole struct.
    unsafe { abi_packet_literal(&mut p) };
    assert_eq!(p.length, 2);
    assert!(!p.buffer.is_null());
    // SAFETY: the literal points `buffer` at the static string "\x89\x00".
    assert_eq!(unsafe { *(p.buffer as *const u8) }, 0x89);
    assert!(p.metadata.next.is_null());
    assert_eq!(p.metadata.offset, 0);
    assert!(p.metadata.dealloc.is_none());
    assert!(p.metadata.urgent());
    assert!(!p.metadata.can_interrupt());
    assert!(!p.metadata.is_fd());
    assert!(!p.metadata.keep_open());
    assert!(!p.metadata.external());
}

#[test]
fn uuid_union_bitfields_match_the_rust_encoding() {
    for &(fd, counter) in &[
        (0, 0),
        (3, 1),
        (1023, 7),
        (i32::MAX, u32::MAX),
        (5, 0x8000_0000),
        (-1, u32::MAX),
    ] {
        // SAFETY: plain functions of bits.c on integers.
        let (uuid, fd_c, counter_c) = unsafe {
            let uuid = abi_uuid_make(fd, counter);
            (uuid, abi_uuid2fd(uuid), abi_uuid_counter(uuid))
        };
        assert_eq!(
            uuid,
            sock::uuid::encode(fd, counter),
            "fd {fd} counter {counter}"
        );
        assert_eq!(sock::uuid::decode(uuid), (fd_c, counter_c));
        assert_eq!((fd_c, counter_c), (fd, counter));
        let u = sock::types::fduuid_u { uuid };
        // SAFETY: both members of the union are plain integers.
        let data = unsafe { u.data };
        assert_eq!((data.fd, data.counter), (fd, counter));
    }
    // SAFETY: plain function of bits.c.
    unsafe {
        assert_eq!(abi_uuid_fail(sock::uuid::INVALID), 1);
        assert_eq!(abi_uuid_fail(sock::uuid::encode(-1, 0)), 0);
    }
}

/// A pipe whose write end the library owns (blocking: small writes only).
fn pipe_with_uuid() -> (std::fs::File, isize) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let uuid = sock::ffi::sock_open(fds[1]);
    assert_ne!(uuid, -1);
    // SAFETY: fds[0] is a fresh descriptor owned by nobody else.
    (unsafe { std::fs::File::from_raw_fd(fds[0]) }, uuid)
}

fn read_exactly(r: &mut std::fs::File, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    r.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn header_sendfile_reaches_the_library_with_is_fd_offset_and_length() {
    // A broken is_fd would make the library dereference the fd number as a
    // pointer: fail cleanly first (the literal test above says why).
    // SAFETY: plain function of bits.c returning the struct by value.
    assert!(unsafe { abi_write_info_literal(1, 2, 3, 4) }.is_fd());
    let (mut r, uuid) = pipe_with_uuid();
    let mut file = tempfile();
    file.write_all(b"0123456789").unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    // Only is_fd read from the bit-field makes the library treat `buffer` as
    // a descriptor; offset 2 and length 5 select "23456".
    // SAFETY: `uuid` is a library connection; the library takes (and
    // closes) the file descriptor.
    let rc = unsafe { abi_sendfile(uuid, file.into_raw_fd(), 2, 5) };
    assert_eq!(rc, 0);
    sock::ffi::sock_flush_strong(uuid);
    assert_eq!(read_exactly(&mut r, 5), b"23456");

    let text = CString::new("hello, world").unwrap();
    // SAFETY: NUL-terminated string, copied by the library.
    assert_eq!(unsafe { abi_write(uuid, text.as_ptr()) }, 0);
    sock::ffi::sock_flush_strong(uuid);
    assert_eq!(read_exactly(&mut r, 12), b"hello, world");
    sock::ffi::sock_force_close(uuid);
}

/// An anonymous temporary file.
fn tempfile() -> std::fs::File {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("libsock-abi-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}
