/*
 * burst -- memory given back after a burst: RSS before, at the peak of, and
 * 1 s after a burst of N connections each queuing BYTES, and how long the
 * burst took.
 *
 *   burst [N] [KIB]        (defaults 1000 256)
 *
 * A child process opens N connections (small receive buffers) and reads
 * everything as fast as it can. The parent accepts them with sock_accept
 * (small send buffers, so the library, not the kernel, holds most of the
 * bytes), registers them with an edge-triggered epoll, then writes KIB KiB
 * to each with sock_write (the pool, at its default bound, makes writers
 * wait while it is full) and runs the loop (sock_flush on EPOLLOUT) until
 * nothing is queued. The connections stay open, idle, for the last sample.
 *
 * Prints: conns=N kib=K rss_before_kb=B rss_peak_kb=P rss_after_kb=A
 *         after_minus_before_kb=D anon_before_kb=AB anon_after_kb=AA
 *         burst_s=S
 * (VmRSS; peak: VmHWM; after: 1 s after the last byte left the library;
 * anon: RssAnon, the heap and stacks without the code pages the burst
 * touched for the first time)
 */
#define _GNU_SOURCE
#include "libsock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SMALL_BUF 16384

static void die(const char *what) {
  perror(what);
  exit(1);
}

static long status_kb(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  size_t n = strlen(key);
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, key, n))
      kb = strtol(line + n, NULL, 10);
  if (f)
    fclose(f);
  return kb;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The child: N connections, read everything, then wait for the parent. */
static void client(int port, int n, uint64_t total, int ready_fd) {
  int *fds = calloc((size_t)n, sizeof *fds);
  struct pollfd *p = calloc((size_t)n, sizeof *p);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < n; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int rcv = SMALL_BUF;
    setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    if (connect(fds[i], (struct sockaddr *)&a, sizeof a) &&
        errno != EINPROGRESS)
      die("client connect");
    p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
  }
  char c = 'r';
  if (write(ready_fd, &c, 1) != 1)
    die("client ready");
  static char buf[1 << 16];
  uint64_t got = 0;
  while (got < total) {
    if (poll(p, (nfds_t)n, 10000) <= 0)
      die("client poll");
    for (int i = 0; i < n; i++) {
      if (!p[i].revents)
        continue;
      ssize_t r;
      while ((r = read(fds[i], buf, sizeof buf)) > 0)
        got += (uint64_t)r;
      if (r == 0)
        p[i].fd = -1;
    }
  }
  /* stay connected until the parent is done measuring */
  if (read(ready_fd, &c, 1) < 0)
    die("client wait");
  _exit(0);
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  size_t kib = argc > 2 ? (size_t)atol(argv[2]) : 256;
  size_t bytes = kib * 1024;
  signal(SIGPIPE, SIG_IGN);
  sock_max_capacity();
  intptr_t srv = sock_listen("127.0.0.1", "0");
  if (srv == -1)
    die("sock_listen");
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  if (getsockname(sock_uuid2fd(srv), (struct sockaddr *)&a, &len))
    die("getsockname");
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
    die("socketpair");
  pid_t child = fork();
  if (child == 0) {
    close(sv[0]);
    client(ntohs(a.sin_port), n, (uint64_t)n * bytes, sv[1]);
  }
  close(sv[1]);
  char c;
  if (read(sv[0], &c, 1) != 1)
    die("child");

  intptr_t *uuids = calloc((size_t)n, sizeof *uuids);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  for (int i = 0; i < n;) {
    intptr_t u = sock_accept(srv);
    if (u == -1) {
      struct pollfd p = {.fd = sock_uuid2fd(srv), .events = POLLIN};
      if (poll(&p, 1, 10000) <= 0)
        die("accept");
      continue;
    }
    int fd = sock_uuid2fd(u);
    int snd = SMALL_BUF;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLET,
                             .data.u64 = (uint64_t)u};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
      die("epoll_ctl");
    uuids[i++] = u;
  }
  char *buf = malloc(bytes);
  memset(buf, 'b', bytes);
  long before = status_kb("VmRSS:");
  long anon_before = status_kb("RssAnon:");

  double t0 = now();
  struct epoll_event evs[256];
  for (int i = 0; i < n; i++) {
    if (sock_write(uuids[i], buf, bytes))
      die("sock_write");
    /* the event loop runs between writes */
    int k = epoll_wait(ep, evs, 256, 0);
    for (int j = 0; j < k; j++)
      sock_flush((intptr_t)evs[j].data.u64);
  }
  for (;;) {
    int pending = 0;
    for (int i = 0; i < n && !pending; i++)
      pending = sock_packets_pending(uuids[i]);
    if (!pending)
      break;
    int k = epoll_wait(ep, evs, 256, 1000);
    for (int j = 0; j < k; j++)
      sock_flush((intptr_t)evs[j].data.u64);
  }
  double burst = now() - t0;
  long peak = status_kb("VmHWM:");
  /* one second later, the connections idle */
  struct timespec one = {1, 0};
  nanosleep(&one, NULL);
  long after = status_kb("VmRSS:");
  long anon_after = status_kb("RssAnon:");
  printf("conns=%d kib=%zu rss_before_kb=%ld rss_peak_kb=%ld "
         "rss_after_kb=%ld after_minus_before_kb=%ld anon_before_kb=%ld "
         "anon_after_kb=%ld burst_s=%.3f\n",
         n, kib, before, peak, after, after - before, anon_before, anon_after,
         burst);
  if (write(sv[0], "d", 1) != 1)
    die("release child");
  waitpid(child, NULL, 0);
  for (int i = 0; i < n; i++)
    sock_force_close(uuids[i]);
  free(buf);
  return 0;
}
