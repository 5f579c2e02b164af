/*
 * liveness.c -- nothing accepted is ever stranded (issue 10).
 *
 * The library is driven only the way its real callers drive it (see the
 * project's notes on callers: facil.io's reactor + task pool + server
 * layer):
 *   - one reactor thread with an EDGE-TRIGGERED epoll set
 *     (EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP | EPOLLERR | EPOLLHUP) on
 *     every library fd; on EPOLLOUT it calls sock_flush(uuid) and
 *     sock_close(uuid) when that answers -1; on EPOLLIN it hands the UUID to
 *     the task pool; reactor_remove is its epoll_ctl(DEL);
 *   - a task pool: this program DEFINES async_run() and runs the library's
 *     flush tasks (and its own read tasks) on worker threads;
 *   - writer threads (and the workers, answering "requests") writing frames:
 *     small and large copies (larger than the free pool with the small-pool
 *     profile), .move buffers, files (.is_fd and sock_sendfile), pipes as
 *     sources (data written, write end closed), pool packets, urgent writes;
 *   - connections with write hooks that pass through to the socket but
 *     answer EINTR, 0 or short writes at random, and EAGAIN when the socket
 *     is not writable (an EAGAIN after which the kernel owes an EPOLLOUT);
 *   - every connection is closed after its last write: sock_close by the
 *     thread that made it, sock_force_close for some, and for "keep-alive"
 *     ones the peer hangs up once it has every byte (below).
 * Nothing is ever finished with sock_flush_strong or a flush loop: once
 * written, data reaches the peer only through the reactor's sock_flush on
 * EPOLLOUT and the flushes the library itself schedules.
 *
 * Peers (TCP loopback and Unix socket pairs, several dozen at once) are
 * read by reader threads at varying speeds (fast, medium, slow, bursty with
 * pauses) that verify every frame (common.h: per connection, writer and
 * kind sequence numbers, so loss, duplication and reordering are caught,
 * while urgent frames may overtake normal ones). Unix peers also send small
 * "requests" that worker tasks read with sock_read.
 *
 * A watchdog thread samples every connection every 50 ms. It fails the run
 * ("LIVENESS STALL") when a connection has bytes queued
 * (sock_packets_pending), a writable socket (poll POLLOUT, 0) and no byte
 * reached its peer for LIVENESS_STALL_MS (1 s); and ("LIVENESS STALL
 * (close)") when its close was asked for, nothing is queued and it is still
 * open after as long. It prints what the program knows of the connection
 * (UUID, fd, bytes accepted/received, kernel queues, the last events and
 * flushes, what is in flight, the hook's answers, whether the fd is still
 * in the reactor's epoll set). Then it flushes that connection itself
 * whenever it is stuck again (and says whether that moved the data: the
 * stall was the library's), so a run ends and shows every stall.
 *
 * reactor_remove is the reactor's epoll_ctl(DEL) of the fd NUMBER; a call
 * that comes once the number belongs to a newer connection (which it would
 * take out of the event loop) is reported ("reactor_remove-late").
 *
 * At the end every connection closed gracefully delivered every byte of
 * every accepted frame; reactor_remove and reactor_on_close came exactly
 * once per connection, on_clear once per hooked connection; no fd and no
 * pool packet is left.
 *
 * Profiles (tests): mixed (48 connections, default pool), small_pool (a few
 * packets, writes of up to 4 MiB), hooks (mostly hooked connections), and
 * large_writes (one writer, keep-alive connections, writes larger than the
 * pool). Some connections are "keep-alive": the program does not close
 * them after the last write; the peer hangs up once it has every byte and
 * the reactor closes on EPOLLRDHUP, so nothing but the flushes the library
 * owes can deliver the end.
 *
 * Builds: -DLIVENESS_CONTROL, the control: the reactor drops the sock_flush
 * of the EPOLLOUT events of one connection that has data queued after its
 * last write (a lost wake-up made on purpose); the watchdog must report it
 * ("LIVENESS STALL [control victim]") and the run fails. -DLIVENESS_INLINE:
 * the program defines no async_run (a caller without a task pool: the
 * library flushes inline, in the writing thread).
 *
 * Environment: STRESS_SEED (1), LIVENESS_SECONDS per profile (3; may be
 * fractional), LIVENESS_STALL_MS (1000), LIVENESS_DRAIN_MS (30000: the
 * longest wait for all connections to close once writing stopped),
 * LIVENESS_CONNS (the profile's number of connections), LIVENESS_HOOK_PCT
 * (the profile's share of hooked connections, percent). Command line: test
 * (profile) names.
 */
#include "common.h"

#include <sys/ioctl.h>

#define NWRITERS 4 /* writer threads: writer indexes 0..3 */
#define NWORKERS 4 /* task pool threads: writer indexes 4..7 */
#define NREADERS 3
#define MAXSLOTS 64

/* ---- profiles ----------------------------------------------------------*/

enum { LV_SENDFILE = SEND_KINDS, LV_KINDS }; /* plus sock_sendfile */
static const char *const lv_send_name[LV_KINDS] = {
    "write", "move", "urgent", "file", "pipe-file", "packet", "sendfile"};

enum { SP_FAST, SP_MEDIUM, SP_SLOW, SP_BURSTY, NSPEEDS };
static const char *const speed_name[NSPEEDS] = {"fast", "medium", "slow",
                                                "bursty"};

typedef struct {
  const char *name;
  int nconn;                  /* connections open at once */
  int send_weight[LV_KINDS];
  int kinds[3];               /* weights: unix pair, tcp accepted, connected */
  int small_pct;              /* small kernel buffers */
  int hook_pct;               /* write hooks */
  uint32_t large;             /* largest payload */
  int big_pct;                /* payloads of large/4 .. large */
  int pools[4];               /* pool sizes (packets), one picked by seed; 0
                                 entries: the default */
  int frames_min, frames_max; /* frames per connection */
  int speed_weight[NSPEEDS];
  int force_pct;              /* closed with sock_force_close */
  int keepalive_pct;          /* closed by the peer once it has it all */
  int writers;                /* writer threads (0: NWRITERS) */
} profile_t;

/* Everything at once, default pool. */
__attribute__((unused)) static const profile_t p_mixed = {
    .name = "mixed",
    .nconn = 48,
    .send_weight = {[SEND_COPY] = 40, [SEND_MOVE] = 12, [SEND_URGENT] = 10,
                    [SEND_FILE] = 6, [SEND_PIPE] = 6, [SEND_PACKET] = 6,
                    [LV_SENDFILE] = 6},
    .kinds = {50, 25, 25},
    .small_pct = 40,
    .hook_pct = 20,
    .large = 1u << 20,
    .frames_min = 5,
    .frames_max = 120,
    .speed_weight = {40, 25, 15, 20},
    .force_pct = 10,
    .keepalive_pct = 40,
};

/* A pool of a few packets and writes of up to 4 MiB: every large write is
 * bigger than the free pool and waits for it, flushing. */
__attribute__((unused)) static const profile_t p_small_pool = {
    .name = "small_pool",
    .nconn = 24,
    .send_weight = {[SEND_COPY] = 60, [SEND_MOVE] = 10, [SEND_URGENT] = 8,
                    [SEND_FILE] = 5, [SEND_PIPE] = 5, [SEND_PACKET] = 7,
                    [LV_SENDFILE] = 5},
    .kinds = {40, 30, 30},
    .small_pct = 60,
    .hook_pct = 15,
    .large = 4u << 20,
    .big_pct = 25,
    .pools = {4, 8, 16, 32},
    .frames_min = 3,
    .frames_max = 40,
    .speed_weight = {50, 30, 0, 20},
    .force_pct = 5,
    .keepalive_pct = 50,
};

