/* The packet pool bound (spec 6): BUFFER_PACKET_POOL by default, changed at
 * run time with sock_set_packet_pool_size() or LIBSOCK_PACKET_POOL (the
 * knobs libsock.h documents). Writes beyond a small pool still complete. */
#define TEST_DEFINE_CALLBACKS
#include "util.h"

#include <malloc.h>
#include <stdio.h>
#include <sys/epoll.h>

#define MiB (1024u * 1024u)

/* hold `n` packets; one more must wait until one is released */
static void check_bound(size_t n) {
  sock_packet_s **held = calloc(n, sizeof(*held));
  for (size_t i = 0; i < n; i++) {
    held[i] = sock_checkout_packet();
    REQUIRE(held[i]);
  }
  int early = checkout_waits_for_release(held[0]);
  REQUIRE(early != -1);
  CHECK_MSG(early == 0, "a packet beyond the bound of %zu was handed out", n);
  for (size_t i = 1; i < n; i++)
    sock_free_packet(held[i]);
  free(held);
}

TEST(default_bound) {
  CHECK_EQ(sock_packet_pool_size(), BUFFER_PACKET_POOL);
  check_bound(BUFFER_PACKET_POOL);
}

TEST(set_pool_size_small) {
  CHECK_EQ(sock_set_packet_pool_size(64), 0);
  CHECK_EQ(sock_packet_pool_size(), 64);
  check_bound(64);
  errno = 0;
  CHECK_EQ(sock_set_packet_pool_size(0), -1);
  CHECK_EQ(errno, EINVAL);
  CHECK_EQ(sock_packet_pool_size(), 64);
}

TEST(set_pool_size_large) {
  CHECK_EQ(sock_set_packet_pool_size(4096), 0);
  check_bound(4096);
}

TEST(env_pool_size) {
  setenv("LIBSOCK_PACKET_POOL", "48", 1);
  /* first use of the library in this (fresh) process */
  CHECK_EQ(sock_packet_pool_size(), 48);
  check_bound(48);
}

TEST(big_write_with_tiny_pool) {
  CHECK_EQ(sock_set_packet_pool_size(8), 0);
  conn_t c;
  REQUIRE(make_tcp_pair(&c) == 0);
  size_t n = 20 * MiB;
  uint8_t *src = malloc(n);
  fill_pattern(src, n, 0, 71);
  drain_t d = {.fd = c.raw, .expect = n, .check = 1, .seed = 71};
  drain_start(&d);
  CHECK_EQ(sock_write(c.uuid, src, n), 0);
  sock_flush_strong(c.uuid);
  drain_join(&d);
  CHECK_EQ(d.got, n);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  free(src);
  conn_force_close(&c);
}

typedef struct {
  intptr_t uuid;
  ssize_t ret;
  atomic_int done;
} w100_t;

static void *w100_main(void *arg) {
  w100_t *w = arg;
  char msg[100];
  memset(msg, 'W', sizeof(msg));
  w->ret = sock_write(w->uuid, msg, sizeof(msg));
  atomic_store(&w->done, 1);
  return NULL;
}

static void pool_close_round(int round) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  size_t first = 4 * BUFFER_PACKET_SIZE - 56;
  uint8_t *src = malloc(first);
  memset(src, 'F', first);
  CHECK_EQ(sock_write(c.uuid, src, first), 0);
  free(src);
  w100_t w = {.uuid = c.uuid};
  pthread_t th;
  pthread_create(&th, NULL, w100_main, &w);
  /* give the writer time to block on the exhausted pool (the assertion
   * below holds whatever the timing) */
  int64_t end = now_ms() + 100;
  while (!atomic_load(&w.done) && now_ms() < end)
    tiny_wait();
  sock_close(c.uuid);
  drain_t d = {.fd = c.raw, .until_eof = 1, .store = malloc(first + 200),
               .store_cap = first + 200, .timeout_ms = 10000};
  drain_start(&d);
  CHECK(sock_isvalid(c.uuid) == 0 || flush_until_closed(c.uuid, 10000));
  end = now_ms() + 10000;
  while (!atomic_load(&w.done) && now_ms() < end)
    tiny_wait();
  REQUIRE(atomic_load(&w.done));
  pthread_join(th, NULL);
  drain_join(&d);
  CHECK(d.eof);
  size_t expect = first + (w.ret == 0 ? 100 : 0);
  CHECK_MSG(d.got == expect,
            "round %d: sock_write returned %zd; peer got %zu bytes, expected "
            "%zu (%+zd bytes of the 100-byte write)",
            round, w.ret, d.got, expect, (ssize_t)(d.got - first));
  free(d.store);
  close(c.raw);
}

