/*
 * stress/common.c -- the shared machinery of the reliability programs
 * (declared, with what each part does, in common.h); compiled once per
 * build variant by stress/run.sh.
 */
#include "common.h"

/* ---- random numbers (per thread, seeded) -------------------------------*/

uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

uint64_t rng_next(rng_t *r) { return mix64(r->s += 0x9E3779B97F4A7C15ull); }

uint32_t rng_below(rng_t *r, uint32_t n) {
  return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

int rng_pick(rng_t *r, const int *w, int n) {
  int total = 0;
  for (int i = 0; i < n; i++)
    total += w[i];
  int x = (int)rng_below(r, (uint32_t)total);
  for (int i = 0; i < n; i++) {
    if (x < w[i])
      return i;
    x -= w[i];
  }
  return n - 1;
}

uint32_t rng_range(rng_t *r, uint32_t lo, uint32_t hi) {
  return lo + rng_below(r, hi - lo + 1);
}

int rng_chance(rng_t *r, uint32_t percent) {
  return rng_below(r, 100) < percent;
}

/* ---- errors ------------------------------------------------------------*/

atomic_long rl_nerrors;
static atomic_long rl_dealloc_calls, rl_refused_files_open;
int rl_inject;
atomic_long rl_injected;
rl_class_t rl_class[RL_CLASSES];
pthread_mutex_t rl_class_mtx = PTHREAD_MUTEX_INITIALIZER;

__attribute__((format(printf, 2, 3))) void
rl_fail(const char *cls, const char *fmt, ...) {
  atomic_fetch_add(&rl_nerrors, 1);
  long seen = 0;
  pthread_mutex_lock(&rl_class_mtx);
  for (int i = 0; i < RL_CLASSES; i++)
    if (!rl_class[i].name || !strcmp(rl_class[i].name, cls)) {
      rl_class[i].name = cls;
      seen = rl_class[i].count++;
      break;
    }
  pthread_mutex_unlock(&rl_class_mtx);
  if (seen >= 3)
    return;
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  fprintf(stderr, "  [%s/%s] VIOLATION (%s): %s\n", h_prog, h_current, cls,
          msg);
  fflush(stderr);
}

long rl_summary(void) {
  pthread_mutex_lock(&rl_class_mtx);
  for (int i = 0; i < RL_CLASSES && rl_class[i].name; i++)
    fprintf(stderr, "  [%s/%s] %ld x %s\n", h_prog, h_current,
            rl_class[i].count, rl_class[i].name);
  pthread_mutex_unlock(&rl_class_mtx);
  return atomic_load(&rl_nerrors);
}

/* ---- frames --------------------------------------------------------------*/

void ck_update(ck_t *c, const uint8_t *p, size_t n) {
  uint32_t a = c->a, b = c->b;
  while (n) {
    size_t k = n < 5552 ? n : 5552;
    n -= k;
    while (k--) {
      a += *p++;
      b += a;
    }
    a %= 65521u;
    b %= 65521u;
  }
  c->a = a;
  c->b = b;
}

uint32_t ck_value(const ck_t *c) { return (c->b << 16) | c->a; }

uint32_t fr_hsum(const fr_hdr *h) {
  uint64_t x = ((uint64_t)h->magic << 32 | h->conn) ^
               mix64((uint64_t)h->writer << 48 | (uint64_t)h->kind << 40 |
                     (uint64_t)h->how << 32 | h->seq) ^
               mix64((uint64_t)h->len << 32 | h->sum);
  return (uint32_t)(mix64(x) >> 16);
}

void fr_fill(uint8_t *p, size_t n, uint64_t seed) {
  uint64_t w = 0;
  for (size_t i = 0; i < n; i++) {
    if ((i & 7) == 0)
      w = mix64(seed + (i >> 3));
    p[i] = (uint8_t)(w >> ((i & 7) * 8));
  }
}

uint64_t fr_seed(uint32_t conn, unsigned writer, unsigned kind,
                 uint32_t seq) {
  return mix64((uint64_t)conn << 32 ^ (uint64_t)writer << 20 ^
               (uint64_t)kind << 16 ^ seq);
}

size_t fr_compare(const uint8_t *p, size_t n, uint64_t pos, uint64_t seed) {
  for (size_t i = 0; i < n; i++) {
    uint64_t j = pos + i;
    if (p[i] != (uint8_t)(mix64(seed + (j >> 3)) >> ((j & 7) * 8)))
      return i;
  }
  return n;
}

size_t fr_build(uint8_t *dst, uint32_t conn, unsigned writer,
                unsigned kind, unsigned how, uint32_t seq, uint32_t len) {
  fr_hdr h = {.magic = FR_MAGIC,
              .conn = conn,
              .writer = (uint16_t)writer,
              .kind = (uint8_t)kind,
              .how = (uint8_t)how,
              .seq = seq,
              .len = len};
  uint8_t *pay = dst + sizeof(h);
  fr_fill(pay, len, fr_seed(conn, writer, kind, seq));
  ck_t c = CK_INIT;
  ck_update(&c, pay, len);
  h.sum = ck_value(&c);
  h.hsum = fr_hsum(&h);
  memcpy(dst, &h, sizeof(h));
  return sizeof(h) + len;
}

/* ---- receiving side: a frame parser per peer ------------------------------*/

__attribute__((unused, format(printf, 3, 4))) static void
rx_fail(rx_t *rx, const char *cls, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  rx->bad = 1;
  rl_fail(cls, "peer of connection %u (%s), stream offset %llu: %s", rx->conn, rx->desc,
           (unsigned long long)rx->bytes, msg);
}

void rx_feed(rx_t *rx, const uint8_t *p, size_t n) {
  while (n && !rx->bad) {
    if (!rx->in_payload) {
      size_t k = sizeof(fr_hdr) - rx->hgot;
      if (k > n)
        k = n;
      memcpy(rx->hbuf + rx->hgot, p, k);
      rx->hgot += (uint32_t)k;
      rx->bytes += k;
      p += k;
      n -= k;
      if (rx->hgot < sizeof(fr_hdr))
        return;
      fr_hdr h;
      memcpy(&h, rx->hbuf, sizeof(h));
      if (h.magic != FR_MAGIC || h.hsum != fr_hsum(&h)) {
        rx_fail(rx, "stream-corrupt", "not a frame header (magic %08x): bytes lost, duplicated "
                    "or interleaved",
                h.magic);
        return;
      }
      int idx = h.conn == rx->conn ? 0 : -1;
      for (int k = 0; k < rx->nlater && idx < 0; k++)
        if (h.conn == rx->later[k])
          idx = k + 1;
      if (idx >= 0 && idx < rx->at) {
        rx_fail(rx, "stale-uuid-delivery",
                "frame of connection %u (writer %u, seq %u) after frames of "
                "the connection that replaced it on the same fd",
                h.conn, h.writer, h.seq);
        return;
      }
      if (idx > rx->at)
        rx->at = idx;
      if (idx < 0) {
        rx_fail(rx, "stale-uuid-delivery",
                "frame of connection %u (writer %u, seq %u) delivered here: "
                "data reached a connection through a stale UUID",
                h.conn, h.writer, h.seq);
        return;
      }
      if (h.writer >= RL_MAXW || h.kind > FR_URGENT) {
        rx_fail(rx, "stream-corrupt", "bad writer/kind %u/%u", h.writer, h.kind);
        return;
      }
      if (h.seq != rx->next[h.kind][h.writer]) {
        rx_fail(rx, "frame-order",
                "%s frame %u of writer %u arrived, expected %u (%s)",
                h.kind ? "urgent" : "normal", h.seq, h.writer,
                rx->next[h.kind][h.writer],
                h.seq < rx->next[h.kind][h.writer] ? "duplicate or reordered"
                                                   : "frames lost or reordered");
        return;
      }
      rx->cur = h;
      rx->pgot = 0;
      rx->ck = CK_INIT;
      rx->in_payload = 1;
      rx->first_bad = -1;
      rx->frame_start = rx->bytes - sizeof(fr_hdr);
    }
    size_t k = rx->cur.len - rx->pgot;
    if (k > n)
      k = n;
    ck_update(&rx->ck, p, k);
    if (rx->first_bad < 0) {
      size_t b = fr_compare(p, k, rx->pgot,
                            fr_seed(rx->cur.conn, rx->cur.writer,
                                    rx->cur.kind, rx->cur.seq));
      if (b < k) {
        rx->first_bad = (int64_t)(rx->pgot + b);
        size_t m = k - b < 16 ? k - b : 16;
        memset(rx->bad_bytes, 0, sizeof(rx->bad_bytes));
        memcpy(rx->bad_bytes, p + b, m);
      }
    }
    rx->pgot += (uint32_t)k;
    rx->bytes += k;
    p += k;
    n -= k;
    if (rx->pgot == rx->cur.len) {
      if (ck_value(&rx->ck) != rx->cur.sum || rx->first_bad >= 0) {
        const uint8_t *b = rx->bad_bytes;
        rx_fail(rx, "frame-checksum",
                "%s frame %u of writer %u (%u payload bytes, sent as %s, "
                "frame at stream offset %llu): payload wrong from byte %lld "
                "(%02x%02x%02x%02x %02x%02x%02x%02x %02x%02x%02x%02x "
                "%02x%02x%02x%02x)",
                rx->cur.kind ? "urgent" : "normal", rx->cur.seq,
                rx->cur.writer, rx->cur.len,
                rx->cur.how < 6 ? (const char *[]){"write", "move", "urgent",
                                                   "file", "pipe-file",
                                                   "packet"}[rx->cur.how]
                                : "?",
                (unsigned long long)rx->frame_start,
                (long long)rx->first_bad, b[0], b[1], b[2], b[3], b[4], b[5],
                b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
        return;
      }
      rx->next[rx->cur.kind][rx->cur.writer]++;
      rx->frames++;
      rx->in_payload = 0;
      rx->hgot = 0;
    }
  }
}

int rx_truncated(const rx_t *rx) { return rx->in_payload || rx->hgot > 0; }

/* ---- connections ----------------------------------------------------------*/

const char *const lk_name[] = {"unix", "pipe", "tcp-accepted",
                               "tcp-connected", "listener"};

/* the registry (see common.h) */
static pthread_mutex_t reg_mtx = PTHREAD_MUTEX_INITIALIZER;
lconn_t *reg_all;
static uint32_t reg_next_id = 1;
#define REG_BUCKETS (1u << 16)
static lconn_t **reg_buckets;
long reg_done_conns;
uint64_t reg_done_frames, reg_done_bytes;
atomic_long rl_touches, rl_unknown_closes;
int rl_epoll = -1;

void reg_init(void) {
  reg_buckets = calloc(REG_BUCKETS, sizeof(*reg_buckets));
  reg_all = NULL;
  reg_done_conns = 0;
  reg_done_frames = reg_done_bytes = 0;
  RL_ATOMIC(rl_nerrors);
  RL_ATOMIC(rl_touches);
  RL_ATOMIC(rl_unknown_closes);
  RL_ATOMIC(rl_dealloc_calls);
  RL_ATOMIC(rl_refused_files_open);
  RL_ATOMIC(rl_injected);
  RL_ATOMIC(h_cur_failed);
  rl_epoll = epoll_create1(EPOLL_CLOEXEC);
}

static size_t reg_slot(intptr_t uuid) {
  return (size_t)(mix64((uint64_t)uuid) & (REG_BUCKETS - 1));
}

/* caller holds reg_mtx */
static void reg_insert_locked(lconn_t *c) {
  lconn_t **b = &reg_buckets[reg_slot(c->uuid)];
  c->hnext = *b;
  *b = c;
  c->prev_all = NULL;
  c->next_all = reg_all;
  if (reg_all)
    reg_all->prev_all = c;
  reg_all = c;
}

/* caller holds reg_mtx */
static void reg_unlink_locked(lconn_t *c) {
  for (lconn_t **p = &reg_buckets[reg_slot(c->uuid)]; *p; p = &(*p)->hnext)
    if (*p == c) {
      *p = c->hnext;
      break;
    }
  if (c->prev_all)
    c->prev_all->next_all = c->next_all;
  else
    reg_all = c->next_all;
  if (c->next_all)
    c->next_all->prev_all = c->prev_all;
}

lconn_t *reg_find(intptr_t uuid) {
  lconn_t *found = NULL;
  pthread_mutex_lock(&reg_mtx);
  for (lconn_t *c = reg_buckets[reg_slot(uuid)]; c; c = c->hnext)
    if (c->uuid == uuid) {
      found = c;
      break;
    }
  pthread_mutex_unlock(&reg_mtx);
  return found;
}

lconn_t *lconn_alloc(int kind, int owner) {
  lconn_t *c = calloc(1, sizeof(*c));
  c->kind = kind;
  c->owner = owner;
  c->uuid = -1;
  c->lfd = -1;
  c->peer = -1;
  c->hook_mode = -1;
  pthread_mutex_init(&c->peer_mtx, NULL);
  pthread_mutex_init(&c->rd_mtx, NULL);
  pthread_mutex_init(&c->rx_mtx, NULL);
  RL_ATOMIC(c->close_req);
  RL_ATOMIC(c->force_req);
  RL_ATOMIC(c->closed);
  RL_ATOMIC(c->n_close);
  RL_ATOMIC(c->n_remove);
  RL_ATOMIC(c->peer_done);
  RL_ATOMIC(c->fail_ok);
  RL_ATOMIC(c->replaced);
  return c;
}

void lconn_publish(lconn_t *c) {
  pthread_mutex_lock(&reg_mtx);
  c->id = reg_next_id++;
  c->rx.conn = c->id;
  snprintf(c->rx.desc, sizeof(c->rx.desc), "%s%s%s", lk_name[c->kind],
           c->small ? ", small buffers" : "",
           c->hook_mode < 0 ? "" : c->hook_mode ? ", buffering hooks" : ", hooks");
  reg_insert_locked(c);
  pthread_mutex_unlock(&reg_mtx);
  if (c->peer >= 0) {
    /* the readers find c through epoll, a path DRD cannot see: they lock
     * rx_mtx before touching c, and it is held here while c is handed over,
     * so everything written to c so far happens before their accesses */
    pthread_mutex_lock(&c->rx_mtx);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT,
                             .data.ptr = c};
    if (epoll_ctl(rl_epoll, EPOLL_CTL_ADD, c->peer, &ev) != 0)
      rl_fail("harness", "epoll_ctl ADD: %s", strerror(errno));
    pthread_mutex_unlock(&c->rx_mtx);
  } else {
    /* nothing to read: a listener, or a connection that failed to set up */
    c->rx.eof = 1;
    atomic_store(&c->peer_done, 1);
  }
}

int closing_expected(lconn_t *c) {
  return atomic_load(&c->close_req) || atomic_load(&c->force_req) ||
         atomic_load(&c->fail_ok) || atomic_load(&c->replaced);
}

/* ---- the library callbacks ------------------------------------------------*/

void (*rl_on_remove)(intptr_t uuid);

int reactor_remove(intptr_t uuid) {
  if (rl_on_remove)
    rl_on_remove(uuid);
  lconn_t *c = reg_find(uuid);
  if (c)
    atomic_fetch_add(&c->n_remove, 1);
  return 0;
}

void reactor_on_close(intptr_t uuid) {
  lconn_t *c = reg_find(uuid);
  if (!c) {
    atomic_fetch_add(&rl_unknown_closes, 1);
    rl_fail("on_close-unknown-uuid", "reactor_on_close(%#lx): not a UUID the program holds",
             (long)uuid);
    return;
  }
  int n = atomic_fetch_add(&c->n_close, 1) + 1;
  if (n > 1)
    rl_fail("on_close-more-than-once", "reactor_on_close called %d times for connection %u (uuid %#lx)",
             n, c->id, (long)uuid);
  if (atomic_load(&c->n_remove) != n)
    rl_fail("remove-before-on_close", "connection %u: reactor_on_close #%d after %d reactor_remove",
             c->id, n, atomic_load(&c->n_remove));
  if (!closing_expected(c))
    rl_fail("closed-unrequested", "connection %u (%s) closed although nobody closed it "
             "(a stale UUID closed it, or a failure)",
             c->id, lk_name[c->kind]);
  atomic_store(&c->closed, 1);
}

static _Thread_local long thread_touches;
long rl_thread_touches(void) { return thread_touches; }

void sock_touch(intptr_t uuid) {
  (void)uuid;
  atomic_fetch_add(&rl_touches, 1);
  thread_touches++;
}

/* ---- the readers of the peer ends -----------------------------------------*/

void peer_finish(lconn_t *c) {
  epoll_ctl(rl_epoll, EPOLL_CTL_DEL, c->peer, NULL);
  pthread_mutex_lock(&c->peer_mtx);
  close(c->peer);
  c->peer = -1;
  pthread_mutex_unlock(&c->peer_mtx);
  atomic_store(&c->peer_done, 1);
}

size_t peer_read(lconn_t *c, uint8_t *buf, size_t cap, size_t budget,
                 int *eof) {
  size_t got = 0;
  *eof = 0;
  while (got < budget) {
    size_t want = budget - got < cap ? budget - got : cap;
    ssize_t k = read(c->peer, buf, want);
    if (k > 0) {
      rx_feed(&c->rx, buf, (size_t)k);
      got += (size_t)k;
      continue;
    }
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    /* EOF; ECONNRESET after all data (unix sockets report the reset of a
     * peer that closed with unread data only once the queue is read) */
    *eof = 1;
    break;
  }
  return got;
}

static void *reader_main(void *arg) {
  readers_t *r = arg;
  size_t cap = 1 << 18;
  uint8_t *buf = malloc(cap);
  struct epoll_event evs[32];
  while (!atomic_load(&r->stop)) {
    int n = epoll_wait(rl_epoll, evs, 32, 50);
    for (int i = 0; i < n; i++) {
      lconn_t *c = evs[i].data.ptr;
      pthread_mutex_lock(&c->rx_mtx);
      int fd = c->peer; /* only this reader closes it, after EOF */
      int done;
      peer_read(c, buf, cap, 4u << 20, &done);
      if (done) {
        c->rx.eof = 1;
        pthread_mutex_unlock(&c->rx_mtx);
        peer_finish(c);
        continue;
      }
      struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT,
                               .data.ptr = c};
      epoll_ctl(rl_epoll, EPOLL_CTL_MOD, fd, &ev);
      pthread_mutex_unlock(&c->rx_mtx);
    }
  }
  free(buf);
  return NULL;
}

