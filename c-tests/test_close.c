/* sock_close / sock_force_close, close notification (reactor_remove +
 * reactor_on_close exactly once), stale UUIDs after fd reuse. */
#define TEST_DEFINE_CALLBACKS
#include "util.h"

#include <sys/epoll.h>
#include <sys/syscall.h>

#define MiB (1024u * 1024u)

/* closed at once: invalid, fd closed, reactor_remove then one
 * reactor_on_close, which already saw the fd closed */
static void check_closed_and_notified(const conn_t *c) {
  CHECK_EQ(sock_isvalid(c->uuid), 0);
  CHECK(!fd_is_open(c->lfd));
  CHECK_EQ(close_count(c->uuid), 1);
  CHECK_EQ(remove_count(c->uuid), 1);
  CHECK(remove_before_close(c->uuid));
  CHECK_EQ(close_saw_fd_open(c->uuid), 0);
}

TEST(close_idle_is_immediate) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  sock_close(c.uuid);
  check_closed_and_notified(&c);
  CHECK_EQ(raw_expect_eof(c.raw, 5000), 1);
  /* closing again: no second notification */
  sock_close(c.uuid);
  sock_force_close(c.uuid);
  CHECK_EQ(close_count(c.uuid), 1);
  CHECK_EQ(remove_count(c.uuid), 1);
  close(c.raw);
}

static void close_delivers_queued(conn_t *c, size_t n, int use_strong) {
  uint8_t *src = malloc(n);
  fill_pattern(src, n, 0, 17);
  CHECK_EQ(sock_write(c->uuid, src, n), 0);
  free(src);
  CHECK(sock_packets_pending(c->uuid) != 0);
  sock_close(c->uuid);
  /* data remains: not closed yet */
  CHECK_EQ(close_count(c->uuid), 0);
  CHECK(fd_is_open(c->lfd));
  drain_t d = {.fd = c->raw, .expect = n, .check = 1, .seed = 17,
               .until_eof = 1};
  drain_start(&d);
  if (use_strong) {
    sock_flush_strong(c->uuid);
    /* everything was sent and the connection was marked: closed now */
    CHECK_EQ(sock_isvalid(c->uuid), 0);
  } else {
    CHECK(flush_until_closed(c->uuid, 20000));
  }
  drain_join(&d);
  CHECK_EQ(d.got, n);
  CHECK_MSG(d.bad_at == SIZE_MAX, "wrong byte at %zu", d.bad_at);
  CHECK(d.eof);
  CHECK_EQ(sock_isvalid(c->uuid), 0);
  CHECK_EQ(close_count(c->uuid), 1);
  CHECK_EQ(remove_count(c->uuid), 1);
  CHECK(remove_before_close(c->uuid));
  CHECK_EQ(close_saw_fd_open(c->uuid), 0);
  CHECK_EQ(sock_flush(c->uuid), -1);
  close(c->raw);
}

TEST(close_delivers_queued_unix) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 8192) == 0);
  close_delivers_queued(&c, 6 * MiB, 0);
}

TEST(close_delivers_queued_tcp) {
  conn_t c;
  REQUIRE(make_tcp_pair_buf(&c, 8192, 8192) == 0);
  close_delivers_queued(&c, 6 * MiB, 0);
}

TEST(close_then_flush_strong) {
  conn_t c;
  REQUIRE(make_tcp_pair_buf(&c, 8192, 8192) == 0);
  close_delivers_queued(&c, 3 * MiB, 1);
}

TEST(close_then_flush_all) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 8192) == 0);
  size_t n = 2 * MiB;
  write_pattern(c.uuid, n, 18);
  sock_close(c.uuid);
  drain_t d = {.fd = c.raw, .expect = n, .check = 1, .seed = 18,
               .until_eof = 1};
  drain_start(&d);
  int64_t end = now_ms() + 20000;
  while (close_count(c.uuid) == 0 && now_ms() < end) {
    sock_flush_all();
    wait_fd(c.lfd, POLLOUT, 20);
  }
  drain_join(&d);
  CHECK_EQ(d.got, n);
  CHECK(d.eof);
  CHECK_EQ(close_count(c.uuid), 1);
  close(c.raw);
}