/* A few connections, each a keep-alive series of writes mostly larger than
 * the free pool (the writer waits for packets while its earlier parts are
 * flushed), read by fast peers: the tail of a large write must still go
 * out with no later write or close to flush it. */
__attribute__((unused)) static const profile_t p_large_writes = {
    .name = "large_writes",
    .nconn = 4,
    .send_weight = {[SEND_COPY] = 80, [SEND_MOVE] = 10, [SEND_FILE] = 5,
                    [LV_SENDFILE] = 5},
    .kinds = {20, 40, 40},
    .small_pct = 20,
    .hook_pct = 0,
    .large = 4u << 20,
    .big_pct = 60,
    .pools = {4, 8, 16, 64},
    .frames_min = 1,
    .frames_max = 6,
    .speed_weight = {70, 20, 0, 10},
    .force_pct = 0,
    .keepalive_pct = 90,
    .writers = 1,
};

/* Mostly hooked connections, few of them, so writers and workers meet on
 * the same connection. */
__attribute__((unused)) static const profile_t p_hooks = {
    .name = "hooks",
    .nconn = 16,
    .send_weight = {[SEND_COPY] = 45, [SEND_MOVE] = 10, [SEND_URGENT] = 10,
                    [SEND_FILE] = 10, [SEND_PIPE] = 10, [SEND_PACKET] = 5,
                    [LV_SENDFILE] = 10},
    .kinds = {50, 25, 25},
    .small_pct = 50,
    .hook_pct = 80,
    .large = 512u << 10,
    .pools = {64, 256, 0, 0},
    .frames_min = 10,
    .frames_max = 150,
    .speed_weight = {40, 30, 10, 20},
    .force_pct = 5,
    .keepalive_pct = 40,
};

/* The control's: a pool far larger than what is written (no writer waits
 * for packets, so nothing but the flushes owed flushes), small kernel
 * buffers (data is still queued after the last write), no hooks. */
__attribute__((unused)) static const profile_t p_control = {
    .name = "control",
    .nconn = 8,
    .send_weight = {[SEND_COPY] = 70, [SEND_MOVE] = 20, [SEND_URGENT] = 10},
    .kinds = {40, 30, 30},
    .small_pct = 100,
    .hook_pct = 0,
    .large = 1u << 20,
    .big_pct = 30,
    .pools = {8192, 8192, 8192, 8192},
    .frames_min = 2,
    .frames_max = 10,
    .speed_weight = {50, 50, 0, 0},
    .force_pct = 0,
    .keepalive_pct = 0,
};

/* ---- connections -------------------------------------------------------*/

typedef struct lv {
  sock_rw_hook_s hook; /* first: on_clear hands back &hook */
  lconn_t *c;
  intptr_t uuid;
  int fd;
  int speed;
  int force; /* closed with sock_force_close */
  /* keep-alive: after its last write the program does not close it; the
   * peer hangs up once it received every accepted byte (so only the
   * flushes the library owes deliver the end), and the reactor closes on
   * EPOLLRDHUP */
  int keepalive;
  atomic_int peer_shut;
  int hooked;
  uint32_t large; /* largest payload on this connection */
  int64_t t0;     /* created (ms, run clock) */
  /* writing: a writer takes a ticket per frame; whoever leaves the
   * connection with no ticket and nobody writing closes it */
  atomic_int tickets, inflight, close_claimed;
  atomic_llong acc_bytes; /* bytes of accepted frames */
  int refs;               /* threads using the struct (under lv_mtx) */
  /* peer side */
  atomic_llong rcvd;
  int64_t next_req; /* next "request" (reader under rx_mtx) */
  uint64_t prng;    /* reader's random state (under rx_mtx) */
  /* what happened when (run clock, ms; -1 never) */
  atomic_llong t_out, t_in, t_hup, t_flush, t_task, t_write, t_read, t_close;
  atomic_long n_out, n_in, n_hup, n_flush_neg, n_tasks, n_dropped;
  atomic_int reactor_flushing, tasks_queued, tasks_running;
  /* hooks */
  pthread_mutex_t hmtx;
  uint64_t hrng;
  atomic_int cleared;
  atomic_long h_calls, h_eintr, h_zero, h_eagain, h_short;
  atomic_int h_last; /* the last answer: HK_* */
  atomic_llong t_hook;
  /* watchdog's own (its thread only) */
  long long wd_rcvd;
  int64_t wd_progress, wd_since;
  /* a candidate stall: the watchdog flushed at wd_probe itself; whether
   * that call sent bytes (sock_touch on the watchdog's thread) tells
   * stranded from starved, reported 300 ms later with what arrived */
  int64_t wd_probe;
  long long wd_probe_rcvd;
  int wd_probe_sent;
  int wd_reported; /* then rescued: flushed by the watchdog when stuck */
  int64_t wd_close_since;
  int wd_close_reported;
  atomic_int victim; /* control: its EPOLLOUT flushes are dropped */
} lv_t;

static const profile_t *prof;
static uint64_t g_seed;
static int64_t g_t0;
static int g_stall_ms;
static int g_hook_pct; /* the profile's, or LIVENESS_HOOK_PCT */
static pthread_mutex_t lv_mtx = PTHREAD_MUTEX_INITIALIZER;
static lv_t *slots[MAXSLOTS];
static int nslots;
static atomic_int g_stop_writing; /* no new connection, no new frame */
static atomic_int g_stop;         /* threads end */
static atomic_long g_stalls;
static atomic_long g_hook_totals[4];
static int reactor_ep = -1;
#ifdef LIVENESS_CONTROL
static atomic_int ctl_chosen; /* the victim is chosen */
#endif

static int64_t run_ms(void) { return now_ms() - g_t0; }

/* The connection with this UUID, with a reference (lv_unref), or NULL. */
static lv_t *lv_ref(intptr_t uuid) {
  lv_t *found = NULL;
  pthread_mutex_lock(&lv_mtx);
  for (int i = 0; i < nslots; i++)
    if (slots[i] && slots[i]->uuid == uuid) {
      found = slots[i];
      found->refs++;
      break;
    }
  pthread_mutex_unlock(&lv_mtx);
  return found;
}
static void lv_unref(lv_t *v) {
  pthread_mutex_lock(&lv_mtx);
  v->refs--;
  pthread_mutex_unlock(&lv_mtx);
}

/* ---- the task pool: async_run ---------------------------------------------*/

typedef struct task {
  void (*fn)(void *);
  void *arg;
  int lib; /* the library's (a flush of the UUID in arg) */
  struct task *next;
} task_t;

static pthread_mutex_t q_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cv = PTHREAD_COND_INITIALIZER;
static task_t *q_head, *q_tail;
static int q_open; /* workers are running */
static atomic_long q_lib_tasks, q_own_tasks, q_inline;

static int queue_task(void (*fn)(void *), void *arg, int lib) {
  task_t *t = malloc(sizeof(*t));
  *t = (task_t){.fn = fn, .arg = arg, .lib = lib};
  pthread_mutex_lock(&q_mtx);
  if (!q_open) {
    pthread_mutex_unlock(&q_mtx);
    free(t);
    return -1;
  }
  if (q_tail)
    q_tail->next = t;
  else
    q_head = t;
  q_tail = t;
  pthread_cond_signal(&q_cv);
  pthread_mutex_unlock(&q_mtx);
  return 0;
}

