/*
 * stress.c -- N threads x M connections doing random library operations on
 * shared and private UUIDs while fds are closed and reused as fast as the
 * kernel hands them out (see common.h for the frame format and the checks).
 *
 * Operations: sock_write, sock_write2 (.move, .urgent, .is_fd with memfds
 * and pipes), sock_checkout_packet + sock_send_packet, sock_read (data the
 * peer sends), sock_flush, sock_flush_all, sock_flush_strong, sock_close,
 * sock_force_close, new connections (sock_open of socketpairs and pipes,
 * sock_accept, sock_connect), queries (sock_isvalid, sock_fd2uuid,
 * sock_packets_pending, sock_rw_hook_get), and every one of those through
 * stale UUIDs of connections already closed.
 *
 * Invariants: every frame accepted before a graceful close arrives exactly
 * once and in order (urgent frames in their own order); a force-closed
 * connection delivers a prefix; reactor_remove + reactor_on_close exactly
 * once per UUID and only for connections the program closed; no frame ever
 * reaches a peer through a stale UUID; stale UUIDs are refused (ENODEV);
 * at the end no fd and no pool packet is left behind.
 *
 * Environment (all optional):
 *   STRESS_SEED     seed (default: 1)      STRESS_SECONDS  per test (8)
 *   STRESS_THREADS  worker threads (4)     STRESS_SHARED   shared slots (8)
 *   STRESS_PRIVATE  private slots per thread (2)
 * Command line: test names (harness), as for the C harness.
 */
#include "common.h"

enum {
  OP_SEND,
  OP_READ,
  OP_PEER_SEND,
  OP_FLUSH,
  OP_FLUSH_ALL,
  OP_FLUSH_STRONG,
  OP_CLOSE,
  OP_FORCE,
  OP_OPEN,
  OP_STALE,
  OP_QUERY,
  NOPS
};
static const char *const op_name[] = {
    "send", "read", "peer-send", "flush", "flush-all", "flush-strong",
    "close", "force-close", "open", "stale", "query"};

typedef struct {
  const char *name;
  int weight[NOPS];
  int send_weight[SEND_KINDS];
  int kinds[4];   /* weights of LK_UNIX, LK_PIPE, LK_TCP_ACCEPTED, _CONNECTED */
  int small_pct;  /* connections with small kernel buffers */
  uint32_t large; /* largest payload */
  int pool;       /* packets in the pool, 0: random from the seed */
  int hook_pct;   /* connections with rw hooks (half pass, half buffer) */
} profile_t;

typedef struct {
  pthread_mutex_t mtx;
  lconn_t *cur;
  lconn_t *hist[4];
  int nhist;
} slot_t;

typedef struct {
  int idx;
  pthread_t th;
  wctx_t w;
  creator_t cr;
  slot_t *priv;
  long ops[NOPS];
  /* operations started: a connection out of every slot can be freed once
   * each worker has started a new operation (a mutex, not an atomic, so
   * that DRD sees the order) */
  pthread_mutex_t ep_mtx;
  unsigned long epoch;
} worker_t;

static const profile_t *prof;
static worker_t *workers;
static int nshared, npriv, nthreads;

/* Connections pushed out of the slots' histories, to be verified and freed
 * while the run goes on (memory stays bounded however long it runs). */
typedef struct {
  lconn_t *c;
  int snapped;
  unsigned long snap[RL_MAXW];
} retiree_t;
static pthread_mutex_t retire_mtx = PTHREAD_MUTEX_INITIALIZER;
static retiree_t *retq;
static size_t nretq, capretq;

static void retire_later(lconn_t *c) {
  pthread_mutex_lock(&retire_mtx);
  if (nretq == capretq) {
    capretq = capretq ? capretq * 2 : 1024;
    retq = realloc(retq, capretq * sizeof(*retq));
  }
  retq[nretq++] = (retiree_t){.c = c};
  pthread_mutex_unlock(&retire_mtx);
}

