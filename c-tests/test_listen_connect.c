/* sock_listen / sock_accept / sock_connect over TCP (IPv4, IPv6) and Unix
 * domain sockets. */
#define TEST_DEFINE_CALLBACKS
#include "util.h"

#include <sys/stat.h>

static char tmpdir[256];

static int make_tmpdir(void) {
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/libsock-lc-XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static void rm_tmpdir(const char *file) {
  char p[512];
  if (file) {
    snprintf(p, sizeof(p), "%s/%s", tmpdir, file);
    unlink(p);
  }
  rmdir(tmpdir);
}

static int sock_opt(int fd, int level, int opt) {
  int v = 0;
  socklen_t l = sizeof(v);
  if (getsockopt(fd, level, opt, &v, &l))
    return -1;
  return v;
}

/* exchange data both ways between two library connections */
static void exchange(intptr_t a, intptr_t b) {
  char buf[64] = {0};
  CHECK_EQ(sock_write(a, "hello from a", 12), 0);
  sock_flush_strong(a);
  CHECK_EQ(lib_read_n(b, buf, 12, 5000), 12);
  CHECK(!memcmp(buf, "hello from a", 12));
  CHECK_EQ(sock_write(b, "and b answers", 13), 0);
  sock_flush_strong(b);
  memset(buf, 0, sizeof(buf));
  CHECK_EQ(lib_read_n(a, buf, 13, 5000), 13);
  CHECK(!memcmp(buf, "and b answers", 13));
}

static void check_listener(intptr_t srv) {
  int fd = sock_uuid2fd(srv);
  CHECK(is_nonblocking(fd));
  CHECK_EQ(sock_opt(fd, SOL_SOCKET, SO_ACCEPTCONN), 1);
  CHECK_EQ(sock_isvalid(srv), 1);
  CHECK_EQ(sock_fd2uuid(fd), srv);
}

static void tcp_roundtrip(const char *listen_addr, const char *connect_addr,
                          int family) {
  char port[16];
  REQUIRE(free_port(family, port) == 0);
  errno = 0;
  intptr_t srv = sock_listen(listen_addr, port);
  REQUIRE_NE(srv, -1);
  check_listener(srv);
  int sfd = sock_uuid2fd(srv);
  CHECK_EQ(sock_opt(sfd, SOL_SOCKET, SO_REUSEADDR) != 0, 1);
  if (listen_addr) {
    struct sockaddr_storage ss;
    socklen_t l = sizeof(ss);
    getsockname(sfd, (struct sockaddr *)&ss, &l);
    CHECK_EQ(ss.ss_family, family);
  }
  /* nothing pending yet */
  CHECK_EQ(sock_accept(srv), -1);
  CHECK_EQ(sock_isvalid(srv), 1);

  char addr[64];
  snprintf(addr, sizeof(addr), "%s", connect_addr);
  intptr_t cli = sock_connect(addr, port);
  REQUIRE_NE(cli, -1);
  CHECK_EQ(sock_isvalid(cli), 1);
  CHECK(is_nonblocking(sock_uuid2fd(cli)));
  intptr_t acc = accept_wait(srv, 5000);
  REQUIRE_NE(acc, -1);
  CHECK_EQ(sock_isvalid(acc), 1);
  CHECK(is_nonblocking(sock_uuid2fd(acc)));
  CHECK(acc != cli && acc != srv && cli != srv);
  CHECK_EQ(wait_connected(cli, 5000), 0);
  {
    struct sockaddr_storage ss;
    socklen_t l = sizeof(ss);
    getpeername(sock_uuid2fd(cli), (struct sockaddr *)&ss, &l);
    CHECK_EQ(ss.ss_family, family);
  }
  exchange(cli, acc);
  /* only one connection was pending */
  CHECK_EQ(sock_accept(srv), -1);
  sock_close(cli);
  sock_close(acc);
  sock_close(srv);
  CHECK_EQ(sock_isvalid(srv), 0);
  CHECK_EQ(close_count(srv), 1);
  CHECK_EQ(close_count(cli), 1);
  CHECK_EQ(close_count(acc), 1);
}

TEST(tcp_ipv4) { tcp_roundtrip("127.0.0.1", "127.0.0.1", AF_INET); }

TEST(tcp_any_address) { tcp_roundtrip(NULL, "127.0.0.1", AF_INET); }

/* The IPv6 loopback is usable (bind ::1). */
static int have_ipv6_loopback(void) {
  int s = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  int ok = s >= 0 && bind(s, (struct sockaddr *)&a, sizeof(a)) == 0;
  if (s >= 0)
    close(s);
  return ok;
}

/* A port free for IPv4 and IPv6 at once (a dual-stack probe bound to port 0
 * on ::), or a free IPv4 port where there is no IPv6. */
static int free_port_any(char out[16]) {
  int s = socket(AF_INET6, SOCK_STREAM, 0);
  if (s < 0)
    return free_port(AF_INET, out);
  int off = 0;
  setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
  socklen_t l = sizeof(a);
  if (bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      getsockname(s, (struct sockaddr *)&a, &l) != 0) {
    close(s);
    return free_port(AF_INET, out);
  }
  close(s);
  snprintf(out, 16, "%d", ntohs(a.sin6_port));
  return 0;
}

/* connect to host:port, accept on srv, exchange data both ways */
static void connect_and_exchange(intptr_t srv, const char *host,
                                 const char *port) {
  char addr[64];
  snprintf(addr, sizeof(addr), "%s", host);
  char port_copy[16];
  snprintf(port_copy, sizeof(port_copy), "%s", port);
  intptr_t cli = sock_connect(addr, port_copy);
  CHECK_MSG(cli != -1, "connect to %s: %s", host, strerror(errno));
  if (cli == -1)
    return;
  CHECK_MSG(wait_connected(cli, 5000) == 0, "%s: connection refused", host);
  intptr_t acc = accept_wait(srv, 5000);
  CHECK_MSG(acc != -1, "%s: nothing to accept", host);
  if (acc != -1 && !TEST_FAILED()) {
    exchange(cli, acc);
    sock_force_close(acc);
  }
  sock_force_close(cli);
}

/* "Any address" is IPv4 and IPv6: the listener binds :: with IPV6_V6ONLY
 * off (IPv4 clients arrive as ::ffff:a.b.c.d), or 0.0.0.0 where the machine
 * has no IPv6. */
TEST(tcp_any_address_ipv4_and_ipv6) {
  char port[16];
  REQUIRE(free_port_any(port) == 0);
  intptr_t srv = sock_listen(NULL, port);
  REQUIRE_NE(srv, -1);
  check_listener(srv);
  connect_and_exchange(srv, "127.0.0.1", port);
  if (!have_ipv6_loopback()) {
    sock_force_close(srv);
    SKIP("::1 is unavailable: only IPv4 was checked");
  }
  connect_and_exchange(srv, "::1", port);
  sock_force_close(srv);
}

TEST(tcp_ipv6) {
  if (!have_ipv6_loopback())
    SKIP("::1 is unavailable");
  tcp_roundtrip("::1", "::1", AF_INET6);
}

/* Numeric addresses are used as they are (no resolver); the forms only the
 * C library's resolver accepts ("127.1") still work through it. Either
 * way the listener is bound to exactly that address and port. */
TEST(tcp_numeric_address_forms) {
  static const char *const forms[] = {"127.0.0.1", "127.1", "127.0.0.2"};
  for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
    char port[16];
    REQUIRE(free_port(AF_INET, port) == 0);
    intptr_t srv = sock_listen(forms[i], port);
    CHECK_MSG(srv != -1, "sock_listen(\"%s\", %s): errno %d", forms[i], port,
              errno);
    if (srv == -1)
      continue;
    struct sockaddr_in a;
    socklen_t l = sizeof(a);
    CHECK_EQ(getsockname(sock_uuid2fd(srv), (struct sockaddr *)&a, &l), 0);
    CHECK_EQ(a.sin_family, AF_INET);
    CHECK_EQ(ntohs(a.sin_port), (unsigned)atoi(port));
    CHECK_EQ(ntohl(a.sin_addr.s_addr),
             i == 2 ? 0x7f000002u : 0x7f000001u);
    char host[16];
    snprintf(host, sizeof(host), "%s", forms[i]);
    intptr_t cli = sock_connect(host, port);
    CHECK(cli != -1);
    intptr_t acc = accept_wait(srv, 5000);
    CHECK(acc != -1);
    CHECK_EQ(wait_connected(cli, 5000), 0);
    sock_force_close(cli);
    sock_force_close(acc);
    sock_force_close(srv);
  }
}

