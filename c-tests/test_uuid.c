/* UUIDs, header items, type layouts, sock_open / sock_isvalid /
 * sock_fd2uuid / sock_max_capacity / sock_set_non_block. */
#define TEST_DEFINE_CALLBACKS
#include "util.h"

#include <stddef.h>

TEST(header_macros) {
  CHECK(!strcmp(LIB_SOCK, "0.2.2"));
  CHECK_EQ(LIB_SOCK_VERSION_MAJOR, 0);
  CHECK_EQ(LIB_SOCK_VERSION_MINOR, 2);
  CHECK_EQ(LIB_SOCK_VERSION_PATCH, 2);
  CHECK_EQ(BUFFER_PACKET_SIZE, 1024 * 16);
  CHECK_EQ(BUFFER_FILE_READ_SIZE, BUFFER_PACKET_SIZE);
  CHECK_EQ(BUFFER_PACKET_POOL, 1024);
#ifndef FD_UUID_TYPE_DEFINED
  CHECK(!"FD_UUID_TYPE_DEFINED is not defined");
#endif
#ifndef UNUSED_FUNC
  CHECK(!"UNUSED_FUNC is not defined");
#endif
  intptr_t bad = -1, good = 0;
  CHECK(FDUUID_FAIL(bad));
  CHECK(!FDUUID_FAIL(good));
  intptr_t below = -2; /* valid-looking: high counter bit set */
  CHECK(!FDUUID_FAIL(below));
}

TEST(type_layouts) {
  CHECK_EQ(sizeof(fduuid_u), 8);
  CHECK_EQ(sizeof(sock_write_info_s), 40);
  CHECK_EQ(sizeof(sock_packet_s), 48);
  CHECK_EQ(offsetof(sock_write_info_s, fduuid), 0);
  CHECK_EQ(offsetof(sock_write_info_s, buffer), 8);
  CHECK_EQ(offsetof(sock_write_info_s, length), 16);
  CHECK_EQ(offsetof(sock_write_info_s, offset), 24);
  CHECK_EQ(offsetof(sock_packet_s, length), 0);
  CHECK_EQ(offsetof(sock_packet_s, buffer), 8);
  CHECK_EQ(offsetof(sock_packet_s, metadata), 16);
  CHECK_EQ(offsetof(sock_packet_s, metadata.next), 16);
  CHECK_EQ(offsetof(sock_packet_s, metadata.offset), 24);
  CHECK_EQ(offsetof(sock_packet_s, metadata.dealloc), 32);
  CHECK_EQ(sizeof(struct sock_rw_hook_s), 4 * sizeof(void *));
  CHECK_EQ(offsetof(sock_rw_hook_s, read), 0);
  CHECK_EQ(offsetof(sock_rw_hook_s, write), 8);
  CHECK_EQ(offsetof(sock_rw_hook_s, flush), 16);
  CHECK_EQ(offsetof(sock_rw_hook_s, on_clear), 24);

  /* the four 1-bit fields of sock_write_info_s live in one unsigned at 32 */
  sock_write_info_s w;
  unsigned bits;
  memset(&w, 0, sizeof(w));
  w.move = 1;
  memcpy(&bits, (char *)&w + 32, sizeof(bits));
  CHECK_EQ(bits, 1);
  memset(&w, 0, sizeof(w));
  w.urgent = 1;
  memcpy(&bits, (char *)&w + 32, sizeof(bits));
  CHECK_EQ(bits, 2);
  memset(&w, 0, sizeof(w));
  w.is_fd = 1;
  memcpy(&bits, (char *)&w + 32, sizeof(bits));
  CHECK_EQ(bits, 4);
  memset(&w, 0, sizeof(w));
  w.rsv = 1;
  memcpy(&bits, (char *)&w + 32, sizeof(bits));
  CHECK_EQ(bits, 8);

  /* packet metadata flags, in declaration order, in one unsigned at 40 */
  sock_packet_s p;
  memset(&p, 0, sizeof(p));
  p.metadata.can_interrupt = 1;
  memcpy(&bits, (char *)&p + 40, sizeof(bits));
  CHECK_EQ(bits, 1);
  memset(&p, 0, sizeof(p));
  p.metadata.is_fd = 1;
  memcpy(&bits, (char *)&p + 40, sizeof(bits));
  CHECK_EQ(bits, 2);
  memset(&p, 0, sizeof(p));
  p.metadata.keep_open = 1;
  memcpy(&bits, (char *)&p + 40, sizeof(bits));
  CHECK_EQ(bits, 4);
  memset(&p, 0, sizeof(p));
  p.metadata.external = 1;
  memcpy(&bits, (char *)&p + 40, sizeof(bits));
  CHECK_EQ(bits, 8);
  memset(&p, 0, sizeof(p));
  p.metadata.urgent = 1;
  memcpy(&bits, (char *)&p + 40, sizeof(bits));
  CHECK_EQ(bits, 16);
  memset(&p, 0, sizeof(p));
  p.metadata.internal_flag = 1;
  memcpy(&bits, (char *)&p + 40, sizeof(bits));
  CHECK_EQ(bits, 32);
  memset(&p, 0, sizeof(p));
  p.metadata.rsrv = 3;
  memcpy(&bits, (char *)&p + 40, sizeof(bits));
  CHECK_EQ(bits, 0xC0);

  /* fduuid_u: fd in the low 32 bits, counter in the high 32 bits */
  fduuid_u u;
  u.uuid = ((intptr_t)0x12345 << 32) | 0x77;
  CHECK_EQ(u.data.fd, 0x77);
  CHECK_EQ(u.data.counter, 0x12345);
  intptr_t x = ((intptr_t)9 << 32) | 42;
  CHECK_EQ(sock_uuid2fd(x), 42);
  x = (intptr_t)(((uint64_t)0xffffffffu << 32) | 5u); /* counter 0xffffffff */
  CHECK_EQ(sock_uuid2fd(x), 5);
}

