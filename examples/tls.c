/*
 * tls.c - TLS (OpenSSL) under libsock, through the read/write hooks.
 *
 * Design
 * ------
 * OpenSSL talks to the socket through a small custom BIO, not SSL_set_fd.
 * The BIO's write never refuses: it sends what the kernel takes and keeps
 * the rest of the record (the "tail") in the session. So SSL_write never
 * returns SSL_ERROR_WANT_WRITE with a half-sent record inside OpenSSL, and a
 * write hook that returns n > 0 has really committed n plaintext bytes.
 *
 * Why not SSL_set_fd: on EAGAIN, SSL_write fails with WANT_WRITE after it
 * has encrypted the record, and OpenSSL then requires the next SSL_write to
 * pass the same bytes again (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER lets the
 * address change, not the content, and never a shorter length). The hook
 * contract is the one of write(2), which carries no such obligation, so
 * such an adapter would only be correct while the library happens to retry
 * with the same bytes. With the tail there is no retry state at all, and
 * the tail is exactly what the flush hook reports as "still buffered", so
 * sock_packets_pending and the graceful close account for it.
 *
 * The write hook refuses new plaintext (-1, EAGAIN) while a tail is
 * waiting, so at most about one record (plus handshake messages) is held.
 * The flush hook, which libsock calls whenever its queue is empty, drives a
 * pending handshake, sends close_notify when tls_close asked for it, writes
 * the tail, and returns the bytes of tail left (0 = done): libsock closes
 * the fd only at 0. on_clear frees the session.
 *
 * SSL_MODE_ENABLE_PARTIAL_WRITE makes SSL_write return after one record, so
 * one hook call never encrypts more than one record ahead of the kernel.
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER is set as well: a WANT_READ during the
 * handshake is retried with whatever buffer libsock passes next.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tls.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

/* Largest plaintext handed to one SSL_write / SSL_read call. */
#define TLS_MAX_CALL (1 << 30)

typedef struct tls_conn_s {
  sock_rw_hook_s hook; /* first: libsock hands this pointer back */
  pthread_mutex_t lock;
  SSL *ssl;
  intptr_t uuid;
  int fd;
  int use_send;        /* fd is a socket: send(MSG_NOSIGNAL) */
  unsigned char *tail; /* ciphertext the kernel did not take yet */
  size_t tail_start, tail_end, tail_cap;
  int io_errno;     /* the transport failed with this errno */
  int proto_error;  /* the TLS session failed */
  int in_eof;       /* the BIO saw end of stream */
  int closing;      /* tls_close: close_notify once libsock's queue is empty */
  int shutdown_sent;
  int peer_closed;  /* close_notify received */
  unsigned long long bytes_in, bytes_out;
} tls_conn_s;

static atomic_long live_sessions;
static void (*_Atomic on_finish_cb)(const tls_info_s *);

/* ---- registry: fd -> session, for the functions called from outside the
 * hooks (tls_close, tls_info). Hooks find their session through
 * sock_rw_hook_get, which is safe while libsock runs the hook. Lock order:
 * registry, then a session's lock. */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static tls_conn_s **reg;
static size_t reg_len;

static int reg_put(int fd, tls_conn_s *c) {
  int r = 0;
  pthread_mutex_lock(&reg_lock);
  if ((size_t)fd >= reg_len) {
    size_t n = reg_len ? reg_len : 64;
    while (n <= (size_t)fd)
      n *= 2;
    tls_conn_s **grown = realloc(reg, n * sizeof(*reg));
    if (!grown) {
      r = -1;
    } else {
      memset(grown + reg_len, 0, (n - reg_len) * sizeof(*reg));
      reg = grown;
      reg_len = n;
    }
  }
  if (r == 0)
    reg[fd] = c;
  pthread_mutex_unlock(&reg_lock);
  return r;
}