#ifndef LIVENESS_INLINE
/* The program's task queue, as facil.io's: the library's flush after a
 * write runs on a worker thread, concurrently with the reactor's flush.
 * (Built with -DLIVENESS_INLINE, the program has no async_run: the library
 * flushes inline, in the writing thread, as for a caller without a task
 * pool.) */
int async_run(void (*task)(void *), void *arg) {
  lv_t *v = lv_ref((intptr_t)arg);
  if (v)
    atomic_fetch_add(&v->tasks_queued, 1);
  int r = queue_task(task, arg, 1);
  if (v) {
    if (r != 0)
      atomic_fetch_sub(&v->tasks_queued, 1);
    lv_unref(v);
  }
  if (r == 0)
    atomic_fetch_add(&q_lib_tasks, 1);
  else
    atomic_fetch_add(&q_inline, 1); /* after the run: "do it inline" */
  return r;
}
#endif

typedef struct {
  int idx;
  pthread_t th;
  wctx_t w;
  long sent[LV_KINDS], refused;
} writer_t;
static writer_t writers[NWRITERS + NWORKERS];
static __thread writer_t *self_writer; /* the worker's own, for answers */

static void *worker_main(void *arg) {
  self_writer = arg;
  for (;;) {
    pthread_mutex_lock(&q_mtx);
    while (!q_head && q_open)
      pthread_cond_wait(&q_cv, &q_mtx);
    task_t *t = q_head;
    if (!t) {
      pthread_mutex_unlock(&q_mtx);
      break;
    }
    q_head = t->next;
    if (!q_head)
      q_tail = NULL;
    pthread_mutex_unlock(&q_mtx);
    lv_t *v = t->lib ? lv_ref((intptr_t)t->arg) : NULL;
    if (v) {
      atomic_fetch_sub(&v->tasks_queued, 1);
      atomic_fetch_add(&v->tasks_running, 1);
      atomic_fetch_add(&v->n_tasks, 1);
      atomic_store(&v->t_task, run_ms());
    }
    t->fn(t->arg);
    if (v) {
      atomic_fetch_sub(&v->tasks_running, 1);
      lv_unref(v);
    }
    free(t);
  }
  return NULL;
}

/* ---- writing --------------------------------------------------------------*/

/* sock_sendfile (the header's inline function) of a file holding a frame. */
static int send_sendfile(wctx_t *w, lconn_t *c, uint32_t len) {
  if (len > w->cap - sizeof(fr_hdr))
    len = (uint32_t)(w->cap - sizeof(fr_hdr));
  uint32_t seq = c->acc[FR_NORMAL][w->writer];
  size_t n = fr_build(w->buf, c->id, (unsigned)w->writer, FR_NORMAL,
                      SEND_FILE, seq, len);
  size_t pre = rng_chance(&w->rng, 50) ? rng_below(&w->rng, 5000) : 0;
  int fd = frame_file(w->buf, n, pre, rng_below(&w->rng, 2) * 100);
  if (fd < 0)
    return -2;
  errno = 0;
  ssize_t r = sock_sendfile(c->uuid, fd, (off_t)pre, n);
  int err = errno;
  if (r == 0) {
    c->acc[FR_NORMAL][w->writer]++;
    w->last_n = n;
    return 0;
  }
  if (!closing_expected(c))
    rl_fail("refused-unrequested",
            "sock_sendfile of %zu bytes to connection %u failed (errno %d) "
            "although nobody closed it",
            n, c->id, err);
  return -1;
}

static void close_conn(lv_t *v) {
  lconn_t *c = v->c;
  atomic_store(&v->t_close, run_ms());
  if (v->force) {
    atomic_store(&c->force_req, 1);
    sock_force_close(v->uuid);
  } else {
    atomic_store(&c->close_req, 1);
    sock_close(v->uuid);
  }
}

/* Closes v once no frame is left to write and nobody is writing: the close
 * comes right after the last write, from the thread that made it. */
static void maybe_close(lv_t *v) {
  if (atomic_load(&v->tickets) > 0 || atomic_load(&v->inflight) > 0)
    return;
  int zero = 0;
  if (!atomic_compare_exchange_strong(&v->close_claimed, &zero, 1))
    return;
  if (v->keepalive)
    atomic_store(&v->t_close, run_ms()); /* the last write is done */
  else
    close_conn(v);
}

/* Keep-alive connections whose peer has everything: the peer hangs up
 * (main thread). */
static void keepalive_hangups(void) {
  for (int i = 0; i < nslots; i++) {
    lv_t *v = slots[i];
    if (!v || !v->keepalive || atomic_load(&v->peer_shut) ||
        !atomic_load(&v->close_claimed) ||
        atomic_load(&v->rcvd) != atomic_load(&v->acc_bytes))
      continue;
    atomic_store(&v->peer_shut, 1);
    atomic_store(&v->c->close_req, 1); /* the library closes it now */
    pthread_mutex_lock(&v->c->peer_mtx);
    if (v->c->peer >= 0)
      shutdown(v->c->peer, SHUT_WR);
    pthread_mutex_unlock(&v->c->peer_mtx);
  }
}

/* One frame (if v has a ticket left); the caller holds a reference. */
static void write_one(writer_t *wr, lv_t *v) {
  atomic_fetch_add(&v->inflight, 1);
  if (atomic_fetch_sub(&v->tickets, 1) > 0) {
    wctx_t *w = &wr->w;
    int how = rng_pick(&w->rng, prof->send_weight, LV_KINDS);
    uint32_t len = rng_chance(&w->rng, (uint32_t)prof->big_pct)
                       ? rng_range(&w->rng, v->large / 4, v->large)
                       : pick_size(&w->rng, v->large);
    int r = how == LV_SENDFILE ? send_sendfile(w, v->c, len)
                               : send_frame(w, v->c, how, len);
    if (r == 0) {
      wr->sent[how]++;
      atomic_fetch_add(&v->acc_bytes, (long long)w->last_n);
      atomic_store(&v->t_write, run_ms());
    } else if (r == -1) {
      wr->refused++;
    }
  }
  atomic_fetch_sub(&v->inflight, 1);
  maybe_close(v);
}

static void *writer_main(void *arg) {
  writer_t *wr = arg;
  rng_t *r = &wr->w.rng;
  while (!atomic_load(&g_stop_writing)) {
    lv_t *v = NULL;
    pthread_mutex_lock(&lv_mtx);
    int start = (int)rng_below(r, (uint32_t)nslots);
    for (int k = 0; k < nslots && !v; k++) {
      lv_t *x = slots[(start + k) % nslots];
      if (x && atomic_load(&x->tickets) > 0) {
        v = x;
        v->refs++;
      }
    }
    pthread_mutex_unlock(&lv_mtx);
    if (!v) {
      tiny_wait(); /* nothing to write now: new connections come */
      continue;
    }
    write_one(wr, v);
    lv_unref(v);
  }
  return NULL;
}

/* ---- reading on the library side (a worker task) ---------------------------*/

/* Reads what the peer sent until sock_read answers 0 (or -1), as a server's
 * worker does on EPOLLIN; sometimes answers with a frame. */
