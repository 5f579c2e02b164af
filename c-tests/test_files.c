/* File sending: sock_sendfile and sock_write2(.is_fd = 1). */
#define TEST_DEFINE_CALLBACKS
#include "util.h"

#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FILE_SIZE ((size_t)(3 * 1024 * 1024 + 123))

/* After the data was received and flush_strong returned, the library must
 * have closed the file fd. (If the number was reused meanwhile it would
 * refer to another file: compare inodes.) */
static void check_file_closed(int fd, const struct stat *st) {
  int64_t end = now_ms() + 2000;
  if (fd_is_same_file(fd, st))
    NOTE("file fd %d not yet closed when flush_strong returned", fd);
  while (fd_is_same_file(fd, st) && now_ms() < end)
    tiny_wait(); /* bounded: the close may trail the last byte slightly */
  CHECK_MSG(!fd_is_same_file(fd, st), "file fd %d still open", fd);
  errno = 0;
  if (!fd_is_open(fd))
    CHECK_EQ(errno, EBADF);
}

static void send_window(conn_t *c, size_t fsize, off_t off, size_t len,
                        size_t expect, int use_write2) {
  int fd = make_temp_file(fsize, 42);
  REQUIRE(fd >= 0);
  struct stat st;
  fstat(fd, &st);
  drain_t d = {.fd = c->raw, .expect = expect + 3, .check = 0,
               .store = malloc(expect + 3), .store_cap = expect + 3};
  drain_start(&d);
  ssize_t r;
  if (use_write2)
    r = sock_write2(.fduuid = c->uuid, .buffer = (void *)(intptr_t)fd,
                    .length = len, .offset = off, .is_fd = 1);
  else
    r = sock_sendfile(c->uuid, fd, off, len);
  CHECK_EQ(r, 0);
  /* data queued after the file follows it, exactly after its last byte */
  CHECK_EQ(sock_write(c->uuid, "END", 3), 0);
  sock_flush_strong(c->uuid);
  drain_join(&d);
  CHECK_EQ(d.got, expect + 3);
  CHECK_EQ(check_pattern(d.store, expect, (uint64_t)off, 42), expect);
  CHECK(!memcmp(d.store + expect, "END", 3));
  check_file_closed(fd, &st);
  free(d.store);
}

TEST(sendfile_whole_file_tcp) {
  conn_t c;
  REQUIRE(make_tcp_pair(&c) == 0);
  send_window(&c, FILE_SIZE, 0, FILE_SIZE, FILE_SIZE, 0);
  CHECK_EQ(sock_isvalid(c.uuid), 1);
  conn_force_close(&c);
}

TEST(sendfile_whole_file_unix) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  send_window(&c, FILE_SIZE, 0, FILE_SIZE, FILE_SIZE, 0);
  conn_force_close(&c);
}

TEST(sendfile_to_pipe) {
  int p[2];
  REQUIRE(pipe(p) == 0);
  sock_set_non_block(p[1]);
  conn_t c = {.uuid = sock_open(p[1]), .lfd = p[1], .raw = p[0]};
  REQUIRE(c.uuid != -1);
  send_window(&c, 500000, 0, 500000, 500000, 0);
  conn_force_close(&c);
}

TEST(sendfile_window) {
  conn_t c;
  REQUIRE(make_tcp_pair(&c) == 0);
  send_window(&c, FILE_SIZE, 1000, 50000, 50000, 0);
  send_window(&c, FILE_SIZE, 65537, 1, 1, 0);
  send_window(&c, FILE_SIZE, 1 << 20, 1 << 20, 1 << 20, 0);
  conn_force_close(&c);
}

TEST(sendfile_length_beyond_eof) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  send_window(&c, FILE_SIZE, (off_t)FILE_SIZE - 100, 1000000, 100, 0);
  send_window(&c, 20000, 0, 10 * 1000 * 1000, 20000, 0);
  conn_force_close(&c);
}

TEST(sendfile_offset_at_or_beyond_eof) {
  /* nothing to send: the connection carries on with the next data */
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  send_window(&c, 5000, 5000, 100, 0, 0);
  send_window(&c, 5000, 6000, 100, 0, 0);
  CHECK_EQ(sock_isvalid(c.uuid), 1);
  conn_force_close(&c);
}