static void reg_drop(int fd, tls_conn_s *c) {
  pthread_mutex_lock(&reg_lock);
  if ((size_t)fd < reg_len && reg[fd] == c)
    reg[fd] = NULL;
  pthread_mutex_unlock(&reg_lock);
}

/* The session of `uuid`, locked, with the registry locked too (release
 * with reg_release). NULL when uuid is not one of ours. */
static tls_conn_s *reg_acquire(intptr_t uuid) {
  intptr_t u = uuid;
  int fd = sock_uuid2fd(u);
  pthread_mutex_lock(&reg_lock);
  tls_conn_s *c = NULL;
  if (uuid != -1 && fd >= 0 && (size_t)fd < reg_len && reg[fd] &&
      reg[fd]->uuid == uuid)
    c = reg[fd];
  if (c)
    pthread_mutex_lock(&c->lock);
  else
    pthread_mutex_unlock(&reg_lock);
  return c;
}

static void reg_release(tls_conn_s *c) {
  pthread_mutex_unlock(&c->lock);
  pthread_mutex_unlock(&reg_lock);
}

/* ---- the transport: raw writes and the tail ---------------------------- */

static ssize_t raw_send(tls_conn_s *c, const void *p, size_t n) {
  for (;;) {
    ssize_t w = c->use_send ? send(c->fd, p, n, MSG_NOSIGNAL)
                            : write(c->fd, p, n);
    if (w >= 0)
      return w;
    if (errno == EINTR)
      continue;
    if (errno == ENOTSOCK && c->use_send) {
      c->use_send = 0;
      continue;
    }
    return -1;
  }
}

static size_t tail_len(const tls_conn_s *c) {
  return c->tail_end - c->tail_start;
}

static int tail_append(tls_conn_s *c, const unsigned char *p, size_t n) {
  if (c->tail_start == c->tail_end)
    c->tail_start = c->tail_end = 0;
  if (c->tail_cap - c->tail_end < n && c->tail_start) {
    memmove(c->tail, c->tail + c->tail_start, tail_len(c));
    c->tail_end -= c->tail_start;
    c->tail_start = 0;
  }
  if (c->tail_cap - c->tail_end < n) {
    size_t cap = c->tail_cap ? c->tail_cap : 32768;
    while (cap - c->tail_end < n)
      cap *= 2;
    unsigned char *grown = realloc(c->tail, cap);
    if (!grown)
      return -1;
    c->tail = grown;
    c->tail_cap = cap;
  }
  memcpy(c->tail + c->tail_end, p, n);
  c->tail_end += n;
  return 0;
}

/* Writes what it can of the tail. 0 (done or EAGAIN), -1 on error. */
static int tail_push(tls_conn_s *c) {
  while (c->tail_start < c->tail_end) {
    ssize_t w = raw_send(c, c->tail + c->tail_start, tail_len(c));
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
      c->io_errno = errno;
      return -1;
    }
    c->tail_start += (size_t)w;
  }
  c->tail_start = c->tail_end = 0;
  return 0;
}

/* ---- the BIO OpenSSL reads and writes through --------------------------- */

static int bio_write(BIO *b, const char *data, int len) {
  tls_conn_s *c = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (len <= 0)
    return 0;
  size_t done = 0;
  if (tail_len(c) == 0) {
    ssize_t w = raw_send(c, data, (size_t)len);
    if (w < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        c->io_errno = errno;
        return -1;
      }
      w = 0;
    }
    done = (size_t)w;
  }
  if (done < (size_t)len &&
      tail_append(c, (const unsigned char *)data + done, (size_t)len - done)) {
    c->io_errno = ENOMEM;
    return -1;
  }
  return len;
}