static void read_task(void *arg) {
  lv_t *v = lv_ref((intptr_t)arg);
  if (!v)
    return;
  lconn_t *c = v->c;
  size_t total = 0;
  if (pthread_mutex_trylock(&c->rd_mtx) == 0) {
    uint8_t buf[8192];
    for (int i = 0; i < 64; i++) {
      int was_closed = atomic_load(&c->closed);
      errno = 0;
      ssize_t n = sock_read(v->uuid, buf, sizeof(buf));
      int err = errno;
      if (n > 0) {
        if (was_closed)
          rl_fail("stale-uuid-read-data",
                  "sock_read through the stale UUID of connection %u "
                  "returned %zd bytes",
                  c->id, n);
        size_t k = check_pattern(buf, (size_t)n, c->rd_off, in_seed(c));
        if (k < (size_t)n)
          rl_fail("read-data-wrong",
                  "sock_read on connection %u: byte %llu of the incoming "
                  "stream is wrong",
                  c->id, (unsigned long long)(c->rd_off + k));
        c->rd_off += (uint64_t)n;
        total += (size_t)n;
        continue;
      }
      if (n < 0 && !closing_expected(c))
        rl_fail("read-unrequested-close",
                "sock_read on connection %u (%s) returned -1 (errno %d) "
                "although nobody closed it",
                c->id, lk_name[c->kind], err);
      break;
    }
    pthread_mutex_unlock(&c->rd_mtx);
  }
  if (total) {
    atomic_store(&v->t_read, run_ms());
    if (self_writer && rng_chance(&self_writer->w.rng, 60))
      write_one(self_writer, v); /* the "response" */
  }
  lv_unref(v);
}

/* ---- the reactor -----------------------------------------------------------*/

static atomic_long r_late_removes;

/* reactor_remove: epoll_ctl(DEL) of the fd NUMBER, as real reactors do;
 * the library calls it while that number is still the connection's. A
 * call that comes once the number belongs to a newer connection takes that
 * one out of the event loop: it would never see an event again. */
static void reactor_forget(intptr_t uuid) {
  int fd = sock_uuid2fd(uuid);
  uint32_t newer = 0;
  intptr_t newer_uuid = -1;
  /* Only a connection made after this one can hold its number now. An older
   * one on the same number whose reactor_on_close has not come yet is not a
   * holder: its fd was closed (the spec's order is remove, close, on_close),
   * and this one got the number in the meantime. */
  lconn_t *self = reg_find(uuid);
  uint32_t self_id = self ? self->id : 0;
  pthread_mutex_lock(&lv_mtx);
  for (int i = 0; i < nslots; i++)
    if (slots[i] && slots[i]->fd == fd && slots[i]->uuid != uuid &&
        slots[i]->c->id > self_id && !atomic_load(&slots[i]->c->closed)) {
      newer = slots[i]->c->id;
      newer_uuid = slots[i]->uuid;
    }
  pthread_mutex_unlock(&lv_mtx);
  if (newer) {
    atomic_fetch_add(&r_late_removes, 1);
    rl_fail("reactor_remove-late",
            "reactor_remove(%#lx) for fd %d, which connection %u (uuid "
            "%#lx) holds already: the event loop's epoll_ctl(DEL) removes "
            "the new connection",
            (long)uuid, fd, newer, (long)newer_uuid);
  }
  epoll_ctl(reactor_ep, EPOLL_CTL_DEL, fd, NULL);
}

static atomic_long r_events, r_out, r_in, r_hup, r_flush_neg;

static void *reactor_main(void *arg) {
  (void)arg;
  struct epoll_event evs[64];
  while (!atomic_load(&g_stop)) {
    int n = epoll_wait(reactor_ep, evs, 64, 50);
    for (int i = 0; i < n; i++) {
      intptr_t uuid = (intptr_t)evs[i].data.u64;
      uint32_t e = evs[i].events;
      atomic_fetch_add(&r_events, 1);
      lv_t *v = lv_ref(uuid);
      if (e & EPOLLOUT) {
        atomic_fetch_add(&r_out, 1);
        int drop = 0;
        if (v) {
          atomic_store(&v->t_out, run_ms());
          atomic_fetch_add(&v->n_out, 1);
#ifdef LIVENESS_CONTROL
          /* the deliberate lost wake-up: one connection whose writers are
           * done and which has data queued loses its EPOLLOUT flushes
           * until the watchdog reported it */
          if (!atomic_load(&v->victim) && !atomic_load(&ctl_chosen) &&
              atomic_load(&v->close_claimed) && !v->force &&
              sock_packets_pending(uuid)) {
            int zero = 0;
            if (atomic_compare_exchange_strong(&ctl_chosen, &zero, 1)) {
              atomic_store(&v->victim, 1);
              fprintf(stderr,
                      "  control: the EPOLLOUT flushes of connection %u "
                      "(uuid %#lx) are dropped from now on\n",
                      v->c->id, (long)uuid);
            }
          }
          drop = atomic_load(&v->victim);
#endif
        }
        if (drop) {
          atomic_fetch_add(&v->n_dropped, 1);
        } else {
          if (v)
            atomic_fetch_add(&v->reactor_flushing, 1);
          ssize_t fr = sock_flush(uuid);
          if (v) {
            atomic_fetch_sub(&v->reactor_flushing, 1);
            atomic_store(&v->t_flush, run_ms());
          }
          if (fr < 0) {
            atomic_fetch_add(&r_flush_neg, 1);
            if (v)
              atomic_fetch_add(&v->n_flush_neg, 1);
            sock_close(uuid);
          }
        }
      }
      if (e & EPOLLIN) {
        atomic_fetch_add(&r_in, 1);
        if (v) {
          atomic_store(&v->t_in, run_ms());
          atomic_fetch_add(&v->n_in, 1);
        }
        if (queue_task(read_task, (void *)uuid, 0) == 0)
          atomic_fetch_add(&q_own_tasks, 1);
      }
      if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        /* only keep-alive peers hang up first (once they have every
         * byte); the checks report any other close nobody asked for */
        atomic_fetch_add(&r_hup, 1);
        if (v) {
          atomic_store(&v->t_hup, run_ms());
          atomic_fetch_add(&v->n_hup, 1);
        }
        sock_close(uuid);
      }
      if (v)
        lv_unref(v);
    }
  }
  return NULL;
}

/* ---- write hooks -------------------------------------------------------------
 * Pass through to the socket, but answer at random: EINTR or 0 (nothing
 * written), short writes, and EAGAIN when poll finds the socket not
 * writable (so the kernel owes an EPOLLOUT, as after a real EAGAIN: the
 * library may rely on it). */

enum { HK_EINTR, HK_ZERO, HK_EAGAIN, HK_SHORT, HK_WRITE };
static const char *const hk_name[] = {"EINTR", "0", "EAGAIN",
                                      "a short write", "a whole write"};

