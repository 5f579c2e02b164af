/* Urgent data ordering (spec 4.4). The peer does not read while data is
 * queued (small socket buffers keep it queued); then everything is read and
 * the position of the urgent bytes is checked exactly. */
#define TEST_DEFINE_CALLBACKS
#include "util.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

typedef struct {
  uint8_t *data;
  size_t len, cap;
} sbuf_t;

static void sb_add(sbuf_t *s, const void *p, size_t n) {
  if (s->len + n > s->cap) {
    s->cap = (s->len + n) * 2;
    s->data = realloc(s->data, s->cap);
  }
  memcpy(s->data + s->len, p, n);
  s->len += n;
}

static uint8_t *pattern_block(size_t n, uint32_t seed) {
  uint8_t *b = malloc(n);
  fill_pattern(b, n, 0, seed);
  return b;
}

static const char URG[] = "<<URGENT-BYTES>>";
#define URG_LEN (sizeof(URG) - 1)

/* read everything expected while flushing, compare with expected stream */
static void collect_and_compare(conn_t *c, const sbuf_t *expect) {
  drain_t d = {.fd = c->raw, .expect = expect->len,
               .store = malloc(expect->len + 1), .store_cap = expect->len};
  drain_start(&d);
  sock_flush_strong(c->uuid);
  drain_join(&d);
  CHECK_EQ(d.got, expect->len);
  int same = d.got == expect->len && !memcmp(d.store, expect->data, d.got);
  CHECK(same);
  if (!same) {
    uint8_t *pos = memmem(d.store, d.got, URG, URG_LEN);
    uint8_t *epos = memmem(expect->data, expect->len, URG, URG_LEN);
    NOTE("urgent bytes expected at offset %td, found at %td",
         epos ? epos - expect->data : (ptrdiff_t)-1,
         pos ? pos - d.store : (ptrdiff_t)-1);
  }
  free(d.store);
}

/* Compare the stream the peer reads with `ex`, then release everything. */
static void finish_and_close(conn_t *c, sbuf_t *ex) {
  collect_and_compare(c, ex);
  free(ex->data);
  sock_force_close(c->uuid);
  close(c->raw);
}

/* sock_flush, then wait until the peer has bytes: the sending started */
static void flush_until_started(conn_t *c) {
  sock_flush(c->uuid);
  CHECK(wait_fd(c->raw, POLLIN, 5000) & POLLIN);
}

static void write_urgent(conn_t *c) {
  CHECK_EQ(sock_write2(.fduuid = c->uuid, .buffer = URG, .length = URG_LEN,
                       .urgent = 1),
           0);
}

/* A normal write queued behind a started unit, then an urgent write: the
 * urgent bytes must come right after the started unit, before `normal`. */
static void urgent_overtakes_write(conn_t *c, sbuf_t *ex, const char *normal) {
  size_t n = strlen(normal);
  CHECK_EQ(sock_write(c->uuid, normal, n), 0);
  write_urgent(c);
  sb_add(ex, URG, URG_LEN);
  sb_add(ex, normal, n);
}

/* Queue a big sock_write and make sure its sending has started. */
static void queue_started_filler(conn_t *c, sbuf_t *ex, size_t n,
                                 uint32_t seed) {
  uint8_t *f = pattern_block(n, seed);
  CHECK_EQ(sock_write(c->uuid, f, n), 0);
  /* the peer has bytes: sending of the filler started, but it cannot be
   * done (the kernel buffers are far smaller than n) */
  flush_until_started(c);
  CHECK(sock_packets_pending(c->uuid) != 0);
  sb_add(ex, f, n);
  free(f);
}

