/*
 * test_lifecycle.c - a libsock TLS server (main thread, epoll) against
 * plain-OpenSSL peers (blocking sockets, one thread each), in one process:
 *   c1: tls_close delivers everything queued (memory moved in, a file
 *       through sock_sendfile, pool copies), then close_notify, then the
 *       fd closes: the peer's SSL_read ends with SSL_ERROR_ZERO_RETURN
 *       (SSL_RECEIVED_SHUTDOWN), then the socket reports EOF;
 *   c2: a plain sock_close delivers everything queued and close_notify
 *       too (the flush hook asks sock_is_closing);
 *   d1: a peer that drops in the middle of a record: sock_read -1 and
 *       exactly one reactor_on_close;
 *   d2: a peer that resets while we stream: sock_read/sock_flush -1,
 *       exactly one reactor_on_close;
 *   d3: a peer that drops during the handshake: the same;
 *   f:  urgent data queued while the TLS transport is full arrives intact;
 *   e:  every session is freed by on_clear (also run under valgrind).
 *
 *   test_lifecycle WORKDIR [--small]     (--small: smaller transfers)
 *   test_lifecycle --leak-control        (leaks on purpose: the valgrind
 *                                          harness must notice)
 */
#include "tls_test.h"

static SSL_CTX *sctx, *pctx;
static intptr_t srv;
static int srv_port;
static tt_loop_s loop;
static const char *workdir;
static uint64_t scale_div = 1;

/* ---- the plain OpenSSL peer ------------------------------------------- */

enum peer_mode { PEER_READ_ALL, PEER_TRUNCATE, PEER_RESET, PEER_BAD_HELLO };

typedef struct peer_s {
  enum peer_mode mode;
  int rcvbuf;
  int go_fd;          /* >= 0: send "R", wait for a byte here, then read */
  uint32_t seed;      /* PEER_READ_ALL: check the pattern as it arrives */
  uint64_t read_limit; /* PEER_RESET: read this much, then reset */
  int ready_fd;       /* PEER_RESET: written to once read_limit is read */
  int reset_go_fd;    /* PEER_RESET: then wait for a byte here to reset */
  uint8_t *capture;   /* optional: keep the stream */
  size_t capture_cap;
  /* results */
  int handshake_ok;
  uint64_t got, bad_at;
  int last_ret, last_err;
  int shutdown_flags;
  int raw_eof;
  unsigned long ssl_reason;
} peer_s;