static ssize_t lv_hook_write(intptr_t uuid, const void *buf, size_t count) {
  lv_t *v = lv_ref(uuid);
  if (!v) {
    rl_fail("hook-foreign-uuid",
            "write hook called with uuid %#lx, no open hooked connection",
            (long)uuid);
    errno = EBADF;
    return -1;
  }
  if (atomic_load(&v->cleared))
    rl_fail("hook-after-on_clear",
            "write hook of connection %u called after its on_clear",
            v->c->id);
  atomic_fetch_add(&v->h_calls, 1);
  pthread_mutex_lock(&v->hmtx);
  v->hrng = mix64(v->hrng + 0x9E3779B97F4A7C15ull);
  uint64_t x = v->hrng;
  pthread_mutex_unlock(&v->hmtx);
  int fd = sock_uuid2fd(uuid);
  uint32_t roll = (uint32_t)(x % 100);
  ssize_t r;
  int err = 0, what = HK_WRITE;
  if (roll < 7) {
    atomic_fetch_add(&v->h_eintr, 1);
    atomic_fetch_add(&g_hook_totals[HK_EINTR], 1);
    what = HK_EINTR;
    r = -1;
    err = EINTR;
  } else if (roll < 10 && count) {
    atomic_fetch_add(&v->h_zero, 1);
    atomic_fetch_add(&g_hook_totals[HK_ZERO], 1);
    what = HK_ZERO;
    r = 0;
  } else if (roll < 25 && !(wait_fd(fd, POLLOUT, 0) & POLLOUT)) {
    atomic_fetch_add(&v->h_eagain, 1);
    atomic_fetch_add(&g_hook_totals[HK_EAGAIN], 1);
    what = HK_EAGAIN;
    r = -1;
    err = EAGAIN;
  } else {
    size_t n = count;
    if (roll < 50 && count > 1) {
      n = 1 + (size_t)((x >> 20) % (count - 1));
      atomic_fetch_add(&v->h_short, 1);
      atomic_fetch_add(&g_hook_totals[HK_SHORT], 1);
      what = HK_SHORT;
    }
    r = send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    err = errno;
    if (r < 0)
      what = err == EAGAIN || err == EWOULDBLOCK ? HK_EAGAIN : HK_WRITE;
  }
  atomic_store(&v->h_last, what);
  atomic_store(&v->t_hook, run_ms());
  lv_unref(v);
  errno = err;
  return r;
}

static void lv_hook_clear(intptr_t uuid, sock_rw_hook_s *h) {
  lv_t *v = (lv_t *)h;
  if (v->uuid != uuid)
    rl_fail("on_clear-foreign",
            "on_clear(%#lx) with the hooks of connection %u (uuid %#lx)",
            (long)uuid, v->c->id, (long)v->uuid);
  atomic_fetch_add(&v->cleared, 1);
}

/* ---- peers: reader threads, varying speeds --------------------------------*/

typedef struct delayed {
  lv_t *v;
  int64_t due;
  struct delayed *next;
} delayed_t;
static pthread_mutex_t d_mtx = PTHREAD_MUTEX_INITIALIZER;
static delayed_t *d_list;
static atomic_long p_requests;

static void peer_arm(lv_t *v) {
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT,
                           .data.ptr = v};
  epoll_ctl(rl_epoll, EPOLL_CTL_MOD, v->c->peer, &ev);
}

static void peer_arm_later(lv_t *v, int ms) {
  delayed_t *d = malloc(sizeof(*d));
  d->v = v;
  d->due = now_ms() + ms;
  pthread_mutex_lock(&d_mtx);
  d->next = d_list;
  d_list = d;
  pthread_mutex_unlock(&d_mtx);
}

/* re-arms the peers whose pause is over; returns 1 if some still wait */
static int peer_arm_due(void) {
  int64_t now = now_ms();
  delayed_t *due = NULL;
  pthread_mutex_lock(&d_mtx);
  for (delayed_t **p = &d_list; *p;) {
    if ((*p)->due <= now) {
      delayed_t *d = *p;
      *p = d->next;
      d->next = due;
      due = d;
    } else {
      p = &(*p)->next;
    }
  }
  int waiting = d_list != NULL;
  pthread_mutex_unlock(&d_mtx);
  while (due) {
    delayed_t *d = due;
    due = d->next;
    peer_arm(d->v);
    free(d);
  }
  return waiting;
}

static uint32_t peer_rand(lv_t *v, uint32_t n) {
  v->prng = mix64(v->prng + 0x9E3779B97F4A7C15ull);
  return (uint32_t)((v->prng >> 33) % n);
}

static void *peer_main(void *arg) {
  (void)arg;
  size_t cap = 1 << 18;
  uint8_t *buf = malloc(cap);
  struct epoll_event evs[16];
  while (!atomic_load(&g_stop)) {
    int waiting = peer_arm_due();
    int n = epoll_wait(rl_epoll, evs, 16, waiting ? 1 : 20);
    for (int i = 0; i < n; i++) {
      lv_t *v = evs[i].data.ptr;
      lconn_t *c = v->c;
      pthread_mutex_lock(&c->rx_mtx);
      size_t quota = v->speed == SP_SLOW     ? 4096
                     : v->speed == SP_MEDIUM ? 65536
                                             : 4u << 20;
      int done;
      atomic_fetch_add(&v->rcvd, (long long)peer_read(c, buf, cap, quota, &done));
      if (done) {
        c->rx.eof = 1;
        pthread_mutex_unlock(&c->rx_mtx);
        peer_finish(c);
        continue;
      }
      int delay = v->speed == SP_SLOW     ? 2
                  : v->speed == SP_MEDIUM ? 1
                  : v->speed == SP_BURSTY && peer_rand(v, 100) < 3
                      ? 100 + (int)peer_rand(v, 300) /* a pause */
                      : 0;
      /* unix peers send small "requests" now and then */
      if (c->kind == LK_UNIX && now_ms() >= v->next_req) {
        peer_send(c, 1 + peer_rand(v, 300));
        atomic_fetch_add(&p_requests, 1);
        v->next_req = now_ms() + 10 + peer_rand(v, 200);
      }
      pthread_mutex_unlock(&c->rx_mtx);
      if (delay)
        peer_arm_later(v, delay);
      else
        peer_arm(v);
    }
  }
  free(buf);
  return NULL;
}

/* ---- creating and retiring connections -----------------------------------*/

static creator_t g_creator;
static rng_t g_rng; /* main thread's */
static long n_retired, n_forced, n_hooked;

static lv_t *lv_create(void) {
  static const int kind_of[3] = {LK_UNIX, LK_TCP_ACCEPTED, LK_TCP_CONNECTED};
  int kind = kind_of[rng_pick(&g_rng, prof->kinds, 3)];
  lconn_t *c = lconn_create(&g_creator, kind, -1,
                            rng_chance(&g_rng, (uint32_t)prof->small_pct), -1,
                            0);
  if (!c)
    return NULL;
  lv_t *v = calloc(1, sizeof(*v));
  v->c = c;
  v->uuid = c->uuid;
  v->fd = c->lfd;
  v->t0 = run_ms();
  v->speed = rng_pick(&g_rng, prof->speed_weight, NSPEEDS);
  v->large = v->speed == SP_SLOW && prof->large > 65536 ? 65536 : prof->large;
  v->force = rng_chance(&g_rng, (uint32_t)prof->force_pct);
  v->keepalive = !v->force && rng_chance(&g_rng, (uint32_t)prof->keepalive_pct);
  v->prng = rng_next(&g_rng);
  v->hrng = rng_next(&g_rng);
  pthread_mutex_init(&v->hmtx, NULL);
  atomic_store(&v->t_out, -1);
  atomic_store(&v->t_in, -1);
  atomic_store(&v->t_hup, -1);
  atomic_store(&v->t_flush, -1);
  atomic_store(&v->t_task, -1);
  atomic_store(&v->t_write, -1);
  atomic_store(&v->t_read, -1);
  atomic_store(&v->t_close, -1);
  v->wd_progress = now_ms();
  snprintf(c->rx.desc, sizeof(c->rx.desc), "%s%s, %s reader", lk_name[kind],
           c->small ? ", small buffers" : "", speed_name[v->speed]);
  if (v->keepalive || v->force) {
    size_t l = strlen(c->rx.desc);
    snprintf(c->rx.desc + l, sizeof(c->rx.desc) - l,
             v->force ? ", force-closed" : ", keep-alive");
  }
  if (rng_chance(&g_rng, (uint32_t)g_hook_pct)) {
    v->hooked = 1;
    v->hook.write = lv_hook_write;
    v->hook.on_clear = lv_hook_clear;
    size_t l = strlen(c->rx.desc);
    snprintf(c->rx.desc + l, sizeof(c->rx.desc) - l, ", hooks");
  }
  return v;
}

