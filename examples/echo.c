/*
 * echo -- sends every byte it receives back to its sender, on libsock and
 * the examples' epoll loop (loop.c), for any number of connections.
 *
 *   echo [-a address] [-p port] [-t idle_seconds]
 *
 * Defaults: -a 127.0.0.1 -p 3000 -t 0 (no idle timeout). Port 0 picks a free
 * port; the address is printed on stdout. A client that sends without
 * reading stops being read once its echo waits in the queue (backpressure),
 * so it cannot make the server buffer without bound. SIGINT/SIGTERM stop it.
 */
#define _GNU_SOURCE
#include "loop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_data(loop_conn_s *c) {
  char buf[16384];
  for (;;) {
    ssize_t n = sock_read(c->uuid, buf, sizeof buf);
    if (n <= 0)
      return; /* 0: nothing more now; -1: closed (on_close ran) */
    if (sock_write(c->uuid, buf, (size_t)n) != 0)
      return;
    if (sock_packets_pending(c->uuid)) {
      loop_pause(c); /* read again once the echo is sent */
      return;
    }
    if ((size_t)n < sizeof buf)
      return; /* the socket is empty: epoll reports the next bytes */
  }
}

int main(int argc, char **argv) {
  const char *address = "127.0.0.1", *port = "3000";
  double idle = 0;
  int opt;
  while ((opt = getopt(argc, argv, "a:p:t:h")) != -1) {
    switch (opt) {
    case 'a': address = optarg; break;
    case 'p': port = optarg; break;
    case 't': idle = atof(optarg); break;
    default:
      fprintf(stderr, "usage: %s [-a address] [-p port] [-t idle_seconds]\n",
              argv[0]);
      return 2;
    }
  }
  int bound = 0;
  intptr_t srv = loop_listen(address, port, &bound);
  if (srv == -1) {
    fprintf(stderr, "echo: cannot listen on %s:%s: %s\n", address, port,
            strerror(errno));
    return 1;
  }
  printf("echo: listening on %s port %d (Ctrl-C to stop)\n", address, bound);
  fflush(stdout);
  loop_handler_s handler = {.on_data = on_data};
  int r = loop_run(srv, &handler, (int)(idle * 1000));
  printf("echo: stopped\n");
  return r == 0 ? 0 : 1;
}
