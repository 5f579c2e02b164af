//! The write queue of one connection: what is still to be sent, in order.
//!
//! An [`Entry`] is a run of bytes in memory or a window of a file, plus what
//! to release once it is sent ([`Owner`]). Entries release their resources
//! when dropped, so callers drop them outside every library lock (a release
//! may call the program's `dealloc`).

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::ptr::NonNull;

use libc::{c_void, off_t};

use crate::pool::{self, PoolPacket};
use crate::sys;
use crate::types::{BUFFER_FILE_READ_SIZE, BUFFER_PACKET_SIZE};

/// What an entry sends.
pub enum Body {
    /// `len` bytes at `ptr`, of which `sent` are already sent.
    Mem {
        ptr: *const u8,
        len: usize,
        sent: usize,
    },
    /// A window of a file.
    File(FileBody),
}

impl Body {
    /// `len` bytes at `ptr`, none sent yet.
    pub fn mem(ptr: *const u8, len: usize) -> Body {
        Body::Mem { ptr, len, sent: 0 }
    }
}

/// A file window being sent.
pub struct FileBody {
    pub fd: RawFd,
    /// Next file offset to send from.
    pub offset: off_t,
    /// Bytes still to send at most (sending also stops at end of file).
    pub remaining: u64,
    /// `sendfile` refused this file (or a hook is set): read and write it.
    pub no_sendfile: bool,
    /// Bytes read from the file and not yet written (read-and-write path).
    pub stage: Option<Box<Stage>>,
    /// End of file was reached.
    pub eof: bool,
}

impl FileBody {
    /// A file window to send: `remaining` bytes of `fd` from `offset`.
    pub fn new(fd: RawFd, offset: off_t, remaining: u64) -> FileBody {
        FileBody {
            fd,
            offset,
            remaining,
            no_sendfile: false,
            stage: None,
            eof: false,
        }
    }
}

/// A chunk of file data read for the read-and-write path.
pub struct Stage {
    pub buf: Box<[u8]>,
    pub start: usize,
    pub end: usize,
}

impl Stage {
    pub fn new() -> Box<Stage> {
        Box::new(Stage {
            buf: vec![0u8; BUFFER_FILE_READ_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
        })
    }
}

/// What to release once an entry is done with (sent, dropped or failed):
/// dropping an `Owner` releases it, so a payload handed over with `move` or
/// `is_fd` is released on every path, failed calls included.
pub enum Owner {
    /// A pool packet holding a copy made by `sock_write2`.
    Pool(NonNull<PoolPacket>),
    /// A heap copy (urgent writes).
    Heap(Box<[u8]>),
    /// A buffer handed over with `move`: `free` it.
    Malloc(*mut c_void),
    /// A file handed over by `sock_write2(.is_fd = 1)`: close it.
    CloseFd(RawFd),
    /// A packet the program sent with `sock_send_packet`: release it as its
    /// metadata says, then return it to the pool.
    Packet(NonNull<PoolPacket>),
}

/// One queued unit of data.
pub struct Entry {
    pub body: Body,
    pub owner: Owner,
    /// An urgent entry may be placed before this one.
    pub can_interrupt: bool,
    /// Some of it was handed to the kernel (set by the transfer layer):
    /// nothing may be inserted before it any more.
    pub started: bool,
}

// SAFETY: an entry exclusively owns (or borrows for its whole life, as the
// API contract says) the memory and fds it names; it moves between threads
// only through the connection's mutex or as a flusher's private batch.
unsafe impl Send for Entry {}

impl Entry {
    pub fn new(body: Body, owner: Owner, can_interrupt: bool) -> Entry {
        Entry {
            body,
            owner,
            can_interrupt,
            started: false,
        }
    }

    /// Bytes of memory still to send (0 for a file: it holds no memory of
    /// ours to speak of).
    pub fn mem_left(&self) -> usize {
        match &self.body {
            Body::Mem { len, sent, .. } => len.saturating_sub(*sent),
            Body::File(_) => 0,
        }
    }

    /// Nothing is left to send.
    pub fn is_done(&self) -> bool {
        match &self.body {
            Body::Mem { len, sent, .. } => sent >= len,
            Body::File(f) => {
                let staged = f.stage.as_ref().is_some_and(|s| s.start < s.end);
                !staged && (f.eof || f.remaining == 0)
            }
        }
    }

