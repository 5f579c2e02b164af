/*
 * tls_test.h - helpers of the TLS tests (header-only, one program each).
 *
 * Every check prints "PASS name" or "FAIL name: why"; main returns
 * tt_exit_code(). The program defines reactor_on_close (through this
 * header) and counts calls per UUID; tls_set_on_finish records the
 * adapter's last word on every session.
 */
#ifndef LIBSOCK_TLS_TEST_H
#define LIBSOCK_TLS_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#define TT_U static __attribute__((unused))
#define MiB (1024u * 1024u)

/* ---- results ------------------------------------------------------------ */

static int tt_passed, tt_failed;

TT_U int check(const char *name, int ok, const char *fmt, ...) {
  if (ok) {
    printf("PASS %s\n", name);
    tt_passed++;
  } else {
    char why[512] = "";
    if (fmt) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(why, sizeof(why), fmt, ap);
      va_end(ap);
    }
    printf("FAIL %s: %s\n", name, why);
    tt_failed++;
  }
  fflush(stdout);
  return ok;
}

TT_U int tt_exit_code(void) { return tt_failed ? 1 : 0; }

/* ---- time --------------------------------------------------------------- */

TT_U int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Timeouts scale with TLS_TEST_SLOW (e.g. 20 under valgrind). */
TT_U int64_t tt_timeout_ms(int64_t base) {
  const char *s = getenv("TLS_TEST_SLOW");
  long k = s ? atol(s) : 1;
  return base * (k > 0 ? k : 1);
}

/* ---- data pattern: byte i of stream `seed` ------------------------------- */

static inline uint64_t tt_mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

static inline uint8_t pat(uint64_t i, uint32_t seed) {
  return (uint8_t)(tt_mix((i >> 3) ^ ((uint64_t)seed << 40)) >> ((i & 7) * 8));
}

TT_U void pat_fill(uint8_t *b, size_t n, uint64_t start, uint32_t seed) {
  size_t i = 0;
  while (i < n && ((start + i) & 7))
    b[i] = pat(start + i, seed), i++;
  for (; i + 8 <= n; i += 8) {
    uint64_t w = tt_mix(((start + i) >> 3) ^ ((uint64_t)seed << 40));
    memcpy(b + i, &w, 8); /* little-endian: byte k is w >> 8k */
  }
  for (; i < n; i++)
    b[i] = pat(start + i, seed);
}

/* First mismatch, or n. */
TT_U size_t pat_check(const uint8_t *b, size_t n, uint64_t start,
                      uint32_t seed) {
  uint8_t tmp[4096];
  for (size_t off = 0; off < n; off += sizeof(tmp)) {
    size_t k = n - off < sizeof(tmp) ? n - off : sizeof(tmp);
    pat_fill(tmp, k, start + off, seed);
    if (memcmp(tmp, b + off, k))
      for (size_t j = 0; j < k; j++)
        if (tmp[j] != b[off + j])
          return off + j;
  }
  return n;
}

/* A file of `n` pattern bytes starting at stream offset `start`. */
TT_U int pat_file(const char *path, size_t n, uint64_t start, uint32_t seed) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return -1;
  static uint8_t buf[1 << 20];
  for (size_t off = 0; off < n;) {
    size_t k = n - off < sizeof(buf) ? n - off : sizeof(buf);
    pat_fill(buf, k, start + off, seed);
    ssize_t w = write(fd, buf, k);
    if (w <= 0) {
      close(fd);
      return -1;
    }
    off += (size_t)w;
  }
  return close(fd);
}

/* ---- reactor_on_close / on_finish bookkeeping --------------------------- */

#define TT_TRACK 64
static struct {
  intptr_t uuid;
  atomic_int closes;
  atomic_int finished;
  tls_info_s info;
} tt_conns[TT_TRACK];
static atomic_int tt_nconns;
static atomic_int tt_untracked_closes;

TT_U int tt_track(intptr_t uuid) {
  int i = atomic_fetch_add(&tt_nconns, 1);
  if (i >= TT_TRACK)
    abort();
  tt_conns[i].uuid = uuid;
  atomic_store(&tt_conns[i].closes, 0);
  atomic_store(&tt_conns[i].finished, 0);
  return i;
}