/* Puts a new connection into slot i (main thread). */
static void slot_fill(int i) {
  lv_t *v = lv_create();
  if (!v)
    return;
  pthread_mutex_lock(&lv_mtx);
  slots[i] = v; /* no ticket yet: nobody writes */
  pthread_mutex_unlock(&lv_mtx);
  if (v->hooked) {
    n_hooked++;
    if (sock_rw_hook_set(v->uuid, &v->hook) != 0)
      rl_fail("harness", "sock_rw_hook_set on a new connection failed");
  }
  /* the peer's events carry v from here (nothing was written yet) */
  peer_arm(v);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET |
                                     EPOLLRDHUP | EPOLLERR | EPOLLHUP,
                           .data.u64 = (uint64_t)v->uuid};
  if (epoll_ctl(reactor_ep, EPOLL_CTL_ADD, v->fd, &ev) != 0)
    rl_fail("harness", "epoll_ctl ADD fd %d: %s", v->fd, strerror(errno));
  if (v->force)
    n_forced++;
  atomic_store(&v->tickets, prof->frames_min +
                                (int)rng_below(&g_rng, (uint32_t)(prof->frames_max -
                                                               prof->frames_min + 1)));
}

/* Verifies and frees the connection of slot i when it is finished. */
static int slot_retire(int i) {
  pthread_mutex_lock(&lv_mtx);
  lv_t *v = slots[i];
  int ready = v && v->refs == 0 && atomic_load(&v->c->closed) &&
              atomic_load(&v->c->peer_done);
  if (ready)
    slots[i] = NULL;
  pthread_mutex_unlock(&lv_mtx);
  if (!ready)
    return 0;
  /* on_clear comes before reactor_on_close */
  if (v->hooked && atomic_load(&v->cleared) != 1)
    rl_fail("on_clear-count", "connection %u: on_clear called %d times",
            v->c->id, atomic_load(&v->cleared));
  reg_retire(v->c, NWRITERS + NWORKERS);
  pthread_mutex_destroy(&v->hmtx);
  free(v);
  n_retired++;
  return 1;
}

/* ---- the watchdog -------------------------------------------------------------*/

static long long ago(atomic_llong *t) {
  long long x = atomic_load(t);
  return x < 0 ? -1 : run_ms() - x;
}

/* Whether the reactor's epoll set holds fd (from /proc/self/fdinfo). */
static int in_reactor_set(int fd) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", reactor_ep);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  int found = 0, tfd;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "tfd: %d", &tfd) == 1 && tfd == fd)
      found = 1;
  fclose(f);
  return found;
}

/* Everything the program knows about v's state, on stderr (indented). */
static void describe(lv_t *v) {
  lconn_t *c = v->c;
  int outq = -1, peerq = -1;
  if (!atomic_load(&c->closed))
    ioctl(v->fd, TIOCOUTQ, &outq);
  pthread_mutex_lock(&c->peer_mtx);
  if (c->peer >= 0)
    ioctl(c->peer, FIONREAD, &peerq);
  pthread_mutex_unlock(&c->peer_mtx);
  long long acc = atomic_load(&v->acc_bytes), got = atomic_load(&v->rcvd);
  int closing = atomic_load(&v->close_claimed);
  char hk[256] = "";
  if (v->hooked)
    snprintf(hk, sizeof(hk),
             "\n    write hook: %ld calls, answered EINTR %ld, 0 %ld, "
             "EAGAIN %ld (socket not writable), short %ld; the last call "
             "%lld ms ago answered %s",
             atomic_load(&v->h_calls), atomic_load(&v->h_eintr),
             atomic_load(&v->h_zero), atomic_load(&v->h_eagain),
             atomic_load(&v->h_short), ago(&v->t_hook),
             hk_name[atomic_load(&v->h_last)]);
  fprintf(stderr,
          "    seed %llu, profile %s, connection %u (%s), uuid %#lx, fd %d, "
          "open for %lld ms; sock_isvalid %d, reactor_on_close %d, peer "
          "saw EOF %d, fd in the reactor's epoll set %d\n"
          "    bytes accepted %lld, received by the peer %lld, not received "
          "%lld (kernel send queue %d, peer receive queue %d); "
          "sock_packets_pending %d\n"
          "    writers: %d frames left, %d writing now; %s %lld ms ago%s\n"
          "    last events (ms ago, -1 never): EPOLLOUT %lld (%ld in all, "
          "%ld dropped), reactor sock_flush %lld (%ld answered -1), "
          "library task ran %lld (%ld in all), EPOLLIN %lld (%ld), hang-up "
          "%lld (%ld), sock_read data %lld, accepted write %lld\n"
          "    in flight now: reactor sock_flush %d, library tasks queued "
          "%d, running %d%s\n",
          (unsigned long long)g_seed, prof->name, c->id, c->rx.desc,
          (long)v->uuid, v->fd, (long long)(run_ms() - v->t0),
          sock_isvalid(v->uuid), atomic_load(&c->n_close),
          atomic_load(&c->peer_done), in_reactor_set(v->fd), acc, got,
          acc - got, outq, peerq, sock_packets_pending(v->uuid),
          atomic_load(&v->tickets) > 0 ? atomic_load(&v->tickets) : 0,
          atomic_load(&v->inflight),
          !closing       ? "not closed; last write"
          : v->force     ? "sock_force_close"
          : v->keepalive ? "keep-alive, last write"
                         : "sock_close",
          closing && !v->keepalive ? ago(&v->t_close) : ago(&v->t_write),
          !v->keepalive ? ""
          : atomic_load(&v->peer_shut)
              ? " (the peer had every byte and hung up)"
              : " (the peer hangs up once it has every byte)",
          ago(&v->t_out), atomic_load(&v->n_out), atomic_load(&v->n_dropped),
          ago(&v->t_flush), atomic_load(&v->n_flush_neg), ago(&v->t_task),
          atomic_load(&v->n_tasks), ago(&v->t_in), atomic_load(&v->n_in),
          ago(&v->t_hup), atomic_load(&v->n_hup), ago(&v->t_read),
          ago(&v->t_write), atomic_load(&v->reactor_flushing),
          atomic_load(&v->tasks_queued), atomic_load(&v->tasks_running), hk);
  fflush(stderr);
}