TEST(force_close_drops_queued) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 8192) == 0);
  size_t n = 6 * MiB;
  write_pattern(c.uuid, n, 19);
  CHECK(sock_packets_pending(c.uuid) != 0);
  sock_force_close(c.uuid);
  /* immediately closed and notified */
  check_closed_and_notified(&c);
  CHECK_EQ(sock_packets_pending(c.uuid), 0);
  drain_t d = {.fd = c.raw, .check = 1, .seed = 19, .until_eof = 1,
               .timeout_ms = 5000};
  drain_start(&d);
  drain_join(&d);
  CHECK(d.eof);
  CHECK_LT(d.got, n); /* queued data was dropped */
  CHECK_EQ(d.bad_at, SIZE_MAX);
  /* flushing the closed uuid does nothing */
  CHECK_EQ(sock_flush(c.uuid), -1);
  sock_flush_all();
  CHECK_EQ(close_count(c.uuid), 1);
  close(c.raw);
}

TEST(force_close_pipe_and_listener) {
  int p[2];
  REQUIRE(pipe(p) == 0);
  intptr_t w = sock_open(p[1]);
  REQUIRE(w != -1);
  sock_force_close(w); /* shutdown fails on a pipe; close must happen */
  CHECK(!fd_is_open(p[1]));
  CHECK_EQ(close_count(w), 1);
  CHECK_EQ(raw_expect_eof(p[0], 5000), 1);
  close(p[0]);
  char port[16];
  intptr_t srv;
  REQUIRE(lib_tcp_listen(port, &srv) == 0);
  int sfd = sock_uuid2fd(srv);
  sock_force_close(srv);
  CHECK(!fd_is_open(sfd));
  CHECK_EQ(close_count(srv), 1);
  CHECK_EQ(sock_isvalid(srv), 0);
  CHECK_EQ(sock_accept(srv), -1);
}

/* A library listener on a free loopback port, and its address for raw
 * clients to connect to. */
static int listen_loopback(intptr_t *srv, struct sockaddr_in *sa) {
  char port[16];
  if (lib_tcp_listen(port, srv) != 0)
    return -1;
  *sa = (struct sockaddr_in){.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(port))};
  sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return 0;
}

TEST(bob_and_alice) {
  intptr_t srv;
  struct sockaddr_in sa;
  REQUIRE(listen_loopback(&srv, &sa) == 0);
  /* Bob */
  int bob = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(connect(bob, (struct sockaddr *)&sa, sizeof(sa)) == 0);
  intptr_t a = accept_wait(srv, 5000);
  REQUIRE(a != -1);
  int fd = sock_uuid2fd(a);
  /* Alice's socket exists before Bob's connection drops */
  int alice = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(alice >= 0);
  /* Bob's connection drops (his socket number stays taken for now, so the
   * only fd number freed is the server side of Bob's connection) */
  REQUIRE(shutdown(bob, SHUT_RDWR) == 0);
  char tmp[8];
  ssize_t r = read_until_nonzero(a, 5000);
  CHECK_EQ(r, -1);
  CHECK_EQ(sock_isvalid(a), 0);
  CHECK_EQ(close_count(a), 1);
  /* Alice connects and gets the same fd number */
  REQUIRE(connect(alice, (struct sockaddr *)&sa, sizeof(sa)) == 0);
  intptr_t b = accept_wait(srv, 5000);
  REQUIRE(b != -1);
  REQUIRE_EQ(sock_uuid2fd(b), fd);
  CHECK(a != b);
  CHECK_EQ(sock_isvalid(a), 0);
  CHECK_EQ(sock_isvalid(b), 1);
  CHECK_EQ(sock_fd2uuid(fd), b);
  /* the late answer for Bob is refused */
  errno = 0;
  CHECK_EQ(sock_write(a, "BOB'S BANK STATEMENT", 0), -1);
  CHECK_EQ(errno, ENODEV);
  errno = 0;
  CHECK_EQ(sock_read(a, tmp, sizeof(tmp)), -1);
  CHECK_EQ(errno, ENODEV);
  CHECK_EQ(sock_flush(a), -1);
  CHECK_EQ(sock_packets_pending(a), 0);
  sock_rw_hook_s h = {0};
  CHECK_EQ(sock_rw_hook_set(a, &h), -1);
  CHECK(sock_rw_hook_get(a) == NULL);
  CHECK(sock_rw_hook_get(b) == NULL);
  sock_packet_s *p = sock_checkout_packet();
  REQUIRE(p);
  memcpy(p->buffer, "BOB-PACKET", 10);
  p->length = 10;
  CHECK_EQ(sock_send_packet(a, p), -1);
  CHECK_EQ(sock_sendfile(a, make_temp_file(100, 1), 0, 100), -1);
  /* closing Bob's stale uuid must not touch Alice */
  sock_close(a);
  sock_force_close(a);
  CHECK_EQ(sock_isvalid(b), 1);
  CHECK(fd_is_open(fd));
  CHECK_EQ(close_count(b), 0);
  CHECK_EQ(close_count(a), 1);
  /* Alice receives exactly her data */
  CHECK_EQ(sock_write(b, "hi alice", 8), 0);
  CHECK_EQ(sock_write(b, "|END", 4), 0);
  sock_flush_strong(b);
  char buf[64] = {0};
  CHECK_EQ(raw_read_n(alice, buf, 12, 5000, NULL), 12);
  CHECK(!memcmp(buf, "hi alice|END", 12));
  /* and Alice's data reaches b, not a */
  REQUIRE(write(alice, "from alice", 10) == 10);
  CHECK_EQ(lib_read_n(b, buf, 10, 5000), 10);
  CHECK(!memcmp(buf, "from alice", 10));
  sock_force_close(b);
  close(alice);
  close(bob);
  sock_force_close(srv);
}

