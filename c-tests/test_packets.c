/* The packet API: sock_checkout_packet / sock_send_packet /
 * sock_free_packet, and everything real programs do with packets. */
#define TEST_DEFINE_CALLBACKS
#include "util.h"

#include <malloc.h>

static atomic_int dealloc_calls;
static void *dealloc_seen[64];

static void counting_dealloc(void *buf) {
  int i = atomic_fetch_add(&dealloc_calls, 1);
  if (i < 64)
    dealloc_seen[i] = buf;
  free(buf);
}

static int dealloc_count_of(void *buf) {
  int n = atomic_load(&dealloc_calls), c = 0;
  for (int i = 0; i < n && i < 64; i++)
    c += dealloc_seen[i] == buf;
  return c;
}

static sock_packet_s *checkout(void) {
  int64_t end = now_ms() + 10000;
  sock_packet_s *p;
  while (!(p = sock_checkout_packet()) && now_ms() < end)
    sock_flush_all();
  return p;
}

/* wait (driving flushes) until dealloc was called `n` times */
static void wait_dealloc(int n, intptr_t uuid) {
  int64_t end = now_ms() + 3000;
  while (atomic_load(&dealloc_calls) < n && now_ms() < end) {
    sock_flush(uuid);
    tiny_wait();
  }
}

static void check_clean_packet(sock_packet_s *p) {
  CHECK(p->buffer != NULL);
  CHECK_EQ(p->length, 0);
  CHECK(p->metadata.next == NULL);
  CHECK_EQ(p->metadata.offset, 0);
  CHECK(p->metadata.dealloc == NULL);
  CHECK_EQ(p->metadata.can_interrupt, 0);
  CHECK_EQ(p->metadata.is_fd, 0);
  CHECK_EQ(p->metadata.keep_open, 0);
  CHECK_EQ(p->metadata.external, 0);
  CHECK_EQ(p->metadata.urgent, 0);
}

TEST(checkout_defaults) {
  enum { N = 16 };
  sock_packet_s *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = checkout();
    REQUIRE(p[i] != NULL);
    check_clean_packet(p[i]);
    /* BUFFER_PACKET_SIZE writable bytes */
    memset(p[i]->buffer, i + 1, BUFFER_PACKET_SIZE);
  }
  for (int i = 0; i < N; i++) {
    for (int j = i + 1; j < N; j++) {
      CHECK(p[i] != p[j]);
      uintptr_t a = (uintptr_t)p[i]->buffer, b = (uintptr_t)p[j]->buffer;
      CHECK(a + BUFFER_PACKET_SIZE <= b || b + BUFFER_PACKET_SIZE <= a);
    }
    const uint8_t *b = p[i]->buffer;
    CHECK_EQ(b[0], i + 1);
    CHECK_EQ(b[BUFFER_PACKET_SIZE - 1], i + 1);
  }
  for (int i = 0; i < N; i++)
    sock_free_packet(p[i]);
  /* recycled packets come back clean, even after being dirtied */
  for (int round = 0; round < 3; round++) {
    sock_packet_s *q = checkout();
    REQUIRE(q);
    check_clean_packet(q);
    q->length = 5;
    q->metadata.can_interrupt = 1;
    q->metadata.urgent = 1;
    q->metadata.offset = 99;
    sock_free_packet(q);
  }
}

TEST(send_pool_packet) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  sock_packet_s *p = checkout();
  REQUIRE(p);
  fill_pattern(p->buffer, BUFFER_PACKET_SIZE, 0, 3);
  p->length = BUFFER_PACKET_SIZE;
  drain_t d = {.fd = c.raw, .expect = BUFFER_PACKET_SIZE, .check = 1,
               .seed = 3};
  drain_start(&d);
  CHECK_EQ(sock_send_packet(c.uuid, p), 0);
  sock_flush_strong(c.uuid);
  drain_join(&d);
  CHECK_EQ(d.got, BUFFER_PACKET_SIZE);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  /* a short one */
  p = checkout();
  REQUIRE(p);
  memcpy(p->buffer, "short", 5);
  p->length = 5;
  CHECK_EQ(sock_send_packet(c.uuid, p), 0);
  sock_flush_strong(c.uuid);
  expect_raw_bytes(&c, "short", 5);
  conn_force_close(&c);
}

