/* Read/write hooks (sock_rw_hook_s): an XOR "encryption" layer, a
 * buffering flush hook, on_clear, files through hooks. */
#define TEST_DEFINE_CALLBACKS
#include "util.h"

#define MAXFD 4096
#define MiB (1024u * 1024u)

/* per-fd stream positions of the XOR layer */
static uint64_t wpos[MAXFD], rpos[MAXFD];
static atomic_long hook_write_calls, hook_read_calls;

static uint8_t key_at(uint64_t pos) {
  return (uint8_t)(0xA5 ^ (pos * 31) ^ (pos >> 9));
}
static void xor_block(uint8_t *b, size_t n, uint64_t pos) {
  for (size_t i = 0; i < n; i++)
    b[i] ^= key_at(pos + i);
}

static ssize_t xor_write(intptr_t uuid, const void *buf, size_t count) {
  int fd = sock_uuid2fd(uuid);
  uint8_t tmp[65536];
  size_t n = count < sizeof(tmp) ? count : sizeof(tmp);
  memcpy(tmp, buf, n);
  xor_block(tmp, n, wpos[fd]);
  atomic_fetch_add(&hook_write_calls, 1);
  ssize_t w = write(fd, tmp, n);
  if (w > 0)
    wpos[fd] += (uint64_t)w;
  return w;
}

static ssize_t xor_read(intptr_t uuid, void *buf, size_t count) {
  int fd = sock_uuid2fd(uuid);
  atomic_fetch_add(&hook_read_calls, 1);
  ssize_t r = read(fd, buf, count);
  if (r > 0) {
    xor_block(buf, (size_t)r, rpos[fd]);
    rpos[fd] += (uint64_t)r;
  }
  return r;
}

/* on_clear bookkeeping */
static atomic_int clear_calls;
static intptr_t clear_uuid[64];
static struct sock_rw_hook_s *clear_hook[64];
static void count_clear(intptr_t uuid, struct sock_rw_hook_s *h) {
  int i = atomic_fetch_add(&clear_calls, 1);
  if (i < 64) {
    clear_uuid[i] = uuid;
    clear_hook[i] = h;
  }
}
static int clear_count_of(intptr_t uuid) {
  int n = atomic_load(&clear_calls), c = 0;
  for (int i = 0; i < n && i < 64; i++)
    c += clear_uuid[i] == uuid;
  return c;
}

static sock_rw_hook_s xor_hooks = {.read = xor_read,
                                   .write = xor_write,
                                   .on_clear = count_clear};

static void reset_pos(int fd) {
  wpos[fd] = 0;
  rpos[fd] = 0;
}

TEST(hook_get_set) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  CHECK(sock_rw_hook_get(c.uuid) == NULL);
  CHECK_EQ(sock_rw_hook_set(c.uuid, &xor_hooks), 0);
  CHECK(sock_rw_hook_get(c.uuid) == &xor_hooks);
  sock_rw_hook_s other = {0};
  CHECK_EQ(sock_rw_hook_set(c.uuid, &other), 0);
  CHECK(sock_rw_hook_get(c.uuid) == &other);
  CHECK_EQ(sock_rw_hook_set(c.uuid, NULL), 0);
  CHECK(sock_rw_hook_get(c.uuid) == NULL);
  /* cleared: plain data again */
  CHECK_EQ(sock_write(c.uuid, "plain", 5), 0);
  sock_flush_strong(c.uuid);
  expect_raw_bytes(&c, "plain", 5);
  /* invalid uuids */
  CHECK_EQ(sock_rw_hook_set(-1, &xor_hooks), -1);
  CHECK_EQ(sock_rw_hook_set(((intptr_t)1 << 32) | 0x7fffffff, &xor_hooks), -1);
  CHECK_EQ(sock_rw_hook_set(make_uuid(-2, 0), &xor_hooks), -1);
  CHECK(sock_rw_hook_get(-1) == NULL);
  CHECK(sock_rw_hook_get(((intptr_t)1 << 32) | 0x7fffffff) == NULL);
  intptr_t stale = c.uuid;
  sock_force_close(stale);
  CHECK_EQ(sock_rw_hook_set(stale, &xor_hooks), -1);
  CHECK(sock_rw_hook_get(stale) == NULL);
  close(c.raw);
}