TEST(sock_open_reused_fd_still_marked_open) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  intptr_t a = c.uuid;
  /* queue data for a that cannot be sent yet */
  size_t n = 1 * MiB;
  uint8_t *src = malloc(n);
  memset(src, 'A', n);
  CHECK_EQ(sock_write(a, src, n), 0);
  free(src);
  CHECK(sock_packets_pending(a) != 0);
  /* the program closes the fd behind the library's back ... */
  close(c.lfd);
  close(c.raw);
  /* ... and a new socket reuses the number */
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  REQUIRE_EQ(sv[0], c.lfd);
  sock_set_non_block(sv[0]);
  intptr_t b = sock_open(sv[0]);
  REQUIRE(b != -1);
  CHECK(a != b);
  CHECK_EQ(close_count(a), 1);
  CHECK_EQ(remove_count(a), 1);
  CHECK(remove_before_close(a));
  CHECK_EQ(close_count(b), 0);
  CHECK_EQ(sock_isvalid(a), 0);
  CHECK_EQ(sock_isvalid(b), 1);
  CHECK_EQ(sock_packets_pending(b), 0); /* a's buffer was dropped */
  CHECK_EQ(sock_flush(a), -1);
  /* b's peer gets only b's data */
  CHECK_EQ(sock_write(b, "B", 1), 0);
  sock_flush_strong(b);
  char buf[16];
  CHECK_EQ(raw_read_n(sv[1], buf, 1, 5000, NULL), 1);
  CHECK_EQ(buf[0], 'B');
  sock_flush_all();
  CHECK_EQ(raw_read_avail(sv[1], buf, sizeof(buf)), 0);
  sock_force_close(b);
  close(sv[1]);
  CHECK_EQ(close_count(a), 1);
  CHECK_EQ(close_count(b), 1);
}

TEST(accept_reused_fd_still_marked_open) {
  intptr_t srv;
  struct sockaddr_in sa;
  REQUIRE(listen_loopback(&srv, &sa) == 0);
  int cli = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(cli >= 0);
  int p[2];
  REQUIRE(pipe(p) == 0);
  intptr_t old = sock_open(p[0]);
  REQUIRE(old != -1);
  close(p[0]); /* behind the library's back: number p[0] is free again */
  REQUIRE(connect(cli, (struct sockaddr *)&sa, sizeof(sa)) == 0);
  intptr_t acc = accept_wait(srv, 5000);
  REQUIRE(acc != -1);
  if (sock_uuid2fd(acc) != p[0]) {
    sock_force_close(acc);
    close(cli);
    close(p[1]);
    SKIP("accepted fd %d did not reuse %d", sock_uuid2fd(acc), p[0]);
  }
  CHECK(acc != old);
  CHECK_EQ(close_count(old), 1);
  CHECK(remove_before_close(old));
  CHECK_EQ(sock_isvalid(old), 0);
  CHECK_EQ(sock_isvalid(acc), 1);
  CHECK_EQ(sock_write(acc, "ok", 2), 0);
  sock_flush_strong(acc);
  char b[2];
  CHECK_EQ(raw_read_n(cli, b, 2, 5000, NULL), 2);
  sock_force_close(acc);
  sock_force_close(srv);
  close(cli);
  close(p[1]);
}

