/*
 * syscalls -- system calls the library makes per write, on each path,
 * counted by the kernel (perf_event_open on the syscall tracepoints, this
 * thread only, enabled around the writes alone).
 *
 *   syscalls PATH [N]        (N writes, default 1000)
 *
 * PATH:
 *   plain      sock_write of 64 bytes to a TCP socket whose peer (a forked
 *              reader) keeps up
 *   hook       the same through a pass-through write hook (write(2))
 *   hookflush  the same with a write hook and a flush hook (the TLS shape)
 *   pipe       sock_write of 64 bytes to a pipe drained by a forked reader
 *   poolwait   sock_write of 64 KiB with the pool bounded to 16 packets
 *              (256 KiB), small socket buffers and a reader slower than
 *              the writer (16 KiB per 100 us): the writer waits for packets
 *              (flushing, waiting for the socket) in every write
 *   file       sock_sendfile of a 40 KiB file under backpressure: small
 *              socket buffers (16 KiB) and a reader that keeps up, so the
 *              kernel refuses data several times per file; an edge-triggered
 *              epoll loop calls sock_flush on EPOLLOUT between writes
 *
 * Prints one line:
 *   path=P writes=N lib_calls=C per_write=X breakdown="name=n ..."
 * lib_calls leaves out the calls the program itself makes in the measured
 * loop (its open and epoll_wait, file path only); the breakdown lists
 * every counted call by name. -1 when the counters are not available.
 */
#define _GNU_SOURCE
#include "libsock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
  perror(what);
  exit(1);
}

/* ---- counters ------------------------------------------------------------- */

static const char *names[] = {"total",  "sendto",  "sendmsg", "write",
                              "writev", "sendfile64", "fcntl", "close",
                              "poll",   "futex",   "rt_sigprocmask",
                              "rt_sigtimedwait", "openat", "epoll_wait",
                              "ioctl",  "read",    "pread64"};
#define NCOUNT (sizeof names / sizeof names[0])
static int cfd[NCOUNT];

static long tracepoint_id(const char *name) {
  char path[256];
  if (!strcmp(name, "total"))
    snprintf(path, sizeof path,
             "/sys/kernel/tracing/events/raw_syscalls/sys_enter/id");
  else
    snprintf(path, sizeof path,
             "/sys/kernel/tracing/events/syscalls/sys_enter_%s/id", name);
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(path, sizeof path, "/sys/kernel/debug/tracing/events/%s%s/id",
             strcmp(name, "total") ? "syscalls/sys_enter_" : "raw_syscalls/",
             strcmp(name, "total") ? name : "sys_enter");
    f = fopen(path, "r");
  }
  long id = -1;
  if (f) {
    if (fscanf(f, "%ld", &id) != 1)
      id = -1;
    fclose(f);
  }
  return id;
}

/* Opens the counters (disabled), in one group led by "total". */
static int counters_open(void) {
  for (size_t i = 0; i < NCOUNT; i++) {
    cfd[i] = -1;
    long id = tracepoint_id(names[i]);
    if (id < 0) {
      if (i == 0)
        return -1;
      continue;
    }
    struct perf_event_attr a = {.type = PERF_TYPE_TRACEPOINT,
                                .size = sizeof a,
                                .config = (uint64_t)id,
                                .disabled = i == 0,
                                .exclude_hv = 1};
    cfd[i] = (int)syscall(SYS_perf_event_open, &a, 0, -1, i ? cfd[0] : -1, 0);
    if (cfd[i] < 0 && i == 0)
      return -1;
  }
  return 0;
}

static void counters_enable(void) {
  ioctl(cfd[0], PERF_EVENT_IOC_RESET, PERF_IOC_FLAG_GROUP);
  ioctl(cfd[0], PERF_EVENT_IOC_ENABLE, PERF_IOC_FLAG_GROUP);
}

static void counters_disable(uint64_t *v) {
  ioctl(cfd[0], PERF_EVENT_IOC_DISABLE, PERF_IOC_FLAG_GROUP);
  for (size_t i = 0; i < NCOUNT; i++) {
    v[i] = 0;
    if (cfd[i] >= 0 && read(cfd[i], &v[i], sizeof v[i]) != sizeof v[i])
      v[i] = 0;
  }
  /* the disabling ioctl itself entered the kernel while counting */
  for (size_t i = 0; i < NCOUNT; i++)
    if (v[i] && (i == 0 || !strcmp(names[i], "ioctl")))
      v[i]--;
}

/* ---- peers ------------------------------------------------------------------ */

/* A forked reader that reads `fd` until end of stream (`other`, the
 * writer's end, is closed in the child); `paced`: 16 KiB per 100 us at
 * most (~160 MB/s), slower than the writer. */
static pid_t reader(int fd, int other, int paced) {
  pid_t pid = fork();
  if (pid == 0) {
    close(other);
    static char buf[1 << 16];
    struct timespec pause = {0, 100000};
    while (read(fd, buf, paced ? 16384 : sizeof buf) > 0)
      if (paced)
        nanosleep(&pause, NULL);
    _exit(0);
  }
  close(fd);
  return pid;
}