static void report_stall(lv_t *v, int64_t now) {
  long stalls = atomic_fetch_add(&g_stalls, 1) + 1;
  rl_fail("liveness-stall",
          "connection %u: data queued, socket writable, no progress for "
          "%lld ms",
          v->c->id, (long long)(now - v->wd_progress));
  if (stalls > 8)
    return;
  fprintf(stderr,
          "  [%s/%s] LIVENESS STALL%s: connection %u has data queued and a "
          "writable socket, and its peer received nothing for %lld ms\n",
          h_prog, h_current,
          atomic_load(&v->victim) ? " [control victim]" : "", v->c->id,
          (long long)(now - v->wd_progress));
  describe(v);
}

static void report_close_stall(lv_t *v, int64_t now) {
  long stalls = atomic_fetch_add(&g_stalls, 1) + 1;
  rl_fail("liveness-close-stall",
          "connection %u: closing asked for %lld ms ago, nothing queued, "
          "still open",
          v->c->id, (long long)(now - v->wd_close_since));
  if (stalls > 8)
    return;
  fprintf(stderr,
          "  [%s/%s] LIVENESS STALL (close): connection %u: its close was "
          "asked for, nothing is queued, and it is still open %lld ms "
          "later\n",
          h_prog, h_current, v->c->id, (long long)(now - v->wd_close_since));
  describe(v);
}

static void *watchdog_main(void *arg) {
  (void)arg;
  lv_t *snap[MAXSLOTS];
  while (!atomic_load(&g_stop)) {
    poll(NULL, 0, 50); /* the sampling period */
    int n = 0;
    pthread_mutex_lock(&lv_mtx);
    for (int i = 0; i < nslots; i++)
      if (slots[i]) {
        slots[i]->refs++;
        snap[n++] = slots[i];
      }
    pthread_mutex_unlock(&lv_mtx);
    for (int k = 0; k < n; k++) {
      lv_t *v = snap[k];
      int64_t now = now_ms();
      long long got = atomic_load(&v->rcvd);
      if (v->wd_probe) {
        if (now - v->wd_probe < 300)
          continue;
        /* The verdict on a candidate stall. When the watchdog's own
         * sock_flush sent bytes (its thread got the sock_touch), they could
         * have been sent and nothing was sending them: stranded. If it
         * moved nothing, the bytes wait for something other than a flush
         * (pool space for a large write that owns the connection, a
         * source): starved by the shared pool, which is its documented
         * limit, not a lost wake-up — even if bytes arrive meanwhile, once
         * the large write gets its packets. */
        int64_t t0 = v->wd_probe;
        v->wd_probe = 0;
        if (v->wd_probe_sent) {
          report_stall(v, t0);
          fprintf(stderr,
                  "    connection %u: the watchdog's own sock_flush sent "
                  "bytes (%lld arrived in %lld ms): the data could be "
                  "sent, nothing else was sending it\n",
                  v->c->id, got - v->wd_probe_rcvd, (long long)(now - t0));
          v->wd_reported = 1;
          atomic_store(&v->victim, 0); /* control: the point is made */
        } else {
          fprintf(stderr,
                  "  [%s/%s] note: connection %u: data pending on a "
                  "writable socket for %lld ms, but a sock_flush sent "
                  "nothing either: starved (waiting for pool space or a "
                  "source), not stranded (%lld bytes arrived in the next "
                  "%lld ms)\n",
                  h_prog, h_current, v->c->id,
                  (long long)(t0 - v->wd_progress),
                  got - v->wd_probe_rcvd, (long long)(now - t0));
        }
        v->wd_rcvd = got;
        v->wd_progress = now;
        v->wd_since = 0;
        continue;
      }
      if (got != v->wd_rcvd) {
        v->wd_rcvd = got;
        v->wd_progress = now;
        v->wd_since = 0;
        continue;
      }
      if (atomic_load(&v->c->closed)) {
        v->wd_since = 0;
        continue;
      }
      int pending = sock_packets_pending(v->uuid);
      /* a close asked for, nothing left to send, and still open */
      if (!pending &&
          (atomic_load(&v->c->close_req) || atomic_load(&v->c->force_req))) {
        if (!v->wd_close_since)
          v->wd_close_since = now;
        if (now - v->wd_close_since >= g_stall_ms && !v->wd_close_reported) {
          report_close_stall(v, now);
          v->wd_close_reported = 1;
          sock_close(v->uuid); /* the rescue: the program asked for it */
        }
      } else {
        v->wd_close_since = 0;
      }
      int writable = (wait_fd(v->fd, POLLOUT, 0) & POLLOUT) &&
                     sock_fd2uuid(v->fd) == v->uuid;
      if (!pending || !writable) {
        v->wd_since = 0;
        continue;
      }
      if (v->wd_reported) {
        /* reported already: from here the watchdog flushes it whenever it
         * is stuck, so that the run ends and shows the other stalls */
        sock_flush(v->uuid);
        continue;
      }
      if (!v->wd_since)
        v->wd_since = now;
      if (now - v->wd_since < g_stall_ms || now - v->wd_progress < g_stall_ms)
        continue;
      /* a candidate: flush once, judge in 300 ms (above) */
      v->wd_probe = now;
      v->wd_probe_rcvd = got;
      v->wd_since = 0;
      long touched = rl_thread_touches();
      sock_flush(v->uuid);
      v->wd_probe_sent = rl_thread_touches() > touched;
    }
    pthread_mutex_lock(&lv_mtx);
    for (int k = 0; k < n; k++)
      snap[k]->refs--;
    pthread_mutex_unlock(&lv_mtx);
  }
  return NULL;
}

/* ---- a run ---------------------------------------------------------------------*/

