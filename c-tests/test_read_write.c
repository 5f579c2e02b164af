/* sock_read / sock_write semantics, sock_touch, sock_flush family,
 * sock_packets_pending, pipes. */
#define TEST_DEFINE_CALLBACKS
#include "util.h"

TEST(read_returns_data_then_zero) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  char buf[64];
  /* nothing available: 0, connection stays valid */
  CHECK_EQ(sock_read(c.uuid, buf, sizeof(buf)), 0);
  CHECK_EQ(sock_read(c.uuid, buf, sizeof(buf)), 0);
  CHECK_EQ(sock_isvalid(c.uuid), 1);
  CHECK_EQ(close_count(c.uuid), 0);
  REQUIRE(raw_write_all(c.raw, "0123456789", 10, 5000) == 0);
  REQUIRE(wait_fd(c.lfd, POLLIN, 5000) & POLLIN);
  ssize_t r = sock_read(c.uuid, buf, 4);
  CHECK_EQ(r, 4);
  CHECK(!memcmp(buf, "0123", 4));
  r = sock_read(c.uuid, buf, sizeof(buf));
  CHECK_EQ(r, 6);
  CHECK(!memcmp(buf, "456789", 6));
  CHECK_EQ(sock_read(c.uuid, buf, sizeof(buf)), 0);
  CHECK_EQ(sock_isvalid(c.uuid), 1);
  conn_force_close(&c);
}

static void eof_case(conn_t *c) {
  char buf[64];
  REQUIRE(raw_write_all(c->raw, "last words", 10, 5000) == 0);
  close(c->raw);
  /* remaining data is still delivered */
  CHECK_EQ(lib_read_n(c->uuid, buf, 10, 5000), 10);
  CHECK(!memcmp(buf, "last words", 10));
  CHECK_EQ(close_count(c->uuid), 0);
  ssize_t r = read_until_nonzero(c->uuid, 5000);
  CHECK_EQ(r, -1);
  CHECK_EQ(sock_isvalid(c->uuid), 0);
  CHECK_EQ(close_count(c->uuid), 1);
  CHECK_EQ(remove_count(c->uuid), 1);
  CHECK(remove_before_close(c->uuid));
  CHECK_EQ(close_saw_fd_open(c->uuid), 0); /* called after the fd closed */
  CHECK(!fd_is_open(c->lfd));
  CHECK_EQ(sock_fd2uuid(c->lfd), -1);
  /* further reads: invalid */
  errno = 0;
  CHECK_EQ(sock_read(c->uuid, buf, sizeof(buf)), -1);
  CHECK_EQ(errno, ENODEV);
  CHECK_EQ(close_count(c->uuid), 1);
}

TEST(read_eof_unix) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  eof_case(&c);
}

TEST(read_eof_tcp) {
  conn_t c;
  REQUIRE(make_tcp_pair(&c) == 0);
  eof_case(&c);
}

TEST(read_eof_pipe) {
  int p[2];
  REQUIRE(pipe(p) == 0);
  sock_set_non_block(p[0]);
  conn_t c = {.uuid = sock_open(p[0]), .lfd = p[0], .raw = p[1]};
  REQUIRE(c.uuid != -1);
  eof_case(&c);
}

TEST(read_invalid_uuid) {
  char buf[8];
  errno = 0;
  CHECK_EQ(sock_read(-1, buf, sizeof(buf)), -1);
  CHECK_EQ(errno, ENODEV);
  errno = 0;
  CHECK_EQ(sock_read(((intptr_t)1 << 32) | 0x7fffffff, buf, sizeof(buf)), -1);
  CHECK_EQ(errno, ENODEV);
  errno = 0;
  CHECK_EQ(sock_read(make_uuid(-3, 7), buf, sizeof(buf)), -1);
  CHECK_EQ(errno, ENODEV);
  /* a raw fd the library does not know, with data waiting */
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  REQUIRE(write(sv[1], "secret", 6) == 6);
  errno = 0;
  CHECK_EQ(sock_read(make_uuid(sv[0], 0), buf, sizeof(buf)), -1);
  CHECK_EQ(errno, ENODEV);
  errno = 0;
  CHECK_EQ(sock_read(make_uuid(sv[0], 1), buf, sizeof(buf)), -1);
  CHECK_EQ(errno, ENODEV);
  /* the data is still there, untouched */
  CHECK_EQ(read(sv[0], buf, sizeof(buf)), 6);
  close(sv[0]);
  close(sv[1]);
  /* stale UUID */
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  intptr_t stale = c.uuid;
  sock_force_close(stale);
  errno = 0;
  CHECK_EQ(sock_read(stale, buf, sizeof(buf)), -1);
  CHECK_EQ(errno, ENODEV);
  CHECK_EQ(close_count(stale), 1);
  close(c.raw);
}

