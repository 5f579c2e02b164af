/* Lingering close (an extension): a graceful close while the peer is still
 * sending delivers everything, then EOF, with no reset; the linger ends when
 * the peer closes its side or at the time limit; lingering closes are
 * bounded; sock_force_close never lingers. */
#define TEST_DEFINE_CALLBACKS
#include "util.h"

#include <sys/epoll.h>
#include <sys/resource.h>

#define MiB (1024u * 1024u)

/* A TCP pair whose library side has unread input from its peer (a request
 * the program will not read), so a graceful close lingers. */
static int tcp_pair_with_input(conn_t *c) {
  SETUP_REQUIRE(make_tcp_pair(c) == 0);
  SETUP_REQUIRE(write(c->raw, "GET / HTTP/1.1\r\n\r\n", 18) == 18);
  SETUP_REQUIRE(wait_fd(c->lfd, POLLIN, 5000) & POLLIN);
  return 0;
}

/* Waits (at most `ms`) until the library has closed `fd`. */
static int wait_fd_closed(int fd, int ms) {
  int64_t end = now_ms() + ms;
  while (fd_is_open(fd) && now_ms() < end)
    tiny_wait();
  return !fd_is_open(fd);
}

/* The peer's sender: keeps sending (pipelined requests the server will
 * never read) until told to stop or the connection fails. */
typedef struct {
  int fd;
  atomic_int stop;
  size_t sent;
  pthread_t th;
} sender_t;

static void *sender_main(void *arg) {
  sender_t *s = arg;
  char req[4096];
  memset(req, 'r', sizeof(req));
  while (!atomic_load(&s->stop)) {
    ssize_t n = send(s->fd, req, sizeof(req), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      s->sent += (size_t)n;
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      wait_fd(s->fd, POLLOUT, 20);
    } else {
      break; /* reset or closed */
    }
  }
  return NULL;
}

/* The server's event loop: edge-triggered, sock_flush on EPOLLOUT only,
 * until the connection is closed (reactor_on_close). */
static int loop_until_closed(conn_t *c, int ms) {
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.fd = c->lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, c->lfd, &ev);
  int64_t end = now_ms() + ms;
  while (close_count(c->uuid) == 0 && now_ms() < end) {
    struct epoll_event got;
    if (epoll_wait(ep, &got, 1, 50) == 1 && sock_flush(c->uuid) < 0)
      break;
  }
  close(ep);
  return close_count(c->uuid) == 1;
}

/* The scenario of a server answering 4 MiB and closing while its client
 * still sends: every byte arrives, then EOF — no reset. The client reads
 * along, slowly (a small receive buffer); its requests keep coming after
 * the close, which a closed TCP socket answers with a reset that discards
 * what the kernel still held for the client (TEST_LINGER_MS=0 shows it:
 * about 1 MiB of 4 arrives). */
static void answer_and_close_while_peer_sends(conn_t *c, int read_along) {
  const char *env = getenv("TEST_LINGER_MS");
  sock_set_linger_timeout(env ? (unsigned)atoi(env) : 20000);
  sender_t s = {.fd = c->raw};
  pthread_create(&s.th, NULL, sender_main, &s);
  /* the peer's requests have arrived and wait unread */
  REQUIRE(wait_fd(c->lfd, POLLIN, 5000) & POLLIN);
  size_t n = 4 * MiB;
  drain_t d = {.fd = c->raw, .expect = n, .check = 1, .seed = 41,
               .until_eof = 1, .timeout_ms = 10000};
  if (read_along)
    drain_start(&d);
  write_pattern(c->uuid, n, 41);
  sock_close(c->uuid);
  CHECK(loop_until_closed(c, 10000));
  CHECK_EQ(sock_isvalid(c->uuid), 0);
  if (!read_along)
    drain_start(&d);
  drain_join(&d);
  CHECK_MSG(d.got == n, "peer got %zu of %zu bytes (%s)", d.got, (size_t)n,
            d.err ? strerror(d.err) : "no error");
  CHECK_EQ(d.bad_at, SIZE_MAX);
  CHECK_MSG(d.eof && d.err == 0, "no clean EOF after the answer (%s)",
            d.err ? strerror(d.err) : "none");
  atomic_store(&s.stop, 1);
  pthread_join(s.th, NULL);
  CHECK_GT(s.sent, 0);
  close(c->raw);
}

TEST(close_while_peer_sends_tcp) {
  conn_t c;
  REQUIRE(make_tcp_pair_buf(&c, 0, 16384) == 0);
  answer_and_close_while_peer_sends(&c, 1);
}

/* A Unix socket never resets, but its close must linger and deliver all the
 * same. */
TEST(close_while_peer_sends_unix) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  answer_and_close_while_peer_sends(&c, 1);
}