void readers_start(readers_t *r, int n) {
  r->n = n;
  RL_ATOMIC(r->stop);
  atomic_store(&r->stop, 0);
  for (int i = 0; i < n; i++)
    pthread_create(&r->th[i], NULL, reader_main, r);
}

void readers_stop(readers_t *r) {
  atomic_store(&r->stop, 1);
  for (int i = 0; i < r->n; i++)
    pthread_join(r->th[i], NULL);
}

/* ---- rw hooks ----------------------------------------------------------------
 * Transparent transports that misbehave within the hook contract:
 *   HOOK_PASS    write/read pass through to the fd, but answer EAGAIN at
 *                random and move random partial amounts;
 *   HOOK_BUFFER  like a TLS library: write takes bytes into an internal
 *                buffer (EAGAIN when full), flush writes them out (partially,
 *                or EAGAIN at random) and returns the bytes still held;
 * optionally failing for good (EIO) after `fail_after` bytes (set fail_ok on
 * the connection first). The frames must arrive exactly as without hooks,
 * and on_clear must come once, after the last hook call. */

static int hook_rand(hookst_t *hs, uint32_t percent) {
  hs->rng = mix64(hs->rng + 0x9E3779B97F4A7C15ull);
  return (hs->rng >> 40) % 100 < percent;
}