static intptr_t reentry_other;
static atomic_int reentry_calls;
static void reenter_on_close(intptr_t uuid) {
  /* callbacks run with no library lock held: call the library again */
  atomic_fetch_add(&reentry_calls, 1);
  char msg[64];
  int n = snprintf(msg, sizeof(msg), "closed:%d;", sock_uuid2fd(uuid));
  (void)sock_isvalid(uuid);
  (void)sock_fd2uuid(sock_uuid2fd(uuid));
  (void)sock_packets_pending(uuid);
  sock_packet_s *p = sock_checkout_packet();
  if (p)
    sock_free_packet(p);
  sock_write(reentry_other, msg, (size_t)n);
  sock_flush(reentry_other);
}

TEST(on_close_may_reenter_library) {
  conn_t other, c1, c2;
  REQUIRE(make_unix_pair(&other) == 0);
  REQUIRE(make_unix_pair(&c1) == 0);
  REQUIRE(make_tcp_pair(&c2) == 0);
  reentry_other = other.uuid;
  cb_on_close_extra = reenter_on_close;
  sock_force_close(c1.uuid); /* force close path */
  sock_close(c2.uuid);       /* graceful path */
  cb_on_close_extra = NULL;
  CHECK_EQ(atomic_load(&reentry_calls), 2);
  char expect[64];
  int n = snprintf(expect, sizeof(expect), "closed:%d;closed:%d;", c1.lfd,
                   c2.lfd);
  sock_flush_strong(other.uuid);
  char buf[64] = {0};
  CHECK_EQ(raw_read_n(other.raw, buf, (size_t)n, 5000, NULL), n);
  CHECK(!memcmp(buf, expect, (size_t)n));
  conn_force_close(&other);
  close(c1.raw);
  close(c2.raw);
}

static atomic_int touch_reentered, remove_reentered;
static void reenter_touch(intptr_t uuid) {
  (void)sock_isvalid(uuid);
  (void)sock_packets_pending(uuid);
  (void)sock_rw_hook_get(uuid);
  (void)sock_fd2uuid(sock_uuid2fd(uuid));
  sock_flush(uuid); /* flushing from inside a flush's callback */
  atomic_fetch_add(&touch_reentered, 1);
}
static void reenter_remove(intptr_t uuid) {
  (void)sock_isvalid(uuid);
  (void)sock_packets_pending(uuid);
  sock_packet_s *p = sock_checkout_packet();
  if (p)
    sock_free_packet(p);
  atomic_fetch_add(&remove_reentered, 1);
}

TEST(touch_and_remove_may_reenter_library) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 8192) == 0);
  cb_touch_extra = reenter_touch;
  cb_remove_extra = reenter_remove;
  size_t n = 1u << 20;
  uint8_t *src = malloc(n);
  fill_pattern(src, n, 0, 29);
  drain_t d = {.fd = c.raw, .expect = n + 4, .store = malloc(n + 4),
               .store_cap = n + 4};
  drain_start(&d);
  CHECK_EQ(sock_write(c.uuid, src, n), 0);
  sock_flush_strong(c.uuid);
  REQUIRE(raw_write_all(c.raw, "ping", 4, 5000) == 0);
  char b[4];
  CHECK_EQ(lib_read_n(c.uuid, b, 4, 5000), 4);
  CHECK_EQ(sock_write(c.uuid, "pong", 4), 0);
  sock_flush_strong(c.uuid);
  drain_join(&d);
  CHECK_EQ(d.got, n + 4);
  CHECK_EQ(check_pattern(d.store, n, 0, 29), n);
  CHECK(!memcmp(d.store + n, "pong", 4));
  sock_close(c.uuid);
  cb_touch_extra = NULL;
  cb_remove_extra = NULL;
  CHECK_GT(atomic_load(&touch_reentered), 0);
  CHECK_EQ(atomic_load(&remove_reentered), 1);
  CHECK_EQ(close_count(c.uuid), 1);
  free(src);
  free(d.store);
  close(c.raw);
}

/* reactor_remove comes while the fd number is still the connection's: an
 * event loop's epoll_ctl(EPOLL_CTL_DEL, sock_uuid2fd(uuid)) must find that
 * connection's socket, never a new connection that reused the number
 * after close(2). reactor_on_close still comes after the close. Every way a
 * connection ends: force close, sock_close (idle, and completed by a flush),
 * end of stream met by a read, a write that fails. */
static struct {
  intptr_t uuid;
  struct stat st;
  int epfd;
  int calls, same_socket, epoll_del_ok;
} rm_probe;

