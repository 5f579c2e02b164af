/*
 * util.h -- shared helpers for the libsock C tests (header-only).
 *
 * If TEST_DEFINE_CALLBACKS is defined before including this file, the
 * program defines the overridable library callbacks reactor_on_close(),
 * reactor_remove() and sock_touch() and records every call, so tests can
 * assert "exactly once", "remove before on_close" and "touched".
 */
#ifndef LIBSOCK_TEST_UTIL_H
#define LIBSOCK_TEST_UTIL_H

#include "harness.h"
#include "libsock.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#define U static __attribute__((unused))

/* ---- time ---------------------------------------------------------------*/

U int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait up to `ms` for events on fd. Returns revents (0 on timeout). */
U short wait_fd(int fd, short events, int ms) {
  struct pollfd p = {.fd = fd, .events = events};
  int64_t end = now_ms() + ms;
  for (;;) {
    int left = (int)(end - now_ms());
    if (left < 0)
      left = 0;
    int r = poll(&p, 1, left);
    if (r > 0)
      return p.revents;
    if (r == 0)
      return 0;
    if (errno != EINTR)
      return 0;
  }
}

/* A short bounded pause used only inside "loop until condition or deadline"
 * loops (never as synchronisation by itself). */
U void tiny_wait(void) { poll(NULL, 0, 2); }

/* ---- patterns -----------------------------------------------------------*/

U uint8_t pat_byte(uint64_t i, uint32_t seed) {
  uint64_t x = (i >> 3) * 0x9E3779B97F4A7C15ull ^
               (((uint64_t)seed << 32) | (uint64_t)(seed * 2654435761u));
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  return (uint8_t)(x >> ((i & 7) * 8));
}

U void fill_pattern(uint8_t *buf, size_t n, uint64_t start, uint32_t seed) {
  for (size_t i = 0; i < n; i++)
    buf[i] = pat_byte(start + i, seed);
}

/* index of the first mismatch, or n when all bytes match */
U size_t check_pattern(const uint8_t *buf, size_t n, uint64_t start,
                       uint32_t seed) {
  for (size_t i = 0; i < n; i++)
    if (buf[i] != pat_byte(start + i, seed))
      return i;
  return n;
}

/* ---- raw fd helpers -----------------------------------------------------*/

U int fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

/* 1 if fd is open and refers to the file (dev, ino) */
U int fd_is_same_file(int fd, const struct stat *st) {
  struct stat s2;
  if (fstat(fd, &s2) != 0)
    return 0;
  return s2.st_dev == st->st_dev && s2.st_ino == st->st_ino;
}

U int is_nonblocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl != -1 && (fl & O_NONBLOCK);
}

U void set_blocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl != -1)
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

/* Read from a raw fd until n bytes, EOF, error or timeout. Returns bytes
 * read; *eof (optional) set to 1 when EOF/reset was seen. */
U size_t raw_read_n(int fd, void *buf, size_t n, int ms, int *eof) {
  size_t got = 0;
  int64_t end = now_ms() + ms;
  if (eof)
    *eof = 0;
  while (got < n) {
    int left = (int)(end - now_ms());
    if (left <= 0)
      break;
    short re = wait_fd(fd, POLLIN, left);
    if (!re)
      break;
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r > 0) {
      got += (size_t)r;
      continue;
    }
    if (r == 0 || (errno != EAGAIN && errno != EINTR && errno != EWOULDBLOCK)) {
      if (eof)
        *eof = 1;
      break;
    }
  }
  return got;
}

/* Read whatever is available right now (non-blocking), up to n bytes. */
U size_t raw_read_avail(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, (char *)buf + got, n - got, MSG_DONTWAIT);
    if (r < 0 && errno == ENOTSOCK) {
      if (!(wait_fd(fd, POLLIN, 0) & POLLIN))
        break;
      r = read(fd, (char *)buf + got, n - got);
    }
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  return got;
}