static size_t hook_part(hookst_t *hs, size_t n) {
  hs->rng = mix64(hs->rng + 0x9E3779B97F4A7C15ull);
  if (n > 1 && (hs->rng & 3) == 0)
    return 1 + (size_t)(hs->rng >> 20) % n;
  return n;
}

static hookst_t *hook_of(intptr_t uuid, const char *what) {
  lconn_t *c = reg_find(uuid);
  hookst_t *hs = c ? c->hook : NULL;
  if (!hs) {
    rl_fail("hook-foreign-uuid",
            "%s hook called with uuid %#lx, which has no hooks", what,
            (long)uuid);
    return NULL;
  }
  atomic_fetch_add(&hs->calls, 1);
  if (atomic_load(&hs->cleared))
    rl_fail("hook-after-on_clear",
            "%s hook of connection %u called after its on_clear", what,
            c->id);
  return hs;
}

static ssize_t raw_out(lconn_t *c, const void *b, size_t n) {
  int fd = sock_uuid2fd(c->uuid);
  if (c->kind == LK_PIPE)
    return write(fd, b, n); /* SIGPIPE: the library blocks it around hooks */
  return send(fd, b, n, MSG_DONTWAIT);
}

/* HOOK_BUFFER: writes out what the hook holds; the bytes left */
static ssize_t hook_drain(hookst_t *hs) {
  while (hs->len) {
    ssize_t w = raw_out(hs->c, hs->buf, hook_part(hs, hs->len));
    if (w < 0)
      return errno == EAGAIN || errno == EINTR ? (ssize_t)hs->len : -1;
    memmove(hs->buf, hs->buf + w, hs->len - (size_t)w);
    hs->len -= (size_t)w;
  }
  return 0;
}

