/*
 * writer -- the sending end of the transfer benchmarks: the same work done
 * with raw system calls or with libsock.
 *
 *   writer MODE PORT AMOUNT [FILE]
 *
 * File modes send the first AMOUNT bytes of FILE, WRITER_FILE_PASSES times
 * (environment, default 1) on the same connection.
 *
 * Connects to a `sink` on 127.0.0.1:PORT, sends, and stops its clock when
 * the sink confirms it read everything. Prints one line:
 *   mode=M seconds=S bytes=B maxrss_kb=K user_s=U sys_s=Y peak_queued=Q
 *   stalls=N
 * (U and Y: CPU time in user space and in the kernel, whole process; Q:
 * small-lib modes, the most bytes seen queued in the library at once; N:
 * library modes, times the loop waited 100 ms for an EPOLLOUT that never
 * came while data was queued and the socket was writable)
 *
 * Modes (AMOUNT is a message count for small-*, bytes otherwise):
 *   small-naive     one write() per 64-byte message (blocking socket)
 *   small-sendmsg   the same with sendmsg(MSG_NOSIGNAL), the call the
 *                   library makes (tells the kernel path's cost apart from
 *                   the library's own)
 *   small-ideal     the same messages, 1024 per writev() (blocking socket)
 *   small-lib       one sock_write() per message; every 256 messages (one
 *                   event-loop iteration) sock_flush() if epoll reported
 *                   EPOLLOUT while output is queued. The pool (16 MiB) bounds
 *                   the queue: a full pool makes sock_write wait, flushing.
 *   small-lib-drain the same, but like a Node.js 'drain' loop: after each
 *                   1 MiB written, wait (epoll + sock_flush) until nothing
 *                   is queued
 *   small-lib-deferred  small-lib with the library's flush handed to the
 *                   program (sock_register_async_run) and run once per loop
 *                   iteration instead of after every write
 *   small-lib-lowat small-lib on a socket with TCP_NOTSENT_LOWAT 256 KiB
 *                   (set by the program): the kernel refuses data once that
 *                   much waits unsent instead of after its whole send buffer
 *   bulk-raw        write() of 64 KiB buffers (blocking socket)
 *   bulk-lib        sock_write() of 64 KiB buffers, the small-lib loop
 *   bulk-lib-drain  sock_write() of 64 KiB buffers, the drain loop
 *   file-raw        sendfile() loop over FILE (blocking socket)
 *   file-lib        sock_sendfile(FILE), then epoll + sock_flush until sent
 *   hook-raw        pread() 16 KiB of FILE + write() loop (blocking socket)
 *   hook-lib        sock_sendfile(FILE) on a connection with a pass-through
 *                   write hook, so the library reads and writes 16 KiB
 *                   chunks (BUFFER_FILE_READ_SIZE)
 */
#define _GNU_SOURCE
#include "libsock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#define MSG 64
#define BATCH 1024 /* messages per writev (IOV_MAX) */
#define CHUNK 65536
#define FILE_CHUNK 16384 /* BUFFER_FILE_READ_SIZE: what the library reads */
#define BURST 256 /* messages per loop iteration (one 16 KiB packet) */
#define DRAIN_HIGH_WATER (1u << 20)
#define BULK_HIGH_WATER (1u << 20)

static int fd = -1;
static intptr_t uuid = -1;
static int epfd = -1;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void write_all(const void *buf, size_t len) {
  const char *p = buf;
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      die("write");
    }
    p += n;
    len -= (size_t)n;
  }
}

/* ---- the library side ----------------------------------------------------- */

/* small-lib-lowat: the program sets TCP_NOTSENT_LOWAT on its socket, so
 * the kernel refuses data once this much waits unsent */
static int notsent_lowat;
#define NOTSENT_LOWAT (256 * 1024)

static void lib_open(void) {
  if (notsent_lowat &&
      setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &notsent_lowat,
                 sizeof notsent_lowat))
    die("TCP_NOTSENT_LOWAT");
  sock_set_non_block(fd);
  uuid = sock_open(fd);
  if (uuid == -1)
    die("sock_open");
  epfd = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.u64 = (uint64_t)uuid};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev))
    die("epoll_ctl");
}

/* Times lib_drain waited DRAIN_WAIT_MS for an EPOLLOUT that did not come
 * while the library still held data and the socket was writable: the
 * library kept data queued on a socket it had not found full, so no
 * writability edge was due (a stall an edge-triggered event loop would only
 * leave on some other event). */
static unsigned stalls;
#define DRAIN_WAIT_MS 100

/* The event loop: sock_flush on every EPOLLOUT until nothing is queued
 * (and, as a safety net, after DRAIN_WAIT_MS without one). */