static unsigned long worker_epoch(int t) {
  pthread_mutex_lock(&workers[t].ep_mtx);
  unsigned long e = workers[t].epoch;
  pthread_mutex_unlock(&workers[t].ep_mtx);
  return e;
}

/* Main thread, during the run: frees what no worker can reach. */
static void retire_some(void) {
  pthread_mutex_lock(&retire_mtx);
  for (size_t i = 0; i < nretq;) {
    retiree_t *r = &retq[i];
    if (!r->snapped) {
      for (int t = 0; t < nthreads; t++)
        r->snap[t] = worker_epoch(t);
      r->snapped = 1;
      i++;
      continue;
    }
    int passed = 1;
    for (int t = 0; t < nthreads && passed; t++)
      passed = worker_epoch(t) > r->snap[t];
    if (passed && reg_retire(r->c, nthreads))
      retq[i] = retq[--nretq];
    else
      i++;
  }
  pthread_mutex_unlock(&retire_mtx);
}
static slot_t *shared_slots;
static atomic_int g_stop;
static uint64_t g_seed;

static void slot_init(slot_t *s) {
  memset(s, 0, sizeof(*s));
  pthread_mutex_init(&s->mtx, NULL);
}

static int requested(lconn_t *c) {
  return atomic_load(&c->close_req) || atomic_load(&c->force_req);
}

/* Replaces the slot's connection when it is gone or going. */
static void op_open(worker_t *wk, slot_t *s, int private_slot) {
  pthread_mutex_lock(&s->mtx);
  if (!s->cur || requested(s->cur)) {
    int kind = rng_pick(&wk->w.rng, prof->kinds, 4);
    int hook = rng_chance(&wk->w.rng, (uint32_t)prof->hook_pct)
                   ? (int)rng_below(&wk->w.rng, 2)
                   : -1;
    lconn_t *c = lconn_create(&wk->cr, kind, private_slot ? wk->idx : -1,
                              rng_chance(&wk->w.rng, (uint32_t)prof->small_pct),
                              hook, rng_next(&wk->w.rng));
    if (c) {
      if (s->cur) {
        if (s->nhist == 4) {
          retire_later(s->hist[0]);
          memmove(s->hist, s->hist + 1, 3 * sizeof(s->hist[0]));
          s->nhist--;
        }
        s->hist[s->nhist++] = s->cur;
      }
      s->cur = c;
    }
  }
  pthread_mutex_unlock(&s->mtx);
}

/* Operations through a UUID whose reactor_on_close already ran. */
static void op_stale(worker_t *wk, lconn_t *h) {
  rng_t *r = &wk->w.rng;
  switch (rng_below(r, 8)) {
  case 0:
  case 1:
    if (send_frame(&wk->w, h, rng_pick(r, prof->send_weight, SEND_KINDS),
                   rng_below(r, 3000)) == 0)
      rl_fail("stale-uuid-write-accepted", "stale send accepted"); /* send_frame said why */
    break;
  case 2:
    if (h->kind == LK_UNIX)
      lib_read(h, 1000);
    break;
  case 3:
    errno = 0;
    if (sock_flush(h->uuid) != -1 || errno != ENODEV)
      rl_fail("stale-uuid-flush", "sock_flush through the stale UUID of connection %u: not "
               "-1/ENODEV (errno %d)",
               h->id, errno);
    break;
  case 4:
    sock_close(h->uuid); /* must not touch whatever uses the fd now */
    break;
  case 5:
    sock_force_close(h->uuid);
    break;
  case 6: {
    static sock_rw_hook_s dummy;
    if (sock_isvalid(h->uuid) || sock_packets_pending(h->uuid) ||
        sock_rw_hook_get(h->uuid) || sock_rw_hook_set(h->uuid, &dummy) != -1)
      rl_fail("stale-uuid-query", "queries through the stale UUID of connection %u succeed",
               h->id);
    break;
  }
  default:
    if (sock_fd2uuid(h->lfd) == h->uuid)
      rl_fail("stale-uuid-fd2uuid", "sock_fd2uuid(%d) returns the closed connection %u's UUID",
               h->lfd, h->id);
    break;
  }
}