static ssize_t hook_write(intptr_t uuid, const void *buf, size_t count) {
  RL_FRESH(buf, count);
  hookst_t *hs = hook_of(uuid, "write");
  if (!hs) {
    errno = EBADF;
    return -1;
  }
  pthread_mutex_lock(&hs->mtx);
  ssize_t r;
  int err = 0;
  if (hs->fail_after >= 0 && (long)count > hs->fail_after) {
    r = -1;
    err = EIO;
  } else if (hook_rand(hs, 15)) {
    r = -1;
    err = EAGAIN;
  } else if (hs->mode == HOOK_PASS) {
    r = raw_out(hs->c, buf, hook_part(hs, count));
    err = errno;
  } else if (hook_drain(hs) < 0) {
    r = -1;
    err = errno;
  } else if (hs->len == hs->cap) {
    r = -1;
    err = EAGAIN;
  } else {
    size_t k = hook_part(hs, count);
    if (k > hs->cap - hs->len)
      k = hs->cap - hs->len;
    memcpy(hs->buf + hs->len, buf, k);
    hs->len += k;
    r = (ssize_t)k;
  }
  if (r > 0 && hs->fail_after >= 0)
    hs->fail_after -= r;
  pthread_mutex_unlock(&hs->mtx);
  errno = err;
  return r;
}

static ssize_t hook_read(intptr_t uuid, void *buf, size_t count) {
  hookst_t *hs = hook_of(uuid, "read");
  if (!hs) {
    errno = EBADF;
    return -1;
  }
  pthread_mutex_lock(&hs->mtx);
  int eagain = hook_rand(hs, 15);
  size_t k = hook_part(hs, count);
  pthread_mutex_unlock(&hs->mtx);
  if (eagain) {
    errno = EAGAIN;
    return -1;
  }
  return recv(sock_uuid2fd(uuid), buf, k, MSG_DONTWAIT);
}

static ssize_t hook_flush(intptr_t uuid) {
  hookst_t *hs = hook_of(uuid, "flush");
  if (!hs) {
    errno = EBADF;
    return -1;
  }
  pthread_mutex_lock(&hs->mtx);
  ssize_t left = hook_drain(hs);
  int err = errno;
  if (left >= 0 && hook_rand(hs, 10)) {
    left = -1; /* "try again later" */
    err = EAGAIN;
  }
  pthread_mutex_unlock(&hs->mtx);
  errno = err;
  return left;
}

static void hook_clear(intptr_t uuid, sock_rw_hook_s *h) {
  hookst_t *hs = (hookst_t *)h;
  lconn_t *c = reg_find(uuid);
  if (!c || c->hook != hs)
    rl_fail("on_clear-foreign", "on_clear(%#lx) with a hook that is not "
            "that connection's", (long)uuid);
  if (atomic_fetch_add(&hs->cleared, 1))
    rl_fail("on_clear-count", "on_clear called twice for connection %u",
            c ? c->id : 0);
}