/* A connected TCP pair on loopback: *w the writer's end, *r the reader's. */
static void tcp_pair(int *w, int *r, int small) {
  int srv = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (srv < 0 || bind(srv, (struct sockaddr *)&a, sizeof a) ||
      listen(srv, 1) || getsockname(srv, (struct sockaddr *)&a, &len))
    die("listen");
  *w = socket(AF_INET, SOCK_STREAM, 0);
  int buf = 16384;
  if (small) {
    setsockopt(*w, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  }
  if (connect(*w, (struct sockaddr *)&a, sizeof a))
    die("connect");
  *r = accept(srv, NULL, NULL);
  if (*r < 0)
    die("accept");
  if (small)
    setsockopt(*r, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  close(srv);
}

/* ---- hooks -------------------------------------------------------------------- */

static ssize_t hook_write(intptr_t uuid, const void *buf, size_t count) {
  return write(sock_uuid2fd(uuid), buf, count);
}
static ssize_t hook_flush(intptr_t uuid) {
  (void)uuid;
  return 0;
}

/* ---- the paths ------------------------------------------------------------------ */

#define FILE_SIZE (40 * 1024)

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: syscalls plain|hook|hookflush|pipe|poolwait|file [N]\n");
    return 2;
  }
  const char *path = argv[1];
  long n = argc > 2 ? atol(argv[2]) : 1000;
  int file = !strcmp(path, "file");
  int w, r;
  if (!strcmp(path, "pipe")) {
    int p[2];
    if (pipe(p))
      die("pipe");
    w = p[1];
    r = p[0];
  } else {
    tcp_pair(&w, &r, file || !strcmp(path, "poolwait"));
  }
  pid_t child = reader(r, w, file || !strcmp(path, "poolwait"));
  sock_set_non_block(w);
  intptr_t uuid = sock_open(w);
  if (uuid == -1)
    die("sock_open");
  static sock_rw_hook_s hooks;
  if (!strcmp(path, "hook") || !strcmp(path, "hookflush")) {
    hooks.write = hook_write;
    if (!strcmp(path, "hookflush"))
      hooks.flush = hook_flush;
    if (sock_rw_hook_set(uuid, &hooks))
      die("sock_rw_hook_set");
  }
  char tmpl[] = "/tmp/libsock-syscalls.XXXXXX";
  int epfd = -1;
  if (file) {
    int f = mkstemp(tmpl);
    static char chunk[FILE_SIZE];
    memset(chunk, 'f', sizeof chunk);
    if (f < 0 || write(f, chunk, sizeof chunk) != (ssize_t)sizeof chunk)
      die("temp file");
    close(f);
    epfd = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLET};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, w, &ev))
      die("epoll_ctl");
  }
  int poolwait = !strcmp(path, "poolwait");
  static char msg[65536];
  size_t msglen = poolwait ? sizeof msg : 64;
  memset(msg, 'm', sizeof msg);
  if (poolwait)
    sock_set_packet_pool_size(16);
  /* one write before counting: the library's one-time work (the thread's
   * signal mask, the pool's first packet) is not per write */
  if (!file && sock_write(uuid, msg, msglen))
    die("sock_write");
  int counting = counters_open() == 0;
  uint64_t v[NCOUNT] = {0};
  long program_calls = 0; /* the program's own calls while counting */
  if (counting)
    counters_enable();
  for (long i = 0; i < n; i++) {
    if (!file) {
      if (sock_write(uuid, msg, msglen))
        die("sock_write");
      continue;
    }
    int f = open(tmpl, O_RDONLY | O_CLOEXEC);
    program_calls++;
    if (f < 0 || sock_sendfile(uuid, f, 0, FILE_SIZE))
      die("sock_sendfile");
    /* the event loop: sock_flush on each EPOLLOUT until the file is out */
    while (sock_packets_pending(uuid)) {
      struct epoll_event ev;
      program_calls++;
      if (epoll_wait(epfd, &ev, 1, 1000) < 0 && errno != EINTR)
        die("epoll_wait");
      if (sock_flush(uuid) && !sock_isvalid(uuid))
        die("sock_flush");
    }
  }
  if (counting)
    counters_disable(v);
  sock_close(uuid);
  sock_flush_strong(uuid);
  waitpid(child, NULL, 0);
  if (file)
    unlink(tmpl);
  if (!counting) {
    printf("path=%s writes=%ld lib_calls=-1 per_write=-1 breakdown=\"\"\n",
           path, n);
    return 0;
  }
  char br[1024] = "";
  size_t o = 0;
  for (size_t i = 1; i < NCOUNT; i++)
    if (v[i] && o < sizeof br)
      o += (size_t)snprintf(br + o, sizeof br - o, "%s%s=%llu", o ? " " : "",
                            names[i], (unsigned long long)v[i]);
  long lib = (long)v[0] - program_calls;
  printf("path=%s writes=%ld lib_calls=%ld per_write=%.3f breakdown=\"%s\"\n",
         path, n, lib, (double)lib / (double)n, br);
  return 0;
}
