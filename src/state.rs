//! Who sends a connection's queued bytes, and what the kernel owes the
//! program: the send life cycle of one connection, as one state machine.
//!
//! It holds no I/O: the flusher ([`crate::flush`]) and the write path
//! ([`crate::write`]) ask it what to do, do the system calls, and tell it
//! what happened. Its transitions are checked on their own by the tests at
//! the end of this file, over every interleaving of writes, flushes,
//! `EPOLLOUT` and refusals of a small model.
//!
//! # The liveness rule
//!
//! The program's event loop is edge-triggered: it calls `sock_flush` when
//! the kernel reports the socket writable, and the kernel reports that only
//! after it refused data. So, **whenever bytes are queued and no thread is
//! sending them, one of these holds**:
//! - [`SendState::Owed`]: the kernel refused data (`EAGAIN`, or a short write)
//!   since the socket was last found writable, so an `EPOLLOUT` is owed and
//!   the program's `sock_flush` will come;
//! - [`SendState::Waiting`]: the library's own waker ([`crate::waker`]) will
//!   flush again (a file source with no data yet, a write hook that made no
//!   progress without refusing);
//! - a flush is scheduled: the thread that queued the bytes found
//!   [`SendState::Idle`] and flushes (inline or through `async_run`) as soon as it
//!   releases the slot lock.
//!
//! A flush request that meets a sender is recorded ([`SendState::Sending`]'s
//! `again`), never dropped: the sender looks once more before it settles on
//! `Owed`, because the request may be the program's reaction to the very
//! `EPOLLOUT` that the sender's refusal was owed.
//!
//! # The close life cycle
//!
//! `Conn::open` with `Conn::close_when_done` (see [`crate::table`]): open;
//! closing (`sock_close`: the connection closes when a flush finds nothing
//! left, [`SendState::drained`]); closed (`close_locked`: the UUID fails at
//! once, the fd is closed when no thread is inside a call on it).

use std::thread::ThreadId;

/// The send state of one connection (guarded by its slot lock).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum SendState {
    /// Nobody sends and the kernel owes nothing: whoever queues bytes must
    /// flush them.
    #[default]
    Idle,
    /// The kernel refused data since the socket was last found writable: the
    /// program's `sock_flush` on `EPOLLOUT` will send what is queued. Small
    /// writes gather meanwhile without a system call of their own.
    Owed,
    /// The library's waker will flush again (see the module doc).
    Waiting,
    /// A thread sends: it has entries out of the queue or is in the flush
    /// hook, with the lock released, and keeps going until the queue is
    /// empty or the kernel refuses data.
    Sending {
        /// The sending thread (a flush from inside its own hook must not
        /// wait for itself).
        by: ThreadId,
        /// A flush was requested meanwhile: look again before settling on
        /// `Owed`.
        again: bool,
    },
}

/// What a flush request found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Request {
    /// This thread is now the sender.
    Start,
    /// Another thread sends; the request was recorded for it.
    Busy,
    /// This thread is the sender already, further up its stack (a hook or
    /// callback flushes its own connection); the request was recorded.
    Reentrant,
}

/// What one round of sending achieved.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Round {
    /// Bytes moved (or entries finished): go on.
    Progress,
    /// The kernel took nothing more (`EAGAIN`, or a short write): it owes
    /// the program an `EPOLLOUT`.
    Refused,
    /// Nothing moved for a reason the kernel will not report on the socket
    /// (an empty pipe as source, a hook that wrote nothing).
    Stalled,
}

/// What the sender does after a round.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Settle {
    /// Send another round.
    Continue,
    /// Stop: the program's `EPOLLOUT` will come (`Owed`).
    Owed,
    /// Stop: ask the waker to flush again (`Waiting`).
    Watch,
}

impl SendState {
    /// A flush request by thread `me` (`sock_flush`, a write's flush, the
    /// waker, `sock_flush_all`).
    pub fn request(&mut self, me: ThreadId) -> Request {
        match self {
            SendState::Sending { by, again } => {
                *again = true;
                if *by == me {
                    Request::Reentrant
                } else {
                    Request::Busy
                }
            }
            SendState::Idle | SendState::Owed | SendState::Waiting => {
                *self = SendState::Sending {
                    by: me,
                    again: false,
                };
                Request::Start
            }
        }
    }

