/*
 * bench_tls.c - TLS file sending: libsock's sock_sendfile through the TLS
 * hooks (examples/tls.c) against the same OpenSSL writing the file itself
 * in a plain loop (pread + SSL_write on a blocking socket).
 *
 *   bench_tls CERT.pem KEY.pem [MiB (256)] [rounds (7)]
 *
 * Both sides use the same SSL_CTX (so the same protocol and cipher), the
 * same 16 KiB chunks (BUFFER_FILE_READ_SIZE: one TLS record each), a file in
 * the page cache, and the same receiver: a thread on a blocking socket
 * that reads with SSL_read until close_notify. A round times connection,
 * handshake and transfer, from before connect to the receiver's last byte.
 * Rounds alternate between the two senders; the medians are compared.
 *
 * Output: one line per round, then
 *   RESULT hooks_mibps=<x> plain_mibps=<y> ratio=<x/y> hooks_cpu_s=<s>
 *          plain_cpu_s=<s> cipher=<protocol/cipher> mib=<n> rounds=<n>
 * (on one line; *_cpu_s: median CPU time of the sending thread).
 * BENCH_TLS_ONLY=hooks|plain runs one sender only (for profiling).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

static SSL_CTX *sctx, *cctx;
static int file_fd;
static size_t file_size;
static char cipher_name[128];

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of the calling (sending) thread. */
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double last_cpu; /* sender CPU seconds of the last run */

static atomic_int closed_count;
void reactor_on_close(intptr_t uuid) {
  (void)uuid;
  atomic_fetch_add(&closed_count, 1);
}

/* ---- the receiver (same for both senders) -------------------------------- */

typedef struct {
  int port;
  size_t got;
  int clean; /* ended with close_notify */
  double t_end;
} rx_s;

static void *receiver(void *arg) {
  rx_s *r = arg;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)r->port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
    perror("connect");
    close(fd);
    return NULL;
  }
  SSL *ssl = SSL_new(cctx);
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) == 1) {
    static _Thread_local char buf[1 << 18];
    for (;;) {
      int n = SSL_read(ssl, buf, sizeof(buf));
      if (n <= 0) {
        r->clean = SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN;
        break;
      }
      r->got += (size_t)n;
    }
    snprintf(cipher_name, sizeof(cipher_name), "%s/%s", SSL_get_version(ssl),
             SSL_get_cipher_name(ssl));
  }
  r->t_end = now_s();
  ERR_clear_error();
  SSL_free(ssl);
  close(fd);
  return NULL;
}

/* ---- sender 1: libsock, sock_sendfile through the TLS hooks ------------- */

static double run_hooks(void) {
  intptr_t srv = sock_listen("127.0.0.1", "0");
  intptr_t s = srv;
  int sfd = sock_uuid2fd(s);
  struct sockaddr_in a;
  socklen_t al = sizeof(a);
  getsockname(sfd, (struct sockaddr *)&a, &al);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)srv};
  epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
  rx_s rx = {.port = ntohs(a.sin_port)};
  int before = atomic_load(&closed_count);
  double t0 = now_s(), c0 = cpu_s();
  pthread_t th;
  pthread_create(&th, NULL, receiver, &rx);
  intptr_t uuid = -1;
  struct epoll_event evs[8];
  while (uuid == -1) {
    epoll_wait(ep, evs, 8, 1000);
    uuid = sock_accept(srv);
  }
  intptr_t u = uuid;
  struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                            .data.u64 = (uint64_t)uuid};
  epoll_ctl(ep, EPOLL_CTL_ADD, sock_uuid2fd(u), &cev);
  tls_attach_server(uuid, sctx);
  /* the file fd is kept: sock_sendfile closes the dup */
  sock_sendfile(uuid, dup(file_fd), 0, file_size);
  tls_close(uuid);
  char buf[4096];
  while (atomic_load(&closed_count) == before + 0 && sock_isvalid(uuid)) {
    epoll_wait(ep, evs, 8, 1000);
    while (sock_read(uuid, buf, sizeof(buf)) > 0)
      ;
    sock_flush(uuid);
  }
  last_cpu = cpu_s() - c0;
  pthread_join(th, NULL);
  sock_force_close(srv);
  close(ep);
  if (rx.got != file_size || !rx.clean) {
    fprintf(stderr, "hooks: received %zu of %zu (clean %d)\n", rx.got,
            file_size, rx.clean);
    exit(1);
  }
  return rx.t_end - t0;
}

/* ---- sender 2: the same OpenSSL, pread + SSL_write in a loop -------------- */