void hook_prepare(lconn_t *c, int mode, uint64_t seed, long fail_after) {
  hookst_t *hs = calloc(1, sizeof(*hs));
  hs->c = c;
  hs->mode = mode;
  hs->rng = seed;
  hs->fail_after = fail_after;
  pthread_mutex_init(&hs->mtx, NULL);
  RL_ATOMIC(hs->cleared);
  RL_ATOMIC(hs->calls);
  if (mode == HOOK_BUFFER) {
    hs->cap = 1u << 16;
    hs->buf = malloc(hs->cap);
    hs->h.flush = hook_flush;
  }
  hs->h.write = hook_write;
  if (c->kind != LK_PIPE)
    hs->h.read = hook_read;
  hs->h.on_clear = hook_clear;
  c->hook = hs;
  c->hook_mode = mode;
  if (fail_after >= 0)
    atomic_store(&c->fail_ok, 1);
}

int hook_install(lconn_t *c) {
  return sock_rw_hook_set(c->uuid, &c->hook->h);
}

static void hook_free(hookst_t *hs) {
  if (!hs)
    return;
  pthread_mutex_destroy(&hs->mtx);
  free(hs->buf);
  free(hs);
}

/* ---- creating connections --------------------------------------------------
 * Each creator (thread) has its own listeners, so the connection it accepts
 * is the one it just connected. */

int creator_init(creator_t *cr, int owner) {
  memset(cr, 0, sizeof(*cr));
  cr->raw_listener = -1;
  intptr_t l = sock_listen("127.0.0.1", "0");
  if (l == -1)
    return -1;
  lconn_t *c = lconn_alloc(LK_LISTENER, owner);
  c->uuid = l;
  c->lfd = sock_uuid2fd(l);
  lconn_publish(c);
  cr->lib_listener = c;
  socklen_t al = sizeof(cr->lib_addr);
  getsockname(c->lfd, (struct sockaddr *)&cr->lib_addr, &al);
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  al = sizeof(a);
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 64) ||
      getsockname(s, (struct sockaddr *)&a, &al)) {
    if (s >= 0)
      close(s);
    return -1;
  }
  cr->raw_listener = s;
  snprintf(cr->raw_port, sizeof(cr->raw_port), "%d", ntohs(a.sin_port));
  return 0;
}

void creator_close(creator_t *cr) {
  if (cr->lib_listener) {
    atomic_store(&cr->lib_listener->force_req, 1);
    sock_force_close(cr->lib_listener->uuid);
  }
  if (cr->raw_listener >= 0)
    close(cr->raw_listener);
  cr->raw_listener = -1;
}