TEST(xor_write_hook_raw_peer) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  reset_pos(c.lfd);
  CHECK_EQ(sock_rw_hook_set(c.uuid, &xor_hooks), 0);
  size_t n = 300000;
  uint8_t *src = malloc(n);
  fill_pattern(src, n, 0, 51);
  drain_t d = {.fd = c.raw, .expect = n, .store = malloc(n), .store_cap = n};
  drain_start(&d);
  long before = atomic_load(&hook_write_calls);
  CHECK_EQ(sock_write(c.uuid, src, n), 0);
  sock_flush_strong(c.uuid);
  drain_join(&d);
  CHECK_GT(atomic_load(&hook_write_calls), before);
  CHECK_EQ(d.got, n);
  CHECK(memcmp(d.store, src, n) != 0); /* the wire carries XORed bytes */
  xor_block(d.store, n, 0);
  CHECK(!memcmp(d.store, src, n));
  free(src);
  free(d.store);
  conn_force_close(&c);
}

TEST(xor_read_hook_raw_peer) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  reset_pos(c.lfd);
  CHECK_EQ(sock_rw_hook_set(c.uuid, &xor_hooks), 0);
  size_t n = 100000;
  uint8_t *src = malloc(n), *wire = malloc(n), *got = malloc(n);
  fill_pattern(src, n, 0, 52);
  memcpy(wire, src, n);
  xor_block(wire, n, 0);
  REQUIRE(raw_write_all(c.raw, wire, 60000, 5000) == 0);
  size_t k = lib_read_n(c.uuid, got, 60000, 5000);
  CHECK_EQ(k, 60000);
  REQUIRE(raw_write_all(c.raw, wire + 60000, n - 60000, 5000) == 0);
  k += lib_read_n(c.uuid, got + k, n - k, 5000);
  CHECK_EQ(k, n);
  CHECK(!memcmp(got, src, n));
  CHECK_GT(atomic_load(&hook_read_calls), 0);
  free(src);
  free(wire);
  free(got);
  conn_force_close(&c);
}

TEST(xor_both_ends_library_tcp) {
  char port[16];
  intptr_t srv, cl, ac;
  REQUIRE(lib_tcp_trio(port, &srv, &cl, &ac) == 0);
  REQUIRE(wait_connected(cl, 5000) == 0);
  reset_pos(sock_uuid2fd(cl));
  reset_pos(sock_uuid2fd(ac));
  CHECK_EQ(sock_rw_hook_set(cl, &xor_hooks), 0);
  CHECK_EQ(sock_rw_hook_set(ac, &xor_hooks), 0);
  exchange_both_ways(cl, ac, 1 * MiB, 53, 54);
  lib_tcp_trio_close(srv, cl, ac);
}

static void file_through_hook(conn_t *c, size_t fsz, off_t off, size_t len,
                              size_t expect, int use_packet) {
  reset_pos(c->lfd);
  CHECK_EQ(sock_rw_hook_set(c->uuid, &xor_hooks), 0);
  int fd = make_temp_file(fsz, 55);
  REQUIRE(fd >= 0);
  struct stat st;
  fstat(fd, &st);
  drain_t d = {.fd = c->raw, .expect = expect, .store = malloc(expect + 1),
               .store_cap = expect};
  drain_start(&d);
  long before = atomic_load(&hook_write_calls);
  if (use_packet) {
    sock_packet_s *p = sock_checkout_packet();
    REQUIRE(p);
    p->buffer = (void *)(intptr_t)fd;
    p->length = (ssize_t)len;
    p->metadata.is_fd = 1;
    p->metadata.offset = off;
    p->metadata.keep_open = 1;
    CHECK_EQ(sock_send_packet(c->uuid, p), 0);
  } else {
    CHECK_EQ(sock_sendfile(c->uuid, fd, off, len), 0);
  }
  sock_flush_strong(c->uuid);
  drain_join(&d);
  CHECK_EQ(d.got, expect);
  CHECK_GT(atomic_load(&hook_write_calls), before);
  /* the peer reading raw sees XORed file bytes: sendfile(2) was not used */
  xor_block(d.store, d.got, 0);
  CHECK_MSG(check_pattern(d.store, d.got, (uint64_t)off, 55) == d.got,
            "file bytes did not go through the write hook");
  if (use_packet) {
    CHECK(fd_is_same_file(fd, &st));
    close(fd);
  } else {
    CHECK(!fd_is_same_file(fd, &st));
  }
  free(d.store);
}