static void run_profile(const profile_t *p) {
  prof = p;
  g_seed = (uint64_t)env_long("STRESS_SEED", 1);
  const char *secs_env = getenv("LIVENESS_SECONDS");
  double seconds = secs_env && *secs_env ? atof(secs_env) : 3.0;
  g_stall_ms = (int)env_long("LIVENESS_STALL_MS", 1000);
  int drain_ms = (int)env_long("LIVENESS_DRAIN_MS", 30000);
  nslots = (int)env_long("LIVENESS_CONNS", p->nconn);
  int nwriters = p->writers ? p->writers : NWRITERS;
  g_hook_pct = (int)env_long("LIVENESS_HOOK_PCT", p->hook_pct);
  if (nslots < 1 || nslots > MAXSLOTS)
    SKIP("LIVENESS_CONNS must be 1..%d", MAXSLOTS);
  g_rng.s = mix64(g_seed ^ 0x11FE);
  int pool = p->pools[rng_below(&g_rng, 4)];
  if (pool)
    sock_set_packet_pool_size((size_t)pool);
  signal(SIGPIPE, SIG_DFL); /* the library must never raise it */
  reg_init();
  rl_on_remove = reactor_forget;
  RL_ATOMIC(g_stop);
  int fds0 = count_fds();
  reactor_ep = epoll_create1(EPOLL_CLOEXEC);
  REQUIRE(reactor_ep >= 0);
  REQUIRE(creator_init(&g_creator, -1) == 0);
  g_t0 = now_ms();
  NOTE("profile %s: seed %llu, %.1f s, %d connections, pool %zu packets, "
       "%d writers, %d workers, stall after %d ms",
       p->name, (unsigned long long)g_seed, seconds, nslots,
       sock_packet_pool_size(), nwriters, NWORKERS, g_stall_ms);

  q_open = 1;
  pthread_t reactor, watchdog, peers[NREADERS];
  for (int i = 0; i < NWRITERS + NWORKERS; i++) {
    writers[i].idx = i;
    wctx_init(&writers[i].w, i, g_seed);
  }
  for (int i = 0; i < NWORKERS; i++)
    pthread_create(&writers[NWRITERS + i].th, NULL, worker_main,
                   &writers[NWRITERS + i]);
  pthread_create(&reactor, NULL, reactor_main, NULL);
  for (int i = 0; i < NREADERS; i++)
    pthread_create(&peers[i], NULL, peer_main, NULL);
  pthread_create(&watchdog, NULL, watchdog_main, NULL);
  for (int i = 0; i < nslots; i++)
    slot_fill(i);
  for (int i = 0; i < nwriters; i++)
    pthread_create(&writers[i].th, NULL, writer_main, &writers[i]);

  /* the run: finished connections are verified and replaced */
  while (run_ms() < (int64_t)(seconds * 1000)) {
    keepalive_hangups();
    for (int i = 0; i < nslots; i++)
      if (slot_retire(i) || !slots[i])
        slot_fill(i);
    poll(NULL, 0, 10);
  }
  /* writing stops; every connection is closed after its last frame */
  atomic_store(&g_stop_writing, 1);
  for (int i = 0; i < nwriters; i++)
    pthread_join(writers[i].th, NULL);
  int64_t t_stop = run_ms();
  pthread_mutex_lock(&lv_mtx);
  lv_t *all[MAXSLOTS];
  for (int i = 0; i < nslots; i++) {
    all[i] = slots[i];
    if (all[i])
      all[i]->refs++;
  }
  pthread_mutex_unlock(&lv_mtx);
  for (int i = 0; i < nslots; i++)
    if (all[i]) {
      atomic_store(&all[i]->tickets, 0);
      maybe_close(all[i]);
      lv_unref(all[i]);
    }
  /* now only the reactor (and the library's own tasks) finish them */
  int64_t end = now_ms() + drain_ms;
  int open;
  for (;;) {
    open = 0;
    keepalive_hangups();
    for (int i = 0; i < nslots; i++)
      open += !slot_retire(i) && slots[i];
    if (!open || now_ms() > end)
      break;
    poll(NULL, 0, 10);
  }
  int64_t t_drained = run_ms();
  if (open) {
    rl_fail("close-timeout",
            "%d connections not closed and read to the end %d ms after "
            "the last write",
            open, drain_ms);
    for (int i = 0; i < nslots; i++)
      if (slots[i])
        describe(slots[i]);
  }
  /* the threads end: the task queue is drained first */
  atomic_store(&g_stop, 1);
  pthread_join(reactor, NULL);
  pthread_join(watchdog, NULL);
  for (int i = 0; i < NREADERS; i++)
    pthread_join(peers[i], NULL);
  pthread_mutex_lock(&q_mtx);
  q_open = 0;
  pthread_cond_broadcast(&q_cv);
  pthread_mutex_unlock(&q_mtx);
  for (int i = 0; i < NWORKERS; i++)
    pthread_join(writers[NWRITERS + i].th, NULL);
  while (d_list) {
    delayed_t *d = d_list;
    d_list = d->next;
    free(d);
  }
  creator_close(&g_creator);
  if (open) { /* stuck ones (reported): closed by force, their peers too,
               * so that the rest can be checked */
    for (int i = 0; i < nslots; i++)
      if (slots[i]) {
        lconn_t *c = slots[i]->c;
        atomic_store(&c->force_req, 1);
        sock_force_close(slots[i]->uuid);
        if (!atomic_load(&c->peer_done)) {
          c->rx.eof = 1;
          peer_finish(c);
        }
      }
  }
  verify_all(NWRITERS + NWORKERS);
  for (int i = 0; i < nslots; i++)
    if (slots[i]) {
      pthread_mutex_destroy(&slots[i]->hmtx);
      free(slots[i]);
      slots[i] = NULL;
    }
  check_pool_whole(10000);
  close(reactor_ep);
  reactor_ep = -1;
  int fds1 = count_fds();
  if (fds1 != fds0) {
    rl_fail("fds-leaked", "%d fds open before the run, %d after", fds0, fds1);
    list_fds(3);
  }

  long sent[LV_KINDS] = {0}, refused = 0;
  for (int i = 0; i < NWRITERS + NWORKERS; i++) {
    for (int k = 0; k < LV_KINDS; k++)
      sent[k] += writers[i].sent[k];
    refused += writers[i].refused;
    wctx_free(&writers[i].w);
  }
  char line[512];
  int m = 0;
  for (int k = 0; k < LV_KINDS; k++)
    m += snprintf(line + m, sizeof(line) - (size_t)m, " %s=%ld",
                  lv_send_name[k], sent[k]);
  NOTE("%.1f s writing + %.1f s to close: %ld connections (%ld hooked, %ld "
       "force-closed), %llu frames (%.1f MiB) verified; frames accepted:%s "
       "(refused %ld)",
       (double)t_stop / 1000, (double)(t_drained - t_stop) / 1000, n_retired,
       n_hooked, n_forced, (unsigned long long)reg_done_frames,
       (double)reg_done_bytes / 1048576.0, line, refused);
  NOTE("reactor: %ld events, %ld EPOLLOUT (%ld sock_flush answered -1), %ld "
       "EPOLLIN, %ld hang-ups; tasks: %ld library (%ld run inline), %ld "
       "reads; %ld requests; hook answers: EINTR %ld, 0 %ld, EAGAIN %ld, "
       "short %ld",
       atomic_load(&r_events), atomic_load(&r_out), atomic_load(&r_flush_neg),
       atomic_load(&r_in), atomic_load(&r_hup), atomic_load(&q_lib_tasks),
       atomic_load(&q_inline), atomic_load(&q_own_tasks),
       atomic_load(&p_requests), atomic_load(&g_hook_totals[HK_EINTR]),
       atomic_load(&g_hook_totals[HK_ZERO]),
       atomic_load(&g_hook_totals[HK_EAGAIN]),
       atomic_load(&g_hook_totals[HK_SHORT]));
  rl_summary();
  CHECK_MSG(atomic_load(&g_stalls) == 0,
            "%ld stalls: data queued on a writable socket and never sent "
            "(seed %llu, profile %s; rerun with STRESS_SEED)",
            atomic_load(&g_stalls), (unsigned long long)g_seed, p->name);
  CHECK_MSG(atomic_load(&rl_nerrors) == 0,
            "%ld invariant violations (seed %llu, profile %s; rerun with "
            "STRESS_SEED)",
            atomic_load(&rl_nerrors), (unsigned long long)g_seed, p->name);
  CHECK(reg_done_frames > 0);
  reg_free();
}

#ifdef LIVENESS_CONTROL
TEST(control_dropped_wakeup) {
  run_profile(&p_control);
  if (!atomic_load(&ctl_chosen))
    NOTE("control: no connection had data queued at an EPOLLOUT after its "
         "last write; nothing was dropped");
}
#else
TEST(mixed) { run_profile(&p_mixed); }
TEST(small_pool) { run_profile(&p_small_pool); }
TEST(hooks) { run_profile(&p_hooks); }
TEST(large_writes) { run_profile(&p_large_writes); }
#endif

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
#ifdef LIVENESS_CONTROL
  RUN(control_dropped_wakeup);
#else
  RUN(mixed);
  RUN(small_pool);
  RUN(hooks);
  RUN(large_writes);
#endif
  return HARNESS_END();
}
