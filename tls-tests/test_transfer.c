/*
 * test_transfer.c - a TLS client built on libsock (tls_attach_client)
 * against the example server (examples/tls_server):
 *   b1: 64 MiB sent with sock_write and echoed back arrive byte-exact;
 *   b2: a 64 MiB file the server sends with sock_sendfile arrives
 *       byte-exact, followed by the server's close_notify;
 *   b3: one 64 MiB sock_write from a worker thread (it blocks, flushing,
 *       until the pool takes it all) while the main thread reads the echo:
 *       the hooks run on two threads at once.
 *
 *   test_transfer PORT CA.pem WORKDIR [MiB]
 */
#include "tls_test.h"

static SSL_CTX *cctx;
static const char *port;

static intptr_t open_client(tt_loop_s *l) {
  intptr_t uuid = sock_connect("127.0.0.1", (char *)port);
  if (uuid == -1)
    return -1;
  tt_track(uuid);
  if (tls_attach_client(uuid, cctx, "localhost") || loop_add(l, uuid)) {
    sock_force_close(uuid);
    return -1;
  }
  return uuid;
}

typedef struct {
  uint64_t got;
  uint64_t bad_at; /* first mismatch, UINT64_MAX if none */
  uint32_t seed;
} rx_s;

static void rx_sink(void *ctx, const uint8_t *b, size_t n) {
  rx_s *r = ctx;
  if (r->bad_at == UINT64_MAX) {
    size_t m = pat_check(b, n, r->got, r->seed);
    if (m != n)
      r->bad_at = r->got + m;
  }
  r->got += n;
}

/* b1: ECHO mode, `total` bytes out (sock_write, 256 KiB at a time, more
 * whenever the queue is empty) and back. */
static void test_echo(uint64_t total) {
  tt_loop_s l;
  loop_init(&l);
  intptr_t uuid = open_client(&l);
  if (!check("b1 client connects and attaches", uuid != -1, "%s",
             strerror(errno)))
    return;
  static uint8_t chunk[256 * 1024];
  rx_s rx = {.bad_at = UINT64_MAX, .seed = 11};
  uint64_t sent = 0;
  int write_err = 0, closed_early = 0;
  int64_t deadline = now_ms() + tt_timeout_ms(180000);
  sock_write(uuid, "ECHO\n", 5);
  while (rx.got < total && now_ms() < deadline) {
    while (sent < total && !sock_packets_pending(uuid)) {
      size_t k = total - sent < sizeof(chunk) ? (size_t)(total - sent)
                                               : sizeof(chunk);
      pat_fill(chunk, k, sent, rx.seed);
      if (sock_write(uuid, chunk, k)) {
        write_err = errno;
        break;
      }
      sent += k;
    }
    if (write_err)
      break;
    intptr_t ev[8];
    int n = loop_wait(&l, ev, 8, 1000);
    (void)n;
    if (drain(uuid, rx_sink, &rx) < 0) {
      closed_early = 1;
      break;
    }
    sock_flush(uuid);
  }
  check("b1 64 MiB echoed back byte-exact",
        rx.got == total && rx.bad_at == UINT64_MAX && !write_err &&
            !closed_early,
        "sent %llu got %llu of %llu, first mismatch %lld, write errno %d, "
        "closed early %d",
        (unsigned long long)sent, (unsigned long long)rx.got,
        (unsigned long long)total,
        rx.bad_at == UINT64_MAX ? -1LL : (long long)rx.bad_at, write_err,
        closed_early);
  tls_info_s info;
  int have = tls_info(uuid, &info) == 0;
  check("b1 session is TLS 1.3", have && info.tls_version == TLS1_3_VERSION,
        "version 0x%x", have ? info.tls_version : 0);
  tls_close(uuid);
  while (closes_of(uuid) == 0 && now_ms() < deadline) {
    intptr_t ev[8];
    loop_wait(&l, ev, 8, 1000);
    drain(uuid, NULL, NULL);
    sock_flush(uuid);
  }
  const tls_info_s *fin = finish_of(uuid);
  check("b1 tls_close: close_notify sent, one on_close, session freed",
        closes_of(uuid) == 1 && finishes_of(uuid) == 1 && fin &&
            fin->sent_close_notify,
        "on_close %d, on_clear %d, close_notify sent %d", closes_of(uuid),
        finishes_of(uuid), fin ? fin->sent_close_notify : -1);
  loop_close(&l);
}