TEST(external_buffer_custom_dealloc) {
  conn_t c;
  REQUIRE(make_tcp_pair(&c) == 0);
  size_t n = 100000;
  uint8_t *ext = malloc(n);
  fill_pattern(ext, n, 0, 4);
  sock_packet_s *p = checkout();
  REQUIRE(p);
  p->buffer = ext;
  p->length = (ssize_t)n;
  p->metadata.external = 1;
  p->metadata.dealloc = counting_dealloc;
  drain_t d = {.fd = c.raw, .expect = n, .check = 1, .seed = 4};
  drain_start(&d);
  CHECK_EQ(sock_send_packet(c.uuid, p), 0);
  sock_flush_strong(c.uuid);
  drain_join(&d);
  CHECK_EQ(d.got, n);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  wait_dealloc(1, c.uuid);
  CHECK_EQ(atomic_load(&dealloc_calls), 1);
  CHECK_EQ(dealloc_count_of(ext), 1);
  conn_force_close(&c);
  CHECK_EQ(atomic_load(&dealloc_calls), 1);
}

TEST(external_buffer_default_free) {
  /* dealloc NULL = free(); run under valgrind to see the free happen */
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  size_t n = 50000;
  uint8_t *ext = malloc(n);
  fill_pattern(ext, n, 0, 5);
  sock_packet_s *p = checkout();
  REQUIRE(p);
  p->buffer = ext;
  p->length = (ssize_t)n;
  p->metadata.external = 1;
  drain_t d = {.fd = c.raw, .expect = n, .check = 1, .seed = 5};
  drain_start(&d);
  CHECK_EQ(sock_send_packet(c.uuid, p), 0);
  sock_flush_strong(c.uuid);
  drain_join(&d);
  CHECK_EQ(d.got, n);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  conn_force_close(&c);
}

static const char static_msg[] = "static memory, never freed";

TEST(compound_literal_static_buffer) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  size_t len = sizeof(static_msg) - 1;
  /* 3x the pool: packets must be recycled although their buffer pointer
   * was overwritten */
  int rounds = 3 * BUFFER_PACKET_POOL;
  char buf[64];
  for (int i = 0; i < rounds && !TEST_FAILED(); i++) {
    sock_packet_s *p = checkout();
    REQUIRE(p);
    *p = (sock_packet_s){.buffer = (void *)static_msg, .length = (ssize_t)len};
    CHECK_EQ(sock_send_packet(c.uuid, p), 0);
    sock_flush_strong(c.uuid);
    CHECK_EQ(raw_read_n(c.raw, buf, len, 5000, NULL), len);
    CHECK(!memcmp(buf, static_msg, len));
  }
  CHECK(!strcmp(static_msg, "static memory, never freed"));
  /* the pool hands out packets with their own storage again */
  enum { N = 64 };
  sock_packet_s *q[N];
  for (int i = 0; i < N; i++) {
    q[i] = checkout();
    REQUIRE(q[i]);
    check_clean_packet(q[i]);
    CHECK(q[i]->buffer != (void *)static_msg);
    memset(q[i]->buffer, 0xAB, BUFFER_PACKET_SIZE);
  }
  for (int i = 0; i < N; i++)
    sock_free_packet(q[i]);
  conn_force_close(&c);
}

TEST(compound_literal_urgent_ws_frame) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  sock_packet_s *packet = checkout();
  REQUIRE(packet);
  *packet = (sock_packet_s){
      .buffer = "\x89\x00", .length = 2, .metadata.urgent = 1};
  CHECK_EQ(sock_send_packet(c.uuid, packet), 0);
  sock_flush_strong(c.uuid);
  unsigned char b[2];
  CHECK_EQ(raw_read_n(c.raw, b, 2, 5000, NULL), 2);
  CHECK_EQ(b[0], 0x89);
  CHECK_EQ(b[1], 0x00);
  conn_force_close(&c);
}