/* The fd stays the library's (open, not reused) while it lingers, and is
 * closed once the peer closes its side. */
TEST(linger_ends_when_the_peer_closes) {
  sock_set_linger_timeout(20000);
  conn_t c;
  REQUIRE(tcp_pair_with_input(&c) == 0);
  CHECK_EQ(sock_write(c.uuid, "answer", 6), 0);
  sock_close(c.uuid);
  CHECK_EQ(close_count(c.uuid), 1);
  CHECK_EQ(remove_count(c.uuid), 1);
  CHECK(remove_before_close(c.uuid));
  CHECK_EQ(sock_isvalid(c.uuid), 0);
  CHECK_MSG(fd_is_open(c.lfd), "the fd was closed at once: no linger");
  /* reactor_on_close came while the fd lingers (README: Lingering close) */
  CHECK_EQ(close_saw_fd_open(c.uuid), 1);
  char b[16];
  int eof = 0;
  CHECK_EQ(raw_read_n(c.raw, b, sizeof(b), 5000, &eof), 6);
  CHECK(eof);
  close(c.raw);
  CHECK_MSG(wait_fd_closed(c.lfd, 5000), "still lingering after the peer closed");
}

/* A peer that never closes: the time limit ends the linger; nothing leaks. */
TEST(linger_ends_at_the_time_limit) {
  sock_set_linger_timeout(200);
  CHECK_EQ(sock_linger_timeout(), 200);
  int fds0 = count_fds();
  conn_t c;
  REQUIRE(tcp_pair_with_input(&c) == 0);
  sock_close(c.uuid);
  CHECK(fd_is_open(c.lfd));
  CHECK_EQ(raw_expect_eof(c.raw, 5000), 1);
  CHECK_MSG(wait_fd_closed(c.lfd, 5000), "still lingering 5 s after a 200 ms limit");
  CHECK_EQ(count_fds(), fds0 + 1); /* the peer's own fd */
  close(c.raw);
}

/* With input waiting, `close_fn` closes the fd before it returns, and
 * reactor_on_close comes after the close (the contract). */
static void closes_at_once(void (*close_fn)(intptr_t), unsigned linger_ms) {
  sock_set_linger_timeout(linger_ms);
  conn_t c;
  REQUIRE(tcp_pair_with_input(&c) == 0);
  close_fn(c.uuid);
  CHECK(!fd_is_open(c.lfd));
  CHECK_EQ(close_count(c.uuid), 1);
  CHECK_EQ(close_saw_fd_open(c.uuid), 0);
  close(c.raw);
}

/* Lingering off: a graceful close closes at once, as before. */
TEST(linger_off_closes_at_once) { closes_at_once(sock_close, 0); }

/* Thousands of lingering closes at once: at most 4096 linger (one fd
 * each); the rest close at once; all end at the time limit. */
TEST(thousands_of_lingering_closes_are_bounded) {
  enum { N = 4096 + 256, BOUND = 4096 };
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (sock_max_capacity() < 3 * N || rl.rlim_cur < 3 * N) {
    SKIP("needs %d fds", 3 * N);
    return;
  }
  sock_set_linger_timeout(1000);
  int fds0 = count_fds();
  int *raw = malloc(sizeof(int) * N);
  int lingering_max = 0;
  for (int i = 0; i < N; i++) {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    REQUIRE(write(sv[1], "req", 3) == 3); /* unread input: it will linger */
    sock_set_non_block(sv[0]);
    intptr_t u = sock_open(sv[0]);
    REQUIRE(u != -1);
    sock_close(u);
    raw[i] = sv[1];
  }
  lingering_max = count_fds() - fds0 - N;
  CHECK_MSG(lingering_max <= BOUND && lingering_max >= BOUND / 2,
            "%d closes lingering (bound %d)", lingering_max, BOUND);
  int64_t end = now_ms() + 10000;
  while (count_fds() != fds0 + N && now_ms() < end)
    tiny_wait();
  CHECK_MSG(count_fds() == fds0 + N, "%d fds still lingering",
            count_fds() - fds0 - N);
  for (int i = 0; i < N; i++)
    close(raw[i]);
  free(raw);
}

/* sock_force_close never lingers: the fd is closed when it returns. */
TEST(force_close_never_lingers) { closes_at_once(sock_force_close, 20000); }

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(close_while_peer_sends_tcp);
  RUN(close_while_peer_sends_unix);
  RUN(linger_ends_when_the_peer_closes);
  RUN(linger_ends_at_the_time_limit);
  RUN(linger_off_closes_at_once);
  RUN(thousands_of_lingering_closes_are_bounded);
  RUN(force_close_never_lingers);
  return HARNESS_END();
}