/* Wait for EOF on fd, discarding nothing: returns 1 on EOF (or reset),
 * 0 on timeout, -1 when data arrived instead (that data is lost). */
U int raw_expect_eof(int fd, int ms) {
  char c;
  int64_t end = now_ms() + ms;
  for (;;) {
    int left = (int)(end - now_ms());
    if (left <= 0)
      return 0;
    if (!wait_fd(fd, POLLIN, left))
      return 0;
    ssize_t r = read(fd, &c, 1);
    if (r == 0)
      return 1;
    if (r > 0)
      return -1;
    if (errno == EAGAIN || errno == EINTR || errno == EWOULDBLOCK)
      continue;
    return 1; /* ECONNRESET and friends */
  }
}

/* Read from a library connection until n bytes, error or timeout. */
U size_t lib_read_n(intptr_t uuid, void *buf, size_t n, int ms) {
  size_t got = 0;
  int64_t end = now_ms() + ms;
  int fd = sock_uuid2fd(uuid);
  while (got < n && now_ms() < end) {
    ssize_t r = sock_read(uuid, (char *)buf + got, n - got);
    if (r > 0) {
      got += (size_t)r;
      continue;
    }
    if (r < 0)
      break;
    int left = (int)(end - now_ms());
    if (left > 50)
      left = 50; /* bounded: the hook path may have data without POLLIN */
    if (left > 0)
      wait_fd(fd, POLLIN, left);
  }
  return got;
}

/* Write all bytes to a raw fd within `ms` milliseconds: 0 when all went,
 * -1 on error or when the deadline passed. On sockets each send is
 * non-blocking (MSG_DONTWAIT), so a peer that stops reading makes this fail
 * at the deadline instead of hanging the test in a blocking write; other
 * fds (pipes) should be non-blocking for the same promise. */
U int raw_write_all(int fd, const void *buf, size_t n, int ms) {
  size_t done = 0;
  int64_t end = now_ms() + ms;
  int sock = 1;
  while (done < n) {
    const char *p = (const char *)buf + done;
    ssize_t w = sock ? send(fd, p, n - done, MSG_DONTWAIT | MSG_NOSIGNAL)
                     : write(fd, p, n - done);
    if (w < 0 && sock && errno == ENOTSOCK) {
      sock = 0;
      continue;
    }
    if (w > 0) {
      done += (size_t)w;
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EINTR || errno == EWOULDBLOCK)) {
      int left = (int)(end - now_ms());
      if (left <= 0)
        return -1;
      wait_fd(fd, POLLOUT, left);
      continue;
    }
    return -1;
  }
  return 0;
}

/* ---- connection helpers ---------------------------------------------------*/

/* A library connection plus the raw peer fd. */
typedef struct {
  intptr_t uuid; /* library side */
  int lfd;       /* library side fd */
  int raw;       /* raw peer, blocking */
} conn_t;

/* AF_UNIX socketpair: one end registered with sock_open (non-blocking),
 * the other raw. sndbuf > 0 sets SO_SNDBUF on the library end. */
U int make_unix_pair_buf(conn_t *c, int sndbuf) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
    return -1;
  if (sndbuf > 0) {
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sndbuf, sizeof(sndbuf));
  }
  if (sock_set_non_block(sv[0]) == -1)
    return -1;
  c->lfd = sv[0];
  c->raw = sv[1];
  c->uuid = sock_open(sv[0]);
  return c->uuid == -1 ? -1 : 0;
}
U int make_unix_pair(conn_t *c) { return make_unix_pair_buf(c, 0); }

/* Loopback TCP: raw listener (SO_RCVBUF = rcvbuf if > 0, inherited by the
 * accepted raw peer), raw client (SO_SNDBUF = sndbuf if > 0) connected and
 * then registered with sock_open. The library side is the client. */