TEST(packet_chain_mixed) {
  conn_t c;
  REQUIRE(make_tcp_pair(&c) == 0);
  int fd = make_temp_file(20000, 6);
  REQUIRE(fd >= 0);
  struct stat st;
  fstat(fd, &st);
  sock_packet_s *p1 = checkout(), *p2 = checkout(), *p3 = checkout(),
                *p4 = checkout(), *p5 = checkout();
  REQUIRE(p1 && p2 && p3 && p4 && p5);
  /* p1: own buffer, full */
  memset(p1->buffer, 'A', BUFFER_PACKET_SIZE);
  p1->length = BUFFER_PACKET_SIZE;
  /* p2: external buffer with counting dealloc */
  uint8_t *ext = malloc(50000);
  memset(ext, 'B', 50000);
  p2->buffer = ext;
  p2->length = 50000;
  p2->metadata.external = 1;
  p2->metadata.dealloc = counting_dealloc;
  /* p3: compound literal, static memory */
  *p3 = (sock_packet_s){.buffer = "static-middle", .length = 13};
  /* p4: a file window */
  p4->buffer = (void *)(intptr_t)fd;
  p4->length = 3000;
  p4->metadata.is_fd = 1;
  p4->metadata.offset = 10;
  /* p5: own buffer, short */
  memcpy(p5->buffer, "tail", 4);
  p5->length = 4;
  p1->metadata.next = p2;
  p2->metadata.next = p3;
  p3->metadata.next = p4;
  p4->metadata.next = p5;
  size_t total = BUFFER_PACKET_SIZE + 50000 + 13 + 3000 + 4;
  drain_t d = {.fd = c.raw, .expect = total, .store = malloc(total),
               .store_cap = total};
  drain_start(&d);
  CHECK_EQ(sock_send_packet(c.uuid, p1), 0);
  sock_flush_strong(c.uuid);
  drain_join(&d);
  CHECK_EQ(d.got, total);
  const uint8_t *s = d.store;
  size_t i;
  for (i = 0; i < BUFFER_PACKET_SIZE && s[i] == 'A'; i++)
    ;
  CHECK_EQ(i, BUFFER_PACKET_SIZE);
  s += BUFFER_PACKET_SIZE;
  for (i = 0; i < 50000 && s[i] == 'B'; i++)
    ;
  CHECK_EQ(i, 50000);
  s += 50000;
  CHECK(!memcmp(s, "static-middle", 13));
  s += 13;
  CHECK_EQ(check_pattern(s, 3000, 10, 6), 3000);
  s += 3000;
  CHECK(!memcmp(s, "tail", 4));
  wait_dealloc(1, c.uuid);
  CHECK_EQ(dealloc_count_of(ext), 1);
  CHECK(!fd_is_same_file(fd, &st)); /* is_fd without keep_open: closed */
  free(d.store);
  conn_force_close(&c);
  CHECK_EQ(atomic_load(&dealloc_calls), 1);
}

TEST(is_fd_keep_open_many_clients) {
  enum { N = 3 };
  conn_t c[N];
  int fd = make_temp_file(200000, 13);
  REQUIRE(fd >= 0);
  struct stat st;
  fstat(fd, &st);
  drain_t d[N];
  for (int i = 0; i < N; i++) {
    REQUIRE(make_unix_pair(&c[i]) == 0);
    d[i] = (drain_t){.fd = c[i].raw, .expect = 150000, .check = 1,
                     .seed = 13, .start = 100};
    drain_start(&d[i]);
  }
  for (int i = 0; i < N; i++) {
    sock_packet_s *p = checkout();
    REQUIRE(p);
    p->buffer = (void *)(intptr_t)fd;
    p->length = 150000;
    p->metadata.is_fd = 1;
    p->metadata.keep_open = 1;
    p->metadata.offset = 100;
    CHECK_EQ(sock_send_packet(c[i].uuid, p), 0);
  }
  for (int i = 0; i < N; i++)
    sock_flush_strong(c[i].uuid);
  for (int i = 0; i < N; i++) {
    drain_join(&d[i]);
    CHECK_EQ(d[i].got, 150000);
    CHECK_EQ(d[i].bad_at, SIZE_MAX);
  }
  /* keep_open: the fd is still ours */
  CHECK(fd_is_same_file(fd, &st));
  for (int i = 0; i < N; i++) {
    sock_force_close(c[i].uuid);
    close(c[i].raw);
  }
  CHECK(fd_is_same_file(fd, &st));
  close(fd);
}