TEST(tcp_localhost_name) {
  /* names are resolved: listen on the name, connect to the name */
  char port[16];
  REQUIRE(free_port(AF_INET, port) == 0);
  intptr_t srv = sock_listen("localhost", port);
  REQUIRE_NE(srv, -1);
  char host[] = "localhost";
  intptr_t cli = sock_connect(host, port);
  REQUIRE_NE(cli, -1);
  intptr_t acc = accept_wait(srv, 5000);
  REQUIRE_NE(acc, -1);
  exchange(acc, cli);
  sock_force_close(cli);
  sock_force_close(acc);
  sock_force_close(srv);
}

static void unix_roundtrip(const char *port_arg) {
  REQUIRE(make_tmpdir() == 0);
  char path[400];
  snprintf(path, sizeof(path), "%s/sock", tmpdir);
  intptr_t srv = sock_listen(path, port_arg);
  REQUIRE_NE(srv, -1);
  check_listener(srv);
  struct stat st;
  CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
  struct sockaddr_un sun;
  socklen_t l = sizeof(sun);
  getsockname(sock_uuid2fd(srv), (struct sockaddr *)&sun, &l);
  CHECK_EQ(sun.sun_family, AF_UNIX);
  CHECK(!strcmp(sun.sun_path, path));
  CHECK_EQ(sock_accept(srv), -1);

  char *port_copy = port_arg ? strdup(port_arg) : NULL;
  intptr_t cli = sock_connect(path, port_copy);
  free(port_copy);
  REQUIRE_NE(cli, -1);
  intptr_t acc = accept_wait(srv, 5000);
  REQUIRE_NE(acc, -1);
  CHECK(is_nonblocking(sock_uuid2fd(acc)));
  CHECK(is_nonblocking(sock_uuid2fd(cli)));
  exchange(cli, acc);
  sock_close(cli);
  sock_close(acc);
  sock_close(srv);
  CHECK_EQ(close_count(srv), 1);
  rm_tmpdir("sock");
}