U int make_tcp_pair_buf(conn_t *c, int sndbuf, int rcvbuf) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  if (ls < 0)
    return -1;
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (rcvbuf > 0)
    setsockopt(ls, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  socklen_t al = sizeof(a);
  if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 8) ||
      getsockname(ls, (struct sockaddr *)&a, &al)) {
    close(ls);
    return -1;
  }
  int cs = socket(AF_INET, SOCK_STREAM, 0);
  if (sndbuf > 0)
    setsockopt(cs, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  if (connect(cs, (struct sockaddr *)&a, sizeof(a))) {
    close(ls);
    close(cs);
    return -1;
  }
  int as = accept(ls, NULL, NULL);
  close(ls);
  if (as < 0) {
    close(cs);
    return -1;
  }
  int one = 1;
  setsockopt(cs, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sock_set_non_block(cs);
  c->lfd = cs;
  c->raw = as;
  c->uuid = sock_open(cs);
  return c->uuid == -1 ? -1 : 0;
}
U int make_tcp_pair(conn_t *c) { return make_tcp_pair_buf(c, 0, 0); }

U void conn_close_raw(conn_t *c) {
  if (c->raw >= 0)
    close(c->raw);
  c->raw = -1;
}

/* Pick a free TCP port on the loopback of `family` by binding a probe socket
 * to port 0 and reading it back. Returns 0 and fills out[] ("12345"). */
U int free_port(int family, char out[16]) {
  int s = socket(family, SOCK_STREAM, 0);
  if (s < 0)
    return -1;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t len;
  if (family == AF_INET6) {
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    a6->sin6_family = AF_INET6;
    a6->sin6_addr = in6addr_loopback;
    len = sizeof(*a6);
  } else {
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    a4->sin_family = AF_INET;
    a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*a4);
  }
  if (bind(s, (struct sockaddr *)&ss, len) != 0) {
    close(s);
    return -1;
  }
  len = sizeof(ss);
  getsockname(s, (struct sockaddr *)&ss, &len);
  int port = family == AF_INET6
                 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                 : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  close(s);
  snprintf(out, 16, "%d", port);
  return 0;
}

/* Wait until a library-created connecting socket is connected (POLLOUT). */
U int wait_connected(intptr_t uuid, int ms) {
  int fd = sock_uuid2fd(uuid);
  short re = wait_fd(fd, POLLOUT, ms);
  if (!(re & POLLOUT) || (re & (POLLERR | POLLHUP)))
    return -1;
  int err = 0;
  socklen_t l = sizeof(err);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
  return err ? -1 : 0;
}

/* Accept through the library, waiting (poll) up to ms for a pending
 * connection. */
U intptr_t accept_wait(intptr_t srv, int ms) {
  int64_t end = now_ms() + ms;
  int fd = sock_uuid2fd(srv);
  for (;;) {
    intptr_t u = sock_accept(srv);
    if (u != -1)
      return u;
    int left = (int)(end - now_ms());
    if (left <= 0)
      return -1;
    wait_fd(fd, POLLIN, left > 100 ? 100 : left);
  }
}

/* Drive sock_flush on uuid until it reports the connection closed (-1) or
 * the deadline passes. Returns 1 when closed. */
U int flush_until_closed(intptr_t uuid, int ms) {
  int64_t end = now_ms() + ms;
  int fd = sock_uuid2fd(uuid);
  while (now_ms() < end) {
    if (sock_flush(uuid) == -1)
      return 1;
    wait_fd(fd, POLLOUT, 20);
  }
  return 0;
}

/* Like REQUIRE, for setup helpers that return int: reports the condition
 * that failed and returns -1, so the test can REQUIRE(helper(...) == 0). */
#define SETUP_REQUIRE(cond)                                                    \
  do {                                                                         \
    if (!(cond)) {                                                             \
      h_fail_at(__FILE__, __LINE__, "REQUIRE(%s) failed (errno=%d %s)", #cond, \
                errno, strerror(errno));                                       \
      return -1;                                                               \
    }                                                                          \
  } while (0)