TEST(is_fd_packet_closes_without_keep_open) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  int fd = make_temp_file(30000, 14);
  REQUIRE(fd >= 0);
  struct stat st;
  fstat(fd, &st);
  sock_packet_s *p = checkout();
  REQUIRE(p);
  p->buffer = (void *)(intptr_t)fd;
  p->length = 30000;
  p->metadata.is_fd = 1;
  drain_t d = {.fd = c.raw, .expect = 30000, .check = 1, .seed = 14};
  drain_start(&d);
  CHECK_EQ(sock_send_packet(c.uuid, p), 0);
  sock_flush_strong(c.uuid);
  drain_join(&d);
  CHECK_EQ(d.got, 30000);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  CHECK(!fd_is_same_file(fd, &st));
  conn_force_close(&c);
}

/* Check out as many packets as the pool hands out at once (up to
 * BUFFER_PACKET_POOL), give them back, and return how many there were. */
static int checkout_whole_pool(void) {
  sock_packet_s *held[BUFFER_PACKET_POOL];
  int got = 0;
  for (; got < BUFFER_PACKET_POOL; got++) {
    held[got] = sock_checkout_packet();
    if (!held[got])
      break;
  }
  for (int i = 0; i < got; i++)
    sock_free_packet(held[i]);
  return got;
}

TEST(free_packet_unsent_chain) {
  int fa = make_temp_file(100, 1), fb = make_temp_file(100, 2);
  REQUIRE(fa >= 0 && fb >= 0);
  struct stat sa, sb;
  fstat(fa, &sa);
  fstat(fb, &sb);
  sock_packet_s *p1 = checkout(), *p2 = checkout(), *p3 = checkout(),
                *p4 = checkout(), *p5 = checkout();
  REQUIRE(p1 && p2 && p3 && p4 && p5);
  memcpy(p1->buffer, "x", 1);
  p1->length = 1;
  void *ext = malloc(1000);
  p2->buffer = ext;
  p2->length = 1000;
  p2->metadata.external = 1;
  p2->metadata.dealloc = counting_dealloc;
  p3->buffer = (void *)(intptr_t)fa;
  p3->length = 100;
  p3->metadata.is_fd = 1;
  p4->buffer = (void *)(intptr_t)fb;
  p4->length = 100;
  p4->metadata.is_fd = 1;
  p4->metadata.keep_open = 1;
  *p5 = (sock_packet_s){.buffer = (void *)static_msg, .length = 5};
  p1->metadata.next = p2;
  p2->metadata.next = p3;
  p3->metadata.next = p4;
  p4->metadata.next = p5;
  sock_free_packet(p1);
  CHECK_EQ(atomic_load(&dealloc_calls), 1);
  CHECK_EQ(dealloc_count_of(ext), 1);
  CHECK(!fd_is_same_file(fa, &sa)); /* closed */
  CHECK(fd_is_same_file(fb, &sb));  /* keep_open */
  close(fb);
  CHECK(!strcmp(static_msg, "static memory, never freed"));
  /* all five went back to the pool: the whole pool can be checked out */
  int got = checkout_whole_pool();
  CHECK_EQ(got, BUFFER_PACKET_POOL);
}

TEST(free_packet_null) {
  sock_free_packet(NULL);
  sock_free_packet(NULL);
  sock_packet_s *p = checkout();
  CHECK(p != NULL);
  sock_free_packet(p);
}

