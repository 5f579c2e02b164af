/*
 * Liveness: every byte sock_write accepted reaches the peer when the
 * program drives the connection the way its real callers do (issue 10):
 * an EDGE-TRIGGERED epoll loop whose only flush is sock_flush(uuid) on
 * EPOLLOUT, and a reader draining the peer. No transfer here is finished
 * with sock_flush_strong or a flush loop.
 *
 * Each interleaving of the issue is forced at the exact moment, not hoped
 * for: this program defines send() and sendmsg() itself. The definitions
 * interpose on the C library's for libsock's calls in both link modes
 * (libsock.so binds its references to the executable's symbol; with
 * libsock.a the static linker binds them here), and forward to the real
 * functions through dlsym(RTLD_NEXT). They are inert (one compare) unless a
 * test arms them for the library's fd.
 *
 * The verdict "stalled" imitates the caller: bytes still pending
 * (sock_packets_pending), the socket writable (POLLOUT), and neither an
 * epoll event nor a byte at the peer for STALL_MS. The kernel then owes the
 * program no EPOLLOUT, so a real server would hang until its idle timeout.
 */
#include <dlfcn.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>

#include "util.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
/* no epoll event and no byte at the peer for this long = stalled */
#define STALL_MS 2000
/* a transfer that keeps moving but takes longer than this fails too */
#define LIMIT_MS 20000
/* bounded waits for another thread's call to return */
#define RETURN_MS 3000

/* ---- the send()/sendmsg() interposer -------------------------------------*/

typedef ssize_t (*send_fn)(int, const void *, size_t, int);
typedef ssize_t (*sendmsg_fn)(int, const struct msghdr *, int);
static send_fn real_send;
static sendmsg_fn real_sendmsg;

__attribute__((constructor)) static void ip_resolve(void) {
  real_send = (send_fn)dlsym(RTLD_NEXT, "send");
  real_sendmsg = (sendmsg_fn)dlsym(RTLD_NEXT, "sendmsg");
}

/* Run after the real call returned on the armed fd (errno restored after). */
typedef void (*ip_hook_fn)(const struct iovec *iov, int iovcnt, size_t asked,
                           ssize_t got, int err);

static atomic_int ip_fd = -1;       /* the armed fd; -1: inert */
static _Atomic(ip_hook_fn) ip_hook; /* NULL: count only */

/* every call on the armed fd, in order */
typedef struct {
  size_t asked;
  ssize_t got;
  int err;
  int vectored; /* sendmsg (1) or send (0) */
} ip_call_t;
#define IP_LOG 8192
static ip_call_t ip_log[IP_LOG];
static atomic_int ip_ncalls;

static ssize_t ip_after(const struct iovec *iov, int iovcnt, int vectored,
                        ssize_t got) {
  int err = got < 0 ? errno : 0;
  size_t asked = 0;
  for (int i = 0; i < iovcnt; i++)
    asked += iov[i].iov_len;
  int k = atomic_fetch_add(&ip_ncalls, 1);
  if (k < IP_LOG)
    ip_log[k] = (ip_call_t){asked, got, err, vectored};
  ip_hook_fn hook = atomic_load(&ip_hook);
  if (hook)
    hook(iov, iovcnt, asked, got, err);
  errno = err;
  return got;
}

ssize_t send(int fd, const void *buf, size_t len, int flags) {
  if (!real_send)
    ip_resolve();
  ssize_t r = real_send(fd, buf, len, flags);
  if (fd < 0 || fd != atomic_load(&ip_fd))
    return r;
  struct iovec one = {.iov_base = (void *)buf, .iov_len = len};
  return ip_after(&one, 1, 0, r);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
  if (!real_sendmsg)
    ip_resolve();
  ssize_t r = real_sendmsg(fd, msg, flags);
  if (fd < 0 || fd != atomic_load(&ip_fd))
    return r;
  return ip_after(msg->msg_iov, (int)msg->msg_iovlen, 1, r);
}

static void ip_arm(int fd, ip_hook_fn hook) {
  atomic_store(&ip_hook, hook);
  atomic_store(&ip_fd, fd);
}
static void ip_disarm(void) {
  atomic_store(&ip_fd, -1);
  atomic_store(&ip_hook, (ip_hook_fn)NULL);
}