static void op_query(lconn_t *c) {
  int closed = atomic_load(&c->closed);
  int before = requested(c);
  int v = sock_isvalid(c->uuid);
  intptr_t u = sock_fd2uuid(c->lfd);
  sock_rw_hook_s *h = sock_rw_hook_get(c->uuid);
  (void)sock_packets_pending(c->uuid);
  int after = requested(c);
  if (!before && !after && (v != 1 || u != c->uuid))
    rl_fail("query-open-connection", "open connection %u (nobody closed it): sock_isvalid %d, "
             "sock_fd2uuid %s",
             c->id, v, u == c->uuid ? "right" : "wrong");
  if (closed && (v || u == c->uuid))
    rl_fail("query-closed-connection", "closed connection %u: sock_isvalid %d, sock_fd2uuid %s", c->id,
             v, u == c->uuid ? "still names it" : "ok");
  if (!closed && !before && !after && h != (c->hook ? &c->hook->h : NULL))
    rl_fail("query-hooks", "connection %u: sock_rw_hook_get returned %p, "
            "the hooks set were %p",
            c->id, (void *)h, c->hook ? (void *)&c->hook->h : NULL);
  if (closed && h)
    rl_fail("query-hooks", "closed connection %u: sock_rw_hook_get returned "
            "hooks", c->id);
}

/* Private connections only: a force close is complete once the calls
 * return (or, when another thread was inside a system call on the fd,
 * once that thread leaves it); afterwards the UUID is refused. */
static void private_force_checks(worker_t *wk, lconn_t *c) {
  int64_t end = now_ms() + 10000;
  while (!atomic_load(&c->closed) && now_ms() < end)
    tiny_wait();
  if (!atomic_load(&c->closed)) {
    rl_fail("force-close-no-on_close", "private connection %u: no reactor_on_close 10 s after "
             "sock_force_close",
             c->id);
    return;
  }
  if (sock_isvalid(c->uuid))
    rl_fail("force-close-still-valid", "private connection %u valid after sock_force_close", c->id);
  send_frame(&wk->w, c, SEND_COPY, 10);
}

static void *worker_main(void *arg) {
  worker_t *wk = arg;
  rng_t *r = &wk->w.rng;
  while (!atomic_load(&g_stop)) {
    pthread_mutex_lock(&wk->ep_mtx);
    wk->epoch++;
    pthread_mutex_unlock(&wk->ep_mtx);
    int private_slot = npriv && rng_chance(r, 30);
    slot_t *s = private_slot ? &wk->priv[rng_below(r, (uint32_t)npriv)]
                             : &shared_slots[rng_below(r, (uint32_t)nshared)];
    int op = rng_pick(r, prof->weight, NOPS);
    pthread_mutex_lock(&s->mtx);
    lconn_t *c = s->cur;
    lconn_t *h = s->nhist ? s->hist[rng_below(r, (uint32_t)s->nhist)] : NULL;
    pthread_mutex_unlock(&s->mtx);
    if (!c || (requested(c) && rng_chance(r, 50)))
      op = OP_OPEN;
    if (op == OP_STALE && (!h || !atomic_load(&h->closed)))
      op = OP_QUERY;
    wk->ops[op]++;
    switch (op) {
    case OP_SEND: {
      int how = rng_pick(r, prof->send_weight, SEND_KINDS);
      send_frame(&wk->w, c, how, pick_size(r, prof->large));
      break;
    }
    case OP_READ:
      if (c->kind != LK_PIPE)
        lib_read(c, rng_range(r, 1, 16384));
      break;
    case OP_PEER_SEND:
      if (c->kind == LK_UNIX) /* see common.h: no TCP data to the library */
        peer_send(c, rng_range(r, 1, 8192));
      break;
    case OP_FLUSH:
      if (sock_flush(c->uuid) == -1 && !requested(c))
        rl_fail("flush-unrequested-failure", "sock_flush of connection %u (%s) failed although nobody "
                 "closed it (errno %d)",
                 c->id, lk_name[c->kind], errno);
      break;
    case OP_FLUSH_ALL:
      sock_flush_all();
      break;
    case OP_FLUSH_STRONG:
      sock_flush_strong(c->uuid);
      break;
    case OP_CLOSE:
      atomic_store(&c->close_req, 1);
      sock_close(c->uuid);
      break;
    case OP_FORCE:
      atomic_store(&c->force_req, 1);
      sock_force_close(c->uuid);
      if (private_slot)
        private_force_checks(wk, c);
      break;
    case OP_OPEN:
      op_open(wk, s, private_slot);
      break;
    case OP_STALE:
      op_stale(wk, h);
      break;
    default:
      op_query(c);
      break;
    }
  }
  return NULL;
}