/* A library listener on a free IPv4 loopback port (port[] receives it). */
U int lib_tcp_listen(char port[16], intptr_t *srv) {
  SETUP_REQUIRE(free_port(AF_INET, port) == 0);
  *srv = sock_listen("127.0.0.1", port);
  SETUP_REQUIRE(*srv != -1);
  return 0;
}

/* Both ends through the library over IPv4 loopback: a listener on a free
 * port, a sock_connect client and the connection the listener accepted.
 * The client may still be connecting (see wait_connected). */
U int lib_tcp_trio(char port[16], intptr_t *srv, intptr_t *cli,
                   intptr_t *acc) {
  if (lib_tcp_listen(port, srv) != 0)
    return -1;
  char host[] = "127.0.0.1";
  *cli = sock_connect(host, port);
  SETUP_REQUIRE(*cli != -1);
  *acc = accept_wait(*srv, 5000);
  SETUP_REQUIRE(*acc != -1);
  return 0;
}

U void lib_tcp_trio_close(intptr_t srv, intptr_t cli, intptr_t acc) {
  sock_force_close(cli);
  sock_force_close(acc);
  sock_force_close(srv);
}

/* Both library ends write n pattern bytes at once (seeds sa for cl, sb for
 * ac) and both read while flushing; each must receive exactly what the
 * other wrote. */
U void exchange_both_ways(intptr_t cl, intptr_t ac, size_t n, uint32_t sa,
                          uint32_t sb) {
  uint8_t *a = malloc(n), *b = malloc(n), *ra = malloc(n), *rb = malloc(n);
  fill_pattern(a, n, 0, sa);
  fill_pattern(b, n, 0, sb);
  CHECK_EQ(sock_write(cl, a, n), 0);
  CHECK_EQ(sock_write(ac, b, n), 0);
  size_t ga = 0, gb = 0;
  int64_t end = now_ms() + 20000;
  while ((ga < n || gb < n) && now_ms() < end) {
    sock_flush(cl);
    sock_flush(ac);
    ssize_t k1 = sock_read(ac, ra + ga, n - ga);
    if (k1 > 0)
      ga += (size_t)k1;
    ssize_t k2 = sock_read(cl, rb + gb, n - gb);
    if (k2 > 0)
      gb += (size_t)k2;
    if (k1 < 0 || k2 < 0)
      break;
    if (k1 == 0 && k2 == 0) {
      struct pollfd p[2] = {{.fd = sock_uuid2fd(ac), .events = POLLIN},
                            {.fd = sock_uuid2fd(cl), .events = POLLIN}};
      poll(p, 2, 5);
    }
  }
  CHECK_EQ(ga, n);
  CHECK_EQ(gb, n);
  CHECK(!memcmp(a, ra, n));
  CHECK(!memcmp(b, rb, n));
  free(a);
  free(b);
  free(ra);
  free(rb);
}

/* sock_read until it returns something other than 0 (data, or -1 once the
 * connection ended and was closed) or ms pass. Returns the last result (0 on
 * timeout); bytes read are discarded. */
U ssize_t read_until_nonzero(intptr_t uuid, int ms) {
  char b[64];
  int fd = sock_uuid2fd(uuid);
  ssize_t r = 0;
  int64_t end = now_ms() + ms;
  while (r == 0 && now_ms() < end) {
    r = sock_read(uuid, b, sizeof(b));
    if (!r)
      wait_fd(fd, POLLIN, 50);
  }
  return r;
}

/* The raw peer must read exactly these n bytes next. */
U void expect_raw_bytes(conn_t *c, const char *expect, size_t n) {
  char b[256];
  if (n > sizeof(b)) {
    h_fail_at(__FILE__, __LINE__, "expect_raw_bytes: %zu bytes is too many", n);
    return;
  }
  CHECK_EQ(raw_read_n(c->raw, b, n, 5000, NULL), n);
  CHECK(!memcmp(b, expect, n));
}