/* ---- the peer's reader ----------------------------------------------------
 * Reads the raw end and checks the pattern (seed) from stream offset 0.
 * rd_drain_now() empties the socket at once (the interposer calls it to
 * "drain the peer completely" at the forced moment); the thread, once
 * started, does the same whenever the raw end is readable. A mutex keeps
 * the two from interleaving their reads. */
static struct {
  int fd;
  uint32_t seed;
  pthread_mutex_t lock;
  atomic_size_t got;
  size_t bad_at; /* first wrong byte's offset, SIZE_MAX if none (lock) */
  atomic_int eof, stop;
  pthread_t th;
  int running;
  uint8_t buf[64 * 1024];
} RD = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void rd_init(int fd, uint32_t seed) {
  RD.fd = fd;
  RD.seed = seed;
  atomic_store(&RD.got, 0);
  RD.bad_at = SIZE_MAX;
  atomic_store(&RD.eof, 0);
  atomic_store(&RD.stop, 0);
  RD.running = 0;
}

static size_t rd_drain_now(void) {
  size_t total = 0;
  pthread_mutex_lock(&RD.lock);
  for (;;) {
    ssize_t r = recv(RD.fd, RD.buf, sizeof RD.buf, MSG_DONTWAIT);
    if (r > 0) {
      size_t at = atomic_load(&RD.got);
      size_t k = check_pattern(RD.buf, (size_t)r, at, RD.seed);
      if (k < (size_t)r && RD.bad_at == SIZE_MAX)
        RD.bad_at = at + k;
      atomic_store(&RD.got, at + (size_t)r);
      total += (size_t)r;
      continue;
    }
    if (r < 0 && errno == EINTR)
      continue;
    if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
      atomic_store(&RD.eof, 1);
    break;
  }
  pthread_mutex_unlock(&RD.lock);
  return total;
}

static void *rd_main(void *arg) {
  (void)arg;
  while (!atomic_load(&RD.stop) && !atomic_load(&RD.eof)) {
    if (wait_fd(RD.fd, POLLIN, 50))
      rd_drain_now();
  }
  return NULL;
}

static void rd_start(void) {
  if (pthread_create(&RD.th, NULL, rd_main, NULL) == 0)
    RD.running = 1;
}

static void rd_stop(void) {
  atomic_store(&RD.stop, 1);
  if (RD.running)
    pthread_join(RD.th, NULL);
  RD.running = 0;
}

/* ---- the reactor ------------------------------------------------------------
 * One thread, one connection: epoll with EPOLLIN|EPOLLOUT|EPOLLET|EPOLLRDHUP
 * on the library's fd; on EPOLLOUT it calls sock_flush(uuid) (or
 * sock_flush_all() when R.flush_all), nothing else. It also serves "flush
 * now" requests (an eventfd in the same epoll set): reactor_sync() asks it
 * to run one more such flush and waits until that call returned.
 * Requests are answered at the end of the epoll batch that reported them,
 * so every edge the kernel raised before the request was handled too. */
#define EFD_TAG UINT64_MAX
static struct {
  intptr_t uuid;
  int fd, ep, efd;
  int flush_all;
  atomic_int stop;
  atomic_long events;     /* epoll events on the connection's fd */
  atomic_long flushes;    /* sock_flush calls on EPOLLOUT */
  atomic_long flush_fail; /* ... that answered -1 */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  long requested, served; /* lock */
  pthread_t th;
  int running;
} R = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local int is_reactor;
static int on_reactor(void) { return is_reactor; }

/* the reactor's answer to writability */
static void reactor_flush(void) {
  if (R.flush_all)
    sock_flush_all();
  else if (sock_flush(R.uuid) < 0)
    atomic_fetch_add(&R.flush_fail, 1);
}

static void *reactor_main(void *arg) {
  (void)arg;
  is_reactor = 1;
  struct epoll_event evs[8];
  while (!atomic_load(&R.stop)) {
    int n = epoll_wait(R.ep, evs, 8, 50);
    int asked = 0;
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u64 == EFD_TAG) {
        uint64_t v;
        if (read(R.efd, &v, sizeof v) == (ssize_t)sizeof v)
          asked = 1;
        continue;
      }
      atomic_fetch_add(&R.events, 1);
      if (evs[i].events & EPOLLOUT) {
        atomic_fetch_add(&R.flushes, 1);
        reactor_flush();
      }
    }
    if (!asked)
      continue;
    pthread_mutex_lock(&R.lock);
    long upto = R.requested;
    pthread_mutex_unlock(&R.lock);
    reactor_flush();
    pthread_mutex_lock(&R.lock);
    R.served = upto;
    pthread_cond_broadcast(&R.cond);
    pthread_mutex_unlock(&R.lock);
  }
  return NULL;
}

