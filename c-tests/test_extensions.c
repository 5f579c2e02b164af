/* Extensions beyond the 0.2.2 API: per-connection limits on queued bytes
 * (sock_set_pending_limit, sock_set_default_pending_limit,
 * sock_pending_bytes), sock_peer_addr, sock_hijack. */
#define TEST_DEFINE_CALLBACKS
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>

#define KiB 1024u
#define MiB (1024u * 1024u)

/* Writes `chunk`-byte pieces until the library refuses one; returns the
 * bytes accepted, and the refusal's errno in *err (0: never refused). */
static size_t write_until_refused(intptr_t uuid, size_t chunk, size_t cap,
                                  int *err) {
  uint8_t *buf = calloc(1, chunk);
  size_t accepted = 0;
  *err = 0;
  while (accepted < cap) {
    if (sock_write(uuid, buf, chunk) != 0) {
      *err = errno;
      break;
    }
    accepted += chunk;
  }
  free(buf);
  return accepted;
}

/* A slow peer that never reads hits its limit: writes fail with ENOBUFS,
 * the connection stays open, and it takes writes again once it drained. */
TEST(pending_limit_refuses_writes_and_keeps_the_connection) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 16 * KiB) == 0);
  CHECK_EQ(sock_set_pending_limit(c.uuid, 64 * KiB), 0);
  int err;
  size_t got = write_until_refused(c.uuid, 4 * KiB, 64 * MiB, &err);
  CHECK_EQ(err, ENOBUFS);
  CHECK_GE(sock_pending_bytes(c.uuid), 64 * KiB);
  CHECK_LE(sock_pending_bytes(c.uuid), 64 * KiB + 4 * KiB);
  CHECK_EQ(sock_isvalid(c.uuid), 1);
  CHECK_EQ(close_count(c.uuid), 0);
  /* the peer reads everything; an edge-triggered loop flushes */
  drain_t d = {.fd = c.raw, .expect = got};
  drain_start(&d);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.fd = c.lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, c.lfd, &ev);
  int64_t end = now_ms() + 10000;
  while (sock_packets_pending(c.uuid) && now_ms() < end) {
    struct epoll_event e;
    if (epoll_wait(ep, &e, 1, 100) == 1)
      sock_flush(c.uuid);
  }
  close(ep);
  drain_join(&d);
  CHECK_EQ(d.got, got);
  CHECK_EQ(sock_pending_bytes(c.uuid), 0);
  CHECK_EQ(sock_write(c.uuid, "more", 4), 0);
  conn_force_close(&c);
}

typedef struct {
  intptr_t uuid;
  size_t n;
  atomic_int done;
  int rc;
} healthy_t;

static void *healthy_main(void *arg) {
  healthy_t *h = arg;
  uint8_t *buf = malloc(16 * KiB);
  fill_pattern(buf, 16 * KiB, 0, 5);
  h->rc = 0;
  for (size_t sent = 0; sent < h->n && h->rc == 0; sent += 16 * KiB) {
    fill_pattern(buf, 16 * KiB, sent, 5);
    h->rc = (int)sock_write(h->uuid, buf, 16 * KiB);
  }
  free(buf);
  atomic_store(&h->done, 1);
  return NULL;
}

/* 50 peers that never read, and a healthy one: with a default limit, the
 * slow ones cannot take the pool, so the healthy connection's writes never
 * wait for it (without a limit the slow ones would hold all of it and the
 * healthy writer would wait until they went away). */
TEST(slow_peers_cannot_take_the_whole_pool) {
  enum { SLOW = 50 };
  sock_set_packet_pool_size(256); /* 4 MiB shared by all */
  sock_set_default_pending_limit(32 * KiB);
  conn_t slow[SLOW];
  for (int i = 0; i < SLOW; i++) {
    REQUIRE(make_unix_pair_buf(&slow[i], 8 * KiB) == 0);
    int err;
    write_until_refused(slow[i].uuid, 4 * KiB, 64 * MiB, &err);
    CHECK_EQ(err, ENOBUFS);
  }
  sock_set_default_pending_limit(0);
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  drain_t d = {.fd = c.raw, .expect = 8 * MiB, .check = 1, .seed = 5};
  drain_start(&d);
  healthy_t h = {.uuid = c.uuid, .n = 8 * MiB};
  pthread_t th;
  pthread_create(&th, NULL, healthy_main, &h);
  /* the healthy connection is flushed by its writes and an event loop */
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.fd = c.lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, c.lfd, &ev);
  int64_t end = now_ms() + 20000;
  while ((!atomic_load(&h.done) || sock_packets_pending(c.uuid)) &&
         now_ms() < end) {
    struct epoll_event e;
    if (epoll_wait(ep, &e, 1, 100) == 1)
      sock_flush(c.uuid);
  }
  close(ep);
  CHECK_MSG(atomic_load(&h.done), "the healthy writer still waits");
  for (int i = 0; i < SLOW; i++)
    conn_force_close(&slow[i]); /* releases a writer that waits */
  pthread_join(th, NULL);
  CHECK_EQ(h.rc, 0);
  drain_join(&d);
  CHECK_EQ(d.got, 8 * MiB);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  conn_force_close(&c);
}

/* Without a limit, today's behaviour: a slow peer's writes are accepted as
 * long as the pool has room. */