TEST(write_returns_zero_in_order) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  CHECK_EQ(sock_write(c.uuid, "abc", 3), 0);
  CHECK_EQ(sock_write(c.uuid, "defg", 4), 0);
  CHECK_EQ(sock_write2(.fduuid = c.uuid, .buffer = "hij", .length = 3), 0);
  for (int i = 0; i < 100; i++) {
    char m[16];
    snprintf(m, sizeof(m), "%03d", i);
    CHECK_EQ(sock_write(c.uuid, m, 3), 0);
  }
  sock_flush_strong(c.uuid);
  CHECK_EQ(sock_packets_pending(c.uuid), 0);
  char buf[400] = {0};
  CHECK_EQ(raw_read_n(c.raw, buf, 310, 5000, NULL), 310);
  CHECK(!memcmp(buf, "abcdefghij", 10));
  for (int i = 0; i < 100; i++) {
    char m[16];
    snprintf(m, sizeof(m), "%03d", i);
    CHECK(!memcmp(buf + 10 + 3 * i, m, 3));
  }
  conn_force_close(&c);
}

TEST(write_zero_length_uses_strlen) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  CHECK_EQ(sock_write(c.uuid, "hello world", 0), 0);
  char *dyn = strdup("dynamic string");
  CHECK_EQ(sock_write(c.uuid, dyn, 0), 0);
  free(dyn); /* copied: the caller keeps ownership without .move */
  CHECK_EQ(sock_write(c.uuid, "|", 1), 0);
  sock_flush_strong(c.uuid);
  expect_raw_bytes(&c, "hello worlddynamic string|", 26);
  conn_force_close(&c);
}

TEST(write_bad_buffer_and_length) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  CHECK_EQ(sock_write(c.uuid, NULL, 5), -1);
  CHECK_EQ(sock_write(c.uuid, NULL, 0), -1);
  CHECK_EQ(sock_write(c.uuid, "", 0), -1);
  CHECK_EQ(sock_write2(.fduuid = c.uuid, .buffer = NULL, .length = 10), -1);
  /* the connection is unaffected */
  CHECK_EQ(sock_isvalid(c.uuid), 1);
  CHECK_EQ(sock_write(c.uuid, "ok", 2), 0);
  sock_flush_strong(c.uuid);
  expect_raw_bytes(&c, "ok", 2);
  /* and nothing else was sent by the failed calls */
  CHECK_EQ(sock_write(c.uuid, "END", 3), 0);
  sock_flush_strong(c.uuid);
  expect_raw_bytes(&c, "END", 3);
  CHECK_EQ(close_count(c.uuid), 0);
  conn_force_close(&c);
}

TEST(write_invalid_uuid) {
  errno = 0;
  CHECK_EQ(sock_write(-1, "x", 1), -1);
  CHECK_EQ(errno, ENODEV);
  errno = 0;
  CHECK_EQ(sock_write(((intptr_t)1 << 32) | 0x7fffffff, "x", 1), -1);
  CHECK_EQ(errno, ENODEV);
  errno = 0;
  CHECK_EQ(sock_write(make_uuid(-7, 1), "x", 1), -1);
  CHECK_EQ(errno, ENODEV);
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  intptr_t stale = c.uuid;
  sock_force_close(stale);
  errno = 0;
  CHECK_EQ(sock_write(stale, "x", 1), -1);
  CHECK_EQ(errno, ENODEV);
  /* raw fd unknown to the library: nothing is written to it */
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  errno = 0;
  CHECK_EQ(sock_write(make_uuid(sv[0], 0), "leak", 4), -1);
  CHECK_EQ(errno, ENODEV);
  CHECK_EQ(raw_expect_eof(sv[1], 1), 0); /* nothing arrived */
  close(sv[0]);
  close(sv[1]);
  close(c.raw);
}

