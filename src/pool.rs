//! The packet pool: a bounded number of `sock_packet_s` packets, each with
//! `BUFFER_PACKET_SIZE` bytes of storage, allocated on first use and recycled.
//!
//! The bound (default `BUFFER_PACKET_POOL`) caps the memory the user-land
//! buffer may hold. It is read once from the environment variable
//! `LIBSOCK_PACKET_POOL` and can be changed at run time with
//! `sock_set_packet_pool_size`. Released packets are kept idle for reuse,
//! as many as the load needs: every [`TRIM_AFTER`] while more than a few are
//! idle, those beyond the most that were in use at once in that time go
//! back to the allocator (under steady load nothing is allocated or freed
//! per packet). Once the pool has been quiet for that long (no packet taken
//! or released) it keeps only a few and asks the allocator to give its free
//! memory back to the system (`malloc_trim`), so a burst does not pin
//! memory: freed packets otherwise stay resident in the allocator's
//! arenas.
//!
//! Packets handed to the program (`sock_checkout_packet`) are remembered, so a
//! pointer that did not come from the pool, or a packet released twice, is
//! refused instead of corrupting memory.

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::thread::ThreadId;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::types::{BUFFER_PACKET_POOL, BUFFER_PACKET_SIZE, sock_packet_metadata_s, sock_packet_s};

/// A pool packet: the public header followed by its own storage. `head` comes
/// first, so a `*mut sock_packet_s` handed out is also a `*mut PoolPacket`.
#[repr(C)]
pub struct PoolPacket {
    pub head: sock_packet_s,
    storage: [u8; BUFFER_PACKET_SIZE],
}

impl PoolPacket {
    /// Start of this packet's own storage.
    pub fn storage(this: NonNull<PoolPacket>) -> *mut u8 {
        // SAFETY: addr_of_mut! computes the field address without creating a
        // reference; `this` points at a live PoolPacket.
        unsafe { std::ptr::addr_of_mut!((*this.as_ptr()).storage).cast() }
    }

    /// Resets the header to what `sock_checkout_packet` promises.
    fn reset(this: NonNull<PoolPacket>) {
        let storage = PoolPacket::storage(this);
        // SAFETY: `this` is a live packet that nobody else uses right now
        // (it is being handed out or taken back).
        unsafe {
            let head = &mut (*this.as_ptr()).head;
            head.length = 0;
            head.buffer = storage.cast();
            head.metadata = sock_packet_metadata_s::zeroed();
        }
    }
}

/// Idle packets always kept; once the pool has been quiet for
/// [`TRIM_AFTER`], the only ones: a burst's packets go back to the
/// allocator, and the allocator gives the memory back to the system
/// ([`trim`]).
const KEEP_QUIET: usize = 4;
/// The period of the trim while more than [`KEEP_QUIET`] packets are idle:
/// idle packets beyond what the period's load needed are freed; after a
/// period with no packet taken or released, memory is given back.
pub const TRIM_AFTER: Duration = Duration::from_millis(200);

struct State {
    idle: Vec<NonNull<PoolPacket>>,
    /// Packets allocated and not idle: held by connections or the program.
    busy: usize,
    limit: usize,
    /// Packets currently checked out by the program, with the thread that
    /// took each.
    lent: HashMap<usize, ThreadId>,
    /// Packets taken and released so far: the trim waits until this stops
    /// changing (the pool is quiet).
    ops: u64,
    /// `ops` when a trim was last scheduled; `None`: none is scheduled.
    trim_at_ops: Option<u64>,
    /// The most packets busy at once since the last trim.
    peak_busy: usize,
    /// Packets were freed since the allocator was last asked to give memory
    /// back.
    unreleased: bool,
}

// SAFETY: the raw pointers are owned by the pool while in `idle`; access is
// serialised by the mutex.
unsafe impl Send for State {}