/* Asks the reactor for one flush and waits (at most ms) until it returned.
 * Returns 1 when it did. */
static int reactor_sync(int ms) {
  pthread_mutex_lock(&R.lock);
  long seq = ++R.requested;
  pthread_mutex_unlock(&R.lock);
  uint64_t one = 1;
  if (write(R.efd, &one, sizeof one) != (ssize_t)sizeof one)
    return 0;
  struct timespec end;
  clock_gettime(CLOCK_MONOTONIC, &end);
  end.tv_sec += ms / 1000;
  end.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (end.tv_nsec >= 1000000000L) {
    end.tv_sec++;
    end.tv_nsec -= 1000000000L;
  }
  int ok = 1;
  pthread_mutex_lock(&R.lock);
  while (R.served < seq && ok)
    ok = pthread_cond_timedwait(&R.cond, &R.lock, &end) != ETIMEDOUT;
  ok = R.served >= seq;
  pthread_mutex_unlock(&R.lock);
  return ok;
}

/* Starts the reactor on c and waits until it has handled the edge that
 * registering the fd raises (the socket is writable), so that no stale
 * event is left to flush later by chance. */
static int reactor_start(conn_t *c) {
  R.uuid = c->uuid;
  R.fd = c->lfd;
  R.flush_all = 0;
  atomic_store(&R.stop, 0);
  atomic_store(&R.events, 0);
  atomic_store(&R.flushes, 0);
  atomic_store(&R.flush_fail, 0);
  R.requested = R.served = 0;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&R.cond, &ca);
  pthread_condattr_destroy(&ca);
  R.ep = epoll_create1(EPOLL_CLOEXEC);
  R.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  SETUP_REQUIRE(R.ep >= 0 && R.efd >= 0);
  struct epoll_event ev = {.events = EPOLLIN};
  ev.data.u64 = EFD_TAG;
  SETUP_REQUIRE(epoll_ctl(R.ep, EPOLL_CTL_ADD, R.efd, &ev) == 0);
  ev.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP;
  ev.data.u64 = (uint64_t)c->uuid;
  SETUP_REQUIRE(epoll_ctl(R.ep, EPOLL_CTL_ADD, c->lfd, &ev) == 0);
  SETUP_REQUIRE(pthread_create(&R.th, NULL, reactor_main, NULL) == 0);
  R.running = 1;
  SETUP_REQUIRE(reactor_sync(RETURN_MS));
  return 0;
}

static void reactor_stop(void) {
  if (!R.running)
    return;
  atomic_store(&R.stop, 1);
  pthread_join(R.th, NULL);
  R.running = 0;
  close(R.ep);
  close(R.efd);
  pthread_cond_destroy(&R.cond);
}

/* ---- the verdict --------------------------------------------------------- */

/* Waits, driving nothing, until the peer holds `expect` bytes and nothing is
 * pending, or until the connection stalls (see the top of the file).
 * Returns 1 when everything arrived byte-exact. */