TEST(pipe_write_and_read) {
  int p[2];
  REQUIRE(pipe(p) == 0);
  sock_set_non_block(p[0]);
  sock_set_non_block(p[1]);
  intptr_t r = sock_open(p[0]);
  intptr_t w = sock_open(p[1]);
  REQUIRE(r != -1 && w != -1);
  /* more than the pipe buffer (64 KiB): written by flushing, read while
   * flushing */
  size_t n = 300000;
  uint8_t *src = malloc(n), *dst = malloc(n);
  fill_pattern(src, n, 0, 11);
  CHECK_EQ(sock_write(w, src, n), 0);
  size_t got = 0;
  int64_t end = now_ms() + 10000;
  while (got < n && now_ms() < end) {
    sock_flush(w);
    ssize_t k = sock_read(r, dst + got, n - got);
    if (k > 0)
      got += (size_t)k;
    else if (k < 0)
      break;
    else
      wait_fd(p[0], POLLIN, 50);
  }
  CHECK_EQ(got, n);
  CHECK(!memcmp(src, dst, n));
  CHECK_EQ(sock_packets_pending(w), 0);
  /* closing the write end gives the reader end of stream */
  sock_close(w);
  CHECK_EQ(sock_isvalid(w), 0);
  ssize_t k = 0;
  end = now_ms() + 5000;
  while (k == 0 && now_ms() < end) {
    k = sock_read(r, dst, 16);
    if (!k)
      wait_fd(p[0], POLLIN, 100);
  }
  CHECK_EQ(k, -1);
  CHECK_EQ(sock_isvalid(r), 0);
  CHECK_EQ(close_count(r), 1);
  CHECK_EQ(close_count(w), 1);
  free(src);
  free(dst);
}

TEST(touch_on_read) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  long t0 = touch_count(c.uuid);
  REQUIRE(raw_write_all(c.raw, "data", 4, 5000) == 0);
  char buf[8];
  CHECK_EQ(lib_read_n(c.uuid, buf, 4, 5000), 4);
  CHECK_GT(touch_count(c.uuid), t0);
  long t1 = touch_count(c.uuid);
  REQUIRE(raw_write_all(c.raw, "more", 4, 5000) == 0);
  REQUIRE(wait_fd(c.lfd, POLLIN, 5000));
  CHECK_EQ(sock_read(c.uuid, buf, 8), 4);
  CHECK_GT(touch_count(c.uuid), t1);
  conn_force_close(&c);
}

TEST(touch_on_write_and_flush) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  long t0 = touch_count(c.uuid);
  CHECK_EQ(sock_write(c.uuid, "touch me", 8), 0);
  sock_flush_strong(c.uuid);
  CHECK_GT(touch_count(c.uuid), t0);
  char buf[8];
  CHECK_EQ(raw_read_n(c.raw, buf, 8, 5000, NULL), 8);
  /* queue more than the kernel takes; then a flush that moves bytes */
  size_t n = 1 << 20;
  uint8_t *src = malloc(n);
  fill_pattern(src, n, 0, 5);
  CHECK_EQ(sock_write(c.uuid, src, n), 0);
  CHECK(sock_packets_pending(c.uuid) != 0);
  /* drain some of it from the kernel so the next flush can move bytes */
  uint8_t *dst = malloc(n);
  REQUIRE(wait_fd(c.raw, POLLIN, 5000) & POLLIN);
  size_t got = raw_read_avail(c.raw, dst, n);
  CHECK_GT(got, 0);
  long t1 = touch_count(c.uuid);
  int64_t end = now_ms() + 5000;
  while (touch_count(c.uuid) == t1 && now_ms() < end) {
    CHECK_EQ(sock_flush(c.uuid), 0);
    if (touch_count(c.uuid) == t1) {
      wait_fd(c.raw, POLLIN, 20);
      got += raw_read_avail(c.raw, dst + got, n - got);
    }
  }
  CHECK_GT(touch_count(c.uuid), t1);
  drain_t d = {.fd = c.raw, .expect = n - got, .check = 1, .seed = 5,
               .start = got};
  drain_start(&d);
  sock_flush_strong(c.uuid);
  drain_join(&d);
  CHECK_EQ(d.got, n - got);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  CHECK_EQ(check_pattern(dst, got, 0, 5), got);
  conn_force_close(&c);
  free(src);
  free(dst);
}