static double run_plain(void) {
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof(a);
  if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 16) ||
      getsockname(lfd, (struct sockaddr *)&a, &al)) {
    perror("listen");
    exit(1);
  }
  rx_s rx = {.port = ntohs(a.sin_port)};
  double t0 = now_s(), c0 = cpu_s();
  pthread_t th;
  pthread_create(&th, NULL, receiver, &rx);
  int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  SSL *ssl = SSL_new(sctx);
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) == 1) {
    static char buf[BUFFER_FILE_READ_SIZE];
    off_t off = 0;
    for (;;) {
      ssize_t n = pread(file_fd, buf, sizeof(buf), off);
      if (n <= 0)
        break;
      if (SSL_write(ssl, buf, (int)n) != (int)n) {
        fprintf(stderr, "plain: SSL_write failed\n");
        break;
      }
      off += n;
    }
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  close(fd);
  last_cpu = cpu_s() - c0;
  pthread_join(th, NULL);
  close(lfd);
  if (rx.got != file_size || !rx.clean) {
    fprintf(stderr, "plain: received %zu of %zu (clean %d)\n", rx.got,
            file_size, rx.clean);
    exit(1);
  }
  return rx.t_end - t0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s CERT.pem KEY.pem [MiB] [rounds]\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  size_t mib = argc > 3 ? (size_t)atol(argv[3]) : 256;
  int rounds = argc > 4 ? atoi(argv[4]) : 7;
  if (rounds < 1 || rounds > 99 || mib < 1)
    return 2;
  sctx = tls_server_ctx(argv[1], argv[2]);
  cctx = tls_client_ctx(NULL);
  if (!sctx || !cctx)
    return 1;

  /* the file: pseudo-random bytes, in the page cache */
  char path[] = "/tmp/bench-tls-XXXXXX";
  file_fd = mkstemp(path);
  if (file_fd < 0) {
    perror("mkstemp");
    return 1;
  }
  unlink(path);
  file_size = mib * 1024 * 1024;
  static uint64_t block[1 << 17];
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (size_t off = 0; off < file_size; off += sizeof(block)) {
    for (size_t i = 0; i < sizeof(block) / 8; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      block[i] = x;
    }
    if (write(file_fd, block, sizeof(block)) != (ssize_t)sizeof(block)) {
      perror("write");
      return 1;
    }
  }

  double hooks[99], plain[99], hcpu[99], pcpu[99];
  /* BENCH_TLS_ONLY=hooks|plain: one sender only (for profiling) */
  const char *only = getenv("BENCH_TLS_ONLY");
  if (only) {
    int h = !strcmp(only, "hooks");
    for (int r = 0; r < rounds; r++) {
      double t = h ? run_hooks() : run_plain();
      printf("%s %.1f MiB/s\n", only, (double)mib / t);
    }
    return 0;
  }
  run_hooks(); /* warm-up (page cache, CPU frequency, OpenSSL tables) */
  run_plain();
  for (int r = 0; r < rounds; r++) {
    /* alternate which goes first so drifting load hits both alike */
    if (r & 1) {
      plain[r] = run_plain();
      pcpu[r] = last_cpu;
      hooks[r] = run_hooks();
      hcpu[r] = last_cpu;
    } else {
      hooks[r] = run_hooks();
      hcpu[r] = last_cpu;
      plain[r] = run_plain();
      pcpu[r] = last_cpu;
    }
    printf("round %d: hooks %.1f MiB/s (sender CPU %.3f s), "
           "plain %.1f MiB/s (sender CPU %.3f s)\n",
           r + 1, (double)mib / hooks[r], hcpu[r], (double)mib / plain[r],
           pcpu[r]);
    fflush(stdout);
  }
  qsort(hooks, (size_t)rounds, sizeof(double), cmp_double);
  qsort(plain, (size_t)rounds, sizeof(double), cmp_double);
  qsort(hcpu, (size_t)rounds, sizeof(double), cmp_double);
  qsort(pcpu, (size_t)rounds, sizeof(double), cmp_double);
  double h = (double)mib / hooks[rounds / 2], p = (double)mib / plain[rounds / 2];
  printf("RESULT hooks_mibps=%.1f plain_mibps=%.1f ratio=%.3f "
         "hooks_cpu_s=%.3f plain_cpu_s=%.3f cipher=%s mib=%zu rounds=%d\n",
         h, p, h / p, hcpu[rounds / 2], pcpu[rounds / 2], cipher_name, mib,
         rounds);
  close(file_fd);
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
  return 0;
}
