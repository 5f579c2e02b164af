/* Bad input everywhere: invalid / stale / out-of-range UUIDs, NULL
 * pointers, zero lengths, bad hosts, ports and paths. Clear errors, no
 * crash, and no effect on a live connection. */
#define TEST_DEFINE_CALLBACKS
#include "util.h"

static conn_t live;

static void live_setup(void) {
  if (make_unix_pair(&live) != 0)
    h_fail_at(__FILE__, __LINE__, "cannot create the live connection");
}

/* the live connection still works both ways and was never closed */
static void live_check(void) {
  CHECK_EQ(sock_isvalid(live.uuid), 1);
  CHECK_EQ(close_count(live.uuid), 0);
  CHECK_EQ(sock_write(live.uuid, "still alive", 11), 0);
  sock_flush_strong(live.uuid);
  char b[16] = {0};
  CHECK_EQ(raw_read_n(live.raw, b, 11, 5000, NULL), 11);
  CHECK(!memcmp(b, "still alive", 11));
  CHECK(raw_write_all(live.raw, "back", 4, 5000) == 0);
  CHECK_EQ(lib_read_n(live.uuid, b, 4, 5000), 4);
  CHECK(!memcmp(b, "back", 4));
}

static atomic_int deallocs;
static void count_dealloc(void *p) {
  atomic_fetch_add(&deallocs, 1);
  free(p);
}

static void hit_everything(intptr_t bad, const char *what) {
  char buf[32];
  errno = 0;
  CHECK_MSG(sock_read(bad, buf, sizeof(buf)) == -1, "read %s", what);
  CHECK_MSG(errno == ENODEV, "read %s errno %d", what, errno);
  errno = 0;
  CHECK_MSG(sock_write(bad, "data", 4) == -1, "write %s", what);
  CHECK_MSG(errno == ENODEV, "write %s errno %d", what, errno);
  errno = 0;
  CHECK_MSG(sock_write2(.fduuid = bad, .buffer = "u", .length = 1,
                        .urgent = 1) == -1,
            "urgent write %s", what);
  CHECK_MSG(errno == ENODEV, "urgent write %s errno %d", what, errno);
  char *m = malloc(64);
  memset(m, 'm', 64);
  CHECK_MSG(sock_write2(.fduuid = bad, .buffer = m, .length = 64, .move = 1) ==
                -1,
            "move write %s", what); /* m freed by the library (valgrind) */
  int fd = make_temp_file(64, 1);
  errno = 0;
  CHECK_MSG(sock_sendfile(bad, fd, 0, 64) == -1, "sendfile %s", what);
  CHECK_MSG(errno == ENODEV, "sendfile %s errno %d", what, errno);
  if (fcntl(fd, F_GETFD) != -1)
    close(fd); /* still ours if the library did not take it */
  CHECK_MSG(sock_flush(bad) == -1, "flush %s", what);
  sock_flush_strong(bad);
  CHECK_MSG(sock_packets_pending(bad) == 0, "pending %s", what);
  CHECK_MSG(sock_isvalid(bad) == 0, "isvalid %s", what);
  CHECK_MSG(sock_accept(bad) == -1, "accept %s", what);
  CHECK_MSG(sock_rw_hook_get(bad) == NULL, "hook_get %s", what);
  static sock_rw_hook_s h;
  CHECK_MSG(sock_rw_hook_set(bad, &h) == -1, "hook_set %s", what);
  CHECK_MSG(sock_rw_hook_set(bad, NULL) == -1, "hook_set NULL %s", what);
  sock_packet_s *p = sock_checkout_packet();
  if (p) {
    int before = atomic_load(&deallocs);
    p->buffer = malloc(10);
    p->length = 10;
    p->metadata.external = 1;
    p->metadata.dealloc = count_dealloc;
    CHECK_MSG(sock_send_packet(bad, p) == -1, "send_packet %s", what);
    CHECK_MSG(atomic_load(&deallocs) == before + 1, "packet freed %s", what);
  }
  sock_flush_all();
  sock_close(bad);
  sock_force_close(bad);
}

