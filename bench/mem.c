/*
 * mem -- memory use of libsock: resident set size (VmRSS) of a process
 * after its first sock_listen(), with N idle connections, and with N
 * connections holding 64 KiB queued each.
 *
 *   mem [N]        (default 10000)
 *
 * The client ends of the connections live in a child process, so the
 * parent's fds are only the library's (its table grows with the fds used).
 * For the queued case the kernel buffers are made small (SO_SNDBUF on the
 * server side, SO_RCVBUF on the client side, before connecting) and the
 * pool is raised with sock_set_packet_pool_size(); the bytes the kernel
 * took (SIOCOUTQ here, FIONREAD in the child) are subtracted from what was
 * written, which leaves what the library holds.
 *
 * Built with -DNO_LIBSOCK it only measures a process that listens with raw
 * system calls: the baseline of the C runtime itself.
 *
 * Prints key=value lines (sizes in KiB).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#ifndef NO_LIBSOCK
#include "libsock.h"
#endif

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmRSS:", 6))
      kb = strtol(line + 6, NULL, 10);
  if (f)
    fclose(f);
  return kb;
}

/* Prints the resident KiB of each mapping group of /proc/self/smaps on one
 * line: "<prefix>libsock=K libc=K ld=K libgcc_s=K heap=K anon=K other=K". */
static void rss_by_mapping(const char *prefix) {
  static const char *groups[] = {"libsock", "libc.", "ld-linux", "libgcc_s",
                                 "[heap]", "anon", "other"};
  long kb[7] = {0};
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[512];
  int g = 6;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    char name[256] = "";
    if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %255s", &lo, &hi, name) >= 2 &&
        strchr(line, '-') < strchr(line, ' ')) {
      g = name[0] == 0 ? 5 : 6;
      for (int i = 0; i < 5; i++)
        if (strstr(name, groups[i]))
          g = i;
    } else if (!strncmp(line, "Rss:", 4)) {
      kb[g] += strtol(line + 4, NULL, 10);
    }
  }
  if (f)
    fclose(f);
  printf("%slibsock=%ld libc=%ld ld=%ld libgcc_s=%ld heap=%ld anon=%ld "
         "other=%ld\n",
         prefix, kb[0], kb[1], kb[2], kb[3], kb[4], kb[5], kb[6]);
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

#ifdef NO_LIBSOCK
int main(void) {
  printf("rss_start_kb=%ld\n", rss_kb());
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, SOMAXCONN))
    die("listen");
  printf("rss_listen_kb=%ld\n", rss_kb());
  rss_by_mapping("rss_listen_by_mapping_kb=");
  return 0;
}
#else

#define QUEUED 65536
#define SMALL_BUF 4096

/* The child: opens n connections (small receive buffers when `small`),
 * reports, then answers "how many bytes wait unread?" and exits. */
static void client(int port, int n, int small, int to_parent, int from_parent) {
  int *fds = calloc((size_t)n, sizeof *fds);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < n; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    int rcv = SMALL_BUF;
    if (small)
      setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof a))
      die("client connect");
  }
  char c = 'c';
  if (write(to_parent, &c, 1) != 1)
    _exit(1);
  if (read(from_parent, &c, 1) != 1) /* 'q': count unread bytes */
    _exit(0);
  long long inq = 0;
  for (int i = 0; i < n; i++) {
    int v = 0;
    ioctl(fds[i], FIONREAD, &v);
    inq += v;
  }
  if (write(to_parent, &inq, sizeof inq) != (ssize_t)sizeof inq)
    _exit(1);
  read(from_parent, &c, 1); /* until the parent is done */
  _exit(0);
}

typedef struct {
  pid_t pid;
  int to_child, from_child;
} child_s;