static int bio_read(BIO *b, char *buf, int len) {
  tls_conn_s *c = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (len <= 0)
    return 0;
  ssize_t r;
  do {
    r = read(c->fd, buf, (size_t)len);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      BIO_set_retry_read(b);
      return -1;
    }
    c->io_errno = errno;
    return -1;
  }
  if (r == 0)
    c->in_eof = 1;
  return (int)r;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)num;
  (void)ptr;
  tls_conn_s *c = BIO_get_data(b);
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1; /* the tail is flushed by the flush hook, never blocking */
  case BIO_CTRL_EOF:
    return c ? c->in_eof : 0; /* lets OpenSSL 3 report unexpected EOF */
  case BIO_CTRL_WPENDING:
    return c ? (long)tail_len(c) : 0;
  default:
    return 0;
  }
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void) {
  BIO_METHOD *m =
      BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "libsock-tls");
  if (!m)
    return;
  BIO_meth_set_write(m, bio_write);
  BIO_meth_set_read(m, bio_read);
  BIO_meth_set_ctrl(m, bio_ctrl);
  BIO_meth_set_create(m, bio_create);
  bio_method = m;
}

/* ---- the hooks ---------------------------------------------------------- */

static ssize_t tls_hook_read(intptr_t uuid, void *buf, size_t count);

/* The session behind a hook call (libsock keeps it alive meanwhile). */
static tls_conn_s *conn_of(intptr_t uuid) {
  sock_rw_hook_s *h = sock_rw_hook_get(uuid);
  if (!h || h->read != tls_hook_read) {
    errno = ENODEV;
    return NULL;
  }
  return (tls_conn_s *)h;
}

/* errno for a failed session. */
static int failure_errno(const tls_conn_s *c) {
  if (c->io_errno)
    return c->io_errno;
  return c->in_eof ? ECONNRESET : EPROTO;
}

/* Maps a failed SSL call (r <= 0) to the system call convention: -1 with
 * errno EAGAIN (try again), 0 (peer sent close_notify) or -1 (failed). */
static ssize_t ssl_fail(tls_conn_s *c, int r) {
  int e = SSL_get_error(c->ssl, r);
  switch (e) {
  case SSL_ERROR_WANT_READ:
  case SSL_ERROR_WANT_WRITE:
    errno = EAGAIN;
    return -1;
  case SSL_ERROR_ZERO_RETURN:
    c->peer_closed = 1;
    return 0;
  default: /* SSL_ERROR_SYSCALL, SSL_ERROR_SSL: the session is over */
    c->proto_error = 1;
    ERR_clear_error();
    errno = failure_errno(c);
    return -1;
  }
}

static int failed(const tls_conn_s *c) { return c->io_errno || c->proto_error; }

static ssize_t tls_hook_read(intptr_t uuid, void *buf, size_t count) {
  tls_conn_s *c = conn_of(uuid);
  if (!c)
    return -1;
  pthread_mutex_lock(&c->lock);
  ssize_t ret;
  if (failed(c)) {
    errno = failure_errno(c);
    ret = -1;
  } else if (c->peer_closed) {
    ret = 0;
  } else {
    ERR_clear_error();
    int n = SSL_read(c->ssl, buf, count > TLS_MAX_CALL ? TLS_MAX_CALL : (int)count);
    ret = n > 0 ? n : ssl_fail(c, n);
    if (ret > 0)
      c->bytes_in += (unsigned long long)ret;
  }
  if (ret == 0) {
    /* End of the TLS stream: libsock closes gracefully (sends what is
     * queued); answer with our close_notify after that. */
    c->closing = 1;
  }
  pthread_mutex_unlock(&c->lock);
  return ret;
}

static ssize_t tls_hook_write(intptr_t uuid, const void *buf, size_t count) {
  tls_conn_s *c = conn_of(uuid);
  if (!c)
    return -1;
  pthread_mutex_lock(&c->lock);
  ssize_t ret;
  if (failed(c) || tail_push(c)) {
    errno = failure_errno(c);
    ret = -1;
  } else if (c->shutdown_sent) {
    errno = EPIPE; /* data after close_notify */
    ret = -1;
  } else if (tail_len(c)) {
    errno = EAGAIN; /* the kernel has not taken the last record yet */
    ret = -1;
  } else if (count == 0) {
    ret = 0;
  } else {
    ERR_clear_error();
    int n = SSL_write(c->ssl, buf,
                      count > TLS_MAX_CALL ? TLS_MAX_CALL : (int)count);
    ret = n > 0 ? n : ssl_fail(c, n);
    if (ret == 0) { /* close_notify received while writing */
      errno = EPIPE;
      ret = -1;
    }
    if (ret > 0)
      c->bytes_out += (unsigned long long)ret;
  }
  pthread_mutex_unlock(&c->lock);
  return ret;
}

