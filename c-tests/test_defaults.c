/* A program that defines none of the overridable callbacks (spec 5): it
 * must link (shared and static) and run with the library's defaults. */
#include "util.h" /* no TEST_DEFINE_CALLBACKS */

static void task(void *arg) { (void)arg; }

TEST(default_callbacks_callable) {
  /* the defaults do nothing; reactor_remove and async_run return -1 */
  reactor_on_close(-1);
  reactor_on_close(12345);
  CHECK_EQ(reactor_remove(-1), -1);
  CHECK_EQ(reactor_remove(7), -1);
  sock_touch(-1);
  sock_touch(42);
  CHECK_EQ(async_run(task, NULL), -1);
}

TEST(closes_with_default_callbacks) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  sock_close(c.uuid);
  CHECK_EQ(sock_isvalid(c.uuid), 0);
  close(c.raw);
  REQUIRE(make_unix_pair(&c) == 0);
  sock_force_close(c.uuid);
  CHECK_EQ(sock_isvalid(c.uuid), 0);
  close(c.raw);
  REQUIRE(make_tcp_pair(&c) == 0);
  close(c.raw);
  ssize_t r = read_until_nonzero(c.uuid, 5000);
  CHECK_EQ(r, -1);
  CHECK_EQ(sock_isvalid(c.uuid), 0);
  /* fd reused while marked open */
  REQUIRE(make_unix_pair(&c) == 0);
  intptr_t again = sock_open(c.lfd);
  CHECK(again != -1 && again != c.uuid);
  CHECK_EQ(sock_isvalid(c.uuid), 0);
  sock_force_close(again);
  close(c.raw);
}

TEST(data_with_default_callbacks) {
  char port[16];
  intptr_t srv, cl, ac;
  REQUIRE(lib_tcp_trio(port, &srv, &cl, &ac) == 0);
  size_t n = 5u << 20;
  uint8_t *src = malloc(n), *dst = malloc(n);
  fill_pattern(src, n, 0, 8);
  CHECK_EQ(sock_write(cl, src, n), 0);
  size_t got = 0;
  int64_t end = now_ms() + 20000;
  while (got < n && now_ms() < end) {
    sock_flush(cl);
    ssize_t k = sock_read(ac, dst + got, n - got);
    if (k > 0)
      got += (size_t)k;
    else if (k < 0)
      break;
    else
      wait_fd(sock_uuid2fd(ac), POLLIN, 5);
  }
  CHECK_EQ(got, n);
  CHECK(!memcmp(src, dst, n));
  int fd = make_temp_file(100000, 9);
  CHECK_EQ(sock_sendfile(ac, fd, 0, 100000), 0);
  sock_flush_strong(ac);
  CHECK_EQ(lib_read_n(cl, dst, 100000, 5000), 100000);
  CHECK_EQ(check_pattern(dst, 100000, 0, 9), 100000);
  sock_close(cl);
  sock_close(ac);
  sock_close(srv);
  free(src);
  free(dst);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(default_callbacks_callable);
  RUN(closes_with_default_callbacks);
  RUN(data_with_default_callbacks);
  return HARNESS_END();
}