static void *peer_main(void *arg) {
  peer_s *p = arg;
  p->bad_at = UINT64_MAX;
  int fd = tcp_connect(srv_port, p->rcvbuf);
  if (fd < 0)
    return NULL;
  struct timeval tv = {.tv_sec = (time_t)(tt_timeout_ms(60000) / 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (p->mode == PEER_BAD_HELLO) {
    /* a ClientHello record header announcing 512 bytes, and 15 of them */
    static const uint8_t part[20] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00,
                                     0x01, 0xfc, 0x03, 0x03, 1, 2, 3, 4, 5};
    if (write(fd, part, sizeof(part)) != (ssize_t)sizeof(part))
      p->last_err = errno;
    close(fd);
    return NULL;
  }
  SSL *ssl = SSL_new(pctx);
  SSL_set_fd(ssl, fd);
  p->handshake_ok = SSL_connect(ssl) == 1;
  if (!p->handshake_ok)
    goto out;
  if (p->mode == PEER_TRUNCATE) {
    SSL_write(ssl, "hello", 5);
    /* an application-data record header for 64 bytes, and 5 of them */
    static const uint8_t part[10] = {0x17, 0x03, 0x03, 0x00, 0x40, 1, 2, 3, 4, 5};
    if (write(fd, part, sizeof(part)) != (ssize_t)sizeof(part))
      p->last_err = errno;
    /* The drop is a FIN in the middle of the record. The socket stays open
     * for reading until the server closes: what the server still sends
     * (TLS 1.3 session tickets after the handshake) is read here, not
     * answered with a reset that could make the server's flush fail, and
     * close the connection, before it has read "hello". */
    shutdown(fd, SHUT_WR);
    char b[4096];
    while (read(fd, b, sizeof(b)) > 0)
      ;
    goto out;
  }
  if (p->go_fd >= 0) {
    char b;
    SSL_write(ssl, "R", 1);
    if (read(p->go_fd, &b, 1) != 1)
      goto out;
  }
  static _Thread_local uint8_t buf[1 << 16];
  for (;;) {
    int want = (int)sizeof(buf);
    if (p->mode == PEER_RESET && p->read_limit - p->got < (uint64_t)want)
      want = (int)(p->read_limit - p->got);
    if (want == 0)
      break;
    ERR_clear_error();
    int n = SSL_read(ssl, buf, want);
    if (n <= 0) {
      p->last_ret = n;
      p->last_err = SSL_get_error(ssl, n);
      p->ssl_reason = ERR_GET_REASON(ERR_peek_error());
      p->shutdown_flags = SSL_get_shutdown(ssl);
      ERR_clear_error();
      break;
    }
    if (p->seed && p->bad_at == UINT64_MAX) {
      size_t m = pat_check(buf, (size_t)n, p->got, p->seed);
      if (m != (size_t)n)
        p->bad_at = p->got + m;
    }
    if (p->capture && p->got + (uint64_t)n <= p->capture_cap)
      memcpy(p->capture + p->got, buf, (size_t)n);
    p->got += (uint64_t)n;
  }
  if (p->mode == PEER_RESET && p->got == p->read_limit) {
    char b = 'r';
    if (write(p->ready_fd, &b, 1) != 1 || read(p->reset_go_fd, &b, 1) != 1)
      p->last_err = errno;
  }
  if (p->mode == PEER_READ_ALL) {
    /* after close_notify the fd must close: the socket reports EOF */
    char b;
    p->raw_eof = recv(fd, &b, 1, 0) == 0;
  }
out:
  if (p->mode == PEER_RESET) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
  SSL_free(ssl);
  close(fd);
  return NULL;
}

/* ---- the libsock side ---------------------------------------------------- */

typedef struct {
  uint64_t got;
  uint8_t head[64];
} rx_s;

static void rx_sink(void *ctx, const uint8_t *b, size_t n) {
  rx_s *r = ctx;
  for (size_t i = 0; i < n && r->got + i < sizeof(r->head); i++)
    r->head[r->got + i] = b[i];
  r->got += n;
}

/* Waits for the next connection and attaches a TLS server session. */
static intptr_t accept_tls(void) {
  int64_t deadline = now_ms() + tt_timeout_ms(20000);
  while (now_ms() < deadline) {
    intptr_t uuid = sock_accept(srv);
    if (uuid != -1) {
      tt_track(uuid);
      if (tls_attach_server(uuid, sctx) || loop_add(&loop, uuid)) {
        sock_force_close(uuid);
        return -1;
      }
      return uuid;
    }
    intptr_t ev[8];
    loop_wait(&loop, ev, 8, 500);
  }
  return -1;
}

typedef struct {
  int read_err, flush_err;
} errs_s;

/* Runs the loop for `uuid` (read to EAGAIN, then flush) until `done`. */
static int pump(intptr_t uuid, rx_s *rx, errs_s *er,
                int (*done)(intptr_t, void *), void *arg) {
  int64_t deadline = now_ms() + tt_timeout_ms(60000);
  while (!done(uuid, arg)) {
    if (now_ms() > deadline)
      return -1;
    intptr_t ev[8];
    loop_wait(&loop, ev, 8, 500);
    if (sock_isvalid(uuid) && drain(uuid, rx_sink, rx) < 0 && er)
      er->read_err = 1;
    if (sock_isvalid(uuid) && sock_flush(uuid) < 0 && er)
      er->flush_err = 1;
  }
  return 0;
}

/* Wakes the loop when a byte arrives on `fd` (a pipe from a peer). */
static void watch_pipe(int fd) {
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)-2};
  epoll_ctl(loop.ep, EPOLL_CTL_ADD, fd, &ev);
}

static int pipe_has_byte(intptr_t uuid, void *arg) {
  (void)uuid;
  struct pollfd p = {.fd = *(int *)arg, .events = POLLIN};
  return poll(&p, 1, 0) == 1;
}

static int is_closed(intptr_t uuid, void *arg) {
  (void)arg;
  return closes_of(uuid) > 0;
}

static int got_at_least(intptr_t uuid, void *arg) {
  (void)uuid;
  rx_s *rx = arg;
  return rx->got >= 1;
}

