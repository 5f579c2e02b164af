//! Connection UUIDs: `fduuid_u` encoding (fd in the low 32 bits, the fd's
//! generation counter in the high 32 bits), so that a UUID held after its
//! connection closed never names the connection that reuses the fd number.

use std::os::fd::RawFd;

/// The one UUID that is certainly invalid.
pub const INVALID: isize = -1;

/// The UUID of `fd` at generation `counter`.
pub fn encode(fd: RawFd, counter: u32) -> isize {
    (((counter as u64) << 32) | (fd as u32 as u64)) as i64 as isize
}

/// The fd and generation counter a UUID names (no validity check).
pub fn decode(uuid: isize) -> (RawFd, u32) {
    let raw = uuid as i64 as u64;
    (raw as u32 as i32, (raw >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for &(fd, counter) in &[
            (0, 0),
            (3, 1),
            (1023, 7),
            (i32::MAX, u32::MAX),
            (5, 0x8000_0000),
        ] {
            assert_eq!(decode(encode(fd, counter)), (fd, counter));
        }
    }

    #[test]
    fn high_counters_give_valid_negative_uuids() {
        let uuid = encode(4, 0x8000_0001);
        assert!(uuid < -1);
        assert_ne!(uuid, INVALID);
    }

    #[test]
    fn minus_one_names_no_real_fd() {
        let (fd, _) = decode(INVALID);
        assert_eq!(fd, -1);
    }
}