static void run_profile(const profile_t *p) {
  prof = p;
  g_seed = (uint64_t)env_long("STRESS_SEED", 1);
  int seconds = (int)env_long("STRESS_SECONDS", 8);
  nthreads = (int)env_long("STRESS_THREADS", 4);
  nshared = (int)env_long("STRESS_SHARED", 8);
  npriv = (int)env_long("STRESS_PRIVATE", 2);
  if (nthreads < 1 || nthreads > RL_MAXW || nshared < 1 || npriv < 0)
    SKIP("bad STRESS_* settings");
  rng_t cfg = {.s = mix64(g_seed ^ 0x51)};
  static const int pools[] = {16, 64, 256, 1024};
  int pool = p->pool ? p->pool : pools[rng_below(&cfg, 4)];
  sock_set_packet_pool_size((size_t)pool);
  signal(SIGPIPE, SIG_DFL); /* the library must never raise it */
  reg_init();
  RL_ATOMIC(g_stop);
  int fds0 = count_fds();
  readers_t rd;
  readers_start(&rd, 2);
  shared_slots = calloc((size_t)nshared, sizeof(slot_t));
  for (int i = 0; i < nshared; i++)
    slot_init(&shared_slots[i]);
  worker_t *wk = calloc((size_t)nthreads, sizeof(worker_t));
  workers = wk;
  nretq = 0;
  for (int t = 0; t < nthreads; t++) {
    wk[t].idx = t;
    pthread_mutex_init(&wk[t].ep_mtx, NULL);
    wctx_init(&wk[t].w, t, g_seed);
    REQUIRE(creator_init(&wk[t].cr, t) == 0);
    wk[t].priv = calloc((size_t)(npriv ? npriv : 1), sizeof(slot_t));
    for (int i = 0; i < npriv; i++)
      slot_init(&wk[t].priv[i]);
  }
  NOTE("profile %s: seed %llu, %d s, %d threads, %d shared + %d private "
       "slots per thread, pool %d packets",
       p->name, (unsigned long long)g_seed, seconds, nthreads, nshared, npriv,
       pool);
  atomic_store(&g_stop, 0);
  int64_t t0 = now_ms();
  for (int t = 0; t < nthreads; t++)
    pthread_create(&wk[t].th, NULL, worker_main, &wk[t]);
  /* the run lasts `seconds`; the harness watchdog bounds it too */
  while (now_ms() - t0 < seconds * 1000LL) {
    poll(NULL, 0, 50);
    retire_some();
  }
  atomic_store(&g_stop, 1);
  for (int t = 0; t < nthreads; t++)
    pthread_join(wk[t].th, NULL);
  int64_t t1 = now_ms();
  for (int t = 0; t < nthreads; t++)
    creator_close(&wk[t].cr);
  close_all_and_wait(30000);
  readers_stop(&rd);
  verify_all(nthreads);
  check_pool_whole(10000);
  int fds1 = count_fds_settled(fds0, 5000);
  if (fds1 != fds0) {
    rl_fail("fds-leaked", "%d fds open before the run, %d after (fds leaked or closed "
             "twice)",
             fds0, fds1);
    list_fds(3);
  }
  if (atomic_load(&rl_touches) == 0)
    rl_fail("no-sock_touch", "sock_touch was never called");

  long ops[NOPS] = {0}, ok[SEND_KINDS] = {0}, failed[SEND_KINDS] = {0};
  for (int t = 0; t < nthreads; t++)
    for (int i = 0; i < NOPS; i++) {
      ops[i] += wk[t].ops[i];
      if (i < SEND_KINDS) {
        ok[i] += wk[t].w.ok[i];
        failed[i] += wk[t].w.failed[i];
      }
    }
  long conns = reg_done_conns;
  uint64_t bytes = reg_done_bytes, frames = reg_done_frames;
  for (lconn_t *c = reg_all; c; c = c->next_all) {
    conns++;
    bytes += c->rx.bytes;
    frames += c->rx.frames;
  }
  char line[1024];
  int n = 0;
  for (int i = 0; i < NOPS; i++)
    n += snprintf(line + n, sizeof(line) - (size_t)n, " %s=%ld", op_name[i],
                  ops[i]);
  NOTE("%.1f s: %ld connections, %llu frames (%.1f MiB) verified; ops:%s",
       (double)(t1 - t0) / 1000, conns, (unsigned long long)frames,
       (double)bytes / 1048576.0, line);
  n = 0;
  for (int i = 0; i < SEND_KINDS; i++)
    n += snprintf(line + n, sizeof(line) - (size_t)n, " %s=%ld/%ld",
                  send_name[i], ok[i], failed[i]);
  NOTE("sends accepted/refused:%s", line);
  rl_summary();
  CHECK_MSG(atomic_load(&rl_nerrors) == 0,
            "%ld invariant violations (seed %llu; rerun with STRESS_SEED)",
            atomic_load(&rl_nerrors), (unsigned long long)g_seed);
  CHECK(frames > 0);

  for (int t = 0; t < nthreads; t++) {
    wctx_free(&wk[t].w);
    free(wk[t].priv);
    pthread_mutex_destroy(&wk[t].ep_mtx);
  }
  free(wk);
  workers = NULL;
  free(retq);
  retq = NULL;
  nretq = capretq = 0;
  free(shared_slots);
  reg_free();
}