static ssize_t tls_hook_flush(intptr_t uuid) {
  tls_conn_s *c = conn_of(uuid);
  if (!c)
    return -1;
  pthread_mutex_lock(&c->lock);
  /* A plain sock_close (or end of stream) marks the connection closing:
   * treat it like tls_close, so close_notify goes out before the fd closes. */
  if (!c->closing && sock_is_closing(uuid))
    c->closing = 1;
  if (!failed(c) && !c->closing && !SSL_is_init_finished(c->ssl)) {
    /* Drive the handshake: a client must speak first, and a server
     * with nothing queued still has to answer. */
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r <= 0)
      (void)ssl_fail(c, r);
  }
  if (!failed(c) && c->closing && !c->shutdown_sent) {
    /* libsock's queue is empty (that is when it calls flush): every byte
     * written so far is in a record ahead of this alert (the BIO appends
     * to the tail, so order holds even while a tail waits). */
    if (SSL_is_init_finished(c->ssl)) {
      ERR_clear_error();
      (void)SSL_shutdown(c->ssl);
      ERR_clear_error();
    }
    c->shutdown_sent = 1;
  }
  ssize_t ret;
  if (tail_push(c)) {
    errno = failure_errno(c);
    ret = -1;
  } else if (failed(c) && tail_len(c) == 0) {
    errno = failure_errno(c);
    ret = -1;
  } else {
    /* Bytes still buffered; when the session failed, an alert is still on
     * its way and the failure is reported once it is out. */
    ret = (ssize_t)tail_len(c);
  }
  pthread_mutex_unlock(&c->lock);
  return ret;
}

static void tls_fill_info(tls_conn_s *c, tls_info_s *info) {
  int sd = SSL_get_shutdown(c->ssl);
  *info = (tls_info_s){
      .uuid = c->uuid,
      .handshake_done = SSL_is_init_finished(c->ssl),
      .received_close_notify = (sd & SSL_RECEIVED_SHUTDOWN) != 0,
      .sent_close_notify = (sd & SSL_SENT_SHUTDOWN) && tail_len(c) == 0,
      .failed = failed(c),
      .tls_version = SSL_is_init_finished(c->ssl) ? SSL_version(c->ssl) : 0,
      .bytes_in = c->bytes_in,
      .bytes_out = c->bytes_out,
  };
}

static void session_free(tls_conn_s *c) {
  SSL_free(c->ssl); /* frees the BIO too */
  free(c->tail);
  pthread_mutex_destroy(&c->lock);
  free(c);
  atomic_fetch_sub(&live_sessions, 1);
}

/* libsock closed the connection (the fd is closed): release the session. */
static void tls_hook_on_clear(intptr_t uuid, sock_rw_hook_s *hook) {
  (void)uuid;
  tls_conn_s *c = (tls_conn_s *)hook;
  reg_drop(c->fd, c);
  void (*cb)(const tls_info_s *) = atomic_load(&on_finish_cb);
  if (cb) {
    tls_info_s info;
    pthread_mutex_lock(&c->lock);
    tls_fill_info(c, &info);
    pthread_mutex_unlock(&c->lock);
    cb(&info);
  }
  session_free(c);
}

/* ---- public functions --------------------------------------------------- */