static void urgent_after_writes(conn_t *c) {
  sbuf_t ex = {0};
  queue_started_filler(c, &ex, 4 * MiB, 1);
  uint8_t *m[5];
  for (int i = 0; i < 5; i++) {
    m[i] = pattern_block(20000, 10 + (uint32_t)i);
    CHECK_EQ(sock_write(c->uuid, m[i], 20000), 0);
  }
  write_urgent(c);
  /* expected: filler (started, never split), urgent, then M1..M5 */
  sb_add(&ex, URG, URG_LEN);
  for (int i = 0; i < 5; i++) {
    sb_add(&ex, m[i], 20000);
    free(m[i]);
  }
  finish_and_close(c, &ex);
}

TEST(urgent_write2_unix) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  urgent_after_writes(&c);
}

TEST(urgent_write2_tcp) {
  conn_t c;
  REQUIRE(make_tcp_pair_buf(&c, 4096, 4096) == 0);
  urgent_after_writes(&c);
}

static sock_packet_s *mk_packet(const void *data, size_t n, int can_int) {
  sock_packet_s *p;
  int64_t end = now_ms() + 5000;
  while (!(p = sock_checkout_packet()) && now_ms() < end)
    sock_flush_all();
  if (!p)
    return NULL;
  memcpy(p->buffer, data, n);
  p->length = (ssize_t)n;
  p->metadata.can_interrupt = can_int ? 1 : 0;
  return p;
}

TEST(urgent_packet_before_first_interruptible) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  sbuf_t ex = {0};
  queue_started_filler(&c, &ex, 2 * MiB, 2);
  uint8_t *n[6];
  for (int i = 0; i < 6; i++) {
    n[i] = pattern_block(10000, 20 + (uint32_t)i);
    sock_packet_s *p = mk_packet(n[i], 10000, i >= 3);
    REQUIRE(p);
    CHECK_EQ(sock_send_packet(c.uuid, p), 0);
  }
  sock_packet_s *u = mk_packet("", 0, 0);
  REQUIRE(u);
  *u = (sock_packet_s){.buffer = (void *)URG,
                       .length = (ssize_t)URG_LEN,
                       .metadata.urgent = 1};
  CHECK_EQ(sock_send_packet(c.uuid, u), 0);
  /* N1..N3 do not allow interruption, N4 does: filler N1 N2 N3 U N4.. */
  for (int i = 0; i < 3; i++)
    sb_add(&ex, n[i], 10000);
  sb_add(&ex, URG, URG_LEN);
  for (int i = 3; i < 6; i++)
    sb_add(&ex, n[i], 10000);
  for (int i = 0; i < 6; i++)
    free(n[i]);
  finish_and_close(&c, &ex);
}

TEST(urgent_without_interruptible_goes_last) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  sbuf_t ex = {0};
  queue_started_filler(&c, &ex, 2 * MiB, 3);
  uint8_t *n[3];
  for (int i = 0; i < 3; i++) {
    n[i] = pattern_block(12000, 30 + (uint32_t)i);
    sock_packet_s *p = mk_packet(n[i], 12000, 0);
    REQUIRE(p);
    CHECK_EQ(sock_send_packet(c.uuid, p), 0);
    sb_add(&ex, n[i], 12000);
    free(n[i]);
  }
  sock_packet_s *u = mk_packet(URG, URG_LEN, 0);
  REQUIRE(u);
  u->metadata.urgent = 1;
  CHECK_EQ(sock_send_packet(c.uuid, u), 0);
  sb_add(&ex, URG, URG_LEN);
  finish_and_close(&c, &ex);
}

TEST(urgent_never_inside_started_packet) {
  /* one big external packet (not interruptible inside), started; then an
   * interruptible packet chain; urgent must land right after the big one */
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  sbuf_t ex = {0};
  size_t big = 3 * MiB;
  uint8_t *b = pattern_block(big, 4);
  sock_packet_s *p = mk_packet("", 0, 1);
  REQUIRE(p);
  p->buffer = malloc(big);
  memcpy(p->buffer, b, big);
  p->length = (ssize_t)big;
  p->metadata.external = 1;
  CHECK_EQ(sock_send_packet(c.uuid, p), 0);
  flush_until_started(&c);
  sb_add(&ex, b, big);
  free(b);
  uint8_t *n = pattern_block(9000, 40);
  p = mk_packet(n, 9000, 1);
  REQUIRE(p);
  CHECK_EQ(sock_send_packet(c.uuid, p), 0);
  write_urgent(&c);
  sb_add(&ex, URG, URG_LEN);
  sb_add(&ex, n, 9000);
  free(n);
  finish_and_close(&c, &ex);
}

