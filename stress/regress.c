/*
 * regress.c -- deterministic regression tests for the failures the stress
 * and fuzz programs found (one test per failure mode; README "Reliability"
 * names them). Each sets the failure up step by step with handshakes
 * (hooks that hold until released, threads, bounded waits), so it fails
 * every time the bug is there, not by chance.
 */
#define TEST_DEFINE_CALLBACKS
#include "../c-tests/util.h"

#include <malloc.h>
#include <sys/mman.h>

#define KiB 1024u
#define MiB (1024u * 1024u)

#if defined(__SANITIZE_ADDRESS__)
#define RL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RL_ASAN 1
#endif
#endif

/* ---- a writer thread ------------------------------------------------------*/

typedef struct {
  intptr_t uuid;
  const void *buf;
  size_t n;
  int urgent;
  ssize_t ret;
  int err;
  atomic_int done;
  pthread_t th;
} writer_t;

static void *writer_main(void *arg) {
  writer_t *w = arg;
  errno = 0;
  w->ret = sock_write2(.fduuid = w->uuid, .buffer = w->buf, .length = w->n,
                       .urgent = (unsigned)w->urgent);
  w->err = errno;
  atomic_store(&w->done, 1);
  return NULL;
}

static void writer_start(writer_t *w) {
  atomic_store(&w->done, 0);
  pthread_create(&w->th, NULL, writer_main, w);
}

static int wait_flag(atomic_int *f, int ms) {
  int64_t end = now_ms() + ms;
  while (!atomic_load(f) && now_ms() < end)
    tiny_wait();
  return atomic_load(f);
}

/* ---- a hook that can be held inside a call --------------------------------*/

static struct {
  pthread_mutex_t mtx;
  pthread_cond_t cv;
  int hold_write, hold_flush; /* the next such call waits for release */
  int in_write, in_flush;     /* a call is waiting */
  ssize_t flush_left;         /* what the flush hook reports */
  int flush_calls;
} hk = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0};

static void hk_hold(int *flag, int *in) {
  pthread_mutex_lock(&hk.mtx);
  if (*flag) {
    *in = 1;
    pthread_cond_broadcast(&hk.cv);
    while (*flag)
      pthread_cond_wait(&hk.cv, &hk.mtx);
    *in = 0;
  }
  pthread_mutex_unlock(&hk.mtx);
}

static int hk_wait_in(int *in, int ms) {
  int64_t end = now_ms() + ms;
  pthread_mutex_lock(&hk.mtx);
  while (!*in && now_ms() < end) {
    pthread_mutex_unlock(&hk.mtx);
    tiny_wait();
    pthread_mutex_lock(&hk.mtx);
  }
  int r = *in;
  pthread_mutex_unlock(&hk.mtx);
  return r;
}

static void hk_release(int *flag) {
  pthread_mutex_lock(&hk.mtx);
  *flag = 0;
  pthread_cond_broadcast(&hk.cv);
  pthread_mutex_unlock(&hk.mtx);
}