TEST(packets_pending_and_flush) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  CHECK_EQ(sock_packets_pending(c.uuid), 0);
  CHECK_EQ(sock_flush(c.uuid), 0); /* nothing queued: fine */
  size_t n = 2 << 20;
  write_pattern(c.uuid, n, 21);
  CHECK(sock_packets_pending(c.uuid) != 0);
  CHECK_EQ(sock_flush(c.uuid), 0); /* kernel full: still 0 */
  CHECK(sock_packets_pending(c.uuid) != 0);
  drain_t d = {.fd = c.raw, .expect = n, .check = 1, .seed = 21};
  drain_start(&d);
  int64_t end = now_ms() + 20000;
  while (sock_packets_pending(c.uuid) && now_ms() < end) {
    CHECK_EQ(sock_flush(c.uuid), 0);
    wait_fd(c.lfd, POLLOUT, 50);
  }
  CHECK_EQ(sock_packets_pending(c.uuid), 0);
  drain_join(&d);
  CHECK_EQ(d.got, n);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  CHECK_EQ(sock_packets_pending(-1), 0);
  CHECK_EQ(sock_packets_pending(make_uuid(-1, 5)), 0);
  intptr_t stale = c.uuid;
  sock_force_close(c.uuid);
  CHECK_EQ(sock_packets_pending(stale), 0);
  CHECK_EQ(sock_flush(stale), -1);
  CHECK_EQ(sock_flush(-1), -1);
  close(c.raw);
}

TEST(flush_strong_waits_until_sent) {
  conn_t c;
  REQUIRE(make_tcp_pair_buf(&c, 8192, 8192) == 0);
  size_t n = 4 << 20;
  uint8_t *src = malloc(n);
  fill_pattern(src, n, 0, 33);
  drain_t d = {.fd = c.raw, .expect = n, .check = 1, .seed = 33};
  CHECK_EQ(sock_write(c.uuid, src, n), 0);
  free(src);
  drain_start(&d);
  sock_flush_strong(c.uuid);
  /* everything was handed to the kernel when flush_strong returned */
  CHECK_EQ(sock_packets_pending(c.uuid), 0);
  drain_join(&d);
  CHECK_EQ(d.got, n);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  sock_flush_strong(-1); /* returns */
  sock_flush_strong(c.uuid);
  sock_force_close(c.uuid);
  sock_flush_strong(c.uuid); /* stale: returns */
  close(c.raw);
}

TEST(flush_all_many_connections) {
  enum { N = 5 };
  conn_t c[N];
  drain_t d[N];
  size_t n = 1 << 20;
  uint8_t *src = malloc(n);
  for (int i = 0; i < N; i++) {
    REQUIRE(make_unix_pair_buf(&c[i], 4096) == 0);
    fill_pattern(src, n, 0, 100 + (uint32_t)i);
    CHECK_EQ(sock_write(c[i].uuid, src, n), 0);
    CHECK(sock_packets_pending(c[i].uuid) != 0);
  }
  free(src);
  for (int i = 0; i < N; i++) {
    d[i] = (drain_t){.fd = c[i].raw, .expect = n, .check = 1,
                     .seed = 100 + (uint32_t)i};
    drain_start(&d[i]);
  }
  int64_t end = now_ms() + 20000;
  for (;;) {
    int pending = 0;
    for (int i = 0; i < N; i++)
      pending += sock_packets_pending(c[i].uuid) != 0;
    if (!pending || now_ms() > end)
      break;
    sock_flush_all();
    wait_fd(c[0].lfd, POLLOUT, 10);
  }
  for (int i = 0; i < N; i++) {
    CHECK_EQ(sock_packets_pending(c[i].uuid), 0);
    drain_join(&d[i]);
    CHECK_EQ(d[i].got, n);
    CHECK_EQ(d[i].bad_at, SIZE_MAX);
    sock_force_close(c[i].uuid);
    close(c[i].raw);
  }
  sock_flush_all(); /* nothing queued anywhere: returns */
}