static void set_bufs(int fd, int snd, int rcv) {
  if (snd > 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof(snd));
  if (rcv > 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
}

lconn_t *lconn_create(creator_t *cr, int kind, int owner, int small,
                      int hook_mode, uint64_t hook_seed) {
  lconn_t *c = lconn_alloc(kind, owner);
  c->small = small;
  if (hook_mode >= 0)
    hook_prepare(c, hook_mode, hook_seed, -1);
  int lfd = -1, peer = -1;
  switch (kind) {
  case LK_UNIX: {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
      goto fail;
    lfd = sv[0];
    peer = sv[1];
    if (small) {
      set_bufs(lfd, 4096, 0);
      set_bufs(peer, 0, 4096);
    }
    sock_set_non_block(lfd);
    c->uuid = sock_open(lfd);
    break;
  }
  case LK_PIPE: {
    int p[2];
    if (pipe2(p, O_CLOEXEC))
      goto fail;
    lfd = p[1];
    peer = p[0];
    if (small)
      fcntl(lfd, F_SETPIPE_SZ, 4096);
    sock_set_non_block(lfd);
    c->uuid = sock_open(lfd);
    break;
  }
  case LK_TCP_ACCEPTED: {
    peer = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (peer < 0)
      goto fail;
    if (connect(peer, (struct sockaddr *)&cr->lib_addr,
                sizeof(cr->lib_addr)))
      goto fail;
    c->uuid = accept_wait(cr->lib_listener->uuid, 5000);
    if (c->uuid != -1) {
      lfd = sock_uuid2fd(c->uuid);
      if (small)
        set_bufs(lfd, 8192, 0);
    }
    break;
  }
  case LK_TCP_CONNECTED: {
    c->uuid = sock_connect("127.0.0.1", cr->raw_port);
    if (c->uuid == -1)
      goto fail;
    lfd = sock_uuid2fd(c->uuid);
    if (small)
      set_bufs(lfd, 8192, 0);
    if (wait_fd(cr->raw_listener, POLLIN, 5000))
      peer = accept4(cr->raw_listener, NULL, NULL, SOCK_CLOEXEC);
    if (peer < 0) {
      /* nobody will see this one: close it ourselves, as the program */
      hook_free(c->hook);
      c->hook = NULL;
      c->hook_mode = -1;
      atomic_store(&c->force_req, 1);
      lconn_publish(c);
      sock_force_close(c->uuid);
      return NULL;
    }
    break;
  }
  default:
    goto fail;
  }
  if (c->uuid == -1)
    goto fail;
  c->lfd = lfd;
  fcntl(peer, F_SETFL, fcntl(peer, F_GETFL) | O_NONBLOCK);
  c->peer = peer;
  lconn_publish(c);
  if (c->hook && hook_install(c) != 0)
    rl_fail("harness", "sock_rw_hook_set on a new connection failed");
  return c;
fail:
  hook_free(c->hook);
  if (lfd >= 0 && c->uuid == -1 && kind != LK_TCP_ACCEPTED)
    close(lfd);
  if (peer >= 0)
    close(peer);
  free(c);
  return NULL;
}

/* ---- sending frames ---------------------------------------------------------*/

const char *const send_name[] = {"write", "move", "urgent",
                                 "file", "pipe-file", "packet"};

static void counting_dealloc(void *p) {
  atomic_fetch_add(&rl_dealloc_calls, 1);
  free(p);
}

int frame_file(const uint8_t *frame, size_t n, size_t pre,
                      size_t post) {
  int fd = memfd_create("libsock-stress", MFD_CLOEXEC);
  if (fd < 0) {
    char path[] = "/tmp/libsock-stress-XXXXXX";
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
      return -1;
    unlink(path);
  }
  uint8_t fill[512];
  memset(fill, 0xEE, sizeof(fill));
  for (size_t k = pre; k;) {
    size_t m = k < sizeof(fill) ? k : sizeof(fill);
    if (write(fd, fill, m) != (ssize_t)m)
      goto bad;
    k -= m;
  }
  for (size_t off = 0; off < n;) {
    ssize_t w = write(fd, frame + off, n - off);
    if (w <= 0)
      goto bad;
    off += (size_t)w;
  }
  for (size_t k = post; k;) {
    size_t m = k < sizeof(fill) ? k : sizeof(fill);
    if (write(fd, fill, m) != (ssize_t)m)
      goto bad;
    k -= m;
  }
  return fd;
bad:
  close(fd);
  return -1;
}

/* A pipe whose read end holds the frame (n <= 60 KiB) then EOF. */
static int frame_pipe(const uint8_t *frame, size_t n) {
  int p[2];
  if (pipe2(p, O_CLOEXEC))
    return -1;
  if (n > 4096)
    fcntl(p[1], F_SETPIPE_SZ, (int)(n + 4096));
  size_t off = 0;
  while (off < n) {
    ssize_t w = write(p[1], frame + off, n - off);
    if (w <= 0)
      break;
    off += (size_t)w;
  }
  close(p[1]);
  if (off != n) {
    close(p[0]);
    return -1;
  }
  return p[0];
}

void wctx_init(wctx_t *w, int writer, uint64_t seed) {
  memset(w, 0, sizeof(*w));
  w->writer = writer;
  w->rng.s = mix64(seed * 1000003u + (uint64_t)writer);
  w->cap = sizeof(fr_hdr) + (4u << 20);
  w->buf = malloc(w->cap);
}

void wctx_free(wctx_t *w) { free(w->buf); }

uint32_t pick_size(rng_t *r, uint32_t large_max) {
  uint32_t x = rng_below(r, 1000);
  if (x < 650)
    return rng_below(r, 400);
  if (x < 900)
    return rng_range(r, 400, 20000);
  if (large_max <= 20000)
    return rng_range(r, 400, large_max);
  if (x < 990 || large_max <= 200000)
    return rng_range(r, 20000, large_max < 200000 ? large_max : 200000);
  return rng_range(r, 200000, large_max);
}

int send_frame(wctx_t *w, lconn_t *c, int how, uint32_t len) {
  int urgent = how == SEND_URGENT || ((how == SEND_FILE || how == SEND_PACKET) &&
                                      rng_chance(&w->rng, 10));
  int kind = urgent ? FR_URGENT : FR_NORMAL;
  if (len > w->cap - sizeof(fr_hdr))
    len = (uint32_t)(w->cap - sizeof(fr_hdr));
  if (how == SEND_URGENT && len > 2000)
    len = len % 2000;
  if (how == SEND_PIPE && len > 50000)
    len = len % 50000;
  if (how == SEND_PACKET && len > BUFFER_PACKET_SIZE - sizeof(fr_hdr))
    len = len % (uint32_t)(BUFFER_PACKET_SIZE - sizeof(fr_hdr));
  uint32_t seq = c->acc[kind][w->writer];
  int was_closed = atomic_load(&c->closed);
  int inject = 0;
  if (rl_inject && !was_closed && how == SEND_COPY &&
      atomic_fetch_add(&rl_injected, 1) % 50 == 49)
    inject = rl_inject;
  if (inject == 3) { /* counted, never sent */
    c->acc[kind][w->writer]++;
    return 0;
  }
  ssize_t r = -1;
  int err = 0;
  size_t n;
  switch (how) {
  case SEND_COPY:
  case SEND_URGENT:
    n = fr_build(w->buf, c->id + (inject == 1), (unsigned)w->writer,
                 (unsigned)kind, (unsigned)how, seq, len);
    errno = 0;
    r = sock_write2(.fduuid = c->uuid, .buffer = w->buf, .length = n,
                    .urgent = (unsigned)urgent);
    err = errno;
    break;
  case SEND_MOVE: {
    uint8_t *m = malloc(sizeof(fr_hdr) + len);
    n = fr_build(m, c->id, (unsigned)w->writer, (unsigned)kind, (unsigned)how, seq, len);
    errno = 0;
    r = sock_write2(.fduuid = c->uuid, .buffer = m, .length = n, .move = 1);
    err = errno;
    break;
  }
  case SEND_FILE:
  case SEND_PIPE: {
    n = fr_build(w->buf, c->id, (unsigned)w->writer, (unsigned)kind, (unsigned)how, seq, len);
    size_t pre = 0, post = 0, length = n;
    int fd;
    if (how == SEND_FILE) {
      pre = rng_chance(&w->rng, 50) ? rng_below(&w->rng, 5000) : 0;
      post = rng_chance(&w->rng, 50) ? rng_below(&w->rng, 3000) : 0;
      if (!post && rng_chance(&w->rng, 50))
        length = n + rng_range(&w->rng, 1, 1u << 20); /* stops at EOF */
      fd = frame_file(w->buf, n, pre, post);
    } else {
      if (rng_chance(&w->rng, 50))
        length = n + rng_range(&w->rng, 1, 100000);
      fd = frame_pipe(w->buf, n);
    }
    if (fd < 0)
      return -2;
    struct stat st;
    fstat(fd, &st);
    errno = 0;
    r = sock_write2(.fduuid = c->uuid, .buffer = (void *)(intptr_t)fd,
                    .length = length, .offset = (off_t)pre, .is_fd = 1,
                    .urgent = (unsigned)urgent);
    err = errno;
    /* The file is the library's from here, also when the call fails. The
     * same number may hold another thread's new fd already: compare the
     * inode. */
    if (r != 0 && fd_is_same_file(fd, &st)) {
      atomic_fetch_add(&rl_refused_files_open, 1);
      rl_fail("refused-file-left-open", "a refused sock_write2(.is_fd) left the file open (fd %d): "
               "it must be closed also when the call fails",
               fd);
      close(fd); /* so the fd accounting at the end sees other leaks */
    }
    break;
  }
  case SEND_PACKET: {
    sock_packet_s *p = sock_checkout_packet();
    if (!p)
      return -2;
    /* an exhausted pool flushes sockets, which may finish closing this one */
    was_closed |= atomic_load(&c->closed);
    RL_FRESH(p, sizeof(*p));
    RL_FRESH(p->buffer, BUFFER_PACKET_SIZE);
    uint32_t style = rng_below(&w->rng, 3);
    if (style == 0) { /* the packet's own storage */
      n = fr_build(p->buffer, c->id, (unsigned)w->writer, (unsigned)kind, (unsigned)how, seq,
                   len);
    } else { /* an external buffer, freed by the library */
      uint8_t *m = malloc(sizeof(fr_hdr) + len);
      n = fr_build(m, c->id, (unsigned)w->writer, (unsigned)kind, (unsigned)how, seq, len);
      p->buffer = m;
      p->metadata.external = 1;
      if (style == 2)
        p->metadata.dealloc = counting_dealloc;
    }
    p->length = (ssize_t)n;
    p->metadata.urgent = (unsigned)urgent;
    p->metadata.can_interrupt = urgent ? 0 : (unsigned)rng_chance(&w->rng, 50);
    errno = 0;
    r = sock_send_packet(c->uuid, p);
    err = errno;
    break;
  }
  default:
    return -2;
  }
  w->closed_at_call = was_closed;
  if (r == 0) {
    w->ok[how]++;
    w->last_n = n;
    if (was_closed)
      rl_fail("stale-uuid-write-accepted", "%s to connection %u accepted after its reactor_on_close "
               "(stale UUID %#lx)",
               send_name[how], c->id, (long)c->uuid);
    if (inject != 2 && inject != 1)
      c->acc[kind][w->writer]++;
    return 0;
  }
  w->failed[how]++;
  if (err != ENODEV)
    rl_fail("refused-errno", "%s of %zu bytes to connection %u failed with errno %d (%s), "
             "expected only ENODEV",
             send_name[how], n, c->id, err, strerror(err));
  if (sock_isvalid(c->uuid))
    rl_fail("refused-uuid-still-valid", "%s to connection %u failed but its UUID is still valid",
             send_name[how], c->id);
  if (!closing_expected(c))
    rl_fail("refused-unrequested", "%s to connection %u (%s) failed although nobody closed it",
             send_name[how], c->id, lk_name[c->kind]);
  return -1;
}

/* ---- library-side reads and peer-side writes (peer -> library data) -------*/

uint32_t in_seed(const lconn_t *c) { return c->id * 2654435761u + 17; }

void peer_send(lconn_t *c, size_t n) {
  uint8_t buf[8192];
  if (n > sizeof(buf))
    n = sizeof(buf);
  pthread_mutex_lock(&c->peer_mtx);
  if (c->peer >= 0) {
    fill_pattern(buf, n, c->pw_off, in_seed(c));
    ssize_t k = send(c->peer, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (k > 0)
      c->pw_off += (uint64_t)k;
  }
  pthread_mutex_unlock(&c->peer_mtx);
}

void lib_read(lconn_t *c, size_t n) {
  uint8_t buf[16384];
  if (n > sizeof(buf))
    n = sizeof(buf);
  /* the incoming stream belongs to the peer: an fd registered again
   * (fuzz.c) reads on where the previous UUID stopped */
  lconn_t *st = c->alias_of ? c->alias_of : c;
  if (pthread_mutex_trylock(&st->rd_mtx))
    return;
  int was_closed = atomic_load(&c->closed);
  errno = 0;
  ssize_t r = sock_read(c->uuid, buf, n);
  int err = errno;
  if (r > 0) {
    if (was_closed)
      rl_fail("stale-uuid-read-data", "sock_read through the stale UUID of connection %u returned "
               "%zd bytes",
               c->id, r);
    size_t k = check_pattern(buf, (size_t)r, st->rd_off, in_seed(st));
    if (k < (size_t)r)
      rl_fail("read-data-wrong", "sock_read on connection %u: byte %llu of the incoming stream "
               "is wrong (lost, duplicated or foreign data)",
               c->id, (unsigned long long)(st->rd_off + k));
    st->rd_off += (uint64_t)r;
  } else if (r < 0) {
    if (!closing_expected(c))
      rl_fail("read-unrequested-close", "sock_read on connection %u (%s) returned -1 (errno %d) "
               "although nobody closed it",
               c->id, lk_name[c->kind], err);
    else if (err != ENODEV && was_closed)
      rl_fail("read-errno", "sock_read on the closed connection %u: errno %d, expected "
               "ENODEV",
               c->id, err);
  }
  pthread_mutex_unlock(&st->rd_mtx);
}

/* ---- end of run ---------------------------------------------------------------*/

int count_fds_settled(int expect, int ms) {
  int64_t end = now_ms() + ms;
  int n = count_fds();
  while (n != expect && now_ms() < end) {
    tiny_wait();
    n = count_fds();
  }
  return n;
}

void list_fds(int from) {
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return;
  struct dirent *e;
  int shown = 0;
  while ((e = readdir(d)) && shown < 8) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] == '.' || fd < from || fd == dirfd(d))
      continue;
    char path[64], target[256] = "";
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n > 0)
      target[n] = 0;
    fprintf(stderr, "    open fd %d -> %s\n", fd, target);
    shown++;
  }
  closedir(d);
}