static void lib_drain(void) {
  while (sock_packets_pending(uuid)) {
    struct epoll_event ev;
    int n = epoll_wait(epfd, &ev, 1, DRAIN_WAIT_MS);
    if (n < 0 && errno != EINTR)
      die("epoll_wait");
    if (n == 0) {
      /* no edge for DRAIN_WAIT_MS: a stall only if the socket is writable
       * (a slow reader may simply not have made room yet) */
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      if (poll(&p, 1, 0) == 1 && (p.revents & POLLOUT))
        stalls++;
    }
    if (sock_flush(uuid) != 0 && !sock_isvalid(uuid)) {
      fprintf(stderr, "writer: the connection closed\n");
      exit(1);
    }
  }
}

/* One event-loop iteration that finds no new event to wait for: run the
 * flush the library deferred to us (small-lib-deferred), and sock_flush if
 * epoll reported the socket writable (the poll only when output is queued). */
static void (*deferred_task)(void *);
static void *deferred_arg;

static int defer_flush(void (*task)(void *), void *arg) {
  deferred_task = task; /* one connection: one pending flush is enough */
  deferred_arg = arg;
  return 0;
}

/* Bytes the library holds: written with sock_write, not yet taken by the
 * kernel (taken = acknowledged by the peer + still in the send queue). */
static uint64_t written, peak_queued;
static unsigned ticks;

static void sample_queue(void) {
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  int outq = 0;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
      ioctl(fd, SIOCOUTQ, &outq) == 0) {
    uint64_t taken = ti.tcpi_bytes_acked + (uint64_t)outq;
    if (written > taken && written - taken > peak_queued)
      peak_queued = written - taken;
  }
}

static void lib_tick(void) {
  if (deferred_task) {
    void (*task)(void *) = deferred_task;
    deferred_task = NULL;
    task(deferred_arg);
  }
  if (sock_packets_pending(uuid)) {
    /* every 64th iteration with output queued: how much is queued (two
     * system calls, ~0.0001 per message) */
    if ((ticks++ & 63) == 0)
      sample_queue();
    struct epoll_event ev;
    if (epoll_wait(epfd, &ev, 1, 0) > 0)
      sock_flush(uuid);
  }
}

static ssize_t hook_write(intptr_t id, const void *buf, size_t count) {
  (void)id;
  return write(fd, buf, count);
}

/* ---- modes ------------------------------------------------------------------ */

static uint64_t small(const char *mode, uint64_t count) {
  unsigned char msg[MSG];
  memset(msg, 'm', sizeof msg);
  if (!strcmp(mode, "small-naive")) {
    for (uint64_t i = 0; i < count; i++) {
      memcpy(msg, &i, 8);
      write_all(msg, MSG);
    }
  } else if (!strcmp(mode, "small-sendmsg")) {
    struct iovec v = {msg, MSG};
    struct msghdr mh = {.msg_iov = &v, .msg_iovlen = 1};
    for (uint64_t i = 0; i < count; i++) {
      memcpy(msg, &i, 8);
      if (sendmsg(fd, &mh, MSG_NOSIGNAL) != MSG) /* blocking: all or error */
        die("sendmsg");
    }
  } else if (!strcmp(mode, "small-ideal")) {
    static unsigned char batch[BATCH][MSG];
    static struct iovec iov[BATCH];
    for (uint64_t i = 0; i < count;) {
      int n = 0;
      for (; n < BATCH && i < count; n++, i++) {
        memcpy(batch[n], msg, MSG);
        memcpy(batch[n], &i, 8);
        iov[n] = (struct iovec){batch[n], MSG};
      }
      struct iovec *v = iov;
      while (n) { /* a blocking socket takes it all, unless interrupted */
        ssize_t w = writev(fd, v, n);
        if (w < 0) {
          if (errno == EINTR)
            continue;
          die("writev");
        }
        while (n && (size_t)w >= v->iov_len) {
          w -= (ssize_t)v->iov_len;
          v++;
          n--;
        }
        if (n) {
          v->iov_base = (char *)v->iov_base + w;
          v->iov_len -= (size_t)w;
        }
      }
    }
  } else {
    /* small-lib, small-lib-drain, small-lib-deferred, small-lib-lowat */
    int drain = !strcmp(mode, "small-lib-drain");
    if (!strcmp(mode, "small-lib-lowat"))
      notsent_lowat = NOTSENT_LOWAT;
    if (!strcmp(mode, "small-lib-deferred"))
      sock_register_async_run(defer_flush);
    lib_open();
    size_t since = 0;
    for (uint64_t i = 0; i < count; i++) {
      memcpy(msg, &i, 8);
      if (sock_write(uuid, msg, MSG) != 0)
        die("sock_write");
      written += MSG;
      if (drain) {
        if ((since += MSG) >= DRAIN_HIGH_WATER) {
          since = 0;
          lib_drain();
        }
      } else if ((i & (BURST - 1)) == BURST - 1) {
        lib_tick(); /* the end of one loop iteration */
      }
    }
    lib_tick();
    lib_drain();
  }
  return count * MSG;
}