TEST(sock_open_pipe_encoding) {
  int p[2];
  REQUIRE(pipe(p) == 0);
  intptr_t r = sock_open(p[0]);
  intptr_t w = sock_open(p[1]);
  REQUIRE(r != -1);
  REQUIRE(w != -1);
  CHECK(r != w);
  CHECK_EQ(sock_uuid2fd(r), p[0]);
  CHECK_EQ(sock_uuid2fd(w), p[1]);
  fduuid_u u = {.uuid = r};
  CHECK_EQ(u.data.fd, p[0]);
  CHECK_EQ((int)(r & 0xffffffff), p[0]);
  CHECK_EQ((unsigned)((uint64_t)r >> 32), u.data.counter);
  CHECK_EQ(sock_fd2uuid(p[0]), r);
  CHECK_EQ(sock_fd2uuid(p[1]), w);
  CHECK_EQ(sock_isvalid(r), 1);
  CHECK_EQ(sock_isvalid(w), 1);
  CHECK(!FDUUID_FAIL(r));
  /* data through the pipe both ways of the API */
  CHECK_EQ(sock_set_non_block(p[0]) == -1, 0);
  CHECK_EQ(sock_write(w, "pipe!", 5), 0);
  sock_flush_strong(w);
  char buf[16] = {0};
  CHECK_EQ(lib_read_n(r, buf, 5, 5000), 5);
  CHECK(!memcmp(buf, "pipe!", 5));
  sock_force_close(r);
  sock_force_close(w);
  CHECK_EQ(sock_isvalid(r), 0);
  CHECK_EQ(sock_isvalid(w), 0);
  CHECK_EQ(sock_fd2uuid(p[0]), -1);
  CHECK_EQ(sock_fd2uuid(p[1]), -1);
  CHECK_EQ(close_count(r), 1);
  CHECK_EQ(close_count(w), 1);
}

TEST(sock_open_socketpair) {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  sock_set_non_block(sv[0]);
  sock_set_non_block(sv[1]);
  intptr_t a = sock_open(sv[0]);
  intptr_t b = sock_open(sv[1]);
  REQUIRE(a != -1 && b != -1);
  CHECK_EQ(sock_isvalid(a), 1);
  CHECK_EQ(sock_isvalid(b), 1);
  CHECK_EQ(sock_write(a, "ping", 4), 0);
  CHECK_EQ(sock_write(b, "pong!", 5), 0);
  sock_flush_strong(a);
  sock_flush_strong(b);
  char buf[8] = {0};
  CHECK_EQ(lib_read_n(b, buf, 4, 5000), 4);
  CHECK(!memcmp(buf, "ping", 4));
  CHECK_EQ(lib_read_n(a, buf, 5, 5000), 5);
  CHECK(!memcmp(buf, "pong!", 5));
  sock_close(a);
  CHECK_EQ(sock_isvalid(a), 0);
  /* b sees end of stream: -1 and closed */
  ssize_t r = read_until_nonzero(b, 5000);
  CHECK_EQ(r, -1);
  CHECK_EQ(sock_isvalid(b), 0);
  CHECK_EQ(close_count(a), 1);
  CHECK_EQ(close_count(b), 1);
}