TEST(sendfile_through_write_hook) {
  conn_t c;
  REQUIRE(make_tcp_pair(&c) == 0);
  file_through_hook(&c, 1 * MiB + 77, 0, 1 * MiB + 77, 1 * MiB + 77, 0);
  conn_force_close(&c);
}

TEST(sendfile_window_through_write_hook) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  file_through_hook(&c, 200000, 12345, 50000, 50000, 0);
  conn_force_close(&c);
  REQUIRE(make_unix_pair(&c) == 0);
  file_through_hook(&c, 200000, 150000, 1000000, 50000, 0); /* to EOF */
  conn_force_close(&c);
}

TEST(fd_packet_keep_open_through_write_hook) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  file_through_hook(&c, 100000, 100, 60000, 60000, 1);
  conn_force_close(&c);
}

/* --- a hook that buffers internally (like TLS records) ------------------ */
#define BH_CAP 65536
#define BH_HOLD 10 /* the write hook always holds back the last bytes */
static struct {
  uint8_t buf[BH_CAP];
  size_t len;
} bh;
static atomic_int bh_flush_calls;

static ssize_t bh_drain(int fd, size_t keep) {
  while (bh.len > keep) {
    ssize_t w = write(fd, bh.buf, bh.len - keep);
    if (w > 0) {
      memmove(bh.buf, bh.buf + w, bh.len - (size_t)w);
      bh.len -= (size_t)w;
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      return 0;
    return -1;
  }
  return 0;
}

static ssize_t bh_write(intptr_t uuid, const void *buf, size_t count) {
  int fd = sock_uuid2fd(uuid);
  if (bh_drain(fd, BH_HOLD) < 0)
    return -1;
  size_t space = BH_CAP - bh.len;
  if (space == 0) {
    errno = EAGAIN;
    return -1;
  }
  size_t n = count < space ? count : space;
  memcpy(bh.buf + bh.len, buf, n);
  bh.len += n;
  if (bh_drain(fd, BH_HOLD) < 0)
    return -1;
  return (ssize_t)n;
}

static ssize_t bh_flush(intptr_t uuid) {
  atomic_fetch_add(&bh_flush_calls, 1);
  if (bh_drain(sock_uuid2fd(uuid), 0) < 0)
    return -1;
  return (ssize_t)bh.len;
}

static sock_rw_hook_s buffering_hooks = {
    .write = bh_write, .flush = bh_flush, .on_clear = count_clear};

/* A socketpair (sndbuf as for make_unix_pair_buf, 0: default) with the
 * buffering hooks installed and their buffer empty. */
static int make_buffered_pair(conn_t *c, int sndbuf) {
  SETUP_REQUIRE(make_unix_pair_buf(c, sndbuf) == 0);
  bh.len = 0;
  CHECK_EQ(sock_rw_hook_set(c->uuid, &buffering_hooks), 0);
  return 0;
}

TEST(flush_hook_delivers_before_close) {
  conn_t c;
  REQUIRE(make_buffered_pair(&c, 8192) == 0);
  size_t n = 300000;
  write_pattern(c.uuid, n, 56);
  sock_close(c.uuid);
  CHECK_EQ(close_count(c.uuid), 0);
  drain_t d = {.fd = c.raw, .expect = n, .check = 1, .seed = 56,
               .until_eof = 1, .timeout_ms = 10000};
  CHECK(drain_while_closing(&c, &d, 20000));
  CHECK_MSG(d.got == n, "peer got %zu of %zu bytes (hook held %zu)", d.got, n,
            bh.len);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  CHECK(d.eof);
  CHECK_GT(atomic_load(&bh_flush_calls), 0);
  CHECK_EQ(bh.len, 0);
  CHECK_EQ(close_count(c.uuid), 1);
  CHECK_EQ(clear_count_of(c.uuid), 1);
  close(c.raw);
}

TEST(flush_hook_small_write_then_close) {
  /* the hook holds back the whole (tiny) message: only flush sends it */
  conn_t c;
  REQUIRE(make_buffered_pair(&c, 0) == 0);
  CHECK_EQ(sock_write(c.uuid, "tiny", 4), 0);
  sock_close(c.uuid);
  CHECK(flush_until_closed(c.uuid, 5000));
  char b[8];
  int eof = 0;
  CHECK_EQ(raw_read_n(c.raw, b, 5, 5000, &eof), 4);
  CHECK(!memcmp(b, "tiny", 4));
  CHECK(eof);
  CHECK_EQ(close_count(c.uuid), 1);
  close(c.raw);
}

TEST(flush_strong_includes_hook_buffer) {
  /* the hook holds back bytes; sock_flush_strong returns only once
   * everything queued was sent -- the hook's buffer is part of it (the
   * library asks the flush hook) */
  conn_t c;
  REQUIRE(make_buffered_pair(&c, 0) == 0);
  CHECK_EQ(sock_write(c.uuid, "twenty bytes payload", 20), 0);
  sock_flush_strong(c.uuid);
  CHECK_EQ(sock_packets_pending(c.uuid), 0);
  CHECK_EQ(bh.len, 0);
  expect_raw_bytes(&c, "twenty bytes payload", 20);
  conn_force_close(&c);
}

TEST(on_clear_once_per_close_kind) {
  /* sock_close */
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  CHECK_EQ(sock_rw_hook_set(c.uuid, &xor_hooks), 0);
  sock_close(c.uuid);
  CHECK_EQ(clear_count_of(c.uuid), 1);
  CHECK(clear_hook[0] == &xor_hooks);
  sock_close(c.uuid);
  sock_force_close(c.uuid);
  CHECK_EQ(clear_count_of(c.uuid), 1);
  close(c.raw);
  /* sock_force_close */
  REQUIRE(make_unix_pair(&c) == 0);
  CHECK_EQ(sock_rw_hook_set(c.uuid, &xor_hooks), 0);
  sock_force_close(c.uuid);
  CHECK_EQ(clear_count_of(c.uuid), 1);
  close(c.raw);
  /* end of stream on read */
  REQUIRE(make_unix_pair(&c) == 0);
  reset_pos(c.lfd);
  CHECK_EQ(sock_rw_hook_set(c.uuid, &xor_hooks), 0);
  close(c.raw);
  ssize_t r = read_until_nonzero(c.uuid, 5000);
  CHECK_EQ(r, -1);
  CHECK_EQ(clear_count_of(c.uuid), 1);
  /* fd reused through sock_open while still marked open */
  REQUIRE(make_unix_pair(&c) == 0);
  CHECK_EQ(sock_rw_hook_set(c.uuid, &xor_hooks), 0);
  intptr_t b2 = sock_open(c.lfd);
  REQUIRE(b2 != -1);
  CHECK_EQ(clear_count_of(c.uuid), 1);
  CHECK(sock_rw_hook_get(b2) == NULL); /* the new connection has no hooks */
  CHECK_EQ(clear_count_of(b2), 0);
  sock_force_close(b2);
  CHECK_EQ(clear_count_of(b2), 0); /* b2 never had hooks */
  close(c.raw);
  CHECK_EQ(atomic_load(&clear_calls), 4);
  for (int i = 0; i < 4; i++)
    CHECK(clear_hook[i] == &xor_hooks);
}

static atomic_int selffree_calls;
static void free_self(intptr_t uuid, struct sock_rw_hook_s *h) {
  (void)uuid;
  atomic_fetch_add(&selffree_calls, 1);
  free(h);
}

TEST(on_clear_frees_heap_hook) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  reset_pos(c.lfd);
  sock_rw_hook_s *h = malloc(sizeof(*h));
  *h = (sock_rw_hook_s){.read = xor_read, .write = xor_write,
                        .on_clear = free_self};
  CHECK_EQ(sock_rw_hook_set(c.uuid, h), 0);
  CHECK_EQ(sock_write(c.uuid, "abc", 3), 0);
  sock_flush_strong(c.uuid);
  uint8_t b[3];
  CHECK_EQ(raw_read_n(c.raw, b, 3, 5000, NULL), 3);
  xor_block(b, 3, 0);
  CHECK(!memcmp(b, "abc", 3));
  sock_close(c.uuid);
  CHECK_EQ(atomic_load(&selffree_calls), 1);
  close(c.raw);
}

