/*
 * util.c -- the shared helpers of the libsock C tests (declared, with what
 * each does, in util.h). The recorded callbacks are callbacks.c.
 */
#include "util.h"

#include <dirent.h>

/* ---- time ---------------------------------------------------------------*/

int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

short wait_fd(int fd, short events, int ms) {
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

void tiny_wait(void) { poll(NULL, 0, 2); }

/* ---- patterns -----------------------------------------------------------*/

uint8_t pat_byte(uint64_t i, uint32_t seed) {
  uint64_t x = (i >> 3) * 0x9E3779B97F4A7C15ull ^
               (((uint64_t)seed << 32) | (uint64_t)(seed * 2654435761u));
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  return (uint8_t)(x >> ((i & 7) * 8));
}

void fill_pattern(uint8_t *buf, size_t n, uint64_t start, uint32_t seed) {
  for (size_t i = 0; i < n; i++)
    buf[i] = pat_byte(start + i, seed);
}

size_t check_pattern(const uint8_t *buf, size_t n, uint64_t start,
                     uint32_t seed) {
  for (size_t i = 0; i < n; i++)
    if (buf[i] != pat_byte(start + i, seed))
      return i;
  return n;
}

/* ---- raw fd helpers -----------------------------------------------------*/

int fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n - 1; /* the directory's own fd */
}

int fd_is_same_file(int fd, const struct stat *st) {
  struct stat s2;
  if (fstat(fd, &s2) != 0)
    return 0;
  return s2.st_dev == st->st_dev && s2.st_ino == st->st_ino;
}

int is_nonblocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl != -1 && (fl & O_NONBLOCK);
}

void set_blocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl != -1)
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

size_t raw_read_n(int fd, void *buf, size_t n, int ms, int *eof) {
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

size_t raw_read_avail(int fd, void *buf, size_t n) {
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

int raw_expect_eof(int fd, int ms) {
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

size_t lib_read_n(intptr_t uuid, void *buf, size_t n, int ms) {
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

int raw_write_all(int fd, const void *buf, size_t n, int ms) {
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

int make_unix_pair_buf(conn_t *c, int sndbuf) {
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

int make_unix_pair(conn_t *c) { return make_unix_pair_buf(c, 0); }

int make_tcp_pair_buf(conn_t *c, int sndbuf, int rcvbuf) {
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

int make_tcp_pair(conn_t *c) { return make_tcp_pair_buf(c, 0, 0); }

void conn_close_raw(conn_t *c) {
  if (c->raw >= 0)
    close(c->raw);
  c->raw = -1;
}

int free_port(int family, char out[16]) {
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

int wait_connected(intptr_t uuid, int ms) {
  int fd = sock_uuid2fd(uuid);
  short re = wait_fd(fd, POLLOUT, ms);
  if (!(re & POLLOUT) || (re & (POLLERR | POLLHUP)))
    return -1;
  int err = 0;
  socklen_t l = sizeof(err);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
  return err ? -1 : 0;
}

intptr_t accept_wait(intptr_t srv, int ms) {
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

int flush_until_closed(intptr_t uuid, int ms) {
  int64_t end = now_ms() + ms;
  int fd = sock_uuid2fd(uuid);
  while (now_ms() < end) {
    if (sock_flush(uuid) == -1)
      return 1;
    wait_fd(fd, POLLOUT, 20);
  }
  return 0;
}

int lib_tcp_listen(char port[16], intptr_t *srv) {
  SETUP_REQUIRE(free_port(AF_INET, port) == 0);
  *srv = sock_listen("127.0.0.1", port);
  SETUP_REQUIRE(*srv != -1);
  return 0;
}

int lib_tcp_trio(char port[16], intptr_t *srv, intptr_t *cli,
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

void lib_tcp_trio_close(intptr_t srv, intptr_t cli, intptr_t acc) {
  sock_force_close(cli);
  sock_force_close(acc);
  sock_force_close(srv);
}

void exchange_both_ways(intptr_t cl, intptr_t ac, size_t n, uint32_t sa,
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

ssize_t read_until_nonzero(intptr_t uuid, int ms) {
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

void expect_raw_bytes(conn_t *c, const char *expect, size_t n) {
  char b[256];
  if (n > sizeof(b)) {
    h_fail_at(__FILE__, __LINE__, "expect_raw_bytes: %zu bytes is too many", n);
    return;
  }
  CHECK_EQ(raw_read_n(c->raw, b, n, 5000, NULL), n);
  CHECK(!memcmp(b, expect, n));
}

void conn_force_close(conn_t *c) {
  sock_force_close(c->uuid);
  conn_close_raw(c);
}

void write_pattern(intptr_t uuid, size_t n, uint32_t seed) {
  uint8_t *src = malloc(n);
  fill_pattern(src, n, 0, seed);
  CHECK_EQ(sock_write(uuid, src, n), 0);
  free(src);
}

/* ---- temp files ---------------------------------------------------------*/

int make_temp_file(size_t size, uint32_t seed) {
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

int drain_start(drain_t *d) {
  if (!d->timeout_ms)
    d->timeout_ms = h_deadline_ms(); /* grows with the watchdog (valgrind) */
  return pthread_create(&d->th, NULL, drain_main, d);
}

void drain_join(drain_t *d) { pthread_join(d->th, NULL); }

int drain_while_closing(conn_t *c, drain_t *d, int ms) {
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

int checkout_waits_for_release(sock_packet_s *release) {
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

intptr_t make_uuid(int fd, unsigned counter) {
  fduuid_u u;
  u.uuid = 0;
  u.data.fd = fd;
  u.data.counter = counter;
  return u.uuid;
}