static void probe_remove(intptr_t uuid) {
  if (uuid != rm_probe.uuid)
    return;
  int fd = sock_uuid2fd(uuid);
  rm_probe.calls++;
  rm_probe.same_socket = fd_is_same_file(fd, &rm_probe.st);
  rm_probe.epoll_del_ok = epoll_ctl(rm_probe.epfd, EPOLL_CTL_DEL, fd, NULL) == 0;
}

static void remove_before_fd_closed(int how) {
  static const char *const names[] = {"force close", "idle sock_close",
                                      "sock_close after queued data",
                                      "end of stream", "failed write"};
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  memset(&rm_probe, 0, sizeof rm_probe);
  rm_probe.uuid = c.uuid;
  REQUIRE(fstat(c.lfd, &rm_probe.st) == 0);
  rm_probe.epfd = epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(rm_probe.epfd >= 0);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET};
  REQUIRE(epoll_ctl(rm_probe.epfd, EPOLL_CTL_ADD, c.lfd, &ev) == 0);
  cb_remove_extra = probe_remove;
  drain_t d = {.fd = c.raw, .until_eof = 1, .timeout_ms = 10000};
  switch (how) {
  case 0:
    sock_force_close(c.uuid);
    break;
  case 1:
    sock_close(c.uuid);
    break;
  case 2:
    write_pattern(c.uuid, 1 << 20, 5);
    sock_close(c.uuid);
    CHECK(drain_while_closing(&c, &d, 20000));
    break;
  case 3:
    REQUIRE(shutdown(c.raw, SHUT_WR) == 0);
    CHECK_EQ(read_until_nonzero(c.uuid, 5000), -1);
    break;
  case 4:
    conn_close_raw(&c);
    CHECK_EQ(sock_write(c.uuid, "x", 1), -1); /* EPIPE: closed at once */
    break;
  }
  cb_remove_extra = NULL;
  CHECK_EQ(sock_isvalid(c.uuid), 0);
  CHECK_MSG(rm_probe.calls == 1, "%s: %d reactor_remove calls", names[how],
            rm_probe.calls);
  CHECK_MSG(rm_probe.same_socket,
            "%s: reactor_remove came after the fd was closed", names[how]);
  CHECK_MSG(rm_probe.epoll_del_ok,
            "%s: epoll_ctl(DEL) in reactor_remove failed: the fd was gone",
            names[how]);
  CHECK(remove_before_close(c.uuid));
  CHECK_EQ(close_count(c.uuid), 1);
  CHECK_EQ(close_saw_fd_open(c.uuid), 0);
  close(rm_probe.epfd);
  conn_close_raw(&c);
}

TEST(remove_comes_before_the_fd_is_closed) {
  for (int how = 0; how < 5; how++)
    remove_before_fd_closed(how);
}

/* sock_force_close while another thread is inside a system call on the
 * fd: the shutdown happens at once (waking that thread: a blocking read
 * returns end of stream, the peer sees EOF); only the close of the fd and
 * the callbacks wait until the thread is out. */

/* 1 once thread `tid` of this process is blocked in system call `nr` (as
 * /proc tells), 0 when it was not within ms, -1 when /proc cannot tell. */
static int wait_in_syscall(long tid, long nr, int ms) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%ld/syscall", tid);
  int64_t end = now_ms() + ms;
  for (;;) {
    FILE *f = fopen(path, "r");
    if (!f)
      return -1;
    long cur = -1;
    int n = fscanf(f, "%ld", &cur); /* "running" while not in a call */
    fclose(f);
    if (n == 1 && cur == nr)
      return 1;
    if (now_ms() >= end)
      return 0;
    tiny_wait();
  }
}

typedef struct {
  intptr_t uuid;
  atomic_long tid;
  ssize_t r;
  int done[2]; /* pipe: the reader writes one byte when sock_read returned */
} blocked_reader_t;

static void *blocked_reader_main(void *arg) {
  blocked_reader_t *b = arg;
  atomic_store(&b->tid, (long)syscall(SYS_gettid));
  char buf[64];
  b->r = sock_read(b->uuid, buf, sizeof buf);
  char c = 'd';
  if (write(b->done[1], &c, 1) != 1)
    return NULL;
  return NULL;
}

/* a read hook that waits for input, as a TLS layer on a blocking design
 * would: ppoll without a timeout, then read */