/* c1 / c2: queue memory (moved), a file (sock_sendfile) and pool copies,
 * then close at once. */
static void test_close(int use_tls_close) {
  const char *tag = use_tls_close ? "c1" : "c2";
  char name[200];
  uint64_t a = 8 * MiB / scale_div, f = 16 * MiB / scale_div,
           c = 1 * MiB / scale_div, total = a + f + c;
  uint32_t seed = use_tls_close ? 31 : 32;
  char path[4200];
  snprintf(path, sizeof(path), "%s/close-%s.bin", workdir, tag);
  if (pat_file(path, f, a, seed)) {
    snprintf(name, sizeof(name), "%s file written", tag);
    check(name, 0, "%s", strerror(errno));
    return;
  }
  peer_s p = {.mode = PEER_READ_ALL, .go_fd = -1, .seed = seed};
  pthread_t th;
  pthread_create(&th, NULL, peer_main, &p);
  intptr_t uuid = accept_tls();
  int queued = uuid != -1;
  if (queued && use_tls_close) {
    errno = 0;
    int again = tls_attach_server(uuid, sctx);
    int e = errno;
    check("c1 a second attach to the same connection fails (EEXIST)",
          again == -1 && e == EEXIST, "%d errno %d", again, e);
  }
  if (queued) {
    uint8_t *m = malloc(a);
    pat_fill(m, a, 0, seed);
    queued &= sock_write2(.fduuid = uuid, .buffer = m, .length = a,
                          .move = 1) == 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    queued &= sock_sendfile(uuid, fd, 0, f) == 0;
    uint8_t *cp = malloc(c);
    pat_fill(cp, c, a + f, seed);
    queued &= sock_write(uuid, cp, c) == 0;
    free(cp);
    if (use_tls_close)
      tls_close(uuid);
    else
      sock_close(uuid);
  }
  rx_s rx = {0};
  int timed_out = queued ? pump(uuid, &rx, NULL, is_closed, NULL) : 1;
  pthread_join(th, NULL);
  unlink(path);
  snprintf(name, sizeof(name),
           "%s %s delivers everything queued (%llu bytes: moved memory, "
           "sock_sendfile, copies) byte-exact",
           tag, use_tls_close ? "tls_close" : "sock_close",
           (unsigned long long)total);
  check(name, queued && !timed_out && p.got == total && p.bad_at == UINT64_MAX,
        "queued %d, timed out %d, peer got %llu, first mismatch %lld", queued,
        timed_out, (unsigned long long)p.got,
        p.bad_at == UINT64_MAX ? -1LL : (long long)p.bad_at);
  const tls_info_s *fin = finish_of(uuid);
  if (use_tls_close) {
    check("c1 then close_notify: peer's SSL_read returns 0, "
          "SSL_ERROR_ZERO_RETURN, SSL_RECEIVED_SHUTDOWN",
          p.last_ret == 0 && p.last_err == SSL_ERROR_ZERO_RETURN &&
              (p.shutdown_flags & SSL_RECEIVED_SHUTDOWN),
          "SSL_read %d, SSL_get_error %d, SSL_get_shutdown 0x%x, reason %lu",
          p.last_ret, p.last_err, p.shutdown_flags, p.ssl_reason);
    check("c1 then the fd closes (peer sees EOF after close_notify)",
          p.raw_eof, "no EOF after close_notify");
    check("c1 one reactor_on_close, session freed, close_notify sent",
          closes_of(uuid) == 1 && finishes_of(uuid) == 1 && fin &&
              fin->sent_close_notify && !fin->failed,
          "on_close %d, on_clear %d, sent %d, failed %d", closes_of(uuid),
          finishes_of(uuid), fin ? fin->sent_close_notify : -1,
          fin ? fin->failed : -1);
  } else {
    check("c2 one reactor_on_close, session freed",
          closes_of(uuid) == 1 && finishes_of(uuid) == 1,
          "on_close %d, on_clear %d", closes_of(uuid), finishes_of(uuid));
    check("c2 then close_notify too (the flush hook asks sock_is_closing)",
          p.last_ret == 0 && p.last_err == SSL_ERROR_ZERO_RETURN &&
              (p.shutdown_flags & SSL_RECEIVED_SHUTDOWN),
          "SSL_read %d, SSL_get_error %d, SSL_get_shutdown 0x%x, reason %lu",
          p.last_ret, p.last_err, p.shutdown_flags, p.ssl_reason);
  }
}