struct Pool {
    state: Mutex<State>,
    freed: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let limit = std::env::var("LIBSOCK_PACKET_POOL")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(BUFFER_PACKET_POOL);
        Pool {
            state: Mutex::new(State {
                idle: Vec::new(),
                busy: 0,
                limit,
                lent: HashMap::new(),
                ops: 0,
                trim_at_ops: None,
                peak_busy: 0,
                unreleased: false,
            }),
            freed: Condvar::new(),
        }
    })
}

/// The current bound on packets in use.
pub fn limit() -> usize {
    pool().state.lock().limit
}

/// Changes the bound. Packets in use beyond a lowered bound stay valid; new
/// ones are handed out once usage fell below it.
pub fn set_limit(packets: usize) {
    let p = pool();
    p.state.lock().limit = packets.max(1);
    p.freed.notify_all();
}

/// Packets free to take right now (idle or still to be allocated).
pub fn available() -> usize {
    let s = pool().state.lock();
    s.limit.saturating_sub(s.busy)
}

/// Takes a packet if the bound allows, without waiting.
pub fn try_take() -> Option<NonNull<PoolPacket>> {
    let mut s = pool().state.lock();
    if s.busy >= s.limit {
        return None;
    }
    s.ops += 1;
    let packet = match s.idle.pop() {
        Some(p) => p,
        None => {
            let layout = std::alloc::Layout::new::<PoolPacket>();
            // SAFETY: the layout is non-zero-sized; storage need not be
            // initialised (it is written before it is read), the header is
            // reset below.
            let raw = unsafe { std::alloc::alloc(layout) }.cast::<PoolPacket>();
            NonNull::new(raw)?
        }
    };
    s.busy += 1;
    s.peak_busy = s.peak_busy.max(s.busy);
    drop(s);
    PoolPacket::reset(packet);
    Some(packet)
}

/// Takes a packet for the program (`sock_checkout_packet`) and records it
/// as lent, calling `make_progress` (which flushes connections and waits
/// briefly for the kernel to take data) until one is free — unless waiting
/// cannot help: `None` when every packet in use was checked out by the
/// calling thread itself (none is queued, where flushing could free it, and
/// no other thread holds one it could give back).
pub fn checkout(make_progress: impl FnMut() -> bool) -> Option<NonNull<PoolPacket>> {
    let me = std::thread::current().id();
    let mut only_mine_left = || {
        let s = pool().state.lock();
        s.busy >= s.limit && s.lent.len() == s.busy && s.lent.values().all(|&t| t == me)
    };
    take_unless(&mut only_mine_left, make_progress).inspect(|&p| lend(p))
}

/// Takes a packet, calling `make_progress` (which flushes and waits a
/// little, see [`crate::flush::make_progress`]) until one is free; gives up
/// (`None`) as soon as `give_up` says so, or `make_progress` returns true —
/// for a writer whose connection closed or failed while it waited.
pub fn take_unless(
    give_up: &mut dyn FnMut() -> bool,
    mut make_progress: impl FnMut() -> bool,
) -> Option<NonNull<PoolPacket>> {
    loop {
        if let Some(p) = try_take() {
            return Some(p);
        }
        if give_up() || make_progress() {
            return None;
        }
    }
}

/// Waits at most `timeout` for a packet to be released (at once when one
/// is free).
pub fn wait_freed(timeout: Duration) {
    let p = pool();
    let mut s = p.state.lock();
    if s.busy >= s.limit {
        p.freed.wait_for(&mut s, timeout);
    }
}

/// Returns a packet taken with [`try_take`]/[`take_unless`] (not one lent to
/// the program: see [`give_back`]).
pub fn put(packet: NonNull<PoolPacket>) {
    let p = pool();
    let mut s = p.state.lock();
    s.busy -= 1;
    s.ops += 1;
    s.idle.push(packet);
    // More memory is held than a quiet pool keeps: trim it to what the load
    // needs, and give it back once the pool is quiet.
    let schedule = s.trim_at_ops.is_none() && s.idle.len() > KEEP_QUIET;
    if schedule {
        s.trim_at_ops = Some(s.ops);
    }
    drop(s);
    p.freed.notify_one();
    if schedule {
        crate::waker::trim_after(TRIM_AFTER);
    }
}