static ssize_t waiting_read_hook(intptr_t uuid, void *buf, size_t count) {
  struct pollfd p = {.fd = sock_uuid2fd(uuid), .events = POLLIN};
  if (ppoll(&p, 1, NULL, NULL) < 0)
    return -1;
  return read(sock_uuid2fd(uuid), buf, count);
}
static sock_rw_hook_s waiting_hooks = {.read = waiting_read_hook};

static void force_close_wakes_reader(int in_hook) {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  /* no sock_set_non_block: the reader blocks in read(2) itself */
  blocked_reader_t b = {.uuid = sock_open(sv[0])};
  REQUIRE(b.uuid != -1);
  REQUIRE(pipe(b.done) == 0);
  if (in_hook)
    REQUIRE(sock_rw_hook_set(b.uuid, &waiting_hooks) == 0);
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, blocked_reader_main, &b) == 0);
  while (!atomic_load(&b.tid))
    tiny_wait();
  int in = wait_in_syscall(atomic_load(&b.tid), in_hook ? SYS_ppoll : SYS_read,
                           5000);
  if (in < 0) {
    close(sv[1]); /* wakes the reader */
    pthread_join(th, NULL);
    SKIP("/proc/self/task/<tid>/syscall is not readable");
  }
  CHECK_MSG(in == 1, "the reader never blocked in its system call");
  sock_force_close(b.uuid);
  CHECK_EQ(sock_isvalid(b.uuid), 0);
  /* shut down at once: the peer sees EOF, the reader wakes up */
  CHECK_EQ(raw_expect_eof(sv[1], 5000), 1);
  int woke = (wait_fd(b.done[0], POLLIN, 5000) & POLLIN) != 0;
  CHECK_MSG(woke, "the reader blocked in sock_read was never woken");
  if (!woke) {
    close(sv[1]); /* unblock it, so the test ends */
    if (!(wait_fd(b.done[0], POLLIN, 5000) & POLLIN))
      return;
    sv[1] = -1;
  }
  pthread_join(th, NULL);
  CHECK_EQ(b.r, -1);
  /* the reader was the last one out: the fd is closed, the callbacks ran */
  CHECK(!fd_is_open(sv[0]));
  CHECK_EQ(remove_count(b.uuid), 1);
  CHECK_EQ(close_count(b.uuid), 1);
  CHECK(remove_before_close(b.uuid));
  close(b.done[0]);
  close(b.done[1]);
  if (sv[1] >= 0)
    close(sv[1]);
}

TEST(force_close_wakes_a_reader_blocked_in_read) { force_close_wakes_reader(0); }
TEST(force_close_wakes_a_read_hook_that_waits) { force_close_wakes_reader(1); }

TEST(close_invalid_uuids_no_effect) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  int before = total_close_events();
  sock_close(-1);
  sock_force_close(-1);
  sock_close(((intptr_t)1 << 32) | 0x7fffffff);
  sock_force_close(((intptr_t)1 << 32) | 0x7fffffff);
  sock_force_close(make_uuid(-9, 1));
  sock_force_close(INTPTR_MIN);
  /* the live connection's fd with a wrong counter */
  fduuid_u u = {.uuid = c.uuid};
  sock_force_close(make_uuid(c.lfd, u.data.counter + 1));
  sock_close(make_uuid(c.lfd, u.data.counter - 1));
  /* a raw fd the library never saw, with counter 0 */
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  sock_force_close(make_uuid(sv[0], 0));
  sock_close(make_uuid(sv[0], 0));
  CHECK(fd_is_open(sv[0]));
  CHECK_EQ(write(sv[0], "z", 1), 1);
  char z;
  CHECK_EQ(read(sv[1], &z, 1), 1);
  close(sv[0]);
  close(sv[1]);
  CHECK_EQ(total_close_events(), before);
  CHECK_EQ(sock_isvalid(c.uuid), 1);
  CHECK_EQ(sock_write(c.uuid, "alive", 5), 0);
  sock_flush_strong(c.uuid);
  char b[5];
  CHECK_EQ(raw_read_n(c.raw, b, 5, 5000, NULL), 5);
  conn_force_close(&c);
}

TEST(close_pending_then_peer_vanishes) {
  /* a sock_close that can never complete (peer gone) still closes once */
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  signal(SIGPIPE, SIG_DFL);
  size_t n = 2 * MiB;
  uint8_t *src = calloc(1, n);
  CHECK_EQ(sock_write(c.uuid, src, n), 0);
  free(src);
  sock_close(c.uuid);
  CHECK_EQ(close_count(c.uuid), 0);
  close(c.raw);
  CHECK(flush_until_closed(c.uuid, 10000));
  CHECK_EQ(sock_isvalid(c.uuid), 0);
  CHECK_EQ(close_count(c.uuid), 1);
  CHECK(!fd_is_open(c.lfd));
}

