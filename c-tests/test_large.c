/* Writes larger than the user-land pool: sock_write blocks (flushing) until
 * everything fits, never a partial write, never a deadlock. */
#define TEST_DEFINE_CALLBACKS
#include "util.h"

#define MiB (1024u * 1024u)

typedef struct {
  intptr_t uuid;
  const uint8_t *buf;
  size_t len;
  ssize_t ret;
  int chunks; /* write as this many sock_write calls (1 = one call) */
  pthread_t th;
} writer_t;

static void *writer_main(void *arg) {
  writer_t *w = arg;
  w->ret = 0;
  size_t per = w->len / (size_t)(w->chunks ? w->chunks : 1);
  size_t off = 0;
  while (off < w->len && w->ret == 0) {
    size_t n = w->len - off;
    if (w->chunks > 1 && n > per)
      n = per;
    w->ret = sock_write(w->uuid, w->buf + off, n);
    off += n;
  }
  if (w->ret == 0)
    sock_flush_strong(w->uuid);
  return NULL;
}

/* A new n-byte buffer of pattern `seed` to send, and a reader thread on
 * c->raw that checks the same pattern (see join_pattern_reader). */
static int start_pattern_transfer(conn_t *c, drain_t *d, uint8_t **src,
                                  size_t n, uint32_t seed) {
  *src = malloc(n);
  SETUP_REQUIRE(*src);
  fill_pattern(*src, n, 0, seed);
  *d = (drain_t){.fd = c->raw, .expect = n, .check = 1, .seed = seed,
                 .timeout_ms = 30000};
  SETUP_REQUIRE(drain_start(d) == 0);
  return 0;
}

static void join_pattern_reader(drain_t *d, size_t n) {
  drain_join(d);
  CHECK_EQ(d->got, n);
  CHECK_MSG(d->bad_at == SIZE_MAX, "first wrong byte at %zu", d->bad_at);
}

/* sock_write from a thread, in `chunks` calls; returns its result */
static ssize_t write_from_thread(intptr_t uuid, const uint8_t *buf, size_t n,
                                 int chunks) {
  writer_t w = {.uuid = uuid, .buf = buf, .len = n, .chunks = chunks};
  pthread_create(&w.th, NULL, writer_main, &w);
  pthread_join(w.th, NULL);
  return w.ret;
}

static void big_single_write(conn_t *c, size_t n, uint32_t seed) {
  uint8_t *src;
  drain_t d;
  REQUIRE(start_pattern_transfer(c, &d, &src, n, seed) == 0);
  ssize_t ret = write_from_thread(c->uuid, src, n, 1);
  CHECK_EQ(ret, 0);
  join_pattern_reader(&d, n);
  CHECK_EQ(sock_packets_pending(c->uuid), 0);
  CHECK_EQ(sock_isvalid(c->uuid), 1);
  /* the connection still works normally afterwards */
  CHECK_EQ(sock_write(c->uuid, "tail", 4), 0);
  sock_flush_strong(c->uuid);
  char t[4];
  CHECK_EQ(raw_read_n(c->raw, t, 4, 5000, NULL), 4);
  CHECK(!memcmp(t, "tail", 4));
  /* the caller's buffer was copied, not kept: reuse it freely */
  memset(src, 0, n);
  free(src);
  sock_force_close(c->uuid);
  close(c->raw);
}

TEST(write_64mib_tcp) {
  conn_t c;
  REQUIRE(make_tcp_pair(&c) == 0);
  big_single_write(&c, 64 * MiB, 64);
}

TEST(write_64mib_unix) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  big_single_write(&c, 64 * MiB, 65);
}

TEST(write_odd_size_beyond_pool) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  /* pool + a bit, not a multiple of the packet size */
  big_single_write(&c,
                   (size_t)BUFFER_PACKET_POOL * BUFFER_PACKET_SIZE + 12345, 66);
}

TEST(many_writes_exceeding_pool) {
  /* 40 MiB in 1000 sock_write calls of ~40 KiB (more than the pool in
   * total) while a reader drains */
  conn_t c;
  REQUIRE(make_tcp_pair(&c) == 0);
  size_t n = 40 * MiB;
  uint8_t *src;
  drain_t d;
  REQUIRE(start_pattern_transfer(&c, &d, &src, n, 77) == 0);
  ssize_t ret = write_from_thread(c.uuid, src, n, 1000);
  CHECK_EQ(ret, 0);
  join_pattern_reader(&d, n);
  free(src);
  conn_force_close(&c);
}

TEST(concurrent_big_writes_separate_connections) {
  /* 4 threads, each writing 24 MiB in one call to its own connection:
   * 96 MiB against a 16 MiB pool at the same time */
  enum { N = 4 };
  size_t n = 24 * MiB;
  conn_t c[N];
  drain_t d[N];
  writer_t w[N];
  uint8_t *src[N];
  for (int i = 0; i < N; i++) {
    if (i % 2)
      REQUIRE(make_tcp_pair(&c[i]) == 0);
    else
      REQUIRE(make_unix_pair(&c[i]) == 0);
    REQUIRE(start_pattern_transfer(&c[i], &d[i], &src[i], n,
                                   200 + (uint32_t)i) == 0);
  }
  for (int i = 0; i < N; i++) {
    w[i] = (writer_t){.uuid = c[i].uuid, .buf = src[i], .len = n, .chunks = 1};
    pthread_create(&w[i].th, NULL, writer_main, &w[i]);
  }
  for (int i = 0; i < N; i++) {
    pthread_join(w[i].th, NULL);
    CHECK_EQ(w[i].ret, 0);
  }
  for (int i = 0; i < N; i++) {
    drain_join(&d[i]);
    CHECK_EQ(d[i].got, n);
    CHECK_MSG(d[i].bad_at == SIZE_MAX, "conn %d: first wrong byte at %zu", i,
              d[i].bad_at);
    conn_force_close(&c[i]);
    free(src[i]);
  }
}

TEST(big_write_to_pipe) {
  int p[2];
  REQUIRE(pipe(p) == 0);
  sock_set_non_block(p[1]);
  intptr_t u = sock_open(p[1]);
  REQUIRE(u != -1);
  conn_t c = {.uuid = u, .lfd = p[1], .raw = p[0]};
  big_single_write(&c, 20 * MiB, 88);
}

TEST(move_big_buffer) {
  /* .move = 1 with a buffer larger than the pool: library frees it */
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  size_t n = 20 * MiB;
  uint8_t *src;
  drain_t d;
  REQUIRE(start_pattern_transfer(&c, &d, &src, n, 99) == 0);
  CHECK_EQ(sock_write2(.fduuid = c.uuid, .buffer = src, .length = n,
                       .move = 1),
           0);
  src = NULL; /* owned by the library now */
  sock_flush_strong(c.uuid);
  join_pattern_reader(&d, n);
  conn_force_close(&c);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(write_64mib_tcp);
  RUN(write_64mib_unix);
  RUN(write_odd_size_beyond_pool);
  RUN(many_writes_exceeding_pool);
  RUN(concurrent_big_writes_separate_connections);
  RUN(big_write_to_pipe);
  RUN(move_big_buffer);
  return HARNESS_END();
}