/* An offset no file can reach (near INT64_MAX, where offset + chunk would
 * overflow and sendfile/pread answer EINVAL) is the end of the file:
 * nothing is sent from there, the file is closed, and the connection
 * carries on with the data queued after it. */
TEST(sendfile_offset_near_int64_max) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  static const off_t offsets[] = {INT64_MAX - 10, INT64_MAX - 1, INT64_MAX};
  for (size_t i = 0; i < 2 * sizeof(offsets) / sizeof(offsets[0]); i++) {
    off_t off = offsets[i / 2];
    int fd = make_temp_file(5000, 42);
    REQUIRE(fd >= 0);
    struct stat st;
    REQUIRE(fstat(fd, &st) == 0);
    CHECK_EQ(sock_write(c.uuid, "[", 1), 0);
    if (i % 2)
      CHECK_EQ(sock_write2(.fduuid = c.uuid, .buffer = (void *)(intptr_t)fd,
                           .length = 100, .offset = off, .is_fd = 1),
               0);
    else
      CHECK_EQ(sock_sendfile(c.uuid, fd, off, 100), 0);
    CHECK_EQ(sock_write(c.uuid, "]", 1), 0);
    CHECK_MSG(sock_isvalid(c.uuid), "offset %lld closed the connection",
              (long long)off);
    REQUIRE(!TEST_FAILED());
    expect_raw_bytes(&c, "[]", 2);
    check_file_closed(fd, &st);
  }
  CHECK_EQ(close_count(c.uuid), 0);
  conn_force_close(&c);
}

TEST(write2_is_fd) {
  conn_t c;
  REQUIRE(make_tcp_pair(&c) == 0);
  send_window(&c, FILE_SIZE, 0, FILE_SIZE, FILE_SIZE, 1);
  send_window(&c, FILE_SIZE, 777, 300000, 300000, 1);
  conn_force_close(&c);
}

TEST(sendfile_between_writes_order) {
  /* memory, file, memory, file, memory: order kept */
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  int f1 = make_temp_file(100000, 7);
  int f2 = make_temp_file(70000, 8);
  REQUIRE(f1 >= 0 && f2 >= 0);
  size_t total = 1 + 100000 + 1 + 70000 + 1;
  drain_t d = {.fd = c.raw, .expect = total, .store = malloc(total),
               .store_cap = total};
  drain_start(&d);
  CHECK_EQ(sock_write(c.uuid, "A", 1), 0);
  CHECK_EQ(sock_sendfile(c.uuid, f1, 0, 100000), 0);
  CHECK_EQ(sock_write(c.uuid, "B", 1), 0);
  CHECK_EQ(sock_sendfile(c.uuid, f2, 0, 70000), 0);
  CHECK_EQ(sock_write(c.uuid, "C", 1), 0);
  sock_flush_strong(c.uuid);
  drain_join(&d);
  CHECK_EQ(d.got, total);
  CHECK_EQ(d.store[0], 'A');
  CHECK_EQ(check_pattern(d.store + 1, 100000, 0, 7), 100000);
  CHECK_EQ(d.store[100001], 'B');
  CHECK_EQ(check_pattern(d.store + 100002, 70000, 0, 8), 70000);
  CHECK_EQ(d.store[170002], 'C');
  free(d.store);
  conn_force_close(&c);
}

TEST(big_file_concurrent_reader) {
  conn_t c;
  REQUIRE(make_tcp_pair(&c) == 0);
  size_t n = 40u << 20;
  int fd = make_temp_file(n, 9);
  REQUIRE(fd >= 0);
  struct stat st;
  fstat(fd, &st);
  drain_t d = {.fd = c.raw, .expect = n, .check = 1, .seed = 9};
  drain_start(&d);
  CHECK_EQ(sock_sendfile(c.uuid, fd, 0, n), 0);
  sock_flush_strong(c.uuid);
  drain_join(&d);
  CHECK_EQ(d.got, n);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  check_file_closed(fd, &st);
  conn_force_close(&c);
}