    /// After bytes were queued: must the queuing thread flush? Only when
    /// nobody else will: no sender, no `EPOLLOUT` owed, no waker watching.
    pub fn must_flush(&self) -> bool {
        matches!(self, SendState::Idle)
    }

    /// A thread is sending (has the lock released with entries out).
    pub fn is_sending(&self) -> bool {
        matches!(self, SendState::Sending { .. })
    }

    /// Thread `me` is the sender.
    pub fn sending_by(&self, me: ThreadId) -> bool {
        matches!(self, SendState::Sending { by, .. } if *by == me)
    }

    /// The sender's round ended with `round` and something is left to send.
    /// Moves out of `Sending` unless the sender goes on.
    pub fn settle(&mut self, round: Round) -> Settle {
        let SendState::Sending { again, .. } = self else {
            debug_assert!(false, "settle outside a sender's turn");
            return Settle::Continue;
        };
        let next = match round {
            Round::Progress => Settle::Continue,
            // A request came in after the refusal: the socket may have
            // drained since (its EPOLLOUT spent on that request). Look again.
            Round::Refused if *again => Settle::Continue,
            Round::Refused => Settle::Owed,
            Round::Stalled => Settle::Watch,
        };
        *again = false;
        match next {
            Settle::Continue => {}
            Settle::Owed => *self = SendState::Owed,
            Settle::Watch => *self = SendState::Waiting,
        }
        next
    }

    /// The sender found nothing left to send: nothing is owed.
    pub fn drained(&mut self) {
        debug_assert!(self.is_sending(), "drained outside a sender's turn");
        *self = SendState::Idle;
    }

    /// The fast path of a write, which sends with the lock held: the kernel
    /// took everything (`refused` false) or refused the rest.
    pub fn sent_inline(&mut self, refused: bool) {
        debug_assert!(matches!(self, SendState::Idle));
        if refused {
            *self = SendState::Owed;
        }
    }
}

#[cfg(test)]
mod tests {
    //! An exhaustive check of the liveness rule over a small model: one
    //! connection, a socket that holds `CAP` units, writers, a sender that
    //! sends with the lock released in two steps (the system call, then the
    //! relock), an edge-triggered event loop, and a peer that drains. Every
    //! reachable state is explored; in every reachable
    //! state where all threads are at rest, queued data must be owed an
    //! event, watched, or flushed by someone. And at the end of any run, the
    //! loop's flushes alone must deliver everything.

    use super::*;
    use std::collections::HashSet;

    const CAP: u8 = 2;
    const WRITES: u8 = 3;

    fn me() -> ThreadId {
        std::thread::current().id()
    }

    /// A second thread id for the model's other flusher.
    fn other() -> ThreadId {
        std::thread::spawn(|| std::thread::current().id())
            .join()
            .unwrap()
    }

    #[derive(Clone, PartialEq, Eq, Hash, Debug)]
    struct Model {
        send: SendState,
        queued: u8,
        in_kernel: u8,
        writes_left: u8,
        /// The kernel refused data and no EPOLLOUT was delivered since.
        nospace: bool,
        /// An EPOLLOUT edge is pending for the event loop.
        edge: bool,
        /// Sender thread position: 0 = not in a turn, 1 = about to make the
        /// system call (lock released), 2 = call made, about to relock.
        pc: u8,
        /// Result of the system call, read at relock.
        refused: bool,
        /// A writer queued bytes and still has to act on `must_flush`.
        writer_pending_flush: bool,
    }

    impl Model {
        fn start() -> Model {
            Model {
                send: SendState::Idle,
                queued: 0,
                in_kernel: 0,
                writes_left: WRITES,
                nospace: false,
                edge: false,
                pc: 0,
                refused: false,
                writer_pending_flush: false,
            }
        }

        /// One flush request; the model's sender is `by`.
        fn flush(&mut self, by: ThreadId) {
            if self.send.request(by) == Request::Start {
                assert_eq!(self.pc, 0, "two senders");
                self.pc = 1;
            }
        }