TEST(invalid_uuids_everywhere) {
  live_setup();
  REQUIRE(!TEST_FAILED());
  ssize_t cap = sock_max_capacity();
  fduuid_u lu = {.uuid = live.uuid};
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  conn_t st;
  REQUIRE(make_unix_pair(&st) == 0);
  intptr_t stale = st.uuid;
  sock_force_close(stale);
  close(st.raw);
  int closes = total_close_events();
  struct {
    intptr_t u;
    const char *what;
  } bad[] = {
      {-1, "-1"},
      {stale, "stale"},
      {((intptr_t)1 << 32) | 0x7fffffff, "(1<<32)|0x7fffffff"},
      {make_uuid(-5, 1), "negative fd"},
      {make_uuid(INT_MIN, 0), "INT_MIN fd"},
      {make_uuid((int)cap, 0), "fd == capacity"},
      {make_uuid((int)cap + 100, 1), "fd beyond capacity"},
      {INTPTR_MIN, "INTPTR_MIN"},
      {INTPTR_MAX, "INTPTR_MAX"},
      {make_uuid(0, 0), "stdin never registered"},
      {make_uuid(sv[0], 0), "raw fd never registered"},
      {make_uuid(sv[0], 1), "raw fd never registered, counter 1"},
      {make_uuid(live.lfd, lu.data.counter + 1), "live fd, next counter"},
      {make_uuid(live.lfd, lu.data.counter - 1), "live fd, previous counter"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    hit_everything(bad[i].u, bad[i].what);
  /* no close notification for any of them */
  CHECK_EQ(total_close_events(), closes);
  /* the raw socketpair was not touched */
  CHECK(fd_is_open(sv[0]));
  CHECK_EQ(raw_read_avail(sv[1], (char[8]){0}, 8), 0);
  close(sv[0]);
  close(sv[1]);
  CHECK(fd_is_open(0));
  live_check();
}

TEST(null_and_zero_arguments) {
  live_setup();
  REQUIRE(!TEST_FAILED());
  errno = 0;
  CHECK_EQ(sock_write(live.uuid, NULL, 10), -1);
  CHECK_EQ(sock_write(live.uuid, NULL, 0), -1);
  CHECK_EQ(sock_write(live.uuid, "", 0), -1);
  CHECK_EQ(sock_write2(.fduuid = live.uuid), -1);
  CHECK_EQ(sock_write2(.fduuid = live.uuid, .buffer = NULL, .length = 5,
                       .urgent = 1),
           -1);
  /* (a zero-length read closes the connection, as in the original:
   * test_read_write read_count_zero_closes_like_end_of_stream) */
  sock_free_packet(NULL);
  (void)sock_send_packet(live.uuid, NULL);
  CHECK_EQ(sock_rw_hook_set(live.uuid, NULL), 0);
  CHECK(sock_rw_hook_get(live.uuid) == NULL);
  CHECK_EQ(sock_set_non_block(-1), -1);
  CHECK_EQ(sock_open(-1), -1);
  CHECK_EQ(sock_fd2uuid(-1), -1);
  live_check();
}

TEST(read_null_buffer_no_crash) {
  /* a dedicated connection: the spec does not say what happens to it */
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  live_setup();
  REQUIRE(raw_write_all(c.raw, "abc", 3, 5000) == 0);
  REQUIRE(wait_fd(c.lfd, POLLIN, 5000));
  ssize_t r = sock_read(c.uuid, NULL, 3);
  CHECK_LE(r, 0);
  if (sock_isvalid(c.uuid))
    sock_force_close(c.uuid);
  close(c.raw);
  live_check();
}

TEST(listen_connect_bad_arguments) {
  live_setup();
  REQUIRE(!TEST_FAILED());
  char port[16];
  REQUIRE(free_port(AF_INET, port) == 0);
  intptr_t r;
  errno = 0;
  r = sock_listen(NULL, NULL);
  CHECK_EQ(r, -1);
  CHECK_NE(errno, 0);
  errno = 0;
  r = sock_listen("", NULL);
  CHECK_EQ(r, -1);
  CHECK_NE(errno, 0);
  errno = 0;
  r = sock_listen("", "");
  CHECK_EQ(r, -1);
  errno = 0;
  r = sock_connect(NULL, NULL);
  CHECK_EQ(r, -1);
  CHECK_NE(errno, 0);
  char empty[] = "";
  errno = 0;
  r = sock_connect(empty, NULL);
  CHECK_EQ(r, -1);
  CHECK_NE(errno, 0);
  /* unresolvable host */
  errno = 0;
  r = sock_listen("no-such-host.invalid", port);
  CHECK_EQ(r, -1);
  CHECK_NE(errno, 0);
  CHECK_EQ(errno, EADDRNOTAVAIL); /* as documented in libsock.h */
  char nohost[] = "no-such-host.invalid";
  char p80[] = "80";
  errno = 0;
  r = sock_connect(nohost, p80);
  CHECK_EQ(r, -1);
  CHECK_NE(errno, 0);
  /* bad ports */
  const char *bad_ports[] = {"notaport", "99999", "65536", "-1", "12x"};
  for (size_t i = 0; i < sizeof(bad_ports) / sizeof(bad_ports[0]); i++) {
    errno = 0;
    r = sock_listen("127.0.0.1", bad_ports[i]);
    CHECK_MSG(r == -1, "sock_listen(127.0.0.1, %s) succeeded", bad_ports[i]);
    CHECK_MSG(errno != 0, "no errno for port %s", bad_ports[i]);
    if (r != -1)
      sock_force_close(r);
    errno = 0;
    r = sock_listen(NULL, bad_ports[i]);
    CHECK_MSG(r == -1, "sock_listen(NULL, %s) succeeded", bad_ports[i]);
    if (r != -1)
      sock_force_close(r);
    char host[] = "127.0.0.1";
    char bp[16];
    snprintf(bp, sizeof(bp), "%s", bad_ports[i]);
    errno = 0;
    r = sock_connect(host, bp);
    CHECK_MSG(r == -1, "sock_connect(127.0.0.1, %s) succeeded", bad_ports[i]);
    if (r != -1)
      sock_force_close(r);
  }
  /* bad address literal */
  errno = 0;
  r = sock_listen("999.1.1.1", port);
  CHECK_EQ(r, -1);
  /* an address that is not ours */
  errno = 0;
  r = sock_listen("192.0.2.1", port);
  CHECK_EQ(r, -1);
  CHECK_NE(errno, 0);
  CHECK_EQ(total_close_events(), 0);
  live_check();
}

static char tmpdir[256];

TEST(unix_path_length_limits) {
  live_setup();
  REQUIRE(!TEST_FAILED());
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/libsock-bad-XXXXXX");
  REQUIRE(mkdtemp(tmpdir));
  /* 300 characters: cannot fit sockaddr_un */
  char longp[400];
  int n = snprintf(longp, sizeof(longp), "%s/", tmpdir);
  while (n < 300)
    longp[n++] = 'x';
  longp[n] = 0;
  errno = 0;
  intptr_t r = sock_listen(longp, NULL);
  CHECK_EQ(r, -1);
  CHECK_NE(errno, 0);
  CHECK_EQ(errno, ENAMETOOLONG); /* as documented in libsock.h */
  errno = 0;
  r = sock_connect(longp, NULL);
  CHECK_EQ(r, -1);
  CHECK_NE(errno, 0);
  /* 108 characters: no room for the terminating NUL */
  n = snprintf(longp, sizeof(longp), "%s/", tmpdir);
  while (n < 108)
    longp[n++] = 'y';
  longp[n] = 0;
  errno = 0;
  r = sock_listen(longp, NULL);
  CHECK_EQ(r, -1);
  CHECK_NE(errno, 0);
  /* 107 characters: the longest path that fits */
  longp[107] = 0;
  r = sock_listen(longp, NULL);
  CHECK_MSG(r != -1, "107-char path refused: %s", strerror(errno));
  if (r != -1) {
    intptr_t c = sock_connect(longp, NULL);
    CHECK(c != -1);
    intptr_t a = accept_wait(r, 5000);
    CHECK(a != -1);
    if (c != -1 && a != -1) {
      CHECK_EQ(sock_write(c, "ok", 2), 0);
      sock_flush_strong(c);
      char b[2];
      CHECK_EQ(lib_read_n(a, b, 2, 5000), 2);
    }
    if (a != -1)
      sock_force_close(a);
    if (c != -1)
      sock_force_close(c);
    sock_force_close(r);
    unlink(longp);
  }
  rmdir(tmpdir);
  live_check();
}

TEST(accept_on_non_listener) {
  live_setup();
  REQUIRE(!TEST_FAILED());
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  CHECK_EQ(sock_accept(c.uuid), -1);
  CHECK_EQ(sock_isvalid(c.uuid), 1);
  int p[2];
  REQUIRE(pipe(p) == 0);
  intptr_t pu = sock_open(p[0]);
  CHECK_EQ(sock_accept(pu), -1);
  CHECK_EQ(sock_isvalid(pu), 1);
  sock_force_close(pu);
  close(p[1]);
  CHECK_EQ(sock_accept(live.uuid), -1);
  conn_force_close(&c);
  live_check();
}

TEST(sendfile_bad_fd_no_crash) {
  live_setup();
  REQUIRE(!TEST_FAILED());
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  /* an fd that is not open: error now, or a failed connection later */
  (void)sock_sendfile(c.uuid, 9999, 0, 100);
  (void)sock_sendfile(c.uuid, -1, 0, 100);
  sock_flush(c.uuid);
  if (sock_isvalid(c.uuid))
    sock_force_close(c.uuid);
  close(c.raw);
  live_check();
}

TEST(open_bad_fds) {
  live_setup();
  REQUIRE(!TEST_FAILED());
  ssize_t cap = sock_max_capacity();
  CHECK_EQ(sock_open(-1), -1);
  CHECK_EQ(sock_open(-12345), -1);
  CHECK_EQ(sock_open(INT_MIN), -1);
  CHECK_EQ(sock_open(INT_MAX), -1);
  CHECK_EQ(sock_open((int)cap), -1);
  CHECK_EQ(sock_open((int)cap + 1), -1);
  CHECK_EQ(total_close_events(), 0);
  live_check();
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(invalid_uuids_everywhere);
  RUN(null_and_zero_arguments);
  RUN(read_null_buffer_no_crash);
  RUN(listen_connect_bad_arguments);
  RUN(unix_path_length_limits);
  RUN(accept_on_non_listener);
  RUN(sendfile_bad_fd_no_crash);
  RUN(open_bad_fds);
  return HARNESS_END();
}