TEST(read_count_zero_and_small) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  char b[4];
  REQUIRE(raw_write_all(c.raw, "xyz", 3, 5000) == 0);
  REQUIRE(wait_fd(c.lfd, POLLIN, 5000));
  /* one byte at a time */
  CHECK_EQ(sock_read(c.uuid, b, 1), 1);
  CHECK_EQ(b[0], 'x');
  CHECK_EQ(sock_read(c.uuid, b, 1), 1);
  CHECK_EQ(b[0], 'y');
  CHECK_EQ(sock_read(c.uuid, b, 1), 1);
  CHECK_EQ(b[0], 'z');
  CHECK_EQ(sock_read(c.uuid, b, 1), 0);
  conn_force_close(&c);
}

/* sock_read(uuid, buf, 0) is the original's read(fd, buf, 0): the 0 it
 * answers is taken as end of stream. HTTP parsers call it when their buffer
 * is full to drop the client: the connection closes gracefully (queued data
 * still goes out, then EOF, one reactor_on_close) and the read returns -1. */
TEST(read_count_zero_closes_like_end_of_stream) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 8192) == 0);
  char b[4];
  size_t n = 1 << 20;
  write_pattern(c.uuid, n, 23);
  REQUIRE(sock_packets_pending(c.uuid) != 0);
  REQUIRE_EQ(sock_read(c.uuid, b, 0), -1);
  /* graceful: the queued data is still sent, then the peer gets EOF */
  CHECK_EQ(close_count(c.uuid), 0);
  drain_t d = {.fd = c.raw, .expect = n, .check = 1, .seed = 23,
               .until_eof = 1};
  CHECK(drain_while_closing(&c, &d, 20000));
  CHECK_EQ(d.got, n);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  CHECK(d.eof);
  CHECK_EQ(sock_isvalid(c.uuid), 0);
  CHECK_EQ(close_count(c.uuid), 1);
  CHECK_EQ(remove_count(c.uuid), 1);
  CHECK(!fd_is_open(c.lfd));
  errno = 0;
  CHECK_EQ(sock_read(c.uuid, b, 0), -1);
  CHECK_EQ(errno, ENODEV);
  CHECK_EQ(close_count(c.uuid), 1);
  close(c.raw);

  /* nothing queued, and a NULL buffer (nothing is written to it): closed
   * at once */
  conn_t e;
  REQUIRE(make_unix_pair(&e) == 0);
  CHECK_EQ(sock_read(e.uuid, NULL, 0), -1);
  CHECK_EQ(sock_isvalid(e.uuid), 0);
  CHECK_EQ(close_count(e.uuid), 1);
  CHECK_EQ(raw_expect_eof(e.raw, 5000), 1);
  close(e.raw);
}

TEST(bidirectional_tcp_library_both_ends) {
  char port[16];
  intptr_t srv, cl, ac;
  REQUIRE(lib_tcp_trio(port, &srv, &cl, &ac) == 0);
  REQUIRE(wait_connected(cl, 5000) == 0);
  /* both write 3 MiB at once, both read while flushing */
  exchange_both_ways(cl, ac, 3 << 20, 1, 2);
  lib_tcp_trio_close(srv, cl, ac);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(read_returns_data_then_zero);
  RUN(read_eof_unix);
  RUN(read_eof_tcp);
  RUN(read_eof_pipe);
  RUN(read_invalid_uuid);
  RUN(write_returns_zero_in_order);
  RUN(write_zero_length_uses_strlen);
  RUN(write_bad_buffer_and_length);
  RUN(write_invalid_uuid);
  RUN(pipe_write_and_read);
  RUN(touch_on_read);
  RUN(touch_on_write_and_flush);
  RUN(packets_pending_and_flush);
  RUN(flush_strong_waits_until_sent);
  RUN(flush_all_many_connections);
  RUN(read_count_zero_and_small);
  RUN(read_count_zero_closes_like_end_of_stream);
  RUN(bidirectional_tcp_library_both_ends);
  return HARNESS_END();
}