static int attach(intptr_t uuid, SSL_CTX *ctx, int server, const char *name) {
  if (!ctx || !sock_isvalid(uuid)) {
    errno = ENODEV;
    return -1;
  }
  if (sock_rw_hook_get(uuid)) {
    errno = EEXIST; /* replacing hooks would skip their on_clear */
    return -1;
  }
  pthread_once(&bio_once, bio_method_init);
  if (!bio_method) {
    errno = ENOMEM;
    return -1;
  }
  tls_conn_s *c = calloc(1, sizeof(*c));
  if (!c) {
    errno = ENOMEM;
    return -1;
  }
  intptr_t u = uuid;
  c->uuid = uuid;
  c->fd = sock_uuid2fd(u);
  c->use_send = 1;
  pthread_mutex_init(&c->lock, NULL);
  c->hook = (sock_rw_hook_s){.read = tls_hook_read,
                             .write = tls_hook_write,
                             .flush = tls_hook_flush,
                             .on_clear = tls_hook_on_clear};
  c->ssl = SSL_new(ctx);
  BIO *bio = c->ssl ? BIO_new(bio_method) : NULL;
  if (!bio) {
    SSL_free(c->ssl);
    pthread_mutex_destroy(&c->lock);
    free(c);
    ERR_clear_error();
    errno = ENOMEM;
    return -1;
  }
  BIO_set_data(bio, c);
  SSL_set_bio(c->ssl, bio, bio);
  SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
                           SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (server) {
    SSL_set_accept_state(c->ssl);
  } else {
    SSL_set_connect_state(c->ssl);
    if (name) {
      SSL_set_tlsext_host_name(c->ssl, name);
      if (SSL_get_verify_mode(c->ssl) & SSL_VERIFY_PEER)
        SSL_set1_host(c->ssl, name);
    }
  }
  atomic_fetch_add(&live_sessions, 1);
  if (reg_put(c->fd, c) || sock_rw_hook_set(uuid, &c->hook)) {
    int e = errno;
    reg_drop(c->fd, c);
    session_free(c);
    errno = e ? e : ENODEV;
    return -1;
  }
  if (!server)
    sock_flush(uuid); /* ClientHello */
  return 0;
}

int tls_attach_server(intptr_t uuid, SSL_CTX *ctx) {
  return attach(uuid, ctx, 1, NULL);
}

int tls_attach_client(intptr_t uuid, SSL_CTX *ctx, const char *server_name) {
  return attach(uuid, ctx, 0, server_name);
}

int tls_close(intptr_t uuid) {
  tls_conn_s *c = reg_acquire(uuid);
  if (c) {
    c->closing = 1;
    reg_release(c);
  }
  sock_close(uuid);
  return c ? 0 : -1;
}

int tls_info(intptr_t uuid, tls_info_s *info) {
  tls_conn_s *c = reg_acquire(uuid);
  if (!c)
    return -1;
  tls_fill_info(c, info);
  reg_release(c);
  return 0;
}

void tls_set_on_finish(void (*callback)(const tls_info_s *info)) {
  atomic_store(&on_finish_cb, callback);
}

long tls_live_sessions(void) { return atomic_load(&live_sessions); }

static void print_ssl_errors(const char *what) {
  fprintf(stderr, "tls: %s failed\n", what);
  ERR_print_errors_fp(stderr);
}

static void common_ctx(SSL_CTX *ctx) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

SSL_CTX *tls_server_ctx(const char *cert_pem, const char *key_pem) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    print_ssl_errors("SSL_CTX_new");
    return NULL;
  }
  common_ctx(ctx);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_pem) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key_pem, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    print_ssl_errors("loading the certificate or key");
    SSL_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

SSL_CTX *tls_client_ctx(const char *ca_pem) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) {
    print_ssl_errors("SSL_CTX_new");
    return NULL;
  }
  common_ctx(ctx);
  if (ca_pem) {
    if (SSL_CTX_load_verify_locations(ctx, ca_pem, NULL) != 1) {
      print_ssl_errors("loading the CA file");
      SSL_CTX_free(ctx);
      return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  }
  return ctx;
}