static int tt_find(intptr_t uuid) {
  int n = atomic_load(&tt_nconns);
  for (int i = n - 1; i >= 0; i--)
    if (tt_conns[i].uuid == uuid)
      return i;
  return -1;
}

void reactor_on_close(intptr_t uuid) {
  int i = tt_find(uuid);
  if (i < 0)
    atomic_fetch_add(&tt_untracked_closes, 1);
  else
    atomic_fetch_add(&tt_conns[i].closes, 1);
}

TT_U int closes_of(intptr_t uuid) {
  int i = tt_find(uuid);
  return i < 0 ? -1 : atomic_load(&tt_conns[i].closes);
}

static void tt_on_finish(const tls_info_s *info) {
  int i = tt_find(info->uuid);
  if (i < 0)
    return;
  tt_conns[i].info = *info;
  atomic_fetch_add(&tt_conns[i].finished, 1);
}

/* The adapter's summary of a freed session (NULL if not freed yet). */
TT_U const tls_info_s *finish_of(intptr_t uuid) {
  int i = tt_find(uuid);
  return i >= 0 && atomic_load(&tt_conns[i].finished) ? &tt_conns[i].info
                                                        : NULL;
}

TT_U int finishes_of(intptr_t uuid) {
  int i = tt_find(uuid);
  return i < 0 ? -1 : atomic_load(&tt_conns[i].finished);
}

TT_U void tt_init(void) {
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  tls_set_on_finish(tt_on_finish);
}

/* ---- an epoll loop over libsock connections ------------------------------ */

typedef struct tt_loop_s {
  int ep;
} tt_loop_s;

TT_U int loop_init(tt_loop_s *l) {
  l->ep = epoll_create1(EPOLL_CLOEXEC);
  return l->ep < 0 ? -1 : 0;
}

/* Watches a connection, edge-triggered (reads must go to EAGAIN). */
TT_U int loop_add(tt_loop_s *l, intptr_t uuid) {
  intptr_t u = uuid;
  struct epoll_event ev = {
      .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
      .data.u64 = (uint64_t)uuid};
  return epoll_ctl(l->ep, EPOLL_CTL_ADD, sock_uuid2fd(u), &ev);
}

/* Watches a listening socket (level-triggered). */
TT_U int loop_add_listener(tt_loop_s *l, intptr_t uuid) {
  intptr_t u = uuid;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)uuid};
  return epoll_ctl(l->ep, EPOLL_CTL_ADD, sock_uuid2fd(u), &ev);
}

/* Waits up to `ms` for events; returns how many (0 on timeout), filling
 * `uuids`. */
TT_U int loop_wait(tt_loop_s *l, intptr_t *uuids, int max, int ms) {
  struct epoll_event ev[32];
  if (max > 32)
    max = 32;
  for (;;) {
    int n = epoll_wait(l->ep, ev, max, ms);
    if (n < 0 && errno == EINTR)
      continue;
    for (int i = 0; i < n; i++)
      uuids[i] = (intptr_t)ev[i].data.u64;
    return n < 0 ? 0 : n;
  }
}

TT_U void loop_close(tt_loop_s *l) { close(l->ep); }

/* Reads a connection until sock_read returns 0 (nothing now) or -1
 * (closed); each chunk goes to `sink`. Returns the last sock_read result. */
TT_U ssize_t drain(intptr_t uuid, void (*sink)(void *ctx, const uint8_t *,
                                                size_t),
                   void *ctx) {
  static uint8_t buf[1 << 16];
  for (;;) {
    ssize_t n = sock_read(uuid, buf, sizeof(buf));
    if (n <= 0)
      return n;
    if (sink)
      sink(ctx, buf, (size_t)n);
  }
}

/* ---- sockets ------------------------------------------------------------ */

TT_U int local_port(intptr_t uuid) {
  intptr_t u = uuid;
  struct sockaddr_in a;
  socklen_t l = sizeof(a);
  if (getsockname(sock_uuid2fd(u), (struct sockaddr *)&a, &l))
    return -1;
  return ntohs(a.sin_port);
}

/* A blocking TCP connection to 127.0.0.1:port (for plain-OpenSSL peers). */
TT_U int tcp_connect(int port, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (rcvbuf > 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
    close(fd);
    return -1;
  }
  return fd;
}

#endif /* LIBSOCK_TLS_TEST_H */