TEST(counter_changes_on_reuse) {
  int p[2];
  REQUIRE(pipe(p) == 0);
  int fd = p[0];
  intptr_t u1 = sock_open(fd);
  REQUIRE(u1 != -1);
  sock_force_close(u1);
  close(p[1]);
  CHECK(!fd_is_open(fd));
  /* the next pipe gets the same (lowest free) fd numbers */
  REQUIRE(pipe(p) == 0);
  REQUIRE_EQ(p[0], fd);
  intptr_t u2 = sock_open(fd);
  REQUIRE(u2 != -1);
  CHECK(u1 != u2);
  fduuid_u a = {.uuid = u1}, b = {.uuid = u2};
  CHECK_EQ(a.data.fd, b.data.fd);
  CHECK_MSG(b.data.counter > a.data.counter, "counter %u then %u",
            a.data.counter, b.data.counter);
  CHECK_EQ(sock_isvalid(u1), 0);
  CHECK_EQ(sock_isvalid(u2), 1);
  CHECK_EQ(sock_fd2uuid(fd), u2);
  /* and again, several generations */
  intptr_t prev = u2;
  for (int i = 0; i < 5; i++) {
    sock_force_close(prev);
    close(p[1]);
    REQUIRE(pipe(p) == 0);
    REQUIRE_EQ(p[0], fd);
    intptr_t n = sock_open(fd);
    REQUIRE(n != -1);
    fduuid_u pn = {.uuid = prev}, nn = {.uuid = n};
    CHECK(nn.data.counter > pn.data.counter);
    CHECK_EQ(sock_isvalid(prev), 0);
    CHECK_EQ(close_count(prev), 1);
    prev = n;
  }
  sock_force_close(prev);
  close(p[1]);
}

/* sock_open on an fd that the library still believes is open */
TEST(sock_open_twice_same_fd) {
  int p[2];
  REQUIRE(pipe(p) == 0);
  intptr_t a = sock_open(p[0]);
  REQUIRE(a != -1);
  intptr_t b = sock_open(p[0]);
  REQUIRE(b != -1);
  CHECK(a != b);
  CHECK_EQ(sock_isvalid(a), 0);
  CHECK_EQ(sock_isvalid(b), 1);
  CHECK_EQ(close_count(a), 1);
  CHECK_EQ(remove_count(a), 1);
  CHECK(remove_before_close(a));
  CHECK_EQ(close_count(b), 0);
  CHECK_EQ(sock_fd2uuid(p[0]), b);
  /* the fd itself was not closed by the library: b still reads the pipe */
  CHECK(fd_is_open(p[0]));
  sock_set_non_block(p[0]);
  CHECK_EQ(write(p[1], "x", 1), 1);
  char c = 0;
  CHECK_EQ(lib_read_n(b, &c, 1, 5000), 1);
  CHECK_EQ(c, 'x');
  sock_force_close(b);
  close(p[1]);
  CHECK_EQ(close_count(a), 1);
  CHECK_EQ(close_count(b), 1);
}

TEST(fd2uuid_bad_values) {
  CHECK_EQ(sock_fd2uuid(-1), -1);
  CHECK_EQ(sock_fd2uuid(-2), -1);
  CHECK_EQ(sock_fd2uuid(INT_MIN), -1);
  CHECK_EQ(sock_fd2uuid(INT_MAX), -1);
  CHECK_EQ(sock_fd2uuid(1 << 30), -1);
  ssize_t cap = sock_max_capacity();
  CHECK_GT(cap, 0);
  if (cap > 0 && cap < INT_MAX) {
    CHECK_EQ(sock_fd2uuid((int)cap), -1);
    CHECK_EQ(sock_fd2uuid((int)cap - 1), -1);
  }
  /* an fd open in the process but never given to the library */
  int fd = open("/dev/null", O_RDONLY);
  REQUIRE(fd >= 0);
  CHECK_EQ(sock_fd2uuid(fd), -1);
  close(fd);
  /* stdin/stdout/stderr were never registered */
  CHECK_EQ(sock_fd2uuid(0), -1);
  CHECK_EQ(sock_fd2uuid(2), -1);
}

TEST(isvalid_bad_values) {
  CHECK_EQ(sock_isvalid(-1), 0);
  CHECK_EQ(sock_isvalid(((intptr_t)1 << 32) | 0x7fffffff), 0);
  CHECK_EQ(sock_isvalid(make_uuid(-5, 3)), 0);
  CHECK_EQ(sock_isvalid(make_uuid(INT_MIN, 0)), 0);
  CHECK_EQ(sock_isvalid(make_uuid(1000000000, 0)), 0);
  CHECK_EQ(sock_isvalid(INTPTR_MIN), 0);
  CHECK_EQ(sock_isvalid(INTPTR_MAX), 0);
  CHECK_EQ(sock_isvalid(make_uuid(0, 0)), 0);
  CHECK_EQ(sock_isvalid(make_uuid(1, 0)), 0);
  /* a live connection with a wrong counter is not valid */
  int p[2];
  REQUIRE(pipe(p) == 0);
  intptr_t u = sock_open(p[0]);
  REQUIRE(u != -1);
  fduuid_u f = {.uuid = u};
  CHECK_EQ(sock_isvalid(make_uuid(p[0], f.data.counter + 1)), 0);
  CHECK_EQ(sock_isvalid(make_uuid(p[0], f.data.counter - 1)), 0);
  CHECK_EQ(sock_isvalid(make_uuid(p[0], f.data.counter ^ 0x80000000u)), 0);
  CHECK_EQ(sock_isvalid(u), 1);
  sock_force_close(u);
  close(p[1]);
}