U void conn_force_close(conn_t *c) {
  sock_force_close(c->uuid);
  conn_close_raw(c);
}

/* sock_write n pattern bytes (seed) from a buffer freed right after the
 * call (the library copies it). */
U void write_pattern(intptr_t uuid, size_t n, uint32_t seed) {
  uint8_t *src = malloc(n);
  fill_pattern(src, n, 0, seed);
  CHECK_EQ(sock_write(uuid, src, n), 0);
  free(src);
}

/* ---- temp files ---------------------------------------------------------*/

/* Create an unlinked temp file of `size` pattern bytes (seed). Returns fd. */
U int make_temp_file(size_t size, uint32_t seed) {
  char path[] = "/tmp/libsock-test-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0)
    return -1;
  unlink(path);
  uint8_t *buf = malloc(1 << 20);
  size_t done = 0;
  while (done < size) {
    size_t n = size - done > (1 << 20) ? (1 << 20) : size - done;
    fill_pattern(buf, n, done, seed);
    if (write(fd, buf, n) != (ssize_t)n) {
      free(buf);
      close(fd);
      return -1;
    }
    done += n;
  }
  free(buf);
  lseek(fd, 0, SEEK_SET);
  return fd;
}

/* ---- drain thread: reads a raw fd, checks a pattern or stores data -------*/

typedef struct {
  int fd;
  size_t expect;   /* stop after this many bytes (0 = until EOF) */
  uint32_t seed;   /* pattern seed when check */
  uint64_t start;  /* pattern start offset */
  int check;       /* verify pattern */
  uint8_t *store;  /* optional: copy data here */
  size_t store_cap;
  int timeout_ms;  /* give up after this long without progress */
  int until_eof;   /* after `expect` bytes, keep reading until EOF */
  /* results */
  size_t got;
  size_t bad_at; /* first mismatching absolute position, SIZE_MAX if none */
  int eof;
  int err; /* errno when the stream ended in an error (0: EOF or limit) */
  pthread_t th;
} drain_t;

static void *drain_main(void *arg) {
  drain_t *d = arg;
  uint8_t *buf = malloc(1 << 17);
  d->got = 0;
  d->bad_at = SIZE_MAX;
  d->eof = 0;
  d->err = 0;
  int64_t last = now_ms();
  for (;;) {
    if (d->expect && d->got >= d->expect && !d->until_eof)
      break;
    int left = (int)(last + d->timeout_ms - now_ms());
    if (left <= 0)
      break;
    short re = wait_fd(d->fd, POLLIN, left > 200 ? 200 : left);
    if (!re)
      continue;
    ssize_t r = read(d->fd, buf, 1 << 17);
    if (r > 0) {
      if (d->check && d->bad_at == SIZE_MAX) {
        size_t k = check_pattern(buf, (size_t)r, d->start + d->got, d->seed);
        if (k < (size_t)r)
          d->bad_at = d->got + k;
      }
      if (d->store && d->got < d->store_cap) {
        size_t n = (size_t)r;
        if (n > d->store_cap - d->got)
          n = d->store_cap - d->got;
        memcpy(d->store + d->got, buf, n);
      }
      d->got += (size_t)r;
      last = now_ms();
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR || errno == EWOULDBLOCK))
      continue;
    d->err = r < 0 ? errno : 0;
    d->eof = 1;
    break;
  }
  free(buf);
  return NULL;
}

U int drain_start(drain_t *d) {
  if (!d->timeout_ms)
    d->timeout_ms = 20000;
  return pthread_create(&d->th, NULL, drain_main, d);
}
U void drain_join(drain_t *d) { pthread_join(d->th, NULL); }