static atomic_int eagain_left;
static ssize_t eagain_read(intptr_t uuid, void *buf, size_t count) {
  if (atomic_load(&eagain_left) > 0) {
    atomic_fetch_sub(&eagain_left, 1);
    errno = EAGAIN;
    return -1;
  }
  return read(sock_uuid2fd(uuid), buf, count);
}

TEST(read_hook_nothing_yet) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  sock_rw_hook_s h = {.read = eagain_read};
  CHECK_EQ(sock_rw_hook_set(c.uuid, &h), 0);
  REQUIRE(raw_write_all(c.raw, "data", 4, 5000) == 0);
  atomic_store(&eagain_left, 3);
  char b[8];
  for (int i = 0; i < 3; i++)
    CHECK_EQ(sock_read(c.uuid, b, sizeof(b)), 0);
  CHECK_EQ(sock_isvalid(c.uuid), 1);
  CHECK_EQ(sock_read(c.uuid, b, sizeof(b)), 4);
  CHECK(!memcmp(b, "data", 4));
  conn_force_close(&c);
}

static ssize_t eof_read(intptr_t uuid, void *buf, size_t count) {
  (void)uuid;
  (void)buf;
  (void)count;
  return 0;
}

TEST(read_hook_end_of_stream) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  sock_rw_hook_s h = {.read = eof_read, .on_clear = count_clear};
  CHECK_EQ(sock_rw_hook_set(c.uuid, &h), 0);
  char b[8];
  CHECK_EQ(sock_read(c.uuid, b, sizeof(b)), -1);
  CHECK_EQ(sock_isvalid(c.uuid), 0);
  CHECK_EQ(close_count(c.uuid), 1);
  CHECK_EQ(clear_count_of(c.uuid), 1);
  close(c.raw);
}

