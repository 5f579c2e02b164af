/* SIGPIPE (spec 6): with SIGPIPE at its default disposition (which kills
 * the process), writing to a vanished peer must not kill the process. */
#define TEST_DEFINE_CALLBACKS
#include "util.h"

static void sigpipe_default(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_DFL;
  sigaction(SIGPIPE, &sa, NULL);
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGPIPE);
  pthread_sigmask(SIG_UNBLOCK, &s, NULL);
}

/* write + flush until the library reports failure / closes the uuid */
static void write_until_failure(intptr_t uuid) {
  char buf[4096];
  memset(buf, 'p', sizeof(buf));
  int64_t end = now_ms() + 10000;
  int failed = 0;
  while (now_ms() < end) {
    if (sock_write(uuid, buf, sizeof(buf)) == -1) {
      failed = 1;
      break;
    }
    if (sock_flush(uuid) == -1) {
      failed = 1;
      break;
    }
  }
  CHECK(failed);
  CHECK(flush_until_closed(uuid, 5000));
  CHECK_EQ(sock_isvalid(uuid), 0);
  CHECK_EQ(close_count(uuid), 1);
}

TEST(unix_peer_closed) {
  sigpipe_default();
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  close(c.raw);
  write_until_failure(c.uuid);
}

TEST(tcp_peer_closed) {
  sigpipe_default();
  conn_t c;
  REQUIRE(make_tcp_pair(&c) == 0);
  CHECK_EQ(sock_write(c.uuid, "hello", 5), 0);
  sock_flush_strong(c.uuid);
  char b[5];
  CHECK_EQ(raw_read_n(c.raw, b, 5, 5000, NULL), 5);
  close(c.raw);
  write_until_failure(c.uuid);
}

TEST(tcp_peer_reset) {
  sigpipe_default();
  conn_t c;
  REQUIRE(make_tcp_pair(&c) == 0);
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  setsockopt(c.raw, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(c.raw); /* RST */
  write_until_failure(c.uuid);
}

TEST(pipe_reader_closed) {
  sigpipe_default();
  int p[2];
  REQUIRE(pipe(p) == 0);
  sock_set_non_block(p[1]);
  intptr_t w = sock_open(p[1]);
  REQUIRE(w != -1);
  close(p[0]);
  write_until_failure(w);
}

TEST(queued_data_then_peer_vanishes) {
  /* data queued in the user-land buffer when the peer goes away */
  sigpipe_default();
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  size_t n = 4u << 20;
  uint8_t *src = calloc(1, n);
  CHECK_EQ(sock_write(c.uuid, src, n), 0);
  free(src);
  CHECK(sock_packets_pending(c.uuid) != 0);
  close(c.raw);
  sock_flush_strong(c.uuid); /* returns: the connection failed */
  CHECK(flush_until_closed(c.uuid, 5000));
  CHECK_EQ(close_count(c.uuid), 1);
}

TEST(sendfile_to_vanished_peer) {
  sigpipe_default();
  conn_t c;
  REQUIRE(make_tcp_pair_buf(&c, 4096, 4096) == 0);
  int fd = make_temp_file(4u << 20, 3);
  REQUIRE(fd >= 0);
  close(c.raw);
  /* give the library a file while the peer is gone */
  (void)sock_sendfile(c.uuid, fd, 0, 4u << 20);
  sock_flush_strong(c.uuid);
  CHECK(flush_until_closed(c.uuid, 5000));
  CHECK_EQ(close_count(c.uuid), 1);
}

static ssize_t raw_write_hook(intptr_t uuid, const void *buf, size_t n) {
  return write(sock_uuid2fd(uuid), buf, n); /* like a TLS library would */
}

TEST(write_hook_to_vanished_peer) {
  /* the write hook calls write(2) itself, as a TLS library does */
  sigpipe_default();
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  static sock_rw_hook_s h = {.write = raw_write_hook};
  CHECK_EQ(sock_rw_hook_set(c.uuid, &h), 0);
  close(c.raw);
  write_until_failure(c.uuid);
}

TEST(close_with_data_to_vanished_peer) {
  sigpipe_default();
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  close(c.raw);
  char b[100] = {0};
  (void)sock_write(c.uuid, b, sizeof(b));
  sock_close(c.uuid);
  CHECK(sock_isvalid(c.uuid) == 0 || flush_until_closed(c.uuid, 5000));
  CHECK_EQ(close_count(c.uuid), 1);
}

static void *thread_writer(void *arg) {
  intptr_t uuid = (intptr_t)arg;
  write_until_failure(uuid);
  return NULL;
}

TEST(peer_closed_other_thread) {
  sigpipe_default();
  conn_t c[4];
  pthread_t th[4];
  for (int i = 0; i < 4; i++) {
    REQUIRE(make_tcp_pair(&c[i]) == 0);
    close(c[i].raw);
  }
  for (int i = 0; i < 4; i++)
    pthread_create(&th[i], NULL, thread_writer, (void *)c[i].uuid);
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
}

static volatile sig_atomic_t sigpipe_seen;
static void sigpipe_handler(int s) {
  (void)s;
  sigpipe_seen = 1;
}

TEST(program_sigpipe_handler_still_works) {
  /* After the library ran into EPIPE, the program's own write to a broken
   * pipe still raises SIGPIPE to the handler the program installed: the
   * library did not leave SIGPIPE blocked in this thread. */
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  close(c.raw);
  sigpipe_default();
  write_until_failure(c.uuid);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = sigpipe_handler;
  sigaction(SIGPIPE, &sa, NULL);
  sigpipe_seen = 0;
  int p[2];
  REQUIRE(pipe(p) == 0);
  close(p[0]);
  errno = 0;
  CHECK_EQ(write(p[1], "x", 1), -1);
  CHECK_EQ(errno, EPIPE);
  CHECK_EQ(sigpipe_seen, 1);
  close(p[1]);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(unix_peer_closed);
  RUN(tcp_peer_closed);
  RUN(tcp_peer_reset);
  RUN(pipe_reader_closed);
  RUN(queued_data_then_peer_vanishes);
  RUN(sendfile_to_vanished_peer);
  RUN(write_hook_to_vanished_peer);
  RUN(close_with_data_to_vanished_peer);
  RUN(peer_closed_other_thread);
  RUN(program_sigpipe_handler_still_works);
  return HARNESS_END();
}