/* c3: close while ciphertext waits in the hook (the library's queue is
 * empty): the close must wait for it, and close_notify must follow it. The
 * state is built by writing through the hook itself until it says EAGAIN. */
static void test_close_with_tail(void) {
  int go[2];
  if (pipe(go))
    return;
  peer_s p = {.mode = PEER_READ_ALL, .rcvbuf = 32 * 1024, .go_fd = go[0],
              .seed = 61};
  pthread_t th;
  pthread_create(&th, NULL, peer_main, &p);
  intptr_t uuid = accept_tls();
  rx_s rx = {0};
  int ok = uuid != -1;
  uint64_t accepted = 0;
  int tail_waits = 0, still_open = 0;
  if (ok) {
    intptr_t u = uuid;
    int sb = 32 * 1024;
    setsockopt(sock_uuid2fd(u), SOL_SOCKET, SO_SNDBUF, &sb, sizeof(sb));
    ok = pump(uuid, &rx, NULL, got_at_least, &rx) == 0; /* handshake done */
  }
  if (ok) {
    sock_rw_hook_s *h = sock_rw_hook_get(uuid);
    static uint8_t chunk[16384];
    for (int i = 0; i < 100000; i++) {
      pat_fill(chunk, sizeof(chunk), accepted, 61);
      ssize_t w = h->write(uuid, chunk, sizeof(chunk));
      if (w < 0) {
        tail_waits = errno == EAGAIN;
        break;
      }
      accepted += (uint64_t)w;
    }
    tls_close(uuid);
    still_open = sock_isvalid(uuid) && sock_packets_pending(uuid);
  }
  if (write(go[1], "g", 1) != 1)
    ok = 0;
  int timed_out = ok ? pump(uuid, &rx, NULL, is_closed, NULL) : 1;
  pthread_join(th, NULL);
  close(go[0]);
  close(go[1]);
  check("c3 tls_close while ciphertext waits in the hook: the close waits "
        "(flush reports it), then data, close_notify and EOF arrive",
        ok && !timed_out && tail_waits && still_open && p.got == accepted &&
            p.bad_at == UINT64_MAX && p.last_err == SSL_ERROR_ZERO_RETURN &&
            p.raw_eof && closes_of(uuid) == 1,
        "ok %d, timed out %d, hook said EAGAIN %d, open after tls_close %d, "
        "peer got %llu of %llu, mismatch %lld, SSL_get_error %d, EOF %d, "
        "on_close %d",
        ok, timed_out, tail_waits, still_open, (unsigned long long)p.got,
        (unsigned long long)accepted,
        p.bad_at == UINT64_MAX ? -1LL : (long long)p.bad_at, p.last_err,
        p.raw_eof, closes_of(uuid));
}