        fn steps(&self, a: ThreadId, b: ThreadId) -> Vec<Model> {
            let mut out = Vec::new();
            // A writer queues one unit (lock held), then must flush later.
            if self.writes_left > 0 && !self.writer_pending_flush {
                let mut m = self.clone();
                m.writes_left -= 1;
                m.queued += 1;
                m.writer_pending_flush = m.send.must_flush();
                out.push(m);
            }
            // The writer's flush after releasing the lock.
            if self.writer_pending_flush {
                let mut m = self.clone();
                m.writer_pending_flush = false;
                m.flush(a);
                out.push(m);
            }
            // The sender's system call, lock released.
            if self.pc == 1 {
                let mut m = self.clone();
                let room = CAP - m.in_kernel;
                let n = m.queued.min(room);
                m.queued -= n;
                m.in_kernel += n;
                m.refused = m.queued > 0;
                if m.refused {
                    m.nospace = true;
                }
                m.pc = 2;
                out.push(m);
            }
            // The sender relocks and settles.
            if self.pc == 2 {
                let mut m = self.clone();
                m.pc = if m.queued == 0 {
                    m.send.drained();
                    0
                } else if m.refused {
                    match m.send.settle(Round::Refused) {
                        Settle::Continue => 1,
                        _ => 0,
                    }
                } else {
                    1
                };
                out.push(m);
            }
            // The peer reads everything; a refused socket becoming writable
            // raises an edge.
            if self.in_kernel > 0 {
                let mut m = self.clone();
                m.in_kernel = 0;
                if m.nospace {
                    m.nospace = false;
                    m.edge = true;
                }
                out.push(m);
            }
            // The event loop (another thread) handles the edge: sock_flush.
            if self.edge {
                let mut m = self.clone();
                m.edge = false;
                m.flush(b);
                // Its turn runs in the same model sender slot.
                out.push(m);
            }
            out
        }

        /// At rest: no thread is inside a step of its own.
        fn at_rest(&self) -> bool {
            self.pc == 0 && !self.writer_pending_flush
        }

        /// The liveness rule at rest.
        fn live(&self) -> bool {
            self.queued == 0
                || (self.send == SendState::Owed && (self.nospace || self.edge))
                || self.send == SendState::Waiting
        }
    }

    #[test]
    fn every_interleaving_keeps_queued_bytes_owed_or_flushed() {
        let (a, b) = (me(), other());
        let mut seen = HashSet::new();
        let mut frontier = vec![Model::start()];
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for m in frontier {
                if !seen.insert(m.clone()) {
                    continue;
                }
                if m.at_rest() {
                    assert!(m.live(), "stranded: {m:?}");
                }
                next.extend(m.steps(a, b));
            }
            frontier = next;
        }
        // Every reachable state was visited (the model is finite).
        assert!(seen.len() > 40, "the model explored {} states", seen.len());
    }

    #[test]
    fn a_request_during_a_refused_send_is_not_lost() {
        let (a, b) = (me(), other());
        let mut s = SendState::Idle;
        assert_eq!(s.request(a), Request::Start);
        // The send met EAGAIN; before the sender relocks, the peer drains
        // and the event loop's flush arrives.
        assert_eq!(s.request(b), Request::Busy);
        assert_eq!(s.settle(Round::Refused), Settle::Continue);
        assert_eq!(s.settle(Round::Refused), Settle::Owed);
        assert_eq!(s, SendState::Owed);
    }

    #[test]
    fn a_flush_from_the_senders_own_hook_is_reentrant() {
        let a = me();
        let mut s = SendState::Idle;
        assert_eq!(s.request(a), Request::Start);
        assert_eq!(s.request(a), Request::Reentrant);
        assert!(s.sending_by(a));
    }

    #[test]
    fn writes_flush_only_when_nobody_else_will() {
        assert!(SendState::Idle.must_flush());
        assert!(!SendState::Owed.must_flush());
        assert!(!SendState::Waiting.must_flush());
        let s = SendState::Sending {
            by: me(),
            again: false,
        };
        assert!(!s.must_flush());
    }
}