TEST(write_waiting_for_pool_then_close_is_not_partial) {
  /* The pool is exhausted by queued data the peer does not read yet; the
   * last queued packet has 56 spare bytes. A 100-byte sock_write waits for
   * a packet; meanwhile the connection is closed (sock_close, then drained).
   * Whatever the write returns, it is all (0) or nothing (-1): the peer
   * receives exactly the first data plus either all 100 bytes or none.
   * (Timing-dependent: repeated to make a violation likely to show.) */
  CHECK_EQ(sock_set_packet_pool_size(4), 0);
  for (int round = 0; round < 20 && !TEST_FAILED(); round++)
    pool_close_round(round);
}

/* A thread that holds every packet of the pool (checked out, never sent)
 * and asks for one more can never get it: no packet is queued anywhere,
 * so flushing frees nothing, and no other thread holds one. The checkout
 * returns NULL (ENOMEM) instead of waiting forever. */
typedef struct {
  size_t n;
  sock_packet_s *held[8];
  sock_packet_s *extra;
  int err;
  int done[2];
} hoard_t;

static void *hoarder_main(void *arg) {
  hoard_t *h = arg;
  for (size_t i = 0; i < h->n; i++)
    h->held[i] = sock_checkout_packet();
  errno = 0;
  h->extra = sock_checkout_packet();
  h->err = errno;
  char c = 'd';
  if (write(h->done[1], &c, 1) != 1)
    return NULL;
  return NULL;
}

TEST(checkout_beyond_own_packets_returns_null) {
  CHECK_EQ(sock_set_packet_pool_size(4), 0);
  hoard_t h = {.n = 4};
  REQUIRE(pipe(h.done) == 0);
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, hoarder_main, &h) == 0);
  int returned = (wait_fd(h.done[0], POLLIN, 5000) & POLLIN) != 0;
  CHECK_MSG(returned, "a checkout beyond the thread's own packets never "
                      "returned");
  if (!returned)
    return; /* the thread waits for ever: leave it */
  pthread_join(th, NULL);
  for (size_t i = 0; i < h.n; i++)
    CHECK(h.held[i] != NULL);
  CHECK(h.extra == NULL);
  CHECK_EQ(h.err, ENOMEM);
  if (h.extra)
    sock_free_packet(h.extra);
  /* given back (from this thread): the pool serves again */
  for (size_t i = 0; i < h.n; i++)
    sock_free_packet(h.held[i]);
  sock_packet_s *p = sock_checkout_packet();
  CHECK(p != NULL);
  sock_free_packet(p);
  close(h.done[0]);
  close(h.done[1]);
}

/* The same thread holds all but one packet; the last is queued on a
 * connection whose socket is full. That one can drain: the checkout flushes
 * and waits for it, and gets it, rather than returning NULL. */
TEST(checkout_waits_for_packets_queued_on_connections) {
  CHECK_EQ(sock_set_packet_pool_size(4), 0);
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  /* fill the socket behind the library's back: the packet stays queued */
  char fill[4096];
  memset(fill, 'f', sizeof fill);
  size_t filled = 0;
  for (;;) {
    ssize_t w = send(c.lfd, fill, sizeof fill, MSG_DONTWAIT);
    if (w <= 0)
      break;
    filled += (size_t)w;
  }
  REQUIRE(errno == EAGAIN || errno == EWOULDBLOCK);
  sock_packet_s *held[3];
  for (int i = 0; i < 3; i++) {
    held[i] = sock_checkout_packet();
    REQUIRE(held[i] != NULL);
  }
  sock_packet_s *q = sock_checkout_packet();
  REQUIRE(q != NULL);
  memset(q->buffer, 'q', BUFFER_PACKET_SIZE);
  q->length = BUFFER_PACKET_SIZE;
  CHECK_EQ(sock_send_packet(c.uuid, q), 0);
  REQUIRE(sock_packets_pending(c.uuid));
  /* the peer reads everything; only a flush can send the queued packet */
  drain_t d = {.fd = c.raw, .expect = filled + BUFFER_PACKET_SIZE,
               .timeout_ms = 10000};
  drain_start(&d);
  sock_packet_s *p = sock_checkout_packet();
  CHECK(p != NULL);
  drain_join(&d);
  CHECK_EQ(d.got, filled + BUFFER_PACKET_SIZE);
  if (p)
    sock_free_packet(p);
  for (int i = 0; i < 3; i++)
    sock_free_packet(held[i]);
  conn_force_close(&c);
}

/* Resident anonymous memory (heap, stacks): what the process holds, not
 * the code pages it touched (those grow when a path runs the first time,
 * more so when linked statically). */
static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "RssAnon:", 8))
      kb = strtol(line + 8, NULL, 10);
  if (f)
    fclose(f);
  return kb;
}

enum { BURST_CONNS = 32, BURST_BYTES = 256 * 1024 };

typedef struct {
  conn_t *c;
  char *buf; /* 64 KiB, touched before RSS is first sampled */
  size_t got;
  pthread_t th;
} burst_reader_t;