/* b2: FILE mode: the server sock_sendfile()s `path` (total bytes). */
static void test_file(const char *path, uint64_t total) {
  tt_loop_s l;
  loop_init(&l);
  intptr_t uuid = open_client(&l);
  if (!check("b2 client connects and attaches", uuid != -1, "%s",
             strerror(errno)))
    return;
  char cmd[4200];
  int len = snprintf(cmd, sizeof(cmd), "FILE %s\n", path);
  sock_write(uuid, cmd, (size_t)len);
  rx_s rx = {.bad_at = UINT64_MAX, .seed = 22};
  int64_t deadline = now_ms() + tt_timeout_ms(180000);
  ssize_t last = 0;
  while (closes_of(uuid) == 0 && now_ms() < deadline) {
    intptr_t ev[8];
    loop_wait(&l, ev, 8, 1000);
    last = drain(uuid, rx_sink, &rx);
    if (last < 0)
      break;
    sock_flush(uuid);
  }
  check("b2 64 MiB file via sock_sendfile arrives byte-exact",
        rx.got == total && rx.bad_at == UINT64_MAX,
        "got %llu of %llu, first mismatch %lld", (unsigned long long)rx.got,
        (unsigned long long)total,
        rx.bad_at == UINT64_MAX ? -1LL : (long long)rx.bad_at);
  const tls_info_s *fin = finish_of(uuid);
  check("b2 the file is followed by the server's close_notify, then EOF",
        last < 0 && closes_of(uuid) == 1 && fin &&
            fin->received_close_notify && !fin->failed,
        "last sock_read %zd, on_close %d, close_notify received %d, failed %d",
        last, closes_of(uuid), fin ? fin->received_close_notify : -1,
        fin ? fin->failed : -1);
  loop_close(&l);
}

typedef struct {
  intptr_t uuid;
  uint64_t total;
  ssize_t rc;
  int err;
} writer_s;

static void *writer_main(void *arg) {
  writer_s *w = arg;
  uint8_t *buf = malloc(w->total);
  pat_fill(buf, w->total, 0, 33);
  w->rc = sock_write(w->uuid, buf, w->total);
  w->err = errno;
  free(buf);
  return NULL;
}

/* b3: the whole transfer in one sock_write, on another thread. */
static void test_threaded_echo(uint64_t total) {
  tt_loop_s l;
  loop_init(&l);
  intptr_t uuid = open_client(&l);
  if (!check("b3 client connects and attaches", uuid != -1, "%s",
             strerror(errno)))
    return;
  sock_write(uuid, "ECHO\n", 5);
  writer_s w = {.uuid = uuid, .total = total};
  pthread_t th;
  pthread_create(&th, NULL, writer_main, &w);
  rx_s rx = {.bad_at = UINT64_MAX, .seed = 33};
  int64_t deadline = now_ms() + tt_timeout_ms(180000);
  int closed_early = 0;
  while (rx.got < total && now_ms() < deadline) {
    intptr_t ev[8];
    loop_wait(&l, ev, 8, 1000);
    if (drain(uuid, rx_sink, &rx) < 0) {
      closed_early = 1;
      break;
    }
    sock_flush(uuid);
  }
  pthread_join(th, NULL);
  check("b3 one 64 MiB sock_write from a worker thread, echoed back "
        "byte-exact while the main thread reads",
        w.rc == 0 && rx.got == total && rx.bad_at == UINT64_MAX &&
            !closed_early,
        "sock_write %zd (errno %d), got %llu of %llu, first mismatch %lld, "
        "closed early %d",
        w.rc, w.err, (unsigned long long)rx.got, (unsigned long long)total,
        rx.bad_at == UINT64_MAX ? -1LL : (long long)rx.bad_at, closed_early);
  tls_close(uuid);
  while (closes_of(uuid) == 0 && now_ms() < deadline) {
    intptr_t ev[8];
    loop_wait(&l, ev, 8, 1000);
    drain(uuid, NULL, NULL);
    sock_flush(uuid);
  }
  check("b3 closed once, session freed",
        closes_of(uuid) == 1 && finishes_of(uuid) == 1, "on_close %d, on_clear %d",
        closes_of(uuid), finishes_of(uuid));
  loop_close(&l);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s PORT CA.pem WORKDIR [MiB]\n", argv[0]);
    return 2;
  }
  tt_init();
  port = argv[1];
  uint64_t total = (uint64_t)(argc > 4 ? atoi(argv[4]) : 64) * MiB;
  cctx = tls_client_ctx(argv[2]);
  if (!check("client context (verifying the test CA)", cctx != NULL, "see stderr"))
    return 1;
  char path[4096];
  snprintf(path, sizeof(path), "%s/file-64m.bin", argv[3]);
  if (!check("b2 test file written", pat_file(path, total, 0, 22) == 0, "%s",
             strerror(errno)))
    return 1;
  test_echo(total);
  test_file(path, total);
  test_threaded_echo(total);
  check("every session freed (on_clear)", tls_live_sessions() == 0,
        "%ld live", tls_live_sessions());
  unlink(path);
  SSL_CTX_free(cctx);
  return tt_exit_code();
}