static int await_delivery(conn_t *c, size_t expect, const char *defect) {
  int64_t start = now_ms(), last = start;
  size_t got_seen = atomic_load(&RD.got);
  long ev_seen = atomic_load(&R.events);
  for (;;) {
    size_t got = atomic_load(&RD.got);
    int pend = sock_packets_pending(c->uuid);
    if (got >= expect && !pend)
      break;
    long ev = atomic_load(&R.events);
    int64_t now = now_ms();
    if (got != got_seen || ev != ev_seen) {
      got_seen = got;
      ev_seen = ev;
      last = now;
    }
    if (now - last >= STALL_MS || now - start >= LIMIT_MS) {
      short w = wait_fd(c->lfd, POLLOUT, 0);
      h_fail_at(__FILE__, __LINE__,
                "%s: %s: %zu of %zu bytes reached the peer; "
                "sock_packets_pending=%d on a %s socket; no epoll event and "
                "no byte for %lld ms (%ld epoll events, %ld sock_flush on "
                "EPOLLOUT in all)",
                defect, now - last >= STALL_MS ? "STALLED" : "too slow", got,
                expect, pend, (w & POLLOUT) ? "writable" : "full",
                (long long)(now - last), atomic_load(&R.events),
                atomic_load(&R.flushes));
      return 0;
    }
    tiny_wait(); /* bounded pause inside a wait-for-condition loop */
  }
  /* the reader may still be inside a read: let it settle */
  pthread_mutex_lock(&RD.lock);
  size_t got = atomic_load(&RD.got), bad = RD.bad_at;
  pthread_mutex_unlock(&RD.lock);
  CHECK_EQ(got, expect);
  CHECK_MSG(bad == SIZE_MAX, "first wrong byte at offset %zu", bad);
  CHECK_EQ(atomic_load(&R.flush_fail), 0);
  return got == expect && bad == SIZE_MAX;
}

/* ---- common setup ------------------------------------------------------- */

/* A Unix socketpair (one end registered with the library), the peer's
 * reader (not started) and the reactor (started, initial edge handled). */
static int setup(conn_t *c, int sndbuf, uint32_t seed, int with_reactor) {
  SETUP_REQUIRE(make_unix_pair_buf(c, sndbuf) == 0);
  rd_init(c->raw, seed);
  R.running = 0;
  return with_reactor ? reactor_start(c) : 0;
}

static void teardown(conn_t *c) {
  ip_disarm();
  reactor_stop();
  rd_stop();
  conn_force_close(c);
}

/* n pattern bytes of stream offset `at` */
static uint8_t *pattern(size_t n, uint64_t at, uint32_t seed) {
  uint8_t *p = malloc(n);
  if (p)
    fill_pattern(p, n, at, seed);
  return p;
}

/* joins a thread, waiting at most ms; 1 when joined */
static int join_within(pthread_t th, int ms) {
  struct timespec end;
  clock_gettime(CLOCK_REALTIME, &end);
  end.tv_sec += ms / 1000 + 1;
  return pthread_timedjoin_np(th, NULL, &end) == 0;
}

/* ========================================================================== */
/* Defect 1: the tail of a large write is never sent.                         */
/* ========================================================================== */

static struct {
  intptr_t uuid;
  const uint8_t *src;
  size_t len;
  atomic_int ret, done;
  atomic_int handshakes, handshake_off, calls_drained;
} D1;

static void *d1_writer(void *arg) {
  (void)arg;
  atomic_store(&D1.ret, (int)sock_write(D1.uuid, D1.src, D1.len));
  atomic_store(&D1.done, 1);
  return NULL;
}

/* After every send the writing thread makes: the peer reads everything, and
 * the reactor handles the EPOLLOUT edge that read raises (the flush it runs
 * returns before the writer goes on). So each flush of the writer leaves an
 * empty socket and no edge to come. */
static void d1_hook(const struct iovec *iov, int iovcnt, size_t asked,
                    ssize_t got, int err) {
  (void)asked, (void)got, (void)err;
  if (on_reactor())
    return; /* the reactor's own flush: its data waits for the next drain */
  rd_drain_now();
  atomic_fetch_add(&D1.calls_drained, 1);
  /* A send straight from the caller's buffer is the write's fast path,
   * which may hold the connection's lock: a flush on another thread would
   * wait for it, so no handshake there. */
  const uint8_t *b = iov[0].iov_base;
  if (iovcnt == 1 && b >= D1.src && b < D1.src + D1.len)
    return;
  if (atomic_load(&D1.handshake_off))
    return;
  if (reactor_sync(1000))
    atomic_fetch_add(&D1.handshakes, 1);
  else
    atomic_store(&D1.handshake_off, 1);
}

/*
 * DEFECT 1 (issue 10): the tail of a large write is never sent.
 * A 4-packet pool and one 4 MiB sock_write from a writer thread. The first
 * send is partial (so the write takes the socket for full and does not
 * flush at the end); copy_in then waits for the pool, flushing. Forced:
 * after each of the writer's sends the peer drains the socket completely
 * and the reactor handles the resulting EPOLLOUT (sock_flush returns)
 * before the writer continues. The last parts are queued after the last
 * flush: once sock_write returns, the ET loop and the reader must still
 * get all 4 MiB to the peer.
 */