int close_all_and_wait(int ms) {
  pthread_mutex_lock(&reg_mtx);
  lconn_t *all = reg_all;
  pthread_mutex_unlock(&reg_mtx);
  for (lconn_t *c = all; c; c = c->next_all)
    if (!atomic_load(&c->closed) && c->kind != LK_LISTENER) {
      atomic_store(&c->close_req, 1);
      sock_close(c->uuid);
    }
  int64_t end = now_ms() + ms;
  for (;;) {
    int open = 0;
    for (lconn_t *c = all; c; c = c->next_all) {
      if (c->kind == LK_LISTENER)
        continue;
      if (!atomic_load(&c->closed)) {
        sock_flush(c->uuid);
        open++;
      } else if (!atomic_load(&c->peer_done)) {
        open++;
      }
    }
    if (!open)
      return 0;
    if (now_ms() > end) {
      rl_fail("close-timeout", "%d connections still open or unread %d ms after closing "
               "them all",
               open, ms);
      return -1;
    }
    tiny_wait();
  }
}

void verify_one(lconn_t *c, int nwriters) {
  int nc = atomic_load(&c->n_close), nr = atomic_load(&c->n_remove);
  if (nc != 1 || nr != 1)
    rl_fail("on_close-count", "connection %u (%s, uuid %#lx): reactor_on_close %d times, "
             "reactor_remove %d times (expected once each)",
             c->id, lk_name[c->kind], (long)c->uuid, nc, nr);
  if (c->kind == LK_LISTENER || c->alias_of || c->rx.bad)
    return;
  if (!c->rx.eof) {
    rl_fail("peer-no-eof", "connection %u: the peer never saw the end of the stream",
             c->id);
    return;
  }
  int forced = atomic_load(&c->force_req) || atomic_load(&c->fail_ok) ||
               c->alias_forced;
  if (c->hook && atomic_load(&c->hook->cleared) != 1)
    rl_fail("on_clear-count",
            "connection %u: on_clear called %d times (expected once)",
            c->id, atomic_load(&c->hook->cleared));
  if (!forced && rx_truncated(&c->rx))
    rl_fail("graceful-truncated", "connection %u (%s) closed gracefully but its last frame is "
             "cut short (%u header + %u payload bytes)",
             c->id, lk_name[c->kind], c->rx.hgot, c->rx.pgot);
  for (int k = 0; k < 2; k++)
    for (int t = 0; t < nwriters; t++) {
      uint32_t got = c->rx.next[k][t],
               acc = c->acc[k][t] + c->alias_acc[k][t];
      if (got > acc)
        rl_fail("refused-write-delivered", "connection %u: writer %d's %s frame %u arrived whole, but "
                 "only %u were accepted (a refused write was delivered)",
                 c->id, t, k ? "urgent" : "normal", got - 1, acc);
      else if (!forced && got != acc)
        rl_fail("graceful-bytes-lost", "connection %u (%s) closed gracefully: writer %d had %u "
                 "%s frames accepted, the peer got %u (bytes lost)",
                 c->id, lk_name[c->kind], t, acc, k ? "urgent" : "normal",
                 got);
    }
}