static ssize_t hk_write(intptr_t uuid, const void *buf, size_t n) {
  hk_hold(&hk.hold_write, &hk.in_write);
  return send(sock_uuid2fd(uuid), buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static ssize_t hk_flush(intptr_t uuid) {
  (void)uuid;
  hk_hold(&hk.hold_flush, &hk.in_flush);
  pthread_mutex_lock(&hk.mtx);
  ssize_t left = hk.flush_left;
  hk.flush_left = 0;
  hk.flush_calls++;
  pthread_mutex_unlock(&hk.mtx);
  return left;
}

typedef struct {
  intptr_t uuid;
  pthread_t th;
  atomic_int done;
} flusher_t;
static void *flusher_main(void *arg) {
  flusher_t *f = arg;
  sock_flush(f->uuid);
  atomic_store(&f->done, 1);
  return NULL;
}

/* Position of needle in hay (n bytes), or -1. */
static long find(const uint8_t *hay, size_t n, const void *needle, size_t k) {
  if (k > n)
    return -1;
  for (size_t i = 0; i + k <= n; i++)
    if (!memcmp(hay + i, needle, k))
      return (long)i;
  return -1;
}

/* ===========================================================================
 * Bug: a writer blocked on an exhausted pool ignores the close of its own
 * connection when that connection holds no pool packet.
 * Spec 3 (sock_write2_fn): "Data larger than the free pool blocks the caller,
 * flushing sockets, until it fits"; the library contract: "returning -1
 * (ENODEV) if its connection closes meanwhile".
 * ======================================================================== */

/* Starts wb, whose connection's peer never reads, until its data fills the
 * pool and it waits; then wa, which must wait for a packet while its own
 * connection holds none. 0 when both wait as they should. */
static int writers_waiting_on_a_full_pool(writer_t *wa, writer_t *wb) {
  writer_start(wb);
  int64_t end = now_ms() + 5000;
  while (!sock_packets_pending(wb->uuid) && now_ms() < end)
    tiny_wait();
  SETUP_REQUIRE(sock_packets_pending(wb->uuid)); /* queued within 5 s */
  CHECK_EQ(wait_flag(&wb->done, 300), 0); /* it waits: the pool is full */
  writer_start(wa);
  CHECK_EQ(wait_flag(&wa->done, 300), 0); /* waits for a packet */
  return 0;
}

TEST(pool_wait_ends_when_own_connection_closes) {
  /* B (peer never reads) holds the whole pool; a big write to A then waits
   * for a packet with A holding none. Force-closing A must end that wait
   * with -1/ENODEV while B still holds the pool. */
  CHECK_EQ(sock_set_packet_pool_size(8), 0);
  conn_t a, b;
  REQUIRE(make_unix_pair_buf(&a, 4096) == 0);
  REQUIRE(make_unix_pair_buf(&b, 4096) == 0);
  size_t nb = 4 * MiB, na = 1 * MiB;
  uint8_t *src = calloc(1, nb);
  writer_t wb = {.uuid = b.uuid, .buf = src, .n = nb};
  writer_t wa = {.uuid = a.uuid, .buf = src, .n = na};
  REQUIRE(writers_waiting_on_a_full_pool(&wa, &wb) == 0);
  CHECK_EQ(sock_packets_pending(a.uuid), 0);
  sock_force_close(a.uuid);
  CHECK_EQ(close_count(a.uuid), 1);
  CHECK_MSG(wait_flag(&wa.done, 3000),
            "the write to A still waits for the pool 3 s after "
            "sock_force_close(A)");
  /* release B: the waiting writers finish */
  sock_force_close(b.uuid);
  CHECK(wait_flag(&wa.done, 10000));
  CHECK(wait_flag(&wb.done, 10000));
  if (atomic_load(&wa.done)) {
    pthread_join(wa.th, NULL);
    CHECK_EQ(wa.ret, -1);
    CHECK_EQ(wa.err, ENODEV);
  }
  if (atomic_load(&wb.done))
    pthread_join(wb.th, NULL);
  free(src);
  close(a.raw);
  close(b.raw);
}

TEST(pool_wait_ends_when_own_peer_resets) {
  /* As above, but A's peer resets (TCP, SO_LINGER 0) instead of a local
   * close: the waiting writer must notice, not wait for B. */
  signal(SIGPIPE, SIG_DFL);
  CHECK_EQ(sock_set_packet_pool_size(8), 0);
  conn_t a, b;
  REQUIRE(make_tcp_pair_buf(&a, 8192, 0) == 0); /* writes need the pool */
  REQUIRE(make_unix_pair_buf(&b, 4096) == 0);
  size_t nb = 4 * MiB, na = 1 * MiB;
  uint8_t *src = calloc(1, nb);
  writer_t wb = {.uuid = b.uuid, .buf = src, .n = nb};
  writer_t wa = {.uuid = a.uuid, .buf = src, .n = na};
  REQUIRE(writers_waiting_on_a_full_pool(&wa, &wb) == 0);
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  setsockopt(a.raw, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(a.raw); /* RST */
  CHECK_MSG(wait_flag(&wa.done, 5000),
            "the write to A still waits for the pool 5 s after A's peer "
            "reset the connection");
  sock_force_close(b.uuid);
  CHECK(wait_flag(&wa.done, 10000));
  CHECK(wait_flag(&wb.done, 10000));
  if (atomic_load(&wa.done)) {
    pthread_join(wa.th, NULL);
    CHECK_EQ(wa.ret, -1);
    /* libsock.h, sock_write2_fn: "ENODEV (invalid UUID, or the connection
     * closed while a large write waited for room)" */
    CHECK_MSG(wa.err == ENODEV,
              "the waiting write failed with errno %d (%s); libsock.h "
              "documents ENODEV when the connection closes while a large "
              "write waits for room",
              wa.err, strerror(wa.err));
  }
  if (atomic_load(&wb.done))
    pthread_join(wb.th, NULL);
  CHECK(sock_isvalid(a.uuid) == 0 || flush_until_closed(a.uuid, 5000));
  CHECK_EQ(close_count(a.uuid), 1);
  free(src);
  close(b.raw);
}

/* ===========================================================================
 * Bug: a refused sock_write2 keeps what it was given.
 * Spec 3: "With move, ownership passes to the library even on failure. With
 * is_fd, the file is sent ... then closed"; libsock.h: "also when the call
 * fails".
 * ======================================================================== */

TEST(refused_file_is_closed) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  intptr_t stale = c.uuid;
  sock_force_close(stale);
  close(c.raw);
  static const char *const why[] = {"stale UUID", "UUID -1",
                                    "negative offset, length 0 (EINVAL)",
                                    "negative offset (EINVAL)"};
  for (int k = 0; k < 4; k++) {
    int fd = make_temp_file(1000, 5);
    REQUIRE(fd >= 0);
    struct stat st;
    fstat(fd, &st);
    intptr_t u = k == 1 ? -1 : stale;
    ssize_t r = sock_write2(.fduuid = u, .buffer = (void *)(intptr_t)fd,
                            .length = k == 2 ? 0 : 1000,
                            .offset = k >= 2 ? -5 : 0, .is_fd = 1);
    CHECK_EQ(r, -1);
    int left_open = fd_is_same_file(fd, &st);
    CHECK_MSG(!left_open,
              "refused sock_write2(.is_fd) (%s) left the file open", why[k]);
    if (left_open)
      close(fd);
  }
}

TEST(refused_move_buffer_is_freed) {
#ifdef RL_ASAN
  SKIP("mallinfo2 does not see ASan's allocator (the ASan leak check does)");
#else
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  intptr_t stale = c.uuid;
  sock_force_close(stale);
  close(c.raw);
  /* 8 MiB: far above the mmap threshold, so glibc maps (and unmaps) it;
   * mallinfo2().hblkhd counts mapped bytes exactly */
  size_t n = 8 * MiB;
  mallopt(M_MMAP_THRESHOLD, 1 << 20); /* fixed: no dynamic threshold */
  static const char *const why[] = {"stale UUID", "UUID -1"};
  for (int k = 0; k < 2; k++) {
    size_t before = mallinfo2().hblkhd;
    char *m = malloc(n);
    REQUIRE(m);
    memset(m, 'm', n);
    if (mallinfo2().hblkhd < before + n) {
      free(m);
      SKIP("allocator does not report mapped blocks (valgrind?): the "
           "leak check of make test-valgrind covers this");
    }
    ssize_t r = sock_write2(.fduuid = k ? -1 : stale, .buffer = m, .length = n,
                            .move = 1);
    CHECK_EQ(r, -1);
    size_t after = mallinfo2().hblkhd;
    CHECK_MSG(after < before + n,
              "refused sock_write2(.move) (%s) did not free the buffer "
              "(%zu bytes still mapped)",
              why[k], after - before);
    if (after >= before + n)
      free(m);
  }
#endif
}

/* ===========================================================================
 * Bug: urgent data lands inside a write that is queued in parts.
 * Spec 4.4: urgent data goes "never into the middle of a packet whose
 * sending has started. Data written through sock_write2 is interruptible
 * between writes"; 4.1: no partial writes; README: "other writes to that
 * connection wait so its bytes stay together".
 * ======================================================================== */

TEST(urgent_never_inside_a_write_queued_in_parts) {
  CHECK_EQ(sock_set_packet_pool_size(6), 0);
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  static sock_rw_hook_s hooks = {.write = hk_write};
  REQUIRE(sock_rw_hook_set(c.uuid, &hooks) == 0);
  /* D0: one full packet and a few bytes, one write (two packets, the
   * second not interruptible, with room for more) */
  size_t n0 = BUFFER_PACKET_SIZE + 100;
  uint8_t *d0 = malloc(n0);
  memset(d0, '0', n0);
  /* queued; the inline flush fills the socket (the peer does not read
   * yet) and leaves D0's first packet started, its second in the queue */
  CHECK_EQ(sock_write(c.uuid, d0, n0), 0);
  REQUIRE(sock_packets_pending(c.uuid));
  /* F flushes again; the write hook holds it inside the call */
  pthread_mutex_lock(&hk.mtx);
  hk.hold_write = 1;
  pthread_mutex_unlock(&hk.mtx);
  flusher_t f = {.uuid = c.uuid};
  pthread_create(&f.th, NULL, flusher_main, &f);
  REQUIRE(hk_wait_in(&hk.in_write, 5000));
  /* F is inside the write hook, flushing (D0's first packet out of the
   * queue). An urgent write now waits beside the queue. */
  static const char URG[] = "<<URGENT-MESSAGE>>";
  CHECK_EQ(sock_write2(.fduuid = c.uuid, .buffer = URG, .length = sizeof(URG) - 1,
                       .urgent = 1),
           0);
  /* W: a write bigger than the free pool: queued in parts */
  size_t na = 12 * BUFFER_PACKET_SIZE;
  uint8_t *a = malloc(na);
  fill_pattern(a, na, 0, 99);
  writer_t w = {.uuid = c.uuid, .buf = a, .n = na};
  writer_start(&w);
  CHECK_EQ(wait_flag(&w.done, 300), 0); /* waiting for pool packets */
  /* let everything go: the peer reads, the hook writes */
  size_t total = n0 + na + sizeof(URG) - 1;
  drain_t d = {.fd = c.raw, .expect = total, .store = malloc(total + 64),
               .store_cap = total + 64, .timeout_ms = 10000};
  drain_start(&d);
  hk_release(&hk.hold_write);
  CHECK(wait_flag(&w.done, 10000));
  CHECK(wait_flag(&f.done, 10000));
  sock_flush_strong(c.uuid);
  drain_join(&d);
  pthread_join(f.th, NULL);
  if (atomic_load(&w.done)) {
    pthread_join(w.th, NULL);
    CHECK_EQ(w.ret, 0);
  }
  CHECK_EQ(d.got, total);
  long pu = find(d.store, d.got, URG, sizeof(URG) - 1);
  long pa = find(d.store, d.got, a, 64);
  CHECK(pu >= 0 && pa >= 0);
  if (pu >= 0 && pa >= 0) {
    int inside = pu > pa && (size_t)pu < (size_t)pa + na;
    CHECK_MSG(!inside,
              "the urgent message arrived inside the %zu-byte write, %ld "
              "bytes after its start",
              na, pu - pa);
    if (!inside && (size_t)pa + na <= d.got)
      CHECK_EQ(check_pattern(d.store + pa, na, 0, 99), na);
  }
  free(d.store);
  free(a);
  free(d0);
  sock_force_close(c.uuid);
  close(c.raw);
}

/* ===========================================================================
 * Bug: an urgent write waits behind a write that waits for pool space.
 * README: "Urgent sock_write2 data is copied outside the pool (it is meant
 * to be small: pings, control frames), so it never waits for pool space";
 * spec 4.4 / libsock.h: urgent = "send as soon as possible".
 * ======================================================================== */

TEST(urgent_write_does_not_wait_for_the_pool) {
  /* W writes more than the pool holds to a connection whose peer does not
   * read yet: W waits for packets. An urgent write (a ping) to the same
   * connection needs no packet; it must be accepted without waiting for
   * the peer to drain W's data. */
  CHECK_EQ(sock_set_packet_pool_size(6), 0);
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  size_t na = 12 * BUFFER_PACKET_SIZE;
  uint8_t *a = malloc(na);
  fill_pattern(a, na, 0, 98);
  writer_t w = {.uuid = c.uuid, .buf = a, .n = na};
  writer_start(&w);
  CHECK_EQ(wait_flag(&w.done, 300), 0); /* waiting for packets */
  static const char URG[] = "<<PING>>";
  writer_t u = {.uuid = c.uuid, .buf = URG, .n = sizeof(URG) - 1,
                .urgent = 1};
  writer_start(&u);
  int quick = wait_flag(&u.done, 2000);
  CHECK_MSG(quick, "the urgent write waits (2 s and counting) for the "
                   "write that waits for pool space");
  /* the peer reads: everything goes */
  size_t total = na + sizeof(URG) - 1;
  drain_t d = {.fd = c.raw, .expect = total, .store = malloc(total + 64),
               .store_cap = total + 64, .timeout_ms = 10000};
  drain_start(&d);
  CHECK(wait_flag(&w.done, 10000));
  CHECK(wait_flag(&u.done, 10000));
  sock_flush_strong(c.uuid);
  drain_join(&d);
  pthread_join(w.th, NULL);
  pthread_join(u.th, NULL);
  CHECK_EQ(w.ret, 0);
  CHECK_EQ(u.ret, 0);
  CHECK_EQ(d.got, total);
  long pu = find(d.store, d.got, URG, sizeof(URG) - 1);
  CHECK(pu >= 0);
  free(d.store);
  free(a);
  sock_force_close(c.uuid);
  close(c.raw);
}

/* ===========================================================================
 * Bug: urgent data overtakes earlier urgent data after a flush hook reported
 * bytes still buffered. README: "Urgent data never overtakes earlier urgent
 * data"; spec 4.1 (order), 4.4.
 * ======================================================================== */

TEST(urgent_order_kept_when_flush_hook_has_data_left) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  static sock_rw_hook_s hooks = {.write = hk_write, .flush = hk_flush};
  REQUIRE(sock_rw_hook_set(c.uuid, &hooks) == 0);
  pthread_mutex_lock(&hk.mtx);
  hk.hold_flush = 1;
  hk.flush_left = 1; /* "1 byte still buffered" once */
  pthread_mutex_unlock(&hk.mtx);
  /* F: sock_flush with nothing queued calls the flush hook, which holds */
  flusher_t f = {.uuid = c.uuid};
  pthread_create(&f.th, NULL, flusher_main, &f);
  REQUIRE(hk_wait_in(&hk.in_flush, 5000));
  CHECK_EQ(sock_write2(.fduuid = c.uuid, .buffer = "[U0]", .length = 4,
                       .urgent = 1),
           0);
  hk_release(&hk.hold_flush); /* reports 1 byte left: F stops */
  REQUIRE(wait_flag(&f.done, 5000));
  pthread_join(f.th, NULL);
  CHECK_EQ(sock_write2(.fduuid = c.uuid, .buffer = "[U1]", .length = 4,
                       .urgent = 1),
           0);
  sock_flush_strong(c.uuid);
  char buf[16] = {0};
  CHECK_EQ(raw_read_n(c.raw, buf, 8, 5000, NULL), 8);
  CHECK_MSG(!memcmp(buf, "[U0][U1]", 8),
            "urgent writes arrived as \"%.8s\", expected \"[U0][U1]\"", buf);
  sock_force_close(c.uuid);
  close(c.raw);
}

/* ===========================================================================
 * Bug: a hook or callback that writes to its own connection while that
 * connection is taking a write larger than the free pool deadlocks the
 * writing thread (the inner write waits for the outer one, which waits
 * for the inner one to return).
 * Spec 4.8: "Callbacks and hooks are called with no library lock held, so
 * they may call the library again."
 * ======================================================================== */

/* What a callback or hook does once, from inside the library: write a
 * short message (urgent or not) to the connection it was called for. */
static atomic_int reenter_calls;
static int reenter_urgent;
static ssize_t reenter_ret = 99;
static void reenter_once(intptr_t uuid) {
  if (atomic_fetch_add(&reenter_calls, 1) == 0)
    reenter_ret = sock_write2(.fduuid = uuid, .buffer = "<ctl>", .length = 5,
                              .urgent = (unsigned)reenter_urgent);
}
static ssize_t reenter_write_hook(intptr_t uuid, const void *b, size_t n) {
  reenter_once(uuid);
  return send(sock_uuid2fd(uuid), b, n, MSG_DONTWAIT | MSG_NOSIGNAL);
}
static void reenter_touch(intptr_t uuid) { reenter_once(uuid); }

typedef struct {
  intptr_t uuid;
  const uint8_t *src;
  size_t n;
  ssize_t ret;
  atomic_int done;
} hw_t;
static void *hook_writer_main(void *arg) {
  hw_t *h = arg;
  h->ret = sock_write(h->uuid, h->src, h->n);
  if (h->ret == 0)
    sock_flush_strong(h->uuid);
  atomic_store(&h->done, 1);
  return NULL;
}

/* A 1 MiB write with a 4-packet pool; the hook or callback writes "<ctl>"
 * from inside it. No deadlock; if the inner write was accepted, "<ctl>"
 * arrives whole and not inside the 1 MiB. */
static void reentrant_write_case(int use_hook, int urgent) {
  CHECK_EQ(sock_set_packet_pool_size(4), 0);
  reenter_urgent = urgent;
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  static sock_rw_hook_s hooks = {.write = reenter_write_hook};
  if (use_hook)
    REQUIRE(sock_rw_hook_set(c.uuid, &hooks) == 0);
  else
    sock_register_touch(reenter_touch);
  size_t n = 1 * MiB;
  uint8_t *src = malloc(n);
  fill_pattern(src, n, 0, 97);
  drain_t d = {.fd = c.raw, .expect = n + 5, .store = malloc(n + 64),
               .store_cap = n + 64, .timeout_ms = 8000};
  drain_start(&d);
  hw_t h = {.uuid = c.uuid, .src = src, .n = n};
  pthread_t th;
  pthread_create(&th, NULL, hook_writer_main, &h);
  CHECK_MSG(wait_flag(&h.done, 8000),
            "the write that called the %s never returned (its own write "
            "waits for that write to finish)",
            use_hook ? "write hook" : "touch callback");
  drain_join(&d);
  if (atomic_load(&h.done)) {
    pthread_join(th, NULL);
    CHECK_EQ(h.ret, 0);
    CHECK_MSG(reenter_ret == 0 || reenter_ret == -1, "inner write: %zd",
              reenter_ret);
    size_t expect = n + (reenter_ret == 0 ? 5 : 0);
    CHECK_EQ(d.got, expect);
    long pc = find(d.store, d.got, "<ctl>", 5);
    if (reenter_ret == 0) {
      CHECK(pc >= 0);
      long pa = find(d.store, d.got, src, 64);
      CHECK_MSG(pc >= 0 && pa >= 0 && (pc < pa || pc >= pa + (long)n),
                "the message written from inside arrived inside the 1 MiB "
                "write (at %ld, write at %ld)", pc, pa);
    }
    sock_force_close(c.uuid);
    free(src);
  } else {
    /* the writer is stuck for good (and holds src): end the test process
     * as it is */
    pthread_detach(th);
  }
  sock_register_touch(NULL);
  free(d.store);
  close(c.raw);
}

TEST(hook_may_write_to_its_connection_during_a_large_write) {
  reentrant_write_case(1, 1); /* urgent: a control message */
}
TEST(hook_may_write_normal_data_during_a_large_write) {
  reentrant_write_case(1, 0);
}
TEST(touch_callback_may_write_during_a_large_write) {
  reentrant_write_case(0, 0);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(pool_wait_ends_when_own_connection_closes);
  RUN(pool_wait_ends_when_own_peer_resets);
  RUN(refused_file_is_closed);
  RUN(refused_move_buffer_is_freed);
  RUN(urgent_never_inside_a_write_queued_in_parts);
  RUN(urgent_write_does_not_wait_for_the_pool);
  RUN(urgent_order_kept_when_flush_hook_has_data_left);
  RUN(hook_may_write_to_its_connection_during_a_large_write);
  RUN(hook_may_write_normal_data_during_a_large_write);
  RUN(touch_callback_may_write_during_a_large_write);
  return HARNESS_END();
}