TEST(high_fd_numbers) {
  ssize_t cap = sock_max_capacity();
  REQUIRE(cap > 0);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  int p[2];
  REQUIRE(pipe(p) == 0);
  int targets[3] = {1500, 5000, (int)(cap - 1)};
  for (int i = 0; i < 3; i++) {
    int t = targets[i];
    if (t <= p[1] || (rlim_t)t >= rl.rlim_cur || t >= cap)
      continue;
    int fd = dup2(p[1], t);
    if (fd != t) {
      NOTE("dup2 to %d failed: %s", t, strerror(errno));
      continue;
    }
    intptr_t u = sock_open(fd);
    CHECK_MSG(u != -1, "sock_open(%d) failed", fd);
    if (u == -1) {
      close(fd);
      continue;
    }
    CHECK_EQ(sock_uuid2fd(u), fd);
    CHECK_EQ(sock_fd2uuid(fd), u);
    CHECK_EQ(sock_isvalid(u), 1);
    CHECK_EQ(sock_write(u, "hi", 2), 0);
    sock_flush_strong(u);
    char b[2];
    CHECK_EQ(raw_read_n(p[0], b, 2, 5000, NULL), 2);
    sock_force_close(u);
    CHECK(!fd_is_open(fd));
    CHECK_EQ(close_count(u), 1);
  }
  close(p[0]);
  close(p[1]);
}

TEST(max_capacity) {
  struct rlimit before, after;
  getrlimit(RLIMIT_NOFILE, &before);
  ssize_t c1 = sock_max_capacity();
  ssize_t c2 = sock_max_capacity();
  CHECK_GT(c1, 0);
  CHECK_EQ(c1, c2);
  getrlimit(RLIMIT_NOFILE, &after);
  CHECK(after.rlim_cur >= before.rlim_cur);
  if (before.rlim_max != RLIM_INFINITY && before.rlim_max <= (rlim_t)1 << 24)
    CHECK_MSG(after.rlim_cur == before.rlim_max,
              "soft limit %llu not raised to hard limit %llu",
              (unsigned long long)after.rlim_cur,
              (unsigned long long)before.rlim_max);
  /* the library can track every fd the process may open */
  if (after.rlim_cur != RLIM_INFINITY)
    CHECK_MSG((rlim_t)c1 >= after.rlim_cur,
              "capacity %zd < soft limit %llu", c1,
              (unsigned long long)after.rlim_cur);
}

TEST(set_non_block) {
  int p[2];
  REQUIRE(pipe(p) == 0);
  CHECK(!is_nonblocking(p[0]));
  CHECK(sock_set_non_block(p[0]) != -1);
  CHECK(is_nonblocking(p[0]));
  CHECK(sock_set_non_block(p[0]) != -1); /* idempotent */
  CHECK(is_nonblocking(p[0]));
  CHECK(!is_nonblocking(p[1]));
  close(p[0]);
  close(p[1]);
  errno = 0;
  CHECK_EQ(sock_set_non_block(-1), -1);
  CHECK_EQ(errno, EBADF);
  CHECK_EQ(sock_set_non_block(p[0]), -1); /* closed fd */
  CHECK_EQ(sock_set_non_block(INT_MAX), -1);
}

TEST(sock_open_bad_fd) {
  ssize_t cap = sock_max_capacity();
  CHECK_EQ(sock_open(-1), -1);
  CHECK_EQ(sock_open(-100), -1);
  CHECK_EQ(sock_open(INT_MIN), -1);
  if (cap > 0 && cap < INT_MAX)
    CHECK_EQ(sock_open((int)cap), -1);
  CHECK_EQ(sock_open(INT_MAX), -1);
  CHECK_EQ(total_close_events(), 0);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(header_macros);
  RUN(type_layouts);
  RUN(sock_open_pipe_encoding);
  RUN(sock_open_socketpair);
  RUN(counter_changes_on_reuse);
  RUN(sock_open_twice_same_fd);
  RUN(fd2uuid_bad_values);
  RUN(isvalid_bad_values);
  RUN(high_fd_numbers);
  RUN(max_capacity);
  RUN(set_non_block);
  RUN(sock_open_bad_fd);
  return HARNESS_END();
}