void verify_all(int nwriters) {
  pthread_mutex_lock(&reg_mtx);
  lconn_t *all = reg_all;
  pthread_mutex_unlock(&reg_mtx);
  for (lconn_t *a = all; a; a = a->next_all)
    if (a->alias_of) {
      for (int k = 0; k < 2; k++)
        for (int t = 0; t < RL_MAXW; t++)
          a->alias_of->alias_acc[k][t] += a->acc[k][t];
      a->alias_of->alias_forced |=
          atomic_load(&a->force_req) || atomic_load(&a->fail_ok);
    }
  for (lconn_t *c = all; c; c = c->next_all)
    verify_one(c, nwriters);
}

static void lconn_free(lconn_t *c) {
  pthread_mutex_destroy(&c->peer_mtx);
  pthread_mutex_destroy(&c->rd_mtx);
  pthread_mutex_destroy(&c->rx_mtx);
  hook_free(c->hook);
  free(c);
}

int reg_retire(lconn_t *c, int nwriters) {
  if (!atomic_load(&c->closed) || !atomic_load(&c->peer_done))
    return 0;
  /* order this thread after the last users of c's state (for DRD) */
  pthread_mutex_lock(&c->rx_mtx);
  pthread_mutex_lock(&c->peer_mtx);
  pthread_mutex_lock(&c->rd_mtx);
  pthread_mutex_unlock(&c->rd_mtx);
  pthread_mutex_unlock(&c->peer_mtx);
  pthread_mutex_unlock(&c->rx_mtx);
  if (c->hook) {
    pthread_mutex_lock(&c->hook->mtx);
    pthread_mutex_unlock(&c->hook->mtx);
  }
  verify_one(c, nwriters);
  pthread_mutex_lock(&reg_mtx);
  reg_unlink_locked(c);
  reg_done_conns++;
  reg_done_frames += c->rx.frames;
  reg_done_bytes += c->rx.bytes;
  pthread_mutex_unlock(&reg_mtx);
  lconn_free(c);
  return 1;
}

void reg_free(void) {
  pthread_mutex_lock(&reg_mtx);
  lconn_t *c = reg_all;
  reg_all = NULL;
  pthread_mutex_unlock(&reg_mtx);
  while (c) {
    lconn_t *n = c->next_all;
    lconn_free(c);
    c = n;
  }
  free(reg_buckets);
  reg_buckets = NULL;
  if (rl_epoll >= 0)
    close(rl_epoll);
  rl_epoll = -1;
}

typedef struct {
  size_t want, got;
  atomic_int done;
} poolcheck_t;

static void *poolcheck_main(void *arg) {
  poolcheck_t *pc = arg;
  sock_packet_s *head = NULL;
  for (pc->got = 0; pc->got < pc->want; pc->got++) {
    sock_packet_s *p = sock_checkout_packet();
    if (!p)
      break;
    p->metadata.next = head;
    head = p;
  }
  sock_free_packet(head);
  atomic_store(&pc->done, 1);
  return NULL;
}

void check_pool_whole(int ms) {
  static poolcheck_t pc;
  RL_ATOMIC(pc.done);
  pc.want = sock_packet_pool_size();
  pc.got = 0;
  atomic_store(&pc.done, 0);
  pthread_t th;
  pthread_create(&th, NULL, poolcheck_main, &pc);
  int64_t end = now_ms() + ms;
  while (!atomic_load(&pc.done) && now_ms() < end)
    tiny_wait();
  if (!atomic_load(&pc.done)) {
    rl_fail("pool-packets-leaked", "pool packets leaked: only some of the %zu packets can be "
             "checked out once every connection is closed",
             pc.want);
    pthread_detach(th);
    return;
  }
  pthread_join(th, NULL);
}

long env_long(const char *name, long dflt) {
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 0) : dflt;
}