TEST(urgent_after_started_file) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  sbuf_t ex = {0};
  size_t fsz = 3 * MiB;
  int fd = make_temp_file(fsz, 5);
  REQUIRE(fd >= 0);
  CHECK_EQ(sock_sendfile(c.uuid, fd, 0, fsz), 0);
  flush_until_started(&c);
  uint8_t *f = pattern_block(fsz, 5);
  sb_add(&ex, f, fsz);
  free(f);
  urgent_overtakes_write(&c, &ex, "after-file");
  finish_and_close(&c, &ex);
}

TEST(urgent_after_started_move_write) {
  /* sock_write2(.move) of one big malloc'd buffer (a single unit), started;
   * then a normal write; the urgent write goes between them */
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  sbuf_t ex = {0};
  size_t big = 3 * MiB;
  uint8_t *b = pattern_block(big, 7);
  sb_add(&ex, b, big);
  CHECK_EQ(sock_write2(.fduuid = c.uuid, .buffer = b, .length = big,
                       .move = 1),
           0);
  flush_until_started(&c);
  urgent_overtakes_write(&c, &ex, "second-write");
  finish_and_close(&c, &ex);
}

TEST(urgent_chain_kept_together) {
  /* an urgent chain of three packets goes in as one block, in order */
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  sbuf_t ex = {0};
  queue_started_filler(&c, &ex, 2 * MiB, 8);
  CHECK_EQ(sock_write(c.uuid, "normal-1", 8), 0);
  CHECK_EQ(sock_write(c.uuid, "normal-2", 8), 0);
  sock_packet_s *u1 = mk_packet("<<U1", 4, 0), *u2 = mk_packet("-U2-", 4, 0),
                *u3 = mk_packet("U3>>", 4, 0);
  REQUIRE(u1 && u2 && u3);
  u1->metadata.urgent = 1;
  u1->metadata.next = u2;
  u2->metadata.next = u3;
  CHECK_EQ(sock_send_packet(c.uuid, u1), 0);
  sb_add(&ex, "<<U1-U2-U3>>", 12);
  sb_add(&ex, "normal-1normal-2", 16);
  finish_and_close(&c, &ex);
}

TEST(urgent_on_idle_connection) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  write_urgent(&c);
  CHECK_EQ(sock_write(c.uuid, "normal", 6), 0);
  sbuf_t ex = {0};
  sb_add(&ex, URG, URG_LEN);
  sb_add(&ex, "normal", 6);
  finish_and_close(&c, &ex);
}

TEST(urgent_with_move) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  sbuf_t ex = {0};
  queue_started_filler(&c, &ex, 1 * MiB, 6);
  CHECK_EQ(sock_write(c.uuid, "queued", 6), 0);
  char *u = strdup(URG);
  CHECK_EQ(sock_write2(.fduuid = c.uuid, .buffer = u, .length = URG_LEN,
                       .urgent = 1, .move = 1),
           0);
  sb_add(&ex, URG, URG_LEN);
  sb_add(&ex, "queued", 6);
  finish_and_close(&c, &ex);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(urgent_write2_unix);
  RUN(urgent_write2_tcp);
  RUN(urgent_packet_before_first_interruptible);
  RUN(urgent_without_interruptible_goes_last);
  RUN(urgent_never_inside_started_packet);
  RUN(urgent_after_started_file);
  RUN(urgent_after_started_move_write);
  RUN(urgent_chain_kept_together);
  RUN(urgent_on_idle_connection);
  RUN(urgent_with_move);
  return HARNESS_END();
}