TEST(send_packet_invalid_uuid_frees) {
  intptr_t bad[] = {-1, ((intptr_t)1 << 32) | 0x7fffffff, make_uuid(-4, 2),
                    make_uuid(3, 12345)};
  int expect = 0;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    sock_packet_s *p = checkout();
    REQUIRE(p);
    void *ext = malloc(100);
    p->buffer = ext;
    p->length = 100;
    p->metadata.external = 1;
    p->metadata.dealloc = counting_dealloc;
    CHECK_EQ(sock_send_packet(bad[i], p), -1);
    expect++;
    CHECK_EQ(atomic_load(&dealloc_calls), expect);
    CHECK(dealloc_seen[expect - 1] == ext); /* freed this very buffer */
  }
  /* a stale uuid and a chain of two externals */
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  intptr_t stale = c.uuid;
  sock_force_close(stale);
  sock_packet_s *p = checkout(), *q = checkout();
  REQUIRE(p && q);
  void *e1 = malloc(10), *e2 = malloc(10);
  p->buffer = e1;
  p->length = 10;
  p->metadata.external = 1;
  p->metadata.dealloc = counting_dealloc;
  q->buffer = e2;
  q->length = 10;
  q->metadata.external = 1;
  q->metadata.dealloc = counting_dealloc;
  p->metadata.next = q;
  CHECK_EQ(sock_send_packet(stale, p), -1);
  CHECK_EQ(atomic_load(&dealloc_calls), expect + 2);
  CHECK((dealloc_seen[expect] == e1 && dealloc_seen[expect + 1] == e2) ||
        (dealloc_seen[expect] == e2 && dealloc_seen[expect + 1] == e1));
  /* an is_fd packet to an invalid uuid: the fd is closed */
  int fd = make_temp_file(10, 1);
  struct stat st;
  fstat(fd, &st);
  p = checkout();
  REQUIRE(p);
  p->buffer = (void *)(intptr_t)fd;
  p->length = 10;
  p->metadata.is_fd = 1;
  CHECK_EQ(sock_send_packet(-1, p), -1);
  CHECK(!fd_is_same_file(fd, &st));
  close(c.raw);
}

TEST(pool_recycled_after_failed_sends) {
  /* 3x the pool of packets sent to an invalid uuid: none may leak */
  for (int i = 0; i < 3 * BUFFER_PACKET_POOL; i++) {
    sock_packet_s *p = checkout();
    REQUIRE(p);
    p->length = 1;
    CHECK_EQ(sock_send_packet(-1, p), -1);
  }
  int got = checkout_whole_pool();
  CHECK_EQ(got, BUFFER_PACKET_POOL);
}

TEST(pool_is_bounded) {
  sock_packet_s **held = calloc(BUFFER_PACKET_POOL, sizeof(*held));
  for (int i = 0; i < BUFFER_PACKET_POOL; i++) {
    held[i] = checkout();
    REQUIRE(held[i]);
  }
  /* the pool is exhausted: the extra checkout must wait (bounded pool) */
  int re = checkout_waits_for_release(held[0]);
  REQUIRE(re != -1);
  CHECK_MSG(re == 0, "checkout succeeded with %d packets held",
            BUFFER_PACKET_POOL);
  for (int i = 1; i < BUFFER_PACKET_POOL; i++)
    sock_free_packet(held[i]);
  free(held);
}

TEST(send_packet_null) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  (void)sock_send_packet(c.uuid, NULL); /* must not crash */
  CHECK_EQ(sock_isvalid(c.uuid), 1);
  CHECK_EQ(sock_write(c.uuid, "ok", 2), 0);
  sock_flush_strong(c.uuid);
  expect_raw_bytes(&c, "ok", 2);
  conn_force_close(&c);
}