static ssize_t broken_write(intptr_t uuid, const void *buf, size_t count) {
  (void)uuid;
  (void)buf;
  (void)count;
  errno = ECONNRESET;
  return -1;
}

TEST(write_hook_error_closes) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  sock_rw_hook_s h = {.write = broken_write, .on_clear = count_clear};
  CHECK_EQ(sock_rw_hook_set(c.uuid, &h), 0);
  (void)sock_write(c.uuid, "doomed", 6);
  CHECK(flush_until_closed(c.uuid, 5000));
  CHECK_EQ(sock_isvalid(c.uuid), 0);
  CHECK_EQ(close_count(c.uuid), 1);
  CHECK_EQ(clear_count_of(c.uuid), 1);
  close(c.raw);
}

TEST(hook_null_members_fall_back) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  sock_rw_hook_s h = {.on_clear = count_clear}; /* all I/O members NULL */
  CHECK_EQ(sock_rw_hook_set(c.uuid, &h), 0);
  CHECK_EQ(sock_write(c.uuid, "sys", 3), 0);
  sock_flush_strong(c.uuid);
  expect_raw_bytes(&c, "sys", 3);
  REQUIRE(raw_write_all(c.raw, "call", 4, 5000) == 0);
  char b[4];
  CHECK_EQ(lib_read_n(c.uuid, b, 4, 5000), 4);
  CHECK(!memcmp(b, "call", 4));
  /* files too (no write hook: sendfile path is allowed) */
  int fd = make_temp_file(10000, 57);
  drain_t d = {.fd = c.raw, .expect = 10000, .check = 1, .seed = 57};
  drain_start(&d);
  CHECK_EQ(sock_sendfile(c.uuid, fd, 0, 10000), 0);
  sock_flush_strong(c.uuid);
  drain_join(&d);
  CHECK_EQ(d.got, 10000);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  sock_close(c.uuid);
  CHECK_EQ(clear_count_of(c.uuid), 1);
  close(c.raw);
}