fn dealloc(packet: NonNull<PoolPacket>) {
    // SAFETY: the packet was allocated in try_take with this layout and
    // nobody holds it any more.
    unsafe {
        std::alloc::dealloc(
            packet.as_ptr().cast(),
            std::alloc::Layout::new::<PoolPacket>(),
        )
    };
}

/// Trims the idle packets (called by the waker, [`TRIM_AFTER`] after it was
/// scheduled, and again after each period it returns). If packets were
/// taken or released meanwhile, the load goes on: it frees the idle packets
/// beyond what the period needed (the most busy at once, less those busy
/// now) and returns the delay to look again. Otherwise it frees those
/// beyond `KEEP_QUIET`, asks the allocator to return its free memory to the
/// system (`malloc_trim`: freed packets otherwise stay resident in its
/// arenas), and returns `None`.
pub fn trim() -> Option<Duration> {
    let mut s = pool().state.lock();
    let seen = s.trim_at_ops?;
    let quiet = s.ops == seen;
    let needed = if quiet {
        0
    } else {
        s.peak_busy.saturating_sub(s.busy)
    };
    let keep = needed.max(KEEP_QUIET).min(s.idle.len());
    let surplus: Vec<NonNull<PoolPacket>> = s.idle.drain(keep..).collect();
    s.peak_busy = s.busy;
    s.unreleased |= !surplus.is_empty();
    let release = quiet && s.unreleased;
    if release {
        s.unreleased = false;
    }
    // Look again while packets are idle beyond the few, or freed ones were
    // not given back yet.
    let again = !quiet && (s.idle.len() > KEEP_QUIET || s.unreleased);
    s.trim_at_ops = again.then_some(s.ops);
    drop(s);
    surplus.into_iter().for_each(dealloc);
    if release {
        release_free_memory();
    }
    again.then_some(TRIM_AFTER)
}

/// Asks the C allocator to return the free memory of its arenas to the
/// system.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Records that `packet` is now the program's (taken by this thread).
pub fn lend(packet: NonNull<PoolPacket>) {
    let me = std::thread::current().id();
    pool()
        .state
        .lock()
        .lent
        .insert(packet.as_ptr() as usize, me);
}

/// Takes back a packet the program holds. `None` when `ptr` was not lent by
/// the pool (a foreign pointer, or a packet already sent or freed).
pub fn give_back(ptr: *mut sock_packet_s) -> Option<NonNull<PoolPacket>> {
    pool().state.lock().lent.remove(&(ptr as usize))?;
    NonNull::new(ptr.cast())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_come_reset_with_their_own_storage() {
        let p = try_take().expect("pool has room");
        // SAFETY: p is a live packet we hold.
        let head = unsafe { &mut (*p.as_ptr()).head };
        assert_eq!(head.length, 0);
        assert_eq!(head.buffer.cast::<u8>(), PoolPacket::storage(p));
        assert!(head.metadata.next.is_null());
        head.length = 5;
        put(p);
        let q = try_take().unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { (*q.as_ptr()).head.length }, 0);
        put(q);
    }

    #[test]
    fn foreign_and_double_returns_are_refused() {
        let p = try_take().unwrap();
        lend(p);
        let raw = p.as_ptr().cast::<sock_packet_s>();
        assert!(give_back(raw).is_some());
        assert!(give_back(raw).is_none(), "second release must be refused");
        let mut local = std::mem::MaybeUninit::<sock_packet_s>::uninit();
        assert!(give_back(local.as_mut_ptr()).is_none());
        put(p);
    }
}