TEST(many_connections_each_closed_once) {
  enum { N = 300 };
  conn_t c[N];
  for (int i = 0; i < N; i++)
    REQUIRE(make_unix_pair(&c[i]) == 0);
  for (int i = 0; i < N; i++) {
    switch (i % 3) {
    case 0:
      sock_close(c[i].uuid);
      break;
    case 1:
      sock_force_close(c[i].uuid);
      break;
    case 2:
      close(c[i].raw);
      c[i].raw = -1;
      {
        ssize_t r = read_until_nonzero(c[i].uuid, 5000);
        CHECK_EQ(r, -1);
      }
      break;
    }
  }
  for (int i = 0; i < N; i++) {
    CHECK_EQ(close_count(c[i].uuid), 1);
    CHECK_EQ(remove_count(c[i].uuid), 1);
    CHECK_EQ(sock_isvalid(c[i].uuid), 0);
    if (c[i].raw >= 0)
      close(c[i].raw);
  }
  CHECK_EQ(total_close_events(), N);
}

TEST(read_eof_still_delivers_queued) {
  /* the peer half-closes (shutdown SHUT_WR) while data is queued for it:
   * sock_read returns -1 and closes "gracefully (sock_close)", so the
   * queued data is still delivered, then the fd closes */
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  size_t n = 2 * MiB;
  write_pattern(c.uuid, n, 23);
  CHECK(sock_packets_pending(c.uuid) != 0);
  REQUIRE(shutdown(c.raw, SHUT_WR) == 0);
  ssize_t r = read_until_nonzero(c.uuid, 5000);
  CHECK_EQ(r, -1);
  drain_t d = {.fd = c.raw, .expect = n, .check = 1, .seed = 23,
               .until_eof = 1};
  CHECK(drain_while_closing(&c, &d, 20000));
  CHECK_MSG(d.got == n, "peer got %zu of %zu queued bytes", d.got, n);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  CHECK(d.eof);
  CHECK_EQ(close_count(c.uuid), 1);
  close(c.raw);
}

typedef struct {
  intptr_t uuid;
  size_t n;
  ssize_t ret;
  int err;
  atomic_int done;
} bigw_t;

static void *bigw_main(void *arg) {
  bigw_t *w = arg;
  uint8_t *src = calloc(1, w->n);
  errno = 0;
  w->ret = sock_write(w->uuid, src, w->n);
  w->err = errno;
  free(src);
  atomic_store(&w->done, 1);
  return NULL;
}

static int wait_done(bigw_t *w, int ms) {
  int64_t end = now_ms() + ms;
  while (!atomic_load(&w->done) && now_ms() < end)
    tiny_wait();
  return atomic_load(&w->done);
}

TEST(force_close_releases_blocked_big_write) {
  /* a writer blocked in a write larger than the pool (peer not reading)
   * returns -1 once the connection is force-closed: no hang */
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 4096) == 0);
  bigw_t w = {.uuid = c.uuid, .n = 64 * MiB};
  pthread_t th;
  pthread_create(&th, NULL, bigw_main, &w);
  /* let it fill the pool (whatever happened so far, the result below must
   * be -1: 64 MiB cannot have been accepted) */
  int64_t end = now_ms() + 2000;
  while (!sock_packets_pending(c.uuid) && now_ms() < end)
    tiny_wait();
  CHECK_EQ(wait_done(&w, 200), 0); /* still blocked */
  sock_force_close(c.uuid);
  CHECK_MSG(wait_done(&w, 10000), "writer still blocked after force_close");
  if (atomic_load(&w.done)) {
    pthread_join(th, NULL);
    CHECK_EQ(w.ret, -1);
  }
  CHECK_EQ(close_count(c.uuid), 1);
  close(c.raw);
}