TEST(no_limit_by_default) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 8 * KiB) == 0);
  int err;
  size_t got = write_until_refused(c.uuid, 4 * KiB, 1 * MiB, &err);
  CHECK_EQ(err, 0);
  CHECK_EQ(got, 1 * MiB);
  CHECK_GT(sock_pending_bytes(c.uuid), 512 * KiB);
  CHECK_EQ(sock_set_pending_limit(-1, 1), -1);
  CHECK_EQ(errno, ENODEV);
  CHECK_EQ(sock_pending_bytes(-1), 0);
  conn_force_close(&c);
}

TEST(peer_addr_of_tcp_and_unix_connections) {
  char port[16];
  intptr_t srv, cli, acc;
  REQUIRE(lib_tcp_trio(port, &srv, &cli, &acc) == 0);
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  CHECK_EQ(sock_peer_addr(acc, (struct sockaddr *)&ss, &len), 0);
  CHECK_EQ(ss.ss_family, AF_INET);
  struct sockaddr_in mine;
  socklen_t ml = sizeof(mine);
  getsockname(sock_uuid2fd(cli), (struct sockaddr *)&mine, &ml);
  struct sockaddr_in *peer = (struct sockaddr_in *)&ss;
  CHECK_EQ(peer->sin_port, mine.sin_port);
  CHECK_EQ(ntohl(peer->sin_addr.s_addr), INADDR_LOOPBACK);
  CHECK_EQ(len, sizeof(struct sockaddr_in));
  /* errors */
  CHECK_EQ(sock_peer_addr(acc, NULL, &len), -1);
  CHECK_EQ(errno, EINVAL);
  CHECK_EQ(sock_peer_addr(-1, (struct sockaddr *)&ss, &len), -1);
  CHECK_EQ(errno, ENODEV);
  len = sizeof(ss);
  CHECK_EQ(sock_peer_addr(srv, (struct sockaddr *)&ss, &len), -1);
  CHECK_EQ(errno, ENOTCONN);
  lib_tcp_trio_close(srv, cli, acc);
  conn_t u;
  REQUIRE(make_unix_pair(&u) == 0);
  len = sizeof(ss);
  CHECK_EQ(sock_peer_addr(u.uuid, (struct sockaddr *)&ss, &len), 0);
  CHECK_EQ(ss.ss_family, AF_UNIX);
  conn_force_close(&u);
}

static atomic_int cleared;
static void on_clear(intptr_t uuid, sock_rw_hook_s *h) {
  (void)uuid;
  (void)h;
  atomic_fetch_add(&cleared, 1);
}

TEST(hijack_hands_the_fd_back) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  static sock_rw_hook_s hooks = {.on_clear = on_clear};
  REQUIRE(sock_rw_hook_set(c.uuid, &hooks) == 0);
  CHECK_EQ(sock_write(c.uuid, "before", 6), 0);
  int fd = sock_hijack(c.uuid);
  CHECK_EQ(fd, c.lfd);
  CHECK_EQ(sock_isvalid(c.uuid), 0);
  CHECK_EQ(sock_fd2uuid(c.lfd), -1);
  CHECK_EQ(close_count(c.uuid), 0);
  CHECK_EQ(remove_count(c.uuid), 0);
  CHECK_EQ(atomic_load(&cleared), 1);
  CHECK(fd_is_open(c.lfd));
  CHECK_EQ(write(fd, "after", 5), 5);
  char b[11];
  CHECK_EQ(raw_read_n(c.raw, b, 11, 5000, NULL), 11);
  CHECK(memcmp(b, "beforeafter", 11) == 0);
  CHECK_EQ(sock_hijack(c.uuid), -1);
  CHECK_EQ(errno, ENODEV);
  /* the fd can be registered again */
  intptr_t again = sock_open(fd);
  CHECK(again != -1 && again != c.uuid);
  sock_force_close(again);
  close(c.raw);
}

/* Data still queued: the hijack is refused, nothing changes, and it
 * succeeds once the data went out. */
TEST(hijack_refused_while_data_is_queued) {
  conn_t c;
  REQUIRE(make_unix_pair_buf(&c, 8 * KiB) == 0);
  write_pattern(c.uuid, 1 * MiB, 9);
  CHECK_EQ(sock_hijack(c.uuid), -1);
  CHECK_EQ(errno, EAGAIN);
  CHECK_EQ(sock_isvalid(c.uuid), 1);
  drain_t d = {.fd = c.raw, .expect = 1 * MiB, .check = 1, .seed = 9};
  drain_start(&d);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.fd = c.lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, c.lfd, &ev);
  int fd = -1;
  int64_t end = now_ms() + 10000;
  while (fd < 0 && now_ms() < end) {
    struct epoll_event e;
    if (epoll_wait(ep, &e, 1, 100) == 1)
      fd = sock_hijack(c.uuid); /* flushes first */
  }
  close(ep);
  drain_join(&d);
  CHECK_EQ(fd, c.lfd);
  CHECK_EQ(d.got, 1 * MiB);
  CHECK_EQ(d.bad_at, SIZE_MAX);
  CHECK_EQ(close_count(c.uuid), 0);
  close(fd);
  close(c.raw);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(pending_limit_refuses_writes_and_keeps_the_connection);
  RUN(slow_peers_cannot_take_the_whole_pool);
  RUN(no_limit_by_default);
  RUN(peer_addr_of_tcp_and_unix_connections);
  RUN(hijack_hands_the_fd_back);
  RUN(hijack_refused_while_data_is_queued);
  return HARNESS_END();
}