/* Opens n connections to `srv`, accepting them with sock_accept. */
static child_s connect_all(intptr_t srv, int port, int n, int small,
                           intptr_t *uuids) {
  int up[2], down[2];
  if (pipe(up) || pipe(down))
    die("pipe");
  child_s ch = {.to_child = down[1], .from_child = up[0]};
  ch.pid = fork();
  if (ch.pid == 0) {
    close(up[0]);
    close(down[1]);
    client(port, n, small, up[1], down[0]);
  }
  close(up[1]);
  close(down[0]);
  int lfd = sock_uuid2fd(srv);
  for (int got = 0; got < n;) {
    intptr_t u = sock_accept(srv);
    if (u == -1) {
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        die("sock_accept");
      struct pollfd p = {.fd = lfd, .events = POLLIN};
      poll(&p, 1, 1000);
      continue;
    }
    uuids[got++] = u;
  }
  char c;
  if (read(ch.from_child, &c, 1) != 1)
    die("client");
  return ch;
}

static void end_child(child_s ch) {
  close(ch.to_child);
  close(ch.from_child);
  waitpid(ch.pid, NULL, 0);
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 10000;
  long rss_start = rss_kb();
  intptr_t srv = sock_listen("127.0.0.1", "0");
  if (srv == -1)
    die("sock_listen");
  long rss_listen = rss_kb();
  printf("rss_start_kb=%ld\nrss_listen_kb=%ld\n", rss_start, rss_listen);
  rss_by_mapping("rss_listen_by_mapping_kb=");

  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  getsockname(sock_uuid2fd(srv), (struct sockaddr *)&a, &alen);
  int port = ntohs(a.sin_port);

  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < (rlim_t)n + 64) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)n + 64)
      n = (int)rl.rlim_cur - 64;
  }
  printf("connections=%d\n", n);
  intptr_t *uuids = calloc((size_t)n, sizeof *uuids);
  memset(uuids, 0xff, (size_t)n * sizeof *uuids); /* touch it now */
  char *payload = malloc(QUEUED);
  memset(payload, 'q', QUEUED);
  signal(SIGPIPE, SIG_IGN);

  /* idle connections */
  long before = rss_kb();
  child_s ch = connect_all(srv, port, n, 0, uuids);
  long idle = rss_kb();
  printf("rss_idle_kb=%ld\nidle_bytes_per_conn=%.0f\n", idle,
         (idle - before) * 1024.0 / n);
  for (int i = 0; i < n; i++)
    sock_force_close(uuids[i]);
  end_child(ch);

  /* 64 KiB queued on each connection */
  if (sock_set_packet_pool_size((size_t)n * (QUEUED / BUFFER_PACKET_SIZE + 1) + 64))
    die("sock_set_packet_pool_size");
  ch = connect_all(srv, port, n, 1, uuids);
  long before_q = rss_kb();
  long long outq = 0;
  for (int i = 0; i < n; i++) {
    int fd = sock_uuid2fd(uuids[i]), snd = SMALL_BUF;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
    if (sock_write(uuids[i], payload, QUEUED) != 0)
      die("sock_write");
  }
  long queued = rss_kb();
  for (int i = 0; i < n; i++) {
    int v = 0, fd = sock_uuid2fd(uuids[i]);
    ioctl(fd, SIOCOUTQ, &v);
    outq += v;
  }
  long long inq = 0;
  char q = 'q';
  if (write(ch.to_child, &q, 1) != 1 ||
      read(ch.from_child, &inq, sizeof inq) != (ssize_t)sizeof inq)
    die("client report");
  long long held = (long long)n * QUEUED - outq - inq;
  printf("rss_queued_kb=%ld\nqueued_written_bytes=%lld\nkernel_held_bytes=%lld\n"
         "library_held_bytes=%lld\nqueued_rss_bytes=%lld\n",
         queued, (long long)n * QUEUED, outq + inq, held,
         (long long)(queued - before_q) * 1024);
  for (int i = 0; i < n; i++)
    sock_force_close(uuids[i]);
  end_child(ch);
  sock_force_close(srv);
  return 0;
}
#endif
