/*
 * client -- an HTTP/1.1 client on libsock and a plain edge-triggered epoll
 * loop: the whole life of a connection a program opens itself, in order.
 *
 *   client [-a address] [-p port] [-t timeout_seconds] [path]
 *
 * Defaults: -a 127.0.0.1 -p 3000 -t 10, path "/": the server of
 * `make demo`. It connects with sock_connect(), waits until the connection
 * is writable (then SO_ERROR says whether it succeeded), writes one GET
 * request (asking the server to close afterwards), copies the answer to
 * stdout as it arrives, and ends when the server has closed the connection.
 *
 * Exit status: 0 when an answer arrived and the server closed the
 * connection; 1 when the connection failed or timed out; 2 on bad usage.
 */
#define _GNU_SOURCE
#include "libsock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The library calls this once when it closes the connection: here, after
 * sock_read() met the end of the server's answer (or an error), or after
 * sock_force_close(). A program with many connections frees their state
 * here (see examples/loop.c). */
static int closed;
void reactor_on_close(intptr_t uuid) {
  (void)uuid;
  closed = 1;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
  /* sock_connect() takes `char *` (as the original header did): arrays, not
   * string literals, so that -Wwrite-strings and C++ have nothing to say */
  char default_address[] = "127.0.0.1", default_port[] = "3000";
  char *address = default_address, *port = default_port;
  const char *path = "/";
  double timeout = 10;
  int opt;
  while ((opt = getopt(argc, argv, "a:p:t:h")) != -1) {
    switch (opt) {
    case 'a': address = optarg; break;
    case 'p': port = optarg; break;
    case 't': timeout = atof(optarg); break;
    default:
      fprintf(stderr,
              "usage: %s [-a address] [-p port] [-t timeout_seconds] [path]\n",
              argv[0]);
      return 2;
    }
  }
  if (optind < argc)
    path = argv[optind];
  char request[2048];
  int rlen = snprintf(request, sizeof request,
                      "GET %s HTTP/1.1\r\nHost: %s:%s\r\n"
                      "Connection: close\r\n\r\n",
                      path, address, port);
  if (rlen < 0 || (size_t)rlen >= sizeof request) {
    fprintf(stderr, "client: path too long\n");
    return 2;
  }

  /* 1. Connect. The UUID comes back at once; the connection is usually
   *    still in progress. */
  intptr_t uuid = sock_connect(address, port);
  if (uuid == -1) {
    fprintf(stderr, "client: cannot connect to %s:%s: %s\n", address, port,
            strerror(errno));
    return 1;
  }

  /* 2. Watch it, edge-triggered: EPOLLOUT reports the connection's outcome,
   *    and later that the kernel can take more bytes; EPOLLIN that the
   *    answer arrived. */
  int fd = sock_uuid2fd(uuid);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {
      .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
      .data.u64 = (uint64_t)uuid,
  };
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    perror("client: epoll");
    sock_force_close(uuid);
    return 1;
  }

  int connected = 0, failed = 0;
  size_t received = 0;
  int64_t deadline = now_ms() + (int64_t)(timeout * 1000);
  while (!closed && !failed) {
    int left = (int)(deadline - now_ms());
    struct epoll_event evs[4];
    int n = epoll_wait(ep, evs, 4, left > 0 ? left : 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      fprintf(stderr, "client: %s\n",
              n == 0 ? "timed out" : strerror(errno));
      failed = 1;
      break;
    }
    for (int i = 0; i < n && !closed; i++) {
      uint32_t e = evs[i].events;
      if (!connected && (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        /* 3. The connection is settled: SO_ERROR tells how (reading it
         *    clears it, so on failure the program closes the UUID). */
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
          fprintf(stderr, "client: cannot connect to %s:%s: %s\n", address,
                  port, strerror(err));
          failed = 1;
          sock_force_close(uuid); /* reactor_on_close sets `closed` */
          break;
        }
        connected = 1;
        /* 4. Write the request: sent at once if the kernel takes it, the
         *    rest queued in the library's buffer. */
        if (sock_write(uuid, request, (size_t)rlen) != 0) {
          fprintf(stderr, "client: write: %s\n", strerror(errno));
          failed = 1;
          break;
        }
      }
      /* 5. Writable: the kernel can take more, and only sock_flush sends
       *    what it refused before. */
      if (e & EPOLLOUT)
        sock_flush(uuid);
      /* 6. Readable: read until sock_read says "nothing more now" (0) or
       *    "the stream ended" (-1: the library closes the connection and
       *    calls reactor_on_close). */
      if (e & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
        char buf[16384];
        ssize_t r;
        while ((r = sock_read(uuid, buf, sizeof buf)) > 0) {
          fwrite(buf, 1, (size_t)r, stdout);
          received += (size_t)r;
        }
      }
    }
  }
  /* 7. Close. The server already did (Connection: close); after a timeout
   *    or a failure this drops the connection at once. */
  if (!closed)
    sock_force_close(uuid);
  close(ep);
  fflush(stdout);
  if (!failed && received == 0) {
    fprintf(stderr, "client: the server closed the connection without an "
                    "answer\n");
    failed = 1;
  }
  return failed ? 1 : 0;
}