/* d1 / d2 / d3: the peer goes away. */
static void test_drop(enum peer_mode mode) {
  const char *tag = mode == PEER_TRUNCATE  ? "d1"
                    : mode == PEER_RESET   ? "d2"
                                           : "d3";
  const char *what = mode == PEER_TRUNCATE
                         ? "peer closes in the middle of a TLS record"
                     : mode == PEER_RESET ? "peer resets while we stream"
                                          : "peer drops during the handshake";
  char name[200];
  int ready[2], go[2];
  if (pipe(ready) || pipe(go))
    return;
  watch_pipe(ready[0]);
  peer_s p = {.mode = mode,
              .rcvbuf = 64 * 1024,
              .go_fd = -1,
              .read_limit = 1 * MiB,
              .ready_fd = ready[1],
              .reset_go_fd = go[0]};
  pthread_t th;
  pthread_create(&th, NULL, peer_main, &p);
  intptr_t uuid = accept_tls();
  rx_s rx = {0};
  errs_s er = {0};
  int timed_out = 1, streaming = 1;
  if (uuid != -1) {
    if (mode == PEER_RESET) {
      /* Stream; once the peer has read 1 MiB (the rest is still queued
       * here), let it reset the connection. */
      uint64_t n = scale_div > 1 ? 8 * MiB : 64 * MiB;
      intptr_t u = uuid;
      int sb = 64 * 1024;
      setsockopt(sock_uuid2fd(u), SOL_SOCKET, SO_SNDBUF, &sb, sizeof(sb));
      uint8_t *m = malloc(n);
      pat_fill(m, n, 0, 41);
      sock_write2(.fduuid = uuid, .buffer = m, .length = n, .move = 1);
      timed_out = pump(uuid, &rx, &er, pipe_has_byte, &ready[0]);
      epoll_ctl(loop.ep, EPOLL_CTL_DEL, ready[0], NULL);
      streaming = sock_isvalid(uuid) && sock_packets_pending(uuid);
      if (write(go[1], "g", 1) != 1)
        streaming = 0;
    }
    if (!timed_out || mode != PEER_RESET)
      timed_out = pump(uuid, &rx, &er, is_closed, NULL);
  }
  if (write(go[1], "g", 1) < 0) /* never leave the peer waiting */
    perror("write");
  pthread_join(th, NULL);
  epoll_ctl(loop.ep, EPOLL_CTL_DEL, ready[0], NULL);
  close(ready[0]);
  close(ready[1]);
  close(go[0]);
  close(go[1]);
  if (mode == PEER_RESET) {
    snprintf(name, sizeof(name), "%s the peer resets while data is queued", tag);
    check(name, streaming, "nothing was left to send when the peer reset");
  }
  if (mode == PEER_TRUNCATE) {
    snprintf(name, sizeof(name), "%s data before the drop is read", tag);
    check(name, rx.got == 5 && !memcmp(rx.head, "hello", 5),
          "got %llu bytes", (unsigned long long)rx.got);
  }
  /* d2, d3: whichever call meets the failure first reports it (in d3 the
   * flush hook drives the handshake, so it may be the one to read the EOF).
   * d1: the peer reads on after its FIN (no reset), so only a read can
   * meet the cut record. */
  snprintf(name, sizeof(name), "%s %s: %s returns -1", tag, what,
           mode == PEER_TRUNCATE ? "sock_read" : "sock_read/sock_flush");
  check(name,
        !timed_out &&
            (er.read_err || (mode != PEER_TRUNCATE && er.flush_err)),
        "timed out %d, read -1 %d, flush -1 %d", timed_out, er.read_err,
        er.flush_err);
  snprintf(name, sizeof(name),
           "%s exactly one reactor_on_close, session freed", tag);
  const tls_info_s *fin = finish_of(uuid);
  check(name,
        closes_of(uuid) == 1 && finishes_of(uuid) == 1 && fin &&
            !fin->received_close_notify,
        "on_close %d, on_clear %d", closes_of(uuid), finishes_of(uuid));
  errno = 0;
  char b[8];
  ssize_t r = sock_read(uuid, b, sizeof(b));
  int e = errno;
  snprintf(name, sizeof(name), "%s the UUID is dead afterwards", tag);
  check(name, r == -1 && e == ENODEV && sock_flush(uuid) == -1 &&
                  !sock_isvalid(uuid),
        "sock_read %zd errno %d", r, e);
}