TEST(large_write_tail_reaches_peer) {
  conn_t c;
  REQUIRE(sock_set_packet_pool_size(4) == 0);
  REQUIRE(setup(&c, 0, 101, 1) == 0);
  size_t n = 4 * MiB;
  uint8_t *src = pattern(n, 0, 101);
  REQUIRE(src);
  D1.uuid = c.uuid;
  D1.src = src;
  D1.len = n;
  ip_arm(c.lfd, d1_hook);
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, d1_writer, NULL) == 0);
  int64_t end = now_ms() + LIMIT_MS;
  while (!atomic_load(&D1.done) && now_ms() < end)
    tiny_wait(); /* bounded: the writer returns, or we fail below */
  CHECK_MSG(atomic_load(&D1.done), "sock_write of 4 MiB did not return");
  if (atomic_load(&D1.done)) {
    pthread_join(th, NULL);
    CHECK_EQ(atomic_load(&D1.ret), 0);
    /* from here on: a plain reader and the reactor, nothing forced */
    ip_disarm();
    rd_start();
    await_delivery(&c, n, "defect 1 (tail of a large write)");
  }
  if (atomic_load(&D1.handshake_off))
    NOTE("a flush on the reactor thread waited for the writer's send: the "
         "interleaving was not forced after that");
  if (TEST_FAILED())
    NOTE("%d sends drained, %d reactor handshakes",
         atomic_load(&D1.calls_drained), atomic_load(&D1.handshakes));
  teardown(&c);
  if (!atomic_load(&D1.done))
    join_within(th, RETURN_MS);
  free(src);
}

/* ========================================================================== */
/* Defect 2: lost wake-up (a flush request that meets a busy flusher).        */
/* ========================================================================== */

static struct {
  atomic_int fired;
  atomic_int returned; /* the reactor's flush returned within the bound */
} D2;

/* On the first send that meets EAGAIN: the peer drains the socket
 * completely (the kernel raises EPOLLOUT), the reactor handles that edge
 * and runs its flush, and only then does EAGAIN reach the library. */
static void d2_hook(const struct iovec *iov, int iovcnt, size_t asked,
                    ssize_t got, int err) {
  (void)iov, (void)iovcnt, (void)asked;
  if (got >= 0 || (err != EAGAIN && err != EWOULDBLOCK) || on_reactor())
    return;
  if (atomic_exchange(&D2.fired, 1))
    return;
  rd_drain_now();
  atomic_store(&D2.returned, reactor_sync(RETURN_MS));
}

static void lost_wakeup(int flush_all, uint32_t seed) {
  conn_t c;
  REQUIRE(setup(&c, 0, seed, 1) == 0);
  R.flush_all = flush_all;
  /* Fill the socket (nobody reads yet) and queue the rest; one more byte
   * so that the last queued packet has room (a later small write then
   * joins it instead of opening a packet of its own). */
  size_t n = 1 * MiB + 1, small = 1000;
  uint8_t *src = pattern(n + small, 0, seed);
  REQUIRE(src);
  CHECK_EQ(sock_write(c.uuid, src, n - 1), 0);
  CHECK_EQ(sock_write(c.uuid, src + n - 1, 1), 0);
  REQUIRE(sock_packets_pending(c.uuid));
  /* thread A (this one) flushes; its send meets EAGAIN; see d2_hook */
  ip_arm(c.lfd, d2_hook);
  CHECK_EQ(sock_flush(c.uuid), 0);
  ip_disarm();
  CHECK_MSG(atomic_load(&D2.fired), "no send met EAGAIN: not forced");
  if (atomic_load(&D2.fired) && !atomic_load(&D2.returned))
    NOTE("the reactor's %s waited for another thread's send() (more than "
         "%d ms): the interleaving was not forced",
         flush_all ? "sock_flush_all" : "sock_flush", RETURN_MS);
  /* the peer keeps reading; the reactor flushes on EPOLLOUT only */
  rd_start();
  await_delivery(&c, n,
                 flush_all ? "defect 2 (sock_flush_all met a busy flusher)"
                           : "defect 2 (sock_flush met a busy flusher)");
  /* a later small write must not wait forever either */
  CHECK_EQ(sock_write(c.uuid, src + n, small), 0);
  await_delivery(&c, n + small, "defect 2 (a later small write)");
  teardown(&c);
  free(src);
}