static uint64_t bulk(const char *mode, uint64_t bytes) {
  static unsigned char buf[CHUNK];
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (unsigned char)(i * 131 + 7);
  int lib = !strncmp(mode, "bulk-lib", 8);
  int drain = !strcmp(mode, "bulk-lib-drain");
  if (lib)
    lib_open();
  size_t since = 0;
  for (uint64_t sent = 0; sent < bytes;) {
    size_t n = bytes - sent < CHUNK ? (size_t)(bytes - sent) : CHUNK;
    if (!lib) {
      write_all(buf, n);
    } else {
      if (sock_write(uuid, buf, n) != 0)
        die("sock_write");
      if (!drain) {
        lib_tick();
      } else if ((since += n) >= BULK_HIGH_WATER) {
        since = 0;
        lib_drain();
      }
    }
    sent += n;
  }
  if (lib)
    lib_drain();
  return bytes;
}

/* One pass over the first `bytes` of FILE; file() makes PASSES of them. */
static void file_pass(const char *mode, uint64_t bytes, const char *path) {
  int f = open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0)
    die(path);
  if (!strcmp(mode, "file-raw")) {
    off_t off = 0;
    while ((uint64_t)off < bytes) {
      ssize_t n = sendfile(fd, f, &off, bytes - (uint64_t)off);
      if (n <= 0) {
        if (n < 0 && errno == EINTR)
          continue;
        die("sendfile");
      }
    }
    close(f);
  } else if (!strcmp(mode, "hook-raw")) {
    static unsigned char buf[FILE_CHUNK];
    for (uint64_t off = 0; off < bytes;) {
      size_t want = bytes - off < FILE_CHUNK ? (size_t)(bytes - off) : FILE_CHUNK;
      ssize_t n = pread(f, buf, want, (off_t)off);
      if (n <= 0) {
        if (n < 0 && errno == EINTR)
          continue;
        die("pread");
      }
      write_all(buf, (size_t)n);
      off += (uint64_t)n;
    }
    close(f);
  } else {
    if (uuid == -1)
      lib_open();
    static sock_rw_hook_s hook = {.write = hook_write};
    if (!strcmp(mode, "hook-lib") && sock_rw_hook_get(uuid) != &hook &&
        sock_rw_hook_set(uuid, &hook))
      die("sock_rw_hook_set");
    if (sock_sendfile(uuid, f, 0, bytes) != 0) /* closes f when done */
      die("sock_sendfile");
    lib_drain();
  }
}

/* PASSES (environment WRITER_FILE_PASSES, default 1) passes over FILE on
 * the one connection: a longer run, so that one slow moment of the machine
 * weighs less on it. */
static uint64_t file(const char *mode, uint64_t bytes, const char *path) {
  const char *e = getenv("WRITER_FILE_PASSES");
  int passes = e && atoi(e) > 0 ? atoi(e) : 1;
  for (int i = 0; i < passes; i++)
    file_pass(mode, bytes, path);
  return bytes * (uint64_t)passes;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: writer MODE PORT AMOUNT [FILE]\n");
    return 2;
  }
  const char *mode = argv[1];
  uint64_t amount = strtoull(argv[3], NULL, 10);
  fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)atoi(argv[2]))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a))
    die("connect");

  double t0 = now();
  uint64_t bytes;
  if (!strncmp(mode, "small-", 6))
    bytes = small(mode, amount);
  else if (!strncmp(mode, "bulk-", 5))
    bytes = bulk(mode, amount);
  else if (argc > 4)
    bytes = file(mode, amount, argv[4]);
  else {
    fprintf(stderr, "writer: unknown mode %s (or FILE missing)\n", mode);
    return 2;
  }
  /* the clock stops when the sink says it read everything */
  struct pollfd p = {.fd = fd, .events = POLLIN};
  char ack;
  while (poll(&p, 1, 60000) < 0 && errno == EINTR)
    ;
  if (read(fd, &ack, 1) != 1) {
    fprintf(stderr, "writer: no confirmation from the sink\n");
    return 1;
  }
  double t1 = now();
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("mode=%s seconds=%.6f bytes=%llu maxrss_kb=%ld user_s=%.3f "
         "sys_s=%.3f peak_queued=%llu stalls=%u\n",
         mode, t1 - t0, (unsigned long long)bytes, ru.ru_maxrss,
         ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
         ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
         (unsigned long long)peak_queued, stalls);
  if (uuid != -1)
    sock_force_close(uuid);
  else
    close(fd);
  return 0;
}