/* f: urgent data queued while the transport is full. */
static void test_urgent(void) {
  enum { ENTRIES = 256, ENTRY = 4096, ULEN = 100 };
  uint64_t total = (uint64_t)ENTRIES * ENTRY;
  int go[2];
  if (pipe(go))
    return;
  peer_s p = {.mode = PEER_READ_ALL,
              .rcvbuf = 32 * 1024,
              .go_fd = go[0],
              .capture_cap = total + ULEN};
  p.capture = malloc(p.capture_cap);
  pthread_t th;
  pthread_create(&th, NULL, peer_main, &p);
  intptr_t uuid = accept_tls();
  rx_s rx = {0};
  int ok = uuid != -1;
  if (ok) {
    intptr_t u = uuid;
    int sb = 32 * 1024;
    setsockopt(sock_uuid2fd(u), SOL_SOCKET, SO_SNDBUF, &sb, sizeof(sb));
    ok = pump(uuid, &rx, NULL, got_at_least, &rx) == 0; /* "R": handshake done */
  }
  int blocked = 0;
  if (ok) {
    for (int i = 0; i < ENTRIES; i++) {
      uint8_t *m = malloc(ENTRY);
      pat_fill(m, ENTRY, (uint64_t)i * ENTRY, 51);
      sock_write2(.fduuid = uuid, .buffer = m, .length = ENTRY, .move = 1);
    }
    blocked = sock_packets_pending(uuid) != 0;
    uint8_t urgent[ULEN];
    memset(urgent, 'U', ULEN);
    sock_write2(.fduuid = uuid, .buffer = urgent, .length = ULEN, .urgent = 1);
    tls_close(uuid);
  }
  if (write(go[1], "g", 1) != 1)
    ok = 0;
  int timed_out = ok ? pump(uuid, &rx, NULL, is_closed, NULL) : 1;
  pthread_join(th, NULL);
  close(go[0]);
  close(go[1]);
  /* the stream: pattern, the urgent block at some offset, pattern */
  uint64_t at = UINT64_MAX;
  for (uint64_t i = 0; p.got == total + ULEN && i + ULEN <= p.got; i++)
    if (p.capture[i] == 'U' && !memcmp(p.capture + i, "UUUUUUUUUU", 10)) {
      at = i;
      break;
    }
  int intact = at != UINT64_MAX;
  if (intact) {
    int all_u = 1;
    for (int i = 0; i < ULEN; i++)
      all_u &= p.capture[at + (uint64_t)i] == 'U';
    intact = all_u && pat_check(p.capture, at, 0, 51) == at &&
             pat_check(p.capture + at + ULEN, total - at, at, 51) == total - at;
  }
  check("f urgent data queued while the TLS transport is full: the stream "
        "arrives intact",
        ok && !timed_out && blocked && intact &&
            p.last_err == SSL_ERROR_ZERO_RETURN,
        "ok %d, timed out %d, blocked %d, got %llu of %llu, urgent at %lld, "
        "intact %d, SSL_get_error %d",
        ok, timed_out, blocked, (unsigned long long)p.got,
        (unsigned long long)(total + ULEN), at == UINT64_MAX ? -1LL : (long long)at,
        intact, p.last_err);
  if (intact)
    printf("NOTE f urgent block landed at offset %llu (entry boundary: %s)\n",
           (unsigned long long)at, at % ENTRY == 0 ? "yes" : "NO");
  free(p.capture);
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--leak-control")) {
    /* The valgrind harness must call this a definite leak. */
    void *volatile leak = malloc(4242);
    memset(leak, 1, 4242);
    leak = NULL;
    printf("leaked 4242 bytes on purpose\n");
    return 0;
  }
  if (argc < 2) {
    fprintf(stderr, "usage: %s WORKDIR [--small] | --leak-control\n", argv[0]);
    return 2;
  }
  workdir = argv[1];
  if (argc > 2 && !strcmp(argv[2], "--small"))
    scale_div = 16;
  tt_init();
  char cert[4200], key[4200];
  snprintf(cert, sizeof(cert), "%s/cert.pem", workdir);
  snprintf(key, sizeof(key), "%s/key.pem", workdir);
  sctx = tls_server_ctx(cert, key);
  pctx = tls_client_ctx(cert);
  if (!check("contexts from the generated certificate", sctx && pctx,
             "see stderr"))
    return 1;
  srv = sock_listen("127.0.0.1", "0");
  srv_port = local_port(srv);
  if (!check("listening", srv != -1 && srv_port > 0 && !loop_init(&loop) &&
                              !loop_add_listener(&loop, srv),
             "%s", strerror(errno)))
    return 1;

  errno = 0;
  int bad = tls_attach_server(-1, sctx);
  int bad_errno = errno;
  check("attaching to an invalid UUID fails (ENODEV)",
        bad == -1 && bad_errno == ENODEV, "%d errno %d", bad, bad_errno);

  test_close(1);
  test_close(0);
  test_close_with_tail();
  test_drop(PEER_TRUNCATE);
  test_drop(PEER_RESET);
  test_drop(PEER_BAD_HELLO);
  test_urgent();

  check("e every session freed by on_clear", tls_live_sessions() == 0,
        "%ld sessions alive", tls_live_sessions());
  check("no reactor_on_close for unknown UUIDs",
        atomic_load(&tt_untracked_closes) == 0, "%d",
        atomic_load(&tt_untracked_closes));
  sock_force_close(srv);
  loop_close(&loop);
  SSL_CTX_free(sctx);
  SSL_CTX_free(pctx);
  return tt_exit_code();
}