TEST(sendfile_invalid_uuid) {
  int fd = make_temp_file(1000, 1);
  REQUIRE(fd >= 0);
  errno = 0;
  CHECK_EQ(sock_sendfile(-1, fd, 0, 1000), -1);
  CHECK_EQ(errno, ENODEV);
  /* the header's promise: the file is closed on failure too */
  CHECK(!fd_is_open(fd));
  fd = make_temp_file(1000, 1);
  REQUIRE(fd >= 0);
  errno = 0;
  CHECK_EQ(sock_sendfile(((intptr_t)1 << 32) | 0x7fffffff, fd, 0, 1000), -1);
  CHECK_EQ(errno, ENODEV);
  CHECK(!fd_is_open(fd));
  /* a negative offset is refused (EINVAL), and the file still closed */
  fd = make_temp_file(1000, 1);
  REQUIRE(fd >= 0);
  errno = 0;
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  CHECK_EQ(sock_sendfile(c.uuid, fd, -1, 1000), -1);
  CHECK_EQ(errno, EINVAL);
  CHECK(!fd_is_open(fd));
  CHECK_EQ(sock_isvalid(c.uuid), 1);
  conn_force_close(&c);
}

/* Receives `n` bytes from the raw peer of `c` into `store` the way an
 * edge-triggered event loop finishes a transfer: the peer is read when
 * epoll reports it readable, and sock_flush is called when it reports the
 * library's fd writable (and never otherwise). Returns the bytes received
 * within `ms`. */
static size_t et_receive(conn_t *c, uint8_t *store, size_t n, int ms) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0)
    return 0;
  fcntl(c->raw, F_SETFL, fcntl(c->raw, F_GETFL) | O_NONBLOCK);
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.fd = c->lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, c->lfd, &ev);
  ev = (struct epoll_event){.events = EPOLLIN | EPOLLET, .data.fd = c->raw};
  epoll_ctl(ep, EPOLL_CTL_ADD, c->raw, &ev);
  size_t got = 0;
  int64_t end = now_ms() + ms;
  while (got < n && now_ms() < end) {
    struct epoll_event evs[2];
    int k = epoll_wait(ep, evs, 2, 100);
    for (int i = 0; i < k; i++) {
      if (evs[i].data.fd == c->lfd) {
        sock_flush(c->uuid);
        continue;
      }
      for (;;) { /* edge-triggered: read until the socket is empty */
        ssize_t r = read(c->raw, store + got, n - got);
        if (r <= 0)
          break;
        got += (size_t)r;
      }
    }
  }
  close(ep);
  set_blocking(c->raw);
  return got;
}

/* Sends a file with length 0 (sock_write2 .is_fd, or sock_sendfile) from
 * `off`, then "END": the peer gets the file from `off` to its end, then
 * "END", and the file is closed. */
static void send_to_eof(int use_write2, off_t off) {
  conn_t c;
  REQUIRE(make_tcp_pair(&c) == 0);
  size_t fsize = 300000, expect = fsize - (size_t)off;
  int fd = make_temp_file(fsize, 21);
  REQUIRE(fd >= 0);
  struct stat st;
  fstat(fd, &st);
  ssize_t r;
  errno = 0;
  if (use_write2)
    r = sock_write2(.fduuid = c.uuid, .buffer = (void *)(intptr_t)fd,
                    .length = 0, .offset = off, .is_fd = 1);
  else
    r = sock_sendfile(c.uuid, fd, off, 0);
  CHECK_MSG(r == 0, "length 0 refused: %s", strerror(errno));
  CHECK_EQ(sock_write(c.uuid, "END", 3), 0);
  uint8_t *store = malloc(expect + 3);
  CHECK_EQ(et_receive(&c, store, expect + 3, 10000), expect + 3);
  CHECK_EQ(check_pattern(store, expect, (uint64_t)off, 21), expect);
  CHECK(!memcmp(store + expect, "END", 3));
  check_file_closed(fd, &st);
  free(store);
  conn_force_close(&c);
}

