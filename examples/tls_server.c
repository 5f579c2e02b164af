/*
 * tls_server.c - a TLS echo / file server on libsock, an epoll loop and the
 * TLS hooks of tls.c. Uses only the public libsock API.
 *
 *   tls_server CERT.pem KEY.pem [PORT [ADDRESS]]
 *
 * PORT 0 (the default) picks a free port. The server prints
 * "listening on ADDRESS:PORT" once it accepts connections.
 *
 * Protocol, per connection, line by line (lines end with "\n"):
 *   QUIT          -> "BYE\n", then close (queued data, close_notify, close)
 *   FILE <path>   -> the file's bytes through sock_sendfile, then close
 *   ECHO          -> from here on every byte is echoed back raw
 *   STOP          -> stop the server (after this connection closes)
 *   anything else -> the line is echoed back
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define LINE_MAX_LEN 4096

typedef struct client_s {
  intptr_t uuid;
  int raw;     /* ECHO mode */
  int closing; /* a close was asked for: ignore further input */
  size_t len;
  char line[LINE_MAX_LEN];
} client_s;

static client_s **clients; /* by fd */
static size_t clients_len;
static int stop_requested;
static long open_connections;

static client_s *client_of(intptr_t uuid) {
  intptr_t u = uuid;
  int fd = sock_uuid2fd(u);
  if (fd < 0 || (size_t)fd >= clients_len || !clients[fd] ||
      clients[fd]->uuid != uuid)
    return NULL;
  return clients[fd];
}

/* libsock closed a connection (any way it happens): forget its state. */
void reactor_on_close(intptr_t uuid) {
  intptr_t u = uuid;
  int fd = sock_uuid2fd(u);
  client_s *c = client_of(uuid);
  if (c) {
    free(c);
    clients[fd] = NULL;
    open_connections--;
  }
}

static int add_client(intptr_t uuid) {
  intptr_t u = uuid;
  int fd = sock_uuid2fd(u);
  if ((size_t)fd >= clients_len) {
    size_t n = clients_len ? clients_len : 64;
    while (n <= (size_t)fd)
      n *= 2;
    client_s **grown = realloc(clients, n * sizeof(*clients));
    if (!grown)
      return -1;
    memset(grown + clients_len, 0, (n - clients_len) * sizeof(*clients));
    clients = grown;
    clients_len = n;
  }
  client_s *c = calloc(1, sizeof(*c));
  if (!c)
    return -1;
  c->uuid = uuid;
  clients[fd] = c;
  open_connections++;
  return 0;
}

static void send_file(client_s *c, const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    char msg[LINE_MAX_LEN + 64];
    int n = snprintf(msg, sizeof(msg), "ERR %s: %s\n", path, strerror(errno));
    if (fd >= 0)
      close(fd);
    sock_write(c->uuid, msg, (size_t)n);
    return;
  }
  /* The file is encrypted on its way out: with a write hook, libsock reads
   * it in BUFFER_FILE_READ_SIZE chunks and hands them to the hook. */
  sock_sendfile(c->uuid, fd, 0, (size_t)st.st_size);
}

static void on_line(client_s *c, char *line) {
  if (!strcmp(line, "QUIT")) {
    sock_write(c->uuid, "BYE\n", 4);
    c->closing = 1;
    tls_close(c->uuid);
  } else if (!strncmp(line, "FILE ", 5)) {
    send_file(c, line + 5);
    c->closing = 1;
    tls_close(c->uuid);
  } else if (!strcmp(line, "ECHO")) {
    c->raw = 1;
  } else if (!strcmp(line, "STOP")) {
    stop_requested = 1;
    sock_write(c->uuid, "STOPPING\n", 9);
    c->closing = 1;
    tls_close(c->uuid);
  } else {
    size_t n = strlen(line);
    line[n] = '\n';
    sock_write(c->uuid, line, n + 1);
  }
}

static void on_data(client_s *c, char *buf, size_t n) {
  size_t i = 0;
  while (i < n && !c->closing) {
    if (c->raw) {
      sock_write(c->uuid, buf + i, n - i);
      return;
    }
    char ch = buf[i++];
    if (ch == '\n' || c->len == LINE_MAX_LEN - 1) {
      c->line[c->len] = 0;
      if (c->len && c->line[c->len - 1] == '\r')
        c->line[c->len - 1] = 0;
      c->len = 0;
      on_line(c, c->line);
    } else {
      c->line[c->len++] = ch;
    }
  }
}

/* One readiness event: send what is queued, then read while nothing is
 * waiting to go out (the peer must read our answers before we take more of
 * its input: that is the back-pressure). Reading continues to EAGAIN, so
 * edge-triggered epoll never misses data OpenSSL already decrypted. */
static void on_event(intptr_t uuid) {
  static char buf[65536];
  if (sock_flush(uuid) < 0)
    return;
  for (;;) {
    client_s *c = client_of(uuid);
    if (!c || sock_packets_pending(uuid))
      return;
    ssize_t n = sock_read(uuid, buf, sizeof(buf));
    if (n <= 0)
      return; /* 0: nothing now; -1: closed (reactor_on_close ran) */
    if (!c->closing)
      on_data(c, buf, (size_t)n);
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s CERT.pem KEY.pem [PORT [ADDRESS]]\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  const char *port = argc > 3 ? argv[3] : "0";
  const char *address = argc > 4 ? argv[4] : "127.0.0.1";
  SSL_CTX *ctx = tls_server_ctx(argv[1], argv[2]);
  if (!ctx)
    return 1;
  intptr_t srv = sock_listen(address, port);
  if (srv == -1) {
    perror("sock_listen");
    return 1;
  }
  int srv_fd = sock_uuid2fd(srv);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  char host[INET6_ADDRSTRLEN] = "?";
  int bound_port = 0;
  if (getsockname(srv_fd, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET) {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
      bound_port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
      bound_port = ntohs(a->sin6_port);
    }
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)srv};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, srv_fd, &ev) != 0) {
    perror("epoll");
    return 1;
  }
  printf("listening on %s:%d\n", host, bound_port);
  fflush(stdout);

  struct epoll_event events[64];
  while (!stop_requested || open_connections > 0) {
    int n = epoll_wait(ep, events, 64, -1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      perror("epoll_wait");
      break;
    }
    for (int i = 0; i < n; i++) {
      intptr_t uuid = (intptr_t)events[i].data.u64;
      if (uuid == srv) {
        intptr_t c;
        while (!stop_requested && (c = sock_accept(srv)) != -1) {
          int fd = sock_uuid2fd(c);
          struct epoll_event cev = {
              .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
              .data.u64 = (uint64_t)c};
          if (add_client(c) || tls_attach_server(c, ctx) ||
              epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev)) {
            sock_force_close(c);
            continue;
          }
        }
        continue;
      }
      on_event(uuid);
    }
  }
  sock_force_close(srv);
  close(ep);
  free(clients);
  SSL_CTX_free(ctx);
  return 0;
}