/* The raw peer of c reads (d) while the library flushes c until it has
 * closed (a pending sock_close, or one already done). Returns 1 when c
 * closed within ms; d holds what the peer read. */
U int drain_while_closing(conn_t *c, drain_t *d, int ms) {
  drain_start(d);
  int closed = flush_until_closed(c->uuid, ms); /* 1 at once if closed */
  drain_join(d);
  return closed;
}

/* ---- packet pool bound --------------------------------------------------*/

/* checks out one packet (trying for up to 20 s), reports 'y' or 'n' on the
 * pipe *arg and gives the packet back */
static void *late_checkout_main(void *arg) {
  int wfd = *(int *)arg;
  sock_packet_s *p;
  int64_t end = now_ms() + 20000;
  while (!(p = sock_checkout_packet()) && now_ms() < end)
    tiny_wait();
  char c = p ? 'y' : 'n';
  if (write(wfd, &c, 1) != 1)
    return NULL;
  if (p)
    sock_free_packet(p);
  return NULL;
}

/* The caller holds every packet of the pool. A checkout on another thread
 * must then wait, and succeed once `release` is freed. Returns what a 300 ms
 * wait for that checkout saw before the release (0: it waited, as it must),
 * or -1 when no pipe could be made. */
U int checkout_waits_for_release(sock_packet_s *release) {
  int pp[2];
  SETUP_REQUIRE(pipe(pp) == 0);
  pthread_t th;
  pthread_create(&th, NULL, late_checkout_main, &pp[1]);
  short early = wait_fd(pp[0], POLLIN, 300);
  sock_free_packet(release);
  char c = 0;
  CHECK(wait_fd(pp[0], POLLIN, 10000) & POLLIN);
  CHECK_EQ(read(pp[0], &c, 1), 1);
  CHECK_EQ(c, 'y');
  pthread_join(th, NULL);
  close(pp[0]);
  close(pp[1]);
  return early;
}

/* ---- a UUID guaranteed not to be valid for fd (stale counter) ------------*/

U intptr_t make_uuid(int fd, unsigned counter) {
  fduuid_u u;
  u.uuid = 0;
  u.data.fd = fd;
  u.data.counter = counter;
  return u.uuid;
}

/* ---- recorded callbacks --------------------------------------------------*/
#ifdef TEST_DEFINE_CALLBACKS

#define CB_MAX_EVENTS 65536
typedef struct {
  char kind; /* 'R' reactor_remove, 'C' reactor_on_close */
  intptr_t uuid;
  int fd_open; /* at the time of the call: was the uuid's fd still open? */
} cb_event_t;

static cb_event_t cb_events[CB_MAX_EVENTS];
static atomic_int cb_nevents;
static atomic_int cb_overflow;
static pthread_mutex_t cb_lock = PTHREAD_MUTEX_INITIALIZER;
/* optional extra actions run inside the callbacks (re-entrancy tests) */
static void (*cb_on_close_extra)(intptr_t uuid);
static void (*cb_remove_extra)(intptr_t uuid);
static void (*cb_touch_extra)(intptr_t uuid);

static void cb_record(char kind, intptr_t uuid) {
  int fd = sock_uuid2fd(uuid);
  int open = fd >= 0 && fcntl(fd, F_GETFD) != -1;
  pthread_mutex_lock(&cb_lock);
  int n = atomic_load(&cb_nevents);
  if (n < CB_MAX_EVENTS) {
    cb_events[n].kind = kind;
    cb_events[n].uuid = uuid;
    cb_events[n].fd_open = open;
    atomic_store(&cb_nevents, n + 1);
  } else {
    atomic_store(&cb_overflow, 1);
  }
  pthread_mutex_unlock(&cb_lock);
}

void reactor_on_close(intptr_t uuid) {
  cb_record('C', uuid);
  if (cb_on_close_extra)
    cb_on_close_extra(uuid);
}

