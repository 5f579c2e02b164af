/*
 * flushall -- what sock_flush_all costs with many idle connections: the
 * same BUSY connections with data queued, flushed alone, then again once
 * IDLE more connections (that never have data) are open.
 *
 *   flushall [IDLE] [BUSY] [ROUNDS]     (defaults 100000 10 2000)
 *
 * Busy connections: socketpairs whose peer never reads, with small buffers
 * and data queued in the library (every flush meets EAGAIN). Idle ones:
 * eventfds registered with sock_open (one fd each, no kernel buffers).
 * RLIMIT_NOFILE is raised first (the library sizes its table at first use);
 * when the hard limit does not allow IDLE, as many as it allows are opened
 * and the line says how many.
 *
 * Prints: idle=N busy=B alone_ns=X with_idle_ns=Y ratio=Y/X
 * (nanoseconds per sock_flush_all call, median of 5 batches of ROUNDS/5).
 */
#define _GNU_SOURCE
#include "libsock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
  perror(what);
  exit(1);
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* ns per sock_flush_all: median of 5 batches */
static double measure(int rounds) {
  double t[5];
  int per = rounds / 5 > 0 ? rounds / 5 : 1;
  for (int b = 0; b < 5; b++) {
    double t0 = now_ns();
    for (int i = 0; i < per; i++)
      sock_flush_all();
    t[b] = (now_ns() - t0) / per;
  }
  qsort(t, 5, sizeof t[0], cmp);
  return t[2];
}

int main(int argc, char **argv) {
  long idle = argc > 1 ? atol(argv[1]) : 100000;
  int busy = argc > 2 ? atoi(argv[2]) : 10;
  int rounds = argc > 3 ? atoi(argv[3]) : 2000;

  /* before any library call: its table is sized at first use */
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rlim_t want = (rlim_t)idle + (rlim_t)busy * 2 + 64;
  if (rl.rlim_max < want) {
    struct rlimit up = {want, want};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0)
      rl = up;
  }
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  if ((rlim_t)idle + (rlim_t)busy * 2 + 64 > rl.rlim_cur)
    idle = (long)rl.rlim_cur - busy * 2 - 64;

  intptr_t *uuids = calloc((size_t)busy, sizeof *uuids);
  static char chunk[65536];
  memset(chunk, 'b', sizeof chunk);
  for (int i = 0; i < busy; i++) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
      die("socketpair");
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sock_set_non_block(sv[0]);
    uuids[i] = sock_open(sv[0]);
    if (uuids[i] == -1)
      die("sock_open");
    /* sv[1] stays open and is never read: the data stays queued */
    while (!sock_packets_pending(uuids[i]))
      if (sock_write(uuids[i], chunk, sizeof chunk))
        die("sock_write");
  }
  measure(rounds); /* warm-up: caches, the first calls' one-time work */
  double alone = measure(rounds);

  long opened = 0;
  for (; opened < idle; opened++) {
    int e = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (e < 0) {
      if (errno == EMFILE || errno == ENFILE)
        break;
      die("eventfd");
    }
    if (sock_open(e) == -1)
      die("sock_open (idle)");
  }
  double with_idle = measure(rounds);
  for (int i = 0; i < busy; i++)
    if (!sock_packets_pending(uuids[i]))
      die("a busy connection lost its data");
  printf("idle=%ld busy=%d alone_ns=%.0f with_idle_ns=%.0f ratio=%.2f\n",
         opened, busy, alone, with_idle, with_idle / alone);
  return 0;
}