TEST(unix_port_null) { unix_roundtrip(NULL); }
TEST(unix_port_empty) { unix_roundtrip(""); }

/* Accepts on srv until a connection carries `msg` (connections that carry
 * nothing, e.g. a probe closed at once, are dropped). 1 when one did. */
static int accept_one_carrying(intptr_t srv, const char *msg, size_t n) {
  int64_t end = now_ms() + 5000;
  while (now_ms() < end) {
    intptr_t a = accept_wait(srv, (int)(end - now_ms()));
    if (a == -1)
      return 0;
    char b[64];
    size_t got = lib_read_n(a, b, n, 2000);
    sock_force_close(a);
    if (got == n && !memcmp(b, msg, n))
      return 1;
  }
  return 0;
}

/* sock_listen on a Unix path removes a stale socket file only: when a
 * server answers there, the call fails with EADDRINUSE and that server
 * keeps its path; once nobody listens, the file is replaced; a file of
 * another kind is never removed. */
TEST(unix_listen_leaves_a_live_servers_socket) {
  REQUIRE(make_tmpdir() == 0);
  char path[400];
  snprintf(path, sizeof(path), "%s/sock", tmpdir);
  intptr_t srv = sock_listen(path, NULL);
  REQUIRE_NE(srv, -1);
  errno = 0;
  intptr_t srv2 = sock_listen(path, NULL);
  CHECK_EQ(srv2, -1);
  CHECK_EQ(errno, EADDRINUSE);
  if (srv2 != -1)
    sock_force_close(srv2);
  /* the live server still gets the connections made to its path */
  intptr_t cli = sock_connect(path, NULL);
  CHECK_MSG(cli != -1, "connect to the live server's path: %s",
            strerror(errno));
  if (cli != -1) {
    CHECK_EQ(sock_write(cli, "ping", 4), 0);
    CHECK_MSG(accept_one_carrying(srv, "ping", 4),
              "the live server lost its path");
    sock_force_close(cli);
  }
  /* nobody listens any more: the stale file is replaced */
  sock_force_close(srv);
  struct stat st;
  REQUIRE(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
  intptr_t srv3 = sock_listen(path, NULL);
  CHECK_MSG(srv3 != -1, "stale socket file not replaced: %s", strerror(errno));
  if (srv3 != -1) {
    cli = sock_connect(path, NULL);
    CHECK_NE(cli, -1);
    CHECK_EQ(sock_write(cli, "pong", 4), 0);
    CHECK(accept_one_carrying(srv3, "pong", 4));
    sock_force_close(cli);
    sock_force_close(srv3);
  }
  /* a regular file is never removed */
  unlink(path);
  int f = open(path, O_CREAT | O_WRONLY, 0600);
  REQUIRE(f >= 0);
  close(f);
  errno = 0;
  CHECK_EQ(sock_listen(path, NULL), -1);
  CHECK_EQ(errno, EADDRINUSE);
  CHECK(stat(path, &st) == 0 && S_ISREG(st.st_mode));
  rm_tmpdir("sock");
}

TEST(accept_many_backlog) {
  /* backlog SOMAXCONN: many clients complete their handshake before the
   * first accept */
  int somax = 128;
  FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
  if (f) {
    if (fscanf(f, "%d", &somax) != 1)
      somax = 128;
    fclose(f);
  }
  int n = somax > 200 ? 150 : somax / 2;
  char port[16];
  intptr_t srv;
  REQUIRE(lib_tcp_listen(port, &srv) == 0);
  intptr_t *cl = calloc((size_t)n, sizeof(*cl));
  char host[] = "127.0.0.1";
  for (int i = 0; i < n; i++) {
    cl[i] = sock_connect(host, port);
    REQUIRE_NE(cl[i], -1);
  }
  /* every client connects (handshake done by the kernel's backlog) */
  int connected = 0;
  for (int i = 0; i < n; i++)
    connected += wait_connected(cl[i], 3000) == 0;
  CHECK_EQ(connected, n);
  int accepted = 0;
  int64_t end = now_ms() + 10000;
  while (accepted < n && now_ms() < end) {
    intptr_t a = sock_accept(srv);
    if (a == -1) {
      wait_fd(sock_uuid2fd(srv), POLLIN, 100);
      continue;
    }
    accepted++;
    sock_force_close(a);
  }
  CHECK_EQ(accepted, n);
  for (int i = 0; i < n; i++)
    sock_force_close(cl[i]);
  sock_force_close(srv);
  free(cl);
}

TEST(listen_port_in_use) {
  char port[16];
  intptr_t srv;
  REQUIRE(lib_tcp_listen(port, &srv) == 0);
  errno = 0;
  intptr_t srv2 = sock_listen("127.0.0.1", port);
  CHECK_EQ(srv2, -1);
  CHECK_NE(errno, 0);
  CHECK_EQ(sock_isvalid(srv), 1);
  /* first listener still works */
  char host[] = "127.0.0.1";
  intptr_t c = sock_connect(host, port);
  CHECK_NE(c, -1);
  CHECK_NE(accept_wait(srv, 5000), -1);
  sock_force_close(c);
  sock_force_close(srv);
}

TEST(listen_reuseaddr_after_time_wait) {
  char port[16];
  intptr_t srv, c, a;
  REQUIRE(lib_tcp_trio(port, &srv, &c, &a) == 0);
  REQUIRE(wait_connected(c, 5000) == 0);
  /* server side closes first: its port goes into TIME_WAIT */
  sock_close(a);
  ssize_t r = read_until_nonzero(c, 5000);
  CHECK_EQ(r, -1); /* client saw end of stream and closed */
  CHECK_EQ(sock_isvalid(c), 0);
  sock_close(srv);
  CHECK_EQ(sock_isvalid(srv), 0);
  errno = 0;
  intptr_t srv2 = sock_listen("127.0.0.1", port);
  CHECK_MSG(srv2 != -1, "re-listen failed: %s (SO_REUSEADDR missing?)",
            strerror(errno));
  if (srv2 != -1)
    sock_force_close(srv2);
}

TEST(connect_refused) {
  char port[16];
  REQUIRE(free_port(AF_INET, port) == 0);
  char host[] = "127.0.0.1";
  intptr_t c = sock_connect(host, port);
  if (c == -1)
    return; /* refused immediately: fine */
  /* refused asynchronously: the connection fails on use */
  int64_t end = now_ms() + 5000;
  char b;
  while (sock_isvalid(c) && now_ms() < end) {
    wait_fd(sock_uuid2fd(c), POLLIN | POLLOUT, 100);
    if (sock_read(c, &b, 1) == -1)
      break;
  }
  CHECK_EQ(sock_isvalid(c), 0);
  CHECK_EQ(close_count(c), 1);
}

/* libsock.h, sock_connect: a connection that fails after the call returned
 * is reported by the next call that meets the error (-1 with the error),
 * the connection is closed once, and later calls answer ENODEV. */
TEST(connect_failure_reported_by_the_next_write) {
  char port[16];
  REQUIRE(free_port(AF_INET, port) == 0);
  char host[] = "127.0.0.1";
  errno = 0;
  intptr_t c = sock_connect(host, port);
  if (c == -1) { /* refused at once: reported by sock_connect itself */
    CHECK_EQ(errno, ECONNREFUSED);
    return;
  }
  /* the program's wait for the connection: writability */
  REQUIRE(wait_fd(sock_uuid2fd(c), POLLOUT, 5000) & POLLOUT);
  errno = 0;
  CHECK_EQ(sock_write(c, "x", 1), -1);
  CHECK_EQ(errno, ECONNREFUSED);
  CHECK_EQ(close_count(c), 1);
  CHECK_EQ(sock_isvalid(c), 0);
  errno = 0;
  CHECK_EQ(sock_write(c, "x", 1), -1);
  CHECK_EQ(errno, ENODEV);
  CHECK_EQ(close_count(c), 1);
}

/* ... and SO_ERROR, read when the fd is writable, tells the program first;
 * it then closes the connection itself. */
TEST(connect_failure_seen_through_so_error) {
  char port[16];
  REQUIRE(free_port(AF_INET, port) == 0);
  char host[] = "127.0.0.1";
  intptr_t c = sock_connect(host, port);
  if (c == -1)
    return; /* refused at once (checked above) */
  int fd = sock_uuid2fd(c);
  REQUIRE(wait_fd(fd, POLLOUT, 5000) & POLLOUT);
  CHECK_EQ(sock_opt(fd, SOL_SOCKET, SO_ERROR), ECONNREFUSED);
  sock_force_close(c);
  CHECK_EQ(close_count(c), 1);
  CHECK_EQ(sock_isvalid(c), 0);
}

TEST(unix_connect_missing_path) {
  REQUIRE(make_tmpdir() == 0);
  char path[400];
  snprintf(path, sizeof(path), "%s/nothing-here", tmpdir);
  intptr_t c = sock_connect(path, NULL);
  CHECK_EQ(c, -1);
  rm_tmpdir(NULL);
  CHECK_EQ(total_close_events(), 0);
}

TEST(client_server_many_messages) {
  /* 2000 small request/response rounds over loopback through the library */
  char port[16];
  intptr_t srv, c, a;
  REQUIRE(lib_tcp_trio(port, &srv, &c, &a) == 0);
  for (int i = 0; i < 2000 && !TEST_FAILED(); i++) {
    char q[32], r[32];
    int n = snprintf(q, sizeof(q), "req-%06d", i);
    CHECK_EQ(sock_write(c, q, (size_t)n), 0);
    sock_flush(c);
    CHECK_EQ(lib_read_n(a, r, (size_t)n, 5000), n);
    CHECK(!memcmp(q, r, (size_t)n));
    r[0] = 'R';
    CHECK_EQ(sock_write(a, r, (size_t)n), 0);
    sock_flush(a);
    CHECK_EQ(lib_read_n(c, q, (size_t)n, 5000), n);
    CHECK_EQ(q[0], 'R');
  }
  lib_tcp_trio_close(srv, c, a);
}

TEST(write_before_connect_completes) {
  /* sock_connect returns at once; data written immediately is sent when
   * the connection completes */
  char port[16];
  intptr_t srv;
  REQUIRE(lib_tcp_listen(port, &srv) == 0);
  char host[] = "127.0.0.1";
  intptr_t c = sock_connect(host, port);
  REQUIRE_NE(c, -1);
  CHECK_EQ(sock_write(c, "early bird", 10), 0);
  intptr_t a = accept_wait(srv, 5000);
  REQUIRE_NE(a, -1);
  sock_flush_strong(c);
  char b[16] = {0};
  CHECK_EQ(lib_read_n(a, b, 10, 5000), 10);
  CHECK(!memcmp(b, "early bird", 10));
  lib_tcp_trio_close(srv, c, a);
}

TEST(sock_open_raw_listener) {
  /* any fd through sock_open: a listening socket made by the program */
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof(a);
  REQUIRE(bind(ls, (struct sockaddr *)&a, sizeof(a)) == 0);
  REQUIRE(listen(ls, 16) == 0);
  getsockname(ls, (struct sockaddr *)&a, &al);
  sock_set_non_block(ls);
  intptr_t srv = sock_open(ls);
  REQUIRE_NE(srv, -1);
  CHECK_EQ(sock_accept(srv), -1);
  int cs = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(connect(cs, (struct sockaddr *)&a, sizeof(a)) == 0);
  intptr_t acc = accept_wait(srv, 5000);
  REQUIRE_NE(acc, -1);
  CHECK(is_nonblocking(sock_uuid2fd(acc)));
  CHECK_EQ(sock_write(acc, "via sock_open", 13), 0);
  sock_flush_strong(acc);
  char b[16];
  CHECK_EQ(raw_read_n(cs, b, 13, 5000, NULL), 13);
  CHECK(!memcmp(b, "via sock_open", 13));
  sock_force_close(acc);
  sock_force_close(srv);
  close(cs);
}

/* Every kind of write to a listening socket's UUID is refused with
 * ENOTCONN, releases what it was given, and leaves the listener open. */
static void stray_writes(intptr_t srv) {
  errno = 0;
  CHECK_EQ(sock_write(srv, "stray", 5), -1);
  CHECK_EQ(errno, ENOTCONN);
  errno = 0;
  CHECK_EQ(sock_write2(.fduuid = srv, .buffer = "u", .length = 1, .urgent = 1),
           -1);
  CHECK_EQ(errno, ENOTCONN);
  char *m = malloc(32);
  memset(m, 'm', 32);
  errno = 0;
  CHECK_EQ(sock_write2(.fduuid = srv, .buffer = m, .length = 32, .move = 1),
           -1); /* m is the library's (freed) */
  CHECK_EQ(errno, ENOTCONN);
  int f = make_temp_file(64, 3);
  struct stat st;
  REQUIRE(fstat(f, &st) == 0);
  errno = 0;
  CHECK_EQ(sock_sendfile(srv, f, 0, 64), -1);
  CHECK_EQ(errno, ENOTCONN);
  CHECK(!fd_is_same_file(f, &st)); /* closed, as on every failure */
  sock_packet_s *p = sock_checkout_packet();
  REQUIRE(p != NULL);
  memcpy(p->buffer, "packet", 6);
  p->length = 6;
  errno = 0;
  CHECK_EQ(sock_send_packet(srv, p), -1);
  CHECK_EQ(errno, ENOTCONN);
  CHECK_EQ(sock_isvalid(srv), 1);
  CHECK_EQ(close_count(srv), 0);
  CHECK_EQ(sock_packets_pending(srv), 0);
  CHECK_EQ(sock_flush(srv), 0);
}

/* A stray write to a listening socket's UUID (a TCP and a Unix listener of
 * sock_listen, a listening socket given to sock_open) is refused, and the
 * listener still accepts. */
TEST(write_to_a_listener_is_refused) {
  char port[16];
  intptr_t tcp;
  REQUIRE(lib_tcp_listen(port, &tcp) == 0);
  stray_writes(tcp);
  char host[] = "127.0.0.1";
  intptr_t cli = sock_connect(host, port);
  CHECK_NE(cli, -1);
  CHECK_NE(accept_wait(tcp, 5000), -1);
  sock_force_close(cli);
  sock_force_close(tcp);

  REQUIRE(make_tmpdir() == 0);
  char path[400];
  snprintf(path, sizeof(path), "%s/sock", tmpdir);
  intptr_t unx = sock_listen(path, NULL);
  REQUIRE_NE(unx, -1);
  stray_writes(unx);
  cli = sock_connect(path, NULL);
  CHECK_NE(cli, -1);
  CHECK_NE(accept_wait(unx, 5000), -1);
  sock_force_close(cli);
  sock_force_close(unx);
  rm_tmpdir("sock");

  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof(a);
  REQUIRE(bind(ls, (struct sockaddr *)&a, sizeof(a)) == 0);
  REQUIRE(listen(ls, 16) == 0);
  REQUIRE(getsockname(ls, (struct sockaddr *)&a, &al) == 0);
  sock_set_non_block(ls);
  intptr_t raw = sock_open(ls);
  REQUIRE_NE(raw, -1);
  stray_writes(raw);
  int cs = socket(AF_INET, SOCK_STREAM, 0);
  CHECK_EQ(connect(cs, (struct sockaddr *)&a, sizeof(a)), 0);
  CHECK_NE(accept_wait(raw, 5000), -1);
  close(cs);
  sock_force_close(raw);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(tcp_ipv4);
  RUN(tcp_any_address);
  RUN(tcp_ipv6);
  RUN(tcp_any_address_ipv4_and_ipv6);
  RUN(tcp_numeric_address_forms);
  RUN(tcp_localhost_name);
  RUN(unix_port_null);
  RUN(unix_port_empty);
  RUN(unix_listen_leaves_a_live_servers_socket);
  RUN(accept_many_backlog);
  RUN(listen_port_in_use);
  RUN(listen_reuseaddr_after_time_wait);
  RUN(connect_refused);
  RUN(connect_failure_reported_by_the_next_write);
  RUN(connect_failure_seen_through_so_error);
  RUN(unix_connect_missing_path);
  RUN(client_server_many_messages);
  RUN(write_before_connect_completes);
  RUN(sock_open_raw_listener);
  RUN(write_to_a_listener_is_refused);
  return HARNESS_END();
}