/* Length 0 means "to end of file", for sock_write2(.is_fd) and
 * sock_sendfile as for an is_fd packet. */
TEST(write2_is_fd_length_0_to_end_of_file) { send_to_eof(1, 0); }
TEST(sendfile_length_0_to_end_of_file_from_offset) { send_to_eof(0, 4321); }

/* ... also for a source with no size: a pipe, sent until its writer closed
 * it (end of stream). */
TEST(sendfile_length_0_pipe_to_end_of_stream) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  int p[2];
  REQUIRE(pipe(p) == 0);
  size_t n = 50000;
  uint8_t *data = malloc(n);
  fill_pattern(data, n, 0, 22);
  REQUIRE(write(p[1], data, n) == (ssize_t)n);
  close(p[1]);
  CHECK_EQ(sock_sendfile(c.uuid, p[0], 0, 0), 0);
  CHECK_EQ(sock_write(c.uuid, "END", 3), 0);
  uint8_t *store = malloc(n + 3);
  CHECK_EQ(et_receive(&c, store, n + 3, 10000), n + 3);
  CHECK_EQ(check_pattern(store, n, 0, 22), n);
  CHECK(!memcmp(store + n, "END", 3));
  free(store);
  free(data);
  conn_force_close(&c);
}

TEST(sendfile_closes_after_close_request) {
  /* sock_close after a queued file: the file is delivered, then EOF */
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 8192) == 0);
  size_t n = 2u << 20;
  int fd = make_temp_file(n, 12);
  REQUIRE(fd >= 0);
  struct stat st;
  fstat(fd, &st);
  CHECK_EQ(sock_sendfile(c.uuid, fd, 0, n), 0);
  sock_close(c.uuid);
  drain_t d = {.fd = c.raw, .expect = n, .check = 1, .seed = 12,
               .until_eof = 1};
  CHECK(drain_while_closing(&c, &d, 20000));
  CHECK_EQ(d.got, n);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  CHECK(d.eof);
  CHECK_EQ(close_count(c.uuid), 1);
  check_file_closed(fd, &st);
  close(c.raw);
}

/* The program's edge-triggered loop: sock_flush on EPOLLOUT until nothing
 * is queued. Returns 1 when everything was sent within `ms`. */
static int et_flush_until_sent(conn_t *c, int ms) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLET};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, c->lfd, &ev) != 0)
    return 0;
  int64_t end = now_ms() + ms;
  while (sock_packets_pending(c->uuid) && now_ms() < end)
    if (epoll_wait(ep, &ev, 1, 100) == 1)
      sock_flush(c->uuid);
  close(ep);
  return !sock_packets_pending(c->uuid);
}

/* A file fd the kernel cannot send from — not open, or open for writing
 * only — is refused with EBADF, on an idle connection (where the library
 * sends the file at once and the sendfile itself reports it) as on one that
 * waits for EPOLLOUT; a write-only fd, handed over, is closed; a number
 * that is not open is left alone. The connection carries on: the bytes
 * queued before and after arrive. */