/*
 * DEFECT 2 (issue 10): lost wake-up. Thread A's sock_flush meets EAGAIN;
 * before the library sees it, the peer drains the socket completely and the
 * reactor runs sock_flush on the EPOLLOUT that raises, while A still counts
 * as flushing (the call returns 0 without a system call). A then stops on
 * its stale EAGAIN: no event will come. All bytes, and a small write made
 * afterwards, must still reach the peer through the ET loop.
 */
TEST(busy_flush_request_not_lost) { lost_wakeup(0, 201); }

/*
 * DEFECT 2, the same skip in sock_flush_all: a reactor that answers every
 * EPOLLOUT with sock_flush_all(), run while thread A is inside send().
 */
TEST(busy_flush_all_request_not_lost) { lost_wakeup(1, 202); }

/* ========================================================================== */
/* Defect 3: a write hook answering EINTR or 0; a source answering EAGAIN.    */
/* ========================================================================== */

static atomic_int d3_mode; /* 1: -1/EINTR once, 2: 0 once */
static atomic_int d3_odd;  /* the odd answers given */

static ssize_t d3_write(intptr_t uuid, const void *buf, size_t count) {
  if (count && atomic_load(&d3_odd) == 0) {
    atomic_store(&d3_odd, 1);
    if (atomic_load(&d3_mode) == 1) {
      errno = EINTR;
      return -1;
    }
    return 0;
  }
  return send(sock_uuid2fd(uuid), buf, count, MSG_NOSIGNAL);
}

static sock_rw_hook_s d3_hooks = {.write = d3_write};

static void odd_hook_answer(int mode, uint32_t seed, const char *defect) {
  conn_t c;
  REQUIRE(setup(&c, 0, seed, 1) == 0);
  atomic_store(&d3_mode, mode);
  REQUIRE(sock_rw_hook_set(c.uuid, &d3_hooks) == 0);
  rd_start();
  size_t n = 256 * KiB;
  uint8_t *src = pattern(n, 0, seed);
  REQUIRE(src);
  CHECK_EQ(sock_write(c.uuid, src, n), 0);
  CHECK_MSG(atomic_load(&d3_odd), "the write hook was not called");
  await_delivery(&c, n, defect);
  teardown(&c);
  free(src);
}

/*
 * DEFECT 3 (issue 10): a write hook that answers -1/EINTR once (its first
 * call, on an empty socket) is taken for "socket full": the connection is
 * marked blocked, but the kernel refused nothing, so no EPOLLOUT comes.
 * The ET loop must still get all bytes to the peer.
 */
TEST(write_hook_eintr_once_no_stall) {
  odd_hook_answer(1, 301, "defect 3 (write hook answered EINTR once)");
}

/*
 * DEFECT 3: the same with a write hook that answers 0 once for a non-empty
 * request.
 */
TEST(write_hook_zero_once_no_stall) {
  odd_hook_answer(2, 302, "defect 3 (write hook answered 0 once)");
}

/*
 * DEFECT 3: an is_fd source that is an empty non-blocking pipe (its read
 * answers EAGAIN: the SOURCE is empty, the socket is not full). Its data is
 * written into the pipe after sock_write2 returned (the library has tried
 * it by then: flushes run inline). The bytes must reach the peer with
 * nothing more from the program than its ET loop (which only watches the
 * socket). No EPOLLOUT is owed (the socket never refused data) and the
 * program is not told about the pipe, so to pass the library must notice
 * by itself when a source that answered EAGAIN becomes readable (e.g. a
 * watcher polling such sources that flushes the connection then).
 */
TEST(pipe_source_eagain_then_data) {
  conn_t c;
  REQUIRE(setup(&c, 0, 303, 1) == 0);
  int pp[2];
  REQUIRE(pipe2(pp, O_NONBLOCK | O_CLOEXEC) == 0);
  rd_start();
  size_t n = 32 * KiB; /* fits the pipe: the write below never blocks */
  CHECK_EQ(sock_write2(.fduuid = c.uuid, .buffer = (void *)(intptr_t)pp[0],
                       .length = n, .is_fd = 1),
           0);
  uint8_t *src = pattern(n, 0, 303);
  REQUIRE(src);
  CHECK_EQ(write(pp[1], src, n), (ssize_t)n);
  close(pp[1]);
  await_delivery(&c, n, "defect 3 (is_fd pipe answered EAGAIN, data later)");
  teardown(&c);
  free(src);
}