/* Everything, every connection kind. */
static const profile_t p_mixed = {
    .name = "mixed",
    .weight = {[OP_SEND] = 40, [OP_READ] = 8, [OP_PEER_SEND] = 6,
               [OP_FLUSH] = 10, [OP_FLUSH_ALL] = 1, [OP_FLUSH_STRONG] = 1,
               [OP_CLOSE] = 3, [OP_FORCE] = 2, [OP_OPEN] = 3, [OP_STALE] = 6,
               [OP_QUERY] = 4},
    .send_weight = {[SEND_COPY] = 50, [SEND_MOVE] = 12, [SEND_URGENT] = 12,
                    [SEND_FILE] = 8, [SEND_PIPE] = 4, [SEND_PACKET] = 8},
    .kinds = {60, 10, 15, 15},
    .small_pct = 30,
    .large = 1u << 20,
    .hook_pct = 20,
};

/* Connections closed and reopened as fast as possible, stale UUIDs used
 * all the time ("Bob and Alice" at scale): fd numbers are reused at once. */
static const profile_t p_churn = {
    .name = "churn",
    .weight = {[OP_SEND] = 30, [OP_READ] = 5, [OP_PEER_SEND] = 4,
               [OP_FLUSH] = 5, [OP_FLUSH_ALL] = 1, [OP_CLOSE] = 8,
               [OP_FORCE] = 8, [OP_OPEN] = 15, [OP_STALE] = 25,
               [OP_QUERY] = 6},
    .send_weight = {[SEND_COPY] = 50, [SEND_MOVE] = 15, [SEND_URGENT] = 15,
                    [SEND_FILE] = 8, [SEND_PIPE] = 4, [SEND_PACKET] = 8},
    .kinds = {70, 20, 5, 5},
    .small_pct = 20,
    .large = 60000,
    .hook_pct = 10,
};