TEST(sendfile_unusable_fd_refused_connection_lives) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  int closed = open("/dev/null", O_RDONLY);
  REQUIRE(closed >= 0);
  close(closed);
  char path[] = "/tmp/libsock-test-XXXXXX";
  int tmp = mkstemp(path);
  REQUIRE(tmp >= 0);
  REQUIRE(write(tmp, "0123456789", 10) == 10);
  int wo = open(path, O_WRONLY | O_CLOEXEC);
  unlink(path);
  close(tmp);
  REQUIRE(wo >= 0);
  struct stat st;
  REQUIRE(fstat(wo, &st) == 0);

  /* idle connection */
  errno = 0;
  CHECK_EQ(sock_sendfile(c.uuid, closed, 0, 100), -1);
  CHECK_EQ(errno, EBADF);
  errno = 0;
  CHECK_EQ(sock_sendfile(c.uuid, wo, 0, 10), -1);
  CHECK_EQ(errno, EBADF);
  CHECK_MSG(!fd_is_same_file(wo, &st), "the write-only fd was not closed");
  CHECK_EQ(sock_isvalid(c.uuid), 1);

  /* a connection whose socket is full: its data waits for EPOLLOUT */
  size_t n = 256 * 1024;
  uint8_t *src = malloc(n);
  fill_pattern(src, n, 0, 77);
  CHECK_EQ(sock_write(c.uuid, src, n), 0);
  CHECK(sock_packets_pending(c.uuid) != 0);
  errno = 0;
  CHECK_EQ(sock_sendfile(c.uuid, closed, 0, 100), -1);
  CHECK_EQ(errno, EBADF);
  CHECK_EQ(sock_write(c.uuid, "END", 3), 0);

  drain_t d = {.fd = c.raw, .expect = n + 3, .store = malloc(n + 3),
               .store_cap = n + 3};
  drain_start(&d);
  CHECK(et_flush_until_sent(&c, 20000));
  drain_join(&d);
  CHECK_EQ(d.got, n + 3);
  CHECK_EQ(check_pattern(d.store, n, 0, 77), n);
  CHECK(!memcmp(d.store + n, "END", 3));
  CHECK_EQ(sock_isvalid(c.uuid), 1);
  free(d.store);
  free(src);
  conn_force_close(&c);
}

/* The library's sendfile goes through here (the program's definition wins
 * over the C library's, with libsock.so as with libsock.a): while
 * `close_in_sendfile` names a connection, the first call asks for its close
 * first, from inside the write that sends the file. */
static intptr_t close_in_sendfile = -1;

static ssize_t real_sendfile(int out, int in, off_t *off, size_t count) {
  return syscall(SYS_sendfile, out, in, off, count);
}
ssize_t sendfile(int out, int in, off_t *off, size_t count) {
  intptr_t u = close_in_sendfile;
  if (u != -1) {
    close_in_sendfile = -1;
    sock_close(u); /* the sender is this very call: recorded for it */
  }
  return real_sendfile(out, in, off, count);
}
ssize_t sendfile64(int out, int in, off64_t *off, size_t count) {
  return sendfile(out, in, (off_t *)off, count);
}

/* A file accepted and sent is not reported as refused because the
 * connection closed right after it: sock_sendfile on an idle connection
 * sends at once, and a sock_close that arrives meanwhile completes when
 * the file is out — the call still answers 0, the peer gets the whole
 * file, then the end of the stream. */
TEST(sendfile_accepted_when_a_close_completes_right_after_it) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  size_t n = 100000;
  int fd = make_temp_file(n, 9);
  REQUIRE(fd >= 0);
  drain_t d = {.fd = c.raw, .expect = n, .check = 1, .seed = 9,
               .until_eof = 1, .timeout_ms = 10000};
  drain_start(&d);
  close_in_sendfile = c.uuid;
  errno = 0;
  ssize_t r = sock_sendfile(c.uuid, fd, 0, n);
  int err = errno;
  close_in_sendfile = -1;
  CHECK_MSG(r == 0, "sock_sendfile answered %zd (errno %d) for a file it "
            "sent", r, err);
  drain_join(&d);
  CHECK_EQ(d.got, n);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  CHECK(d.eof);
  CHECK_EQ(sock_isvalid(c.uuid), 0);
  close(c.raw);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(sendfile_whole_file_tcp);
  RUN(sendfile_whole_file_unix);
  RUN(sendfile_to_pipe);
  RUN(sendfile_window);
  RUN(sendfile_length_beyond_eof);
  RUN(sendfile_offset_at_or_beyond_eof);
  RUN(sendfile_offset_near_int64_max);
  RUN(write2_is_fd);
  RUN(sendfile_between_writes_order);
  RUN(big_file_concurrent_reader);
  RUN(sendfile_invalid_uuid);
  RUN(write2_is_fd_length_0_to_end_of_file);
  RUN(sendfile_length_0_to_end_of_file_from_offset);
  RUN(sendfile_length_0_pipe_to_end_of_stream);
  RUN(sendfile_closes_after_close_request);
  RUN(sendfile_unusable_fd_refused_connection_lives);
  RUN(sendfile_accepted_when_a_close_completes_right_after_it);
  return HARNESS_END();
}