int reactor_remove(intptr_t uuid) {
  cb_record('R', uuid);
  if (cb_remove_extra)
    cb_remove_extra(uuid);
  return 0;
}

U int cb_count(char kind, intptr_t uuid) {
  int c = 0;
  pthread_mutex_lock(&cb_lock);
  int n = atomic_load(&cb_nevents);
  for (int i = 0; i < n; i++)
    if (cb_events[i].kind == kind && cb_events[i].uuid == uuid)
      c++;
  pthread_mutex_unlock(&cb_lock);
  return c;
}
U int close_count(intptr_t uuid) { return cb_count('C', uuid); }
U int remove_count(intptr_t uuid) { return cb_count('R', uuid); }
U int total_close_events(void) {
  int c = 0;
  pthread_mutex_lock(&cb_lock);
  int n = atomic_load(&cb_nevents);
  for (int i = 0; i < n; i++)
    c += cb_events[i].kind == 'C';
  pthread_mutex_unlock(&cb_lock);
  return c;
}
/* 1 when a reactor_remove(uuid) precedes the first reactor_on_close(uuid) */
U int remove_before_close(intptr_t uuid) {
  int r = -1, c = -1;
  pthread_mutex_lock(&cb_lock);
  int n = atomic_load(&cb_nevents);
  for (int i = 0; i < n; i++) {
    if (cb_events[i].uuid != uuid)
      continue;
    if (cb_events[i].kind == 'R' && r < 0)
      r = i;
    if (cb_events[i].kind == 'C' && c < 0)
      c = i;
  }
  pthread_mutex_unlock(&cb_lock);
  return r >= 0 && c >= 0 && r < c;
}
/* fd state recorded at the (first) reactor_on_close(uuid) call; -1 if none */
U int close_saw_fd_open(intptr_t uuid) {
  int res = -1;
  pthread_mutex_lock(&cb_lock);
  int n = atomic_load(&cb_nevents);
  for (int i = 0; i < n && res < 0; i++)
    if (cb_events[i].kind == 'C' && cb_events[i].uuid == uuid)
      res = cb_events[i].fd_open;
  pthread_mutex_unlock(&cb_lock);
  return res;
}

/* sock_touch: per-uuid counters */
#define TOUCH_SLOTS 4096
static struct {
  intptr_t uuid;
  long count;
  int used;
} touch_tab[TOUCH_SLOTS];
static pthread_mutex_t touch_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_long touch_total;

void sock_touch(intptr_t uuid) {
  atomic_fetch_add(&touch_total, 1);
  pthread_mutex_lock(&touch_lock);
  size_t h = ((uint64_t)uuid * 0x9E3779B97F4A7C15ull) >> 52;
  for (size_t i = 0; i < TOUCH_SLOTS; i++) {
    size_t k = (h + i) % TOUCH_SLOTS;
    if (!touch_tab[k].used) {
      touch_tab[k].used = 1;
      touch_tab[k].uuid = uuid;
      touch_tab[k].count = 1;
      break;
    }
    if (touch_tab[k].uuid == uuid) {
      touch_tab[k].count++;
      break;
    }
  }
  pthread_mutex_unlock(&touch_lock);
  if (cb_touch_extra)
    cb_touch_extra(uuid);
}

U long touch_count(intptr_t uuid) {
  long c = 0;
  pthread_mutex_lock(&touch_lock);
  size_t h = ((uint64_t)uuid * 0x9E3779B97F4A7C15ull) >> 52;
  for (size_t i = 0; i < TOUCH_SLOTS; i++) {
    size_t k = (h + i) % TOUCH_SLOTS;
    if (!touch_tab[k].used)
      break;
    if (touch_tab[k].uuid == uuid) {
      c = touch_tab[k].count;
      break;
    }
  }
  pthread_mutex_unlock(&touch_lock);
  return c;
}

#endif /* TEST_DEFINE_CALLBACKS */

#endif /* LIBSOCK_TEST_UTIL_H */
