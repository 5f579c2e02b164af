/*
 * A program whose event loop (reactor.c) carries weak fallbacks of
 * sock_flush, sock_close and sock_write2_fn (issue 11). Linked with -lsock
 * (the libsock.so linker script), with libsock.a, or through pkg-config
 * (shared and static), the library's definitions must run:
 * - a transfer of several MiB (sock_write, and pool packets) through the
 *   edge-triggered loop, whose only flush is sock_flush on EPOLLOUT,
 *   completes byte-exact;
 * - data written just before sock_close reaches the peer, then EOF;
 * - the program's own callbacks (reactor_remove, reactor_on_close) are
 *   still the ones called.
 * With the fallbacks in charge the transfer stalls and the close cuts the
 * data short: both fail at their deadlines, well inside the watchdog.
 *
 * Built and run by tests.d/10-link.sh and scripts/check-install.sh (two
 * sources and special link lines: not a c-tests/test_*.c program).
 */
#include "reactor.h"
#include "util.h"

#define BIG ((size_t)8 << 20) /* half the default packet pool */
#define CHUNK ((size_t)64 << 10)
#define CLOSE_BYTES ((size_t)1 << 20)

/* Runs the loop until done(uuid) or ms passed; returns done(uuid). */
static int loop_until(int (*done)(intptr_t), intptr_t uuid, int ms) {
  int64_t end = now_ms() + ms;
  while (!done(uuid) && now_ms() < end)
    if (reactor_review(50) < 0)
      break;
  return done(uuid);
}

static int fallbacks(void) { return atomic_load(&reactor_fallback_calls); }

static int nothing_pending(intptr_t uuid) {
  return !sock_packets_pending(uuid);
}
static int closed(intptr_t uuid) {
  (void)uuid;
  return reactor_closes() > 0;
}

/* A connection registered with the loop, with small kernel buffers (most
 * of the data waits in the library's queue for the loop's EPOLLOUT
 * flushes), and a drain checking `expect` pattern bytes of `seed` at its
 * peer. A failure here fails the test (TEST_FAILED). */
static void start_transfer(conn_t *c, drain_t *d, size_t expect, uint32_t seed,
                          int until_eof) {
  REQUIRE(reactor_init() == 0);
  REQUIRE(make_tcp_pair_buf(c, 64 << 10, 64 << 10) == 0);
  REQUIRE(reactor_add(c->uuid) == 0);
  *d = (drain_t){.fd = c->raw, .expect = expect, .until_eof = until_eof,
                 .check = 1, .seed = seed, .timeout_ms = 5000};
  REQUIRE(drain_start(d) == 0);
}

/* Runs the loop until done(uuid), then checks that the peer got every
 * byte, in order, and that no fallback ran. */
static void loop_delivers(int (*done)(intptr_t), conn_t *c, drain_t *d) {
  CHECK(loop_until(done, c->uuid, 20000));
  drain_join(d);
  CHECK_EQ(d->got, d->expect);
  CHECK(d->bad_at == SIZE_MAX);
  CHECK_EQ(fallbacks(), 0);
}

TEST(large_transfer_through_edge_triggered_loop) {
  conn_t c;
  drain_t d;
  start_transfer(&c, &d, BIG, 11, 0);
  if (TEST_FAILED())
    return;
  uint8_t *src = malloc(BIG);
  REQUIRE(src != NULL);
  fill_pattern(src, BIG, 0, 11);
  size_t accepted = 0;
  for (size_t off = 0; off < BIG; off += CHUNK)
    if (sock_write(c.uuid, src + off, CHUNK) == 0)
      accepted += CHUNK;
  free(src);
  CHECK_EQ(accepted, BIG);
  loop_delivers(nothing_pending, &c, &d);
  sock_force_close(c.uuid);
  close(c.raw);
}

/* The same through pool packets (sock_send_packet has no fallback): only
 * the loop's sock_flush on EPOLLOUT moves what the kernel did not take at
 * once. */
TEST(packets_through_edge_triggered_loop) {
  conn_t c;
  drain_t d;
  start_transfer(&c, &d, BIG, 13, 0);
  if (TEST_FAILED())
    return;
  size_t sent = 0;
  for (size_t off = 0; off < BIG; off += BUFFER_PACKET_SIZE) {
    sock_packet_s *p = sock_checkout_packet();
    REQUIRE(p != NULL);
    fill_pattern(p->buffer, BUFFER_PACKET_SIZE, off, 13);
    p->length = BUFFER_PACKET_SIZE;
    if (sock_send_packet(c.uuid, p) == 0)
      sent += BUFFER_PACKET_SIZE;
  }
  CHECK_EQ(sent, BIG);
  loop_delivers(nothing_pending, &c, &d);
  sock_force_close(c.uuid);
  close(c.raw);
}

TEST(data_written_before_close_arrives) {
  conn_t c;
  drain_t d;
  start_transfer(&c, &d, CLOSE_BYTES, 12, 1);
  if (TEST_FAILED())
    return;
  write_pattern(c.uuid, CLOSE_BYTES, 12);
  sock_close(c.uuid);
  loop_delivers(closed, &c, &d);
  CHECK(d.eof);
  CHECK_EQ(d.err, 0);
  /* the program's callbacks, once each, for this connection */
  CHECK_EQ(reactor_removes(), 1);
  CHECK_EQ(reactor_closes(), 1);
  CHECK_EQ(reactor_last_closed(), c.uuid);
  CHECK_EQ(sock_isvalid(c.uuid), 0);
  CHECK_EQ(fallbacks(), 0);
  close(c.raw);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(large_transfer_through_edge_triggered_loop);
  RUN(packets_through_edge_triggered_loop);
  RUN(data_written_before_close_arrives);
  return HARNESS_END();
}