/* hooks are called with no library lock held: they may call the library */
static atomic_int reentrant_ok;
static ssize_t reentrant_write(intptr_t uuid, const void *buf, size_t count) {
  if (sock_rw_hook_get(uuid) != NULL && sock_isvalid(uuid) == 1 &&
      sock_fd2uuid(sock_uuid2fd(uuid)) == uuid)
    atomic_fetch_add(&reentrant_ok, 1);
  (void)sock_packets_pending(uuid);
  return write(sock_uuid2fd(uuid), buf, count);
}
static ssize_t reentrant_read(intptr_t uuid, void *buf, size_t count) {
  if (sock_rw_hook_get(uuid) != NULL && sock_isvalid(uuid) == 1)
    atomic_fetch_add(&reentrant_ok, 1);
  return read(sock_uuid2fd(uuid), buf, count);
}
static void reentrant_clear(intptr_t uuid, struct sock_rw_hook_s *h) {
  (void)h;
  (void)sock_isvalid(uuid);
  (void)sock_rw_hook_get(uuid);
  (void)sock_packets_pending(uuid);
  atomic_fetch_add(&clear_calls, 1);
}

TEST(hooks_may_reenter_library) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  sock_rw_hook_s h = {.read = reentrant_read,
                      .write = reentrant_write,
                      .on_clear = reentrant_clear};
  CHECK_EQ(sock_rw_hook_set(c.uuid, &h), 0);
  CHECK_EQ(sock_write(c.uuid, "re-entry", 8), 0);
  sock_flush_strong(c.uuid);
  char b[8];
  CHECK_EQ(raw_read_n(c.raw, b, 8, 5000, NULL), 8);
  REQUIRE(raw_write_all(c.raw, "back", 4, 5000) == 0);
  CHECK_EQ(lib_read_n(c.uuid, b, 4, 5000), 4);
  CHECK_GE(atomic_load(&reentrant_ok), 2);
  sock_close(c.uuid);
  CHECK_EQ(atomic_load(&clear_calls), 1);
  close(c.raw);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(hook_get_set);
  RUN(xor_write_hook_raw_peer);
  RUN(xor_read_hook_raw_peer);
  RUN(xor_both_ends_library_tcp);
  RUN(sendfile_through_write_hook);
  RUN(sendfile_window_through_write_hook);
  RUN(fd_packet_keep_open_through_write_hook);
  RUN(flush_hook_delivers_before_close);
  RUN(flush_hook_small_write_then_close);
  RUN(flush_strong_includes_hook_buffer);
  RUN(on_clear_once_per_close_kind);
  RUN(on_clear_frees_heap_hook);
  RUN(read_hook_nothing_yet);
  RUN(read_hook_end_of_stream);
  RUN(write_hook_error_closes);
  RUN(hook_null_members_fall_back);
  RUN(hooks_may_reenter_library);
  return HARNESS_END();
}