/* Reads every raw peer until each delivered BURST_BYTES. */
static void *burst_reader(void *arg) {
  burst_reader_t *r = arg;
  size_t want = (size_t)BURST_CONNS * BURST_BYTES;
  int64_t end = now_ms() + 20000;
  while (r->got < want && now_ms() < end) {
    struct pollfd p[BURST_CONNS];
    for (int i = 0; i < BURST_CONNS; i++)
      p[i] = (struct pollfd){.fd = r->c[i].raw, .events = POLLIN};
    if (poll(p, BURST_CONNS, 100) <= 0)
      continue;
    for (int i = 0; i < BURST_CONNS; i++) {
      ssize_t n;
      if (p[i].revents)
        while ((n = recv(r->c[i].raw, r->buf, 1 << 16, MSG_DONTWAIT)) > 0)
          r->got += (size_t)n;
    }
  }
  return NULL;
}

/* After a burst (8 MiB queued on 32 connections, sent by an edge-triggered
 * loop) the process gives the memory back: its resident anonymous memory
 * returns to within 1 MiB of
 * what it was before, within a second or so of the burst's end, while the
 * connections stay open. (Freed packets otherwise stay in the allocator's
 * arenas, and the pool keeps up to 64 of them, 1 MiB, for reuse.) */
/* True when malloc is glibc's own (not valgrind's or a sanitizer's, which
 * keep freed memory themselves: nothing the library does gives it back).
 * Observed through glibc's accounting of an mmapped block. */
static int malloc_is_glibcs(void) {
#ifndef __GLIBC__
  return 0;
#else
  size_t base = mallinfo2().hblkhd;
  char *m = malloc(64u << 20);
  int glibc = m && mallinfo2().hblkhd >= base + (64u << 20);
  free(m);
  return glibc;
#endif
}

TEST(memory_given_back_after_a_burst) {
  if (!malloc_is_glibcs()) {
    SKIP("malloc is not glibc's (valgrind, a sanitizer): memory is not the "
         "library's to give back");
    return;
  }
  conn_t c[BURST_CONNS];
  int ep = epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(ep >= 0);
  for (int i = 0; i < BURST_CONNS; i++) {
    REQUIRE(make_unix_pair_buf(&c[i], 4096) == 0);
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLET,
                             .data.u64 = (uint64_t)c[i].uuid};
    REQUIRE(epoll_ctl(ep, EPOLL_CTL_ADD, c[i].lfd, &ev) == 0);
  }
  uint8_t *src = malloc(BURST_BYTES);
  fill_pattern(src, BURST_BYTES, 0, 5);
  burst_reader_t r = {.c = c, .buf = malloc(1 << 16)};
  memset(r.buf, 0, 1 << 16);
  REQUIRE(pthread_create(&r.th, NULL, burst_reader, &r) == 0);
  long before = rss_kb();
  for (int i = 0; i < BURST_CONNS; i++)
    CHECK_EQ(sock_write(c[i].uuid, src, BURST_BYTES), 0);
  long peak = rss_kb();
  /* the program's loop: sock_flush on EPOLLOUT until nothing is queued */
  int64_t end = now_ms() + 20000;
  for (;;) {
    int pending = 0;
    for (int i = 0; i < BURST_CONNS; i++)
      pending += sock_packets_pending(c[i].uuid) != 0;
    if (!pending || now_ms() > end)
      break;
    struct epoll_event evs[BURST_CONNS];
    int n = epoll_wait(ep, evs, BURST_CONNS, 100);
    for (int k = 0; k < n; k++)
      sock_flush((intptr_t)evs[k].data.u64);
  }
  pthread_join(r.th, NULL);
  CHECK_EQ(r.got, (size_t)BURST_CONNS * BURST_BYTES);
  int64_t done = now_ms();
  long after = rss_kb();
  while (after > before + 1024 && now_ms() < done + 3000) {
    tiny_wait();
    after = rss_kb();
  }
  NOTE("RssAnon before %ld KiB, after the writes %ld KiB, %ld ms after the "
       "burst %ld KiB", before, peak, (long)(now_ms() - done), after);
  CHECK_MSG(after <= before + 1024,
            "RssAnon %ld KiB, %ld KiB above its %ld KiB before the burst, 3 s "
            "after it ended", after, after - before, before);
  for (int i = 0; i < BURST_CONNS; i++)
    CHECK_EQ(sock_isvalid(c[i].uuid), 1);
  free(src);
  free(r.buf);
  for (int i = 0; i < BURST_CONNS; i++)
    conn_force_close(&c[i]);
  close(ep);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(default_bound);
  RUN(set_pool_size_small);
  RUN(set_pool_size_large);
  RUN(env_pool_size);
  RUN(big_write_with_tiny_pool);
  RUN(write_waiting_for_pool_then_close_is_not_partial);
  RUN(checkout_beyond_own_packets_returns_null);
  RUN(checkout_waits_for_packets_queued_on_connections);
  RUN(memory_given_back_after_a_burst);
  return HARNESS_END();
}