/* ========================================================================== */
/* Defect 4: sock_flush_strong from a hook on its own connection.             */
/* ========================================================================== */

static struct {
  intptr_t uuid;
  atomic_int entered, returned, done;
  pthread_mutex_t lock;
  pthread_cond_t cond;
} D4 = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void d4_signal(atomic_int *flag) {
  pthread_mutex_lock(&D4.lock);
  atomic_store(flag, 1);
  pthread_cond_broadcast(&D4.cond);
  pthread_mutex_unlock(&D4.lock);
}

/* waits (bounded) for flag; 1 when set */
static int d4_wait(atomic_int *flag, int ms) {
  struct timespec end;
  clock_gettime(CLOCK_REALTIME, &end);
  end.tv_sec += ms / 1000;
  pthread_mutex_lock(&D4.lock);
  int r = 0;
  while (!atomic_load(flag) && r != ETIMEDOUT)
    r = pthread_cond_timedwait(&D4.cond, &D4.lock, &end);
  int ok = atomic_load(flag);
  pthread_mutex_unlock(&D4.lock);
  return ok;
}

static void d4_strong_once(void) {
  if (atomic_exchange(&D4.entered, 1))
    return;
  sock_flush_strong(D4.uuid);
  d4_signal(&D4.returned);
}

static ssize_t d4_write(intptr_t uuid, const void *buf, size_t count) {
  d4_strong_once();
  return send(sock_uuid2fd(uuid), buf, count, MSG_NOSIGNAL);
}

static ssize_t d4_flush(intptr_t uuid) {
  (void)uuid;
  d4_strong_once();
  return 0;
}

static sock_rw_hook_s d4_write_hooks = {.write = d4_write};
static sock_rw_hook_s d4_flush_hooks = {.flush = d4_flush};

static struct {
  intptr_t uuid;
  const uint8_t *src;
  size_t len;
} D4W;

static void *d4_writer(void *arg) {
  (void)arg;
  CHECK_EQ(sock_write(D4W.uuid, D4W.src, D4W.len), 0);
  d4_signal(&D4.done);
  return NULL;
}

static void strong_from_hook(sock_rw_hook_s *hooks, uint32_t seed,
                             const char *which) {
  conn_t c;
  REQUIRE(setup(&c, 0, seed, 1) == 0);
  D4.uuid = c.uuid;
  REQUIRE(sock_rw_hook_set(c.uuid, hooks) == 0);
  rd_start();
  size_t n = 64 * KiB;
  uint8_t *src = pattern(n, 0, seed);
  REQUIRE(src);
  D4W.uuid = c.uuid;
  D4W.src = src;
  D4W.len = n;
  /* the write (and its inline flush, and the hook) on a worker thread */
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, d4_writer, NULL) == 0);
  int ok = d4_wait(&D4.returned, RETURN_MS);
  CHECK_MSG(atomic_load(&D4.entered), "the %s hook was not called", which);
  CHECK_MSG(ok,
            "defect 4: sock_flush_strong called from the %s hook on its own "
            "connection did not return within %d ms",
            which, RETURN_MS);
  if (ok) {
    CHECK(d4_wait(&D4.done, RETURN_MS));
    await_delivery(&c, n, "defect 4 (after sock_flush_strong in a hook)");
  }
  /* a close ends a sock_flush_strong that is still looping */
  teardown(&c);
  CHECK_MSG(join_within(th, RETURN_MS), "the writer did not return");
  free(src);
}

/*
 * DEFECT 4 (issue 10): sock_flush_strong(uuid) called from inside the write
 * hook of its own connection (the thread that calls it is the flusher, up
 * its own stack) must return. Bounded wait, then the bytes must arrive.
 */
TEST(flush_strong_in_write_hook_returns) {
  strong_from_hook(&d4_write_hooks, 401, "write");
}

/*
 * DEFECT 4: the same from inside the flush hook (called once the queue is
 * empty, while the connection counts as flushing).
 */