TEST(write2_move) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  char *m = malloc(30000);
  fill_pattern((uint8_t *)m, 30000, 0, 44);
  CHECK_EQ(sock_write2(.fduuid = c.uuid, .buffer = m, .length = 30000,
                       .move = 1),
           0);
  /* library owns and frees it; nothing to do here (valgrind checks) */
  drain_t d = {.fd = c.raw, .expect = 30000, .check = 1, .seed = 44};
  drain_start(&d);
  sock_flush_strong(c.uuid);
  drain_join(&d);
  CHECK_EQ(d.got, 30000);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  /* .move with an invalid uuid: freed anyway, -1 */
  m = malloc(100);
  errno = 0;
  CHECK_EQ(sock_write2(.fduuid = -1, .buffer = m, .length = 100, .move = 1),
           -1);
  CHECK_EQ(errno, ENODEV);
  conn_force_close(&c);
}

#ifdef __GLIBC__
/* bytes in mmapped malloc blocks: a 4 MiB block is always mmapped once the
 * mmap threshold is fixed, and returned to the system by free() */
static size_t mmapped_bytes(void) { return mallinfo2().hblkhd; }
#endif

TEST(move_buffer_freed_without_valgrind) {
  /* .move: the library frees the buffer once sent, and also when the call
   * fails (spec 3: "ownership passes to the library even on failure").
   * Observed through glibc's accounting of mmapped blocks. */
#ifndef __GLIBC__
  SKIP("needs glibc mallinfo2");
#else
  mallopt(M_MMAP_THRESHOLD, 128 * 1024); /* fixed: no dynamic threshold */
  size_t big = 4u << 20;
  size_t base = mmapped_bytes();
  char *m = malloc(big);
  REQUIRE(m);
  memset(m, 'v', big);
  if (mmapped_bytes() < base + big) {
    free(m);
    SKIP("malloc is not glibc's (valgrind?): no mmap accounting");
  }
  errno = 0;
  CHECK_EQ(sock_write2(.fduuid = -1, .buffer = m, .length = big, .move = 1),
           -1);
  CHECK_EQ(errno, ENODEV);
  CHECK_MSG(mmapped_bytes() < base + big,
            "moved buffer not freed after a failed sock_write2 (invalid "
            "uuid)");
  /* stale uuid */
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  intptr_t stale = c.uuid;
  sock_force_close(stale);
  close(c.raw);
  base = mmapped_bytes();
  m = malloc(big);
  memset(m, 'w', big);
  CHECK_EQ(sock_write2(.fduuid = stale, .buffer = m, .length = big, .move = 1),
           -1);
  CHECK_MSG(mmapped_bytes() < base + big,
            "moved buffer not freed after a failed sock_write2 (stale uuid)");
  /* success: freed once sent */
  REQUIRE(make_unix_pair(&c) == 0);
  base = mmapped_bytes();
  m = malloc(big);
  fill_pattern((uint8_t *)m, big, 0, 45);
  drain_t d = {.fd = c.raw, .expect = big, .check = 1, .seed = 45};
  drain_start(&d);
  CHECK_EQ(sock_write2(.fduuid = c.uuid, .buffer = m, .length = big,
                       .move = 1),
           0);
  sock_flush_strong(c.uuid);
  drain_join(&d);
  CHECK_EQ(d.got, big);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  int64_t end = now_ms() + 2000;
  while (mmapped_bytes() >= base + big && now_ms() < end) {
    sock_flush(c.uuid);
    tiny_wait();
  }
  CHECK_MSG(mmapped_bytes() < base + big, "moved buffer not freed once sent");
  conn_force_close(&c);
#endif
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(checkout_defaults);
  RUN(send_pool_packet);
  RUN(external_buffer_custom_dealloc);
  RUN(external_buffer_default_free);
  RUN(compound_literal_static_buffer);
  RUN(compound_literal_urgent_ws_frame);
  RUN(packet_chain_mixed);
  RUN(is_fd_keep_open_many_clients);
  RUN(is_fd_packet_closes_without_keep_open);
  RUN(free_packet_unsent_chain);
  RUN(free_packet_null);
  RUN(send_packet_invalid_uuid_frees);
  RUN(pool_recycled_after_failed_sends);
  RUN(pool_is_bounded);
  RUN(send_packet_null);
  RUN(write2_move);
  RUN(move_buffer_freed_without_valgrind);
  return HARNESS_END();
}