TEST(peer_vanishing_releases_blocked_big_write) {
  signal(SIGPIPE, SIG_DFL);
  conn_t c;
  REQUIRE(make_tcp_pair_buf(&c, 8192, 8192) == 0);
  bigw_t w = {.uuid = c.uuid, .n = 64 * MiB};
  pthread_t th;
  pthread_create(&th, NULL, bigw_main, &w);
  /* the peer reads a little, then goes away */
  uint8_t *buf = malloc(1 * MiB);
  CHECK_EQ(raw_read_n(c.raw, buf, 1 * MiB, 10000, NULL), 1 * MiB);
  free(buf);
  close(c.raw);
  CHECK_MSG(wait_done(&w, 15000), "writer still blocked after peer left");
  if (atomic_load(&w.done)) {
    pthread_join(th, NULL);
    CHECK_EQ(w.ret, -1);
  }
  CHECK(sock_isvalid(c.uuid) == 0 || flush_until_closed(c.uuid, 5000));
  CHECK_EQ(close_count(c.uuid), 1);
}

/* sock_is_closing (an extension for transport hooks): 1 only between a
 * sock_close with data still queued and the close itself. */
TEST(is_closing_marks_a_pending_graceful_close) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 8192) == 0);
  CHECK_EQ(sock_is_closing(c.uuid), 0);
  CHECK_EQ(sock_is_closing(-1), 0);
  size_t n = 2 * MiB;
  write_pattern(c.uuid, n, 31);
  CHECK_EQ(sock_is_closing(c.uuid), 0);
  sock_close(c.uuid); /* the peer reads nothing yet: data stays queued */
  CHECK_EQ(sock_isvalid(c.uuid), 1);
  CHECK_EQ(sock_is_closing(c.uuid), 1);
  drain_t d = {.fd = c.raw, .expect = n, .check = 1, .seed = 31,
               .until_eof = 1};
  CHECK(drain_while_closing(&c, &d, 10000));
  CHECK_EQ(d.got, n);
  CHECK_EQ(sock_is_closing(c.uuid), 0); /* closed: invalid now */
  close(c.raw);
}

/* A graceful close of a connection whose peer sent input the program
 * never read: the kernel answers a close(2) with unread input with a reset,
 * dropping what it still holds for the peer. The peer must get every byte,
 * then a clean EOF. */
static void close_with_unread_input(conn_t *c) {
  const char req[] = "GET /one HTTP/1.1\r\n\r\nGET /two HTTP/1.1\r\n\r\n";
  REQUIRE(write(c->raw, req, sizeof(req) - 1) == (ssize_t)(sizeof(req) - 1));
  REQUIRE(wait_fd(c->lfd, POLLIN, 5000) & POLLIN); /* it has arrived */
  size_t n = 1 * MiB;
  write_pattern(c->uuid, n, 37);
  sock_close(c->uuid);
  drain_t d = {.fd = c->raw, .expect = n, .check = 1, .seed = 37,
               .until_eof = 1};
  CHECK(drain_while_closing(c, &d, 20000));
  CHECK_MSG(d.got == n, "peer got %zu of %zu bytes (error: %s)", d.got, n,
            d.err ? strerror(d.err) : "none");
  CHECK_EQ(d.bad_at, SIZE_MAX);
  CHECK(d.eof);
  CHECK_EQ(d.err, 0);
  CHECK_EQ(close_count(c->uuid), 1);
  close(c->raw);
}

TEST(close_with_unread_input_tcp) {
  conn_t c;
  REQUIRE(make_tcp_pair_buf(&c, 8192, 8192) == 0);
  close_with_unread_input(&c);
}

TEST(close_with_unread_input_unix) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 8192) == 0);
  close_with_unread_input(&c);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(is_closing_marks_a_pending_graceful_close);
  RUN(close_idle_is_immediate);
  RUN(close_delivers_queued_unix);
  RUN(close_delivers_queued_tcp);
  RUN(close_then_flush_strong);
  RUN(close_then_flush_all);
  RUN(force_close_drops_queued);
  RUN(force_close_pipe_and_listener);
  RUN(bob_and_alice);
  RUN(sock_open_reused_fd_still_marked_open);
  RUN(accept_reused_fd_still_marked_open);
  RUN(on_close_may_reenter_library);
  RUN(touch_and_remove_may_reenter_library);
  RUN(close_invalid_uuids_no_effect);
  RUN(remove_comes_before_the_fd_is_closed);
  RUN(force_close_wakes_a_reader_blocked_in_read);
  RUN(force_close_wakes_a_read_hook_that_waits);
  RUN(close_pending_then_peer_vanishes);
  RUN(many_connections_each_closed_once);
  RUN(read_eof_still_delivers_queued);
  RUN(force_close_releases_blocked_big_write);
  RUN(peer_vanishing_releases_blocked_big_write);
  RUN(close_with_unread_input_tcp);
  RUN(close_with_unread_input_unix);
  return HARNESS_END();
}