    /// Room left in this entry's pool packet for more bytes, when it is a
    /// `sock_write2` copy that may be extended (coalescing small writes).
    /// Only a packet that starts a write and has not started sending takes
    /// more: urgent data may then still go before it, which keeps every
    /// write boundary that urgent data could need (it goes before the
    /// coalesced writes, never inside one).
    fn spare_room(&self) -> Option<(*mut u8, usize)> {
        if !self.can_interrupt || self.started {
            return None;
        }
        match (&self.owner, &self.body) {
            (Owner::Pool(p), Body::Mem { ptr, len, .. }) if *ptr == PoolPacket::storage(*p) => {
                (*len < BUFFER_PACKET_SIZE).then(|| {
                    // SAFETY: len < BUFFER_PACKET_SIZE, inside the storage.
                    (
                        unsafe { PoolPacket::storage(*p).add(*len) },
                        BUFFER_PACKET_SIZE - len,
                    )
                })
            }
            _ => None,
        }
    }
}

/// Releases a packet the program handed back, as its metadata says: close
/// its file (unless `keep_open`) or free an `external` buffer (with `dealloc`,
/// or `free`), then return it to the pool. A buffer that is not `external`
/// (the packet's own storage, or static memory) is left alone.
pub fn release_packet(packet: NonNull<PoolPacket>) {
    // SAFETY: the packet is live and exclusively ours (taken back from the
    // program or from a queue entry).
    let head = unsafe { &(*packet.as_ptr()).head };
    let meta = head.metadata;
    if meta.is_fd() {
        if !meta.keep_open() {
            sys::close(head.buffer as isize as RawFd);
        }
    } else if meta.external() && !head.buffer.is_null() {
        match meta.dealloc {
            // SAFETY: the program promised `dealloc` frees this buffer.
            Some(dealloc) => unsafe { dealloc(head.buffer) },
            // SAFETY: `external` without `dealloc` means malloc'd memory.
            None => unsafe { libc::free(head.buffer) },
        }
    }
    pool::put(packet);
}

impl Drop for Owner {
    fn drop(&mut self) {
        match self {
            Owner::Pool(p) => pool::put(*p),
            Owner::Heap(_) => {}
            // SAFETY: ownership of the malloc'd buffer was passed to us.
            Owner::Malloc(ptr) => unsafe { libc::free(*ptr) },
            Owner::CloseFd(fd) => sys::close(*fd),
            Owner::Packet(p) => release_packet(*p),
        }
    }
}

/// The entries of one connection in sending order.
#[derive(Default)]
pub struct WriteQueue {
    entries: VecDeque<Entry>,
}

/// Entries handed to the kernel in one gathered write at most.
pub const MAX_BATCH: usize = 64;

impl WriteQueue {
    pub const fn new() -> WriteQueue {
        WriteQueue {
            entries: VecDeque::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Once empty, gives back the memory of a queue that grew long (a
    /// burst): an idle connection keeps no entry storage.
    pub fn shrink_when_empty(&mut self) {
        if self.entries.is_empty() && self.entries.capacity() > 4 {
            self.entries = VecDeque::new();
        }
    }

    pub fn push(&mut self, entry: Entry) {
        self.entries.push_back(entry);
    }

    /// Inserts `entries` (kept together, in order) before the first entry
    /// that allows interruption and has not started; at the end if none does.
    pub fn push_urgent(&mut self, entries: impl IntoIterator<Item = Entry>) {
        let at = self
            .entries
            .iter()
            .position(|e| e.can_interrupt && !e.started)
            .unwrap_or(self.entries.len());
        for (i, e) in entries.into_iter().enumerate() {
            self.entries.insert(at + i, e);
        }
    }

    /// At least one packet's worth of bytes is queued (a gathered write of
    /// it is worth a system call).
    pub fn holds_full_packet(&self) -> bool {
        self.entries.len() >= 2
            || self.entries.front().is_some_and(|e| match &e.body {
                Body::Mem { len, sent, .. } => len - sent >= BUFFER_PACKET_SIZE,
                Body::File(_) => true,
            })
    }

    /// Copies as much of `data` as fits into the last entry's pool packet,
    /// when that entry is a `sock_write2` copy. Returns the bytes taken.
    pub fn append_to_tail(&mut self, data: &[u8]) -> usize {
        let Some(last) = self.entries.back_mut() else {
            return 0;
        };
        let Some((dst, room)) = last.spare_room() else {
            return 0;
        };
        let n = room.min(data.len());
        // SAFETY: `dst` has `room` writable bytes inside the packet storage,
        // which no flusher reads beyond the entry's current `len`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, n) };
        if let Body::Mem { len, .. } = &mut last.body {
            *len += n;
        }
        n
    }

    /// Takes the next entries to send: one file window, or up to
    /// [`MAX_BATCH`] memory entries (just one when `single` is set, for write
    /// hooks, which take one buffer per call).
    pub fn take_batch(&mut self, single: bool, batch: &mut Vec<Entry>) {
        let max = if single { 1 } else { MAX_BATCH };
        while batch.len() < max {
            let is_file = self
                .entries
                .front()
                .is_some_and(|e| matches!(e.body, Body::File(_)));
            if is_file && !batch.is_empty() {
                break;
            }
            let Some(e) = self.entries.pop_front() else {
                break;
            };
            batch.push(e);
            if is_file {
                break;
            }
        }
    }

    /// Puts unsent entries back at the front, in their order.
    pub fn put_back(&mut self, rest: impl DoubleEndedIterator<Item = Entry>) {
        for e in rest.rev() {
            self.entries.push_front(e);
        }
    }

    /// Removes everything (to be dropped outside the lock).
    pub fn take_all(&mut self) -> VecDeque<Entry> {
        std::mem::take(&mut self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(tag: &'static [u8], can_interrupt: bool) -> Entry {
        Entry::new(
            Body::Mem {
                ptr: tag.as_ptr(),
                len: tag.len(),
                sent: 0,
            },
            Owner::Heap(Box::new([])),
            can_interrupt,
        )
    }

    fn tags(q: &mut WriteQueue) -> Vec<&'static [u8]> {
        q.take_all()
            .iter()
            .map(|e| match e.body {
                // SAFETY: the tests only queue 'static byte strings.
                Body::Mem { ptr, len, .. } => unsafe { std::slice::from_raw_parts(ptr, len) },
                Body::File(_) => b"file",
            })
            .collect()
    }

    #[test]
    fn urgent_goes_before_the_first_interruptible_unstarted_entry() {
        let mut q = WriteQueue::new();
        let mut head = mem(b"a", true);
        head.started = true;
        q.push(head);
        q.push(mem(b"b", false));
        q.push(mem(b"c", true));
        q.push_urgent([mem(b"U1", false), mem(b"U2", false)]);
        assert_eq!(tags(&mut q), vec![&b"a"[..], b"b", b"U1", b"U2", b"c"]);
    }

    #[test]
    fn urgent_appends_when_nothing_may_be_interrupted() {
        let mut q = WriteQueue::new();
        q.push(mem(b"a", false));
        q.push_urgent([mem(b"U", false)]);
        assert_eq!(tags(&mut q), vec![&b"a"[..], b"U"]);
    }

    #[test]
    fn small_writes_coalesce_into_the_tail_packet() {
        let mut q = WriteQueue::new();
        let p = pool::try_take().unwrap();
        let storage = PoolPacket::storage(p);
        // SAFETY: storage has BUFFER_PACKET_SIZE bytes.
        unsafe { storage.write(b'x') };
        q.push(Entry::new(
            Body::Mem {
                ptr: storage,
                len: 1,
                sent: 0,
            },
            Owner::Pool(p),
            true,
        ));
        assert_eq!(q.append_to_tail(b"yz"), 2);
        let big = vec![0u8; BUFFER_PACKET_SIZE];
        assert_eq!(q.append_to_tail(&big), BUFFER_PACKET_SIZE - 3);
        assert_eq!(q.append_to_tail(b"!"), 0, "a full packet takes no more");
        let mut batch = Vec::new();
        q.take_batch(false, &mut batch);
        assert_eq!(batch.len(), 1);
        match batch[0].body {
            Body::Mem { ptr, len, .. } => {
                assert_eq!(len, BUFFER_PACKET_SIZE);
                // SAFETY: ptr has len bytes.
                assert_eq!(unsafe { std::slice::from_raw_parts(ptr, 3) }, b"xyz");
            }
            Body::File(_) => unreachable!(),
        }
    }

    #[test]
    fn batches_stop_at_files_and_hooks_take_one() {
        let mut q = WriteQueue::new();
        q.push(mem(b"a", true));
        q.push(mem(b"b", true));
        q.push(Entry::new(
            Body::File(FileBody {
                fd: -1,
                offset: 0,
                remaining: 0,
                no_sendfile: false,
                stage: None,
                eof: true,
            }),
            Owner::Heap(Box::new([])),
            true,
        ));
        let mut batch = Vec::new();
        q.take_batch(true, &mut batch);
        assert_eq!(batch.len(), 1);
        batch.clear();
        q.take_batch(false, &mut batch);
        assert_eq!(batch.len(), 1, "b alone: the file is its own batch");
        batch.clear();
        q.take_batch(false, &mut batch);
        assert!(matches!(batch[0].body, Body::File(_)));
        assert!(q.is_empty());
    }
}