TEST(flush_strong_in_flush_hook_returns) {
  strong_from_hook(&d4_flush_hooks, 402, "flush");
}

/* ========================================================================== */
/* Defect 6: a short write followed by one more call that meets EAGAIN.       */
/* ========================================================================== */

static void describe_calls(char *out, size_t cap, int from, int to) {
  size_t len = 0;
  out[0] = 0;
  for (int i = from; i < to && i < IP_LOG && len + 64 < cap; i++) {
    ip_call_t *k = &ip_log[i];
    if (k->got >= 0)
      len += (size_t)snprintf(out + len, cap - len, "%s%s(%zu) = %zd",
                              i > from ? ", " : "",
                              k->vectored ? "sendmsg" : "send", k->asked,
                              k->got);
    else
      len += (size_t)snprintf(out + len, cap - len, "%s%s(%zu) = -1 %s",
                              i > from ? ", " : "",
                              k->vectored ? "sendmsg" : "send", k->asked,
                              k->err == EAGAIN ? "EAGAIN" : strerror(k->err));
  }
}

/* Checks the calls [from, to) made by one sock_write/sock_flush of the
 * program: none may follow a short one. Returns 1 when one was short. */
static int no_call_after_short(int from, int to, const char *what) {
  for (int i = from; i < to && i < IP_LOG; i++) {
    ip_call_t *k = &ip_log[i];
    if (k->got < 0 || (size_t)k->got >= k->asked)
      continue;
    if (i < to - 1) {
      char calls[512];
      describe_calls(calls, sizeof calls, from, to);
      h_fail_at(__FILE__, __LINE__,
                "defect 6: %s went on after a short write (asked %zu, the "
                "kernel took %zd) with %d more call(s) on the fd: %s",
                what, k->asked, k->got, to - 1 - i, calls);
    }
    return 1;
  }
  return 0;
}

/*
 * DEFECT 6 (issue 10): after a send/sendmsg that takes fewer bytes than
 * asked (the socket is full now), the library must not call again before
 * the program's next sock_flush/sock_write: that call can only meet EAGAIN.
 * Forced: a Unix socket, 1 MiB queued, nobody reading; before each
 * sock_flush the peer drains the socket completely, so the flush's first
 * call is short for certain (it asks for far more than the socket holds).
 * Every call on the fd is counted. Afterwards the ET loop and a reader
 * must still deliver everything.
 */
TEST(no_call_after_short_write) {
  conn_t c;
  REQUIRE(setup(&c, 64 * KiB, 601, 0) == 0);
  size_t n = 1 * MiB;
  uint8_t *src = pattern(n, 0, 601);
  REQUIRE(src);
  atomic_store(&ip_ncalls, 0);
  ip_arm(c.lfd, NULL);
  int k0 = atomic_load(&ip_ncalls);
  CHECK_EQ(sock_write(c.uuid, src, n), 0);
  int k1 = atomic_load(&ip_ncalls);
  no_call_after_short(k0, k1, "sock_write");
  int shorts = 0;
  for (int round = 0; round < 3 && sock_packets_pending(c.uuid); round++) {
    rd_drain_now(); /* the peer empties the socket */
    int a = atomic_load(&ip_ncalls);
    CHECK_EQ(sock_flush(c.uuid), 0);
    int b = atomic_load(&ip_ncalls);
    CHECK_MSG(b > a, "sock_flush made no call on an empty socket");
    shorts += no_call_after_short(a, b, "sock_flush");
    if (TEST_FAILED())
      break;
  }
  CHECK_MSG(shorts > 0 || TEST_FAILED(), "no write was short: not forced");
  ip_disarm();
  /* the rest through the ET loop and a reader */
  REQUIRE(reactor_start(&c) == 0);
  rd_start();
  await_delivery(&c, n, "defect 6 (delivery after short writes)");
  teardown(&c);
  free(src);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(large_write_tail_reaches_peer);
  RUN(busy_flush_request_not_lost);
  RUN(busy_flush_all_request_not_lost);
  RUN(write_hook_eintr_once_no_stall);
  RUN(write_hook_zero_once_no_stall);
  RUN(pipe_source_eagain_then_data);
  RUN(flush_strong_in_write_hook_returns);
  RUN(flush_strong_in_flush_hook_returns);
  RUN(no_call_after_short_write);
  return HARNESS_END();
}