/* A small pool and small kernel buffers: writes bigger than the free pool
 * block and flush while other threads write, close and read. */
static const profile_t p_pool = {
    .name = "pool-pressure",
    .weight = {[OP_SEND] = 50, [OP_READ] = 3, [OP_PEER_SEND] = 3,
               [OP_FLUSH] = 5, [OP_FLUSH_ALL] = 2, [OP_FLUSH_STRONG] = 1,
               [OP_CLOSE] = 2, [OP_FORCE] = 2, [OP_OPEN] = 3, [OP_STALE] = 3,
               [OP_QUERY] = 2},
    .send_weight = {[SEND_COPY] = 60, [SEND_MOVE] = 10, [SEND_URGENT] = 10,
                    [SEND_FILE] = 6, [SEND_PIPE] = 4, [SEND_PACKET] = 10},
    .kinds = {60, 10, 15, 15},
    .small_pct = 70,
    .large = 2u << 20,
    .pool = 12,
    .hook_pct = 10,
};

TEST(mixed) { run_profile(&p_mixed); }
TEST(churn) { run_profile(&p_churn); }
TEST(pool_pressure) { run_profile(&p_pool); }

/* ---- controls: the checks catch deliberate faults ----------------------------
 * Run with STRESS_CONTROLS=1 (stress/run.sh does). Each injects one kind
 * of fault into a short run and passes when the right violation class was
 * reported (the run itself "fails", as it must). */

static long class_count(const char *cls) {
  long n = 0;
  pthread_mutex_lock(&rl_class_mtx);
  for (int i = 0; i < RL_CLASSES && rl_class[i].name; i++)
    if (!strcmp(rl_class[i].name, cls))
      n = rl_class[i].count;
  pthread_mutex_unlock(&rl_class_mtx);
  return n;
}

static void control(int inject, const char *cls) {
  setenv("STRESS_SECONDS", "2", 1);
  rl_inject = inject;
  run_profile(&p_mixed);
  long n = class_count(cls);
  NOTE("control: %ld frames tampered with, %ld '%s' violations reported",
       (long)atomic_load(&rl_injected) / 50, n, cls);
  /* the run failed, as it must: only the verdict of the control counts */
  atomic_store(&h_cur_failed, 0);
  CHECK_MSG(n > 0, "the injected fault was not detected (%s)", cls);
}

TEST(control_foreign_frame) { control(1, "stale-uuid-delivery"); }
TEST(control_uncounted_frame) { control(2, "refused-write-delivered"); }
TEST(control_phantom_frame) { control(3, "graceful-bytes-lost"); }

/* for the race checker: an unsynchronized counter (must be reported) */
static long racy_counter;
static void *racy_main(void *arg) {
  (void)arg;
  for (int i = 0; i < 1000; i++)
    racy_counter++;
  return NULL;
}
TEST(control_race) {
  pthread_t a, b;
  pthread_create(&a, NULL, racy_main, NULL);
  pthread_create(&b, NULL, racy_main, NULL);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  NOTE("racy counter: %ld", racy_counter);
}

/* for the leak checkers: a definite leak (must be reported) */
static void *volatile leak_sink;
TEST(control_leak) {
  leak_sink = malloc(4321);
  memset(leak_sink, 1, 4321);
  leak_sink = NULL;
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  if (getenv("STRESS_CONTROLS")) {
    RUN(control_foreign_frame);
    RUN(control_uncounted_frame);
    RUN(control_phantom_frame);
    RUN(control_race);
    RUN(control_leak);
  } else {
    RUN(mixed);
    RUN(churn);
    RUN(pool_pressure);
  }
  return HARNESS_END();
}
