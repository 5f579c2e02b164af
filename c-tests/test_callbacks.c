/* Overridable callbacks (spec 5): the program's own definitions of
 * reactor_on_close, reactor_remove, sock_touch and async_run are called
 * (shared and static linking); async_run with a real task queue; the
 * run-time registration API and its precedence (as documented in
 * libsock.h). */
#define TEST_DEFINE_CALLBACKS
#include "util.h"

/* ---- a task queue for async_run (program definition) --------------------*/
typedef struct {
  void (*task)(void *);
  void *arg;
} job_t;

#define QCAP 65536
static job_t q[QCAP];
static size_t q_head, q_tail;
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static int q_gate_closed;
static int q_started;
static atomic_long async_offered, async_ran;
static pthread_t q_thread;

static void *q_worker(void *arg) {
  (void)arg;
  pthread_mutex_lock(&q_lock);
  for (;;) {
    while (q_head == q_tail || q_gate_closed)
      pthread_cond_wait(&q_cond, &q_lock);
    job_t j = q[q_head++ % QCAP];
    pthread_mutex_unlock(&q_lock);
    j.task(j.arg);
    atomic_fetch_add(&async_ran, 1);
    pthread_mutex_lock(&q_lock);
    pthread_cond_broadcast(&q_cond);
  }
  return NULL;
}

int async_run(void (*task)(void *), void *arg) {
  atomic_fetch_add(&async_offered, 1);
  pthread_mutex_lock(&q_lock);
  if (!q_started || q_tail - q_head >= QCAP) {
    pthread_mutex_unlock(&q_lock);
    return -1; /* no queue (yet): do it inline */
  }
  q[q_tail++ % QCAP] = (job_t){task, arg};
  pthread_cond_broadcast(&q_cond);
  pthread_mutex_unlock(&q_lock);
  return 0;
}

static void q_start(void) {
  pthread_mutex_lock(&q_lock);
  q_started = 1;
  pthread_mutex_unlock(&q_lock);
  pthread_create(&q_thread, NULL, q_worker, NULL);
}

static void q_gate(int closed) {
  pthread_mutex_lock(&q_lock);
  q_gate_closed = closed;
  pthread_cond_broadcast(&q_cond);
  pthread_mutex_unlock(&q_lock);
}

/* wait until every queued job ran */
static int q_wait_idle(int ms) {
  int64_t end = now_ms() + ms;
  for (;;) {
    pthread_mutex_lock(&q_lock);
    int idle = q_head == q_tail;
    pthread_mutex_unlock(&q_lock);
    if (idle)
      return 1;
    if (now_ms() > end)
      return 0;
    tiny_wait();
  }
}

TEST(program_definitions_called) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  long t0 = touch_count(c.uuid);
  CHECK_EQ(sock_write(c.uuid, "x", 1), 0);
  sock_flush_strong(c.uuid);
  char b;
  CHECK_EQ(raw_read_n(c.raw, &b, 1, 5000, NULL), 1);
  CHECK_GT(touch_count(c.uuid), t0);
  sock_close(c.uuid);
  CHECK_EQ(close_count(c.uuid), 1);
  CHECK_EQ(remove_count(c.uuid), 1);
  CHECK(remove_before_close(c.uuid));
  close(c.raw);
}

TEST(async_run_task_queue_delivers) {
  q_start();
  conn_t c;
  REQUIRE(make_tcp_pair(&c) == 0);
  size_t n = 3u << 20;
  size_t total = n + 50 + 5;
  uint8_t *src = malloc(n);
  fill_pattern(src, n, 0, 61);
  drain_t d = {.fd = c.raw, .expect = total, .store = malloc(total),
               .store_cap = total};
  drain_start(&d);
  CHECK_EQ(sock_write(c.uuid, src, n), 0);
  for (int i = 0; i < 50; i++)
    CHECK_EQ(sock_write(c.uuid, "k", 0), 0);
  CHECK_EQ(sock_write(c.uuid, "done!", 5), 0);
  sock_flush_strong(c.uuid);
  CHECK(q_wait_idle(10000));
  drain_join(&d);
  NOTE("async_run offered %ld flushes, %ld ran", atomic_load(&async_offered),
       atomic_load(&async_ran));
  CHECK_EQ(d.got, total);
  CHECK_EQ(check_pattern(d.store, n, 0, 61), n);
  size_t k = 0;
  while (k < 50 && d.store[n + k] == 'k')
    k++;
  CHECK_EQ(k, 50);
  CHECK(!memcmp(d.store + n + 50, "done!", 5));
  free(src);
  free(d.store);
  conn_force_close(&c);
}

TEST(deferred_flush_after_fd_reuse_is_harmless) {
  q_start();
  q_gate(1); /* hold every deferred job */
  conn_t a;
  REQUIRE(make_unix_pair_buf(&a, 4096) == 0);
  size_t n = 1u << 20;
  uint8_t *src = malloc(n);
  memset(src, 'A', n);
  for (int i = 0; i < 20; i++)
    CHECK_EQ(sock_write(a.uuid, src, n / 20), 0);
  free(src);
  int fd = a.lfd;
  conn_force_close(&a);
  /* B gets the same fd number */
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  REQUIRE_EQ(sv[0], fd);
  sock_set_non_block(sv[0]);
  intptr_t b = sock_open(sv[0]);
  REQUIRE(b != -1);
  /* now let the deferred flushes of A run */
  q_gate(0);
  CHECK(q_wait_idle(10000));
  CHECK_EQ(sock_isvalid(b), 1);
  CHECK_EQ(sock_packets_pending(b), 0);
  CHECK_EQ(sock_write(b, "B-only", 6), 0);
  sock_flush_strong(b);
  CHECK(q_wait_idle(10000));
  char buf[64] = {0};
  CHECK_EQ(raw_read_n(sv[1], buf, 6, 5000, NULL), 6);
  CHECK(!memcmp(buf, "B-only", 6));
  CHECK_EQ(raw_read_avail(sv[1], buf, sizeof(buf)), 0);
  sock_force_close(b);
  close(sv[1]);
}

/* ---- registration API ----------------------------------------------------*/
static atomic_int reg_close, reg_remove, reg_touch, reg_async;
static void reg_close_cb(intptr_t u) {
  (void)u;
  atomic_fetch_add(&reg_close, 1);
}
static int reg_remove_cb(intptr_t u) {
  (void)u;
  atomic_fetch_add(&reg_remove, 1);
  return 0;
}
static void reg_touch_cb(intptr_t u) {
  (void)u;
  atomic_fetch_add(&reg_touch, 1);
}
static int reg_async_cb(void (*t)(void *), void *a) {
  (void)t;
  (void)a;
  atomic_fetch_add(&reg_async, 1);
  return -1; /* flush inline */
}

TEST(registered_pointers_take_precedence) {
  sock_register_on_close(reg_close_cb);
  sock_register_remove(reg_remove_cb);
  sock_register_touch(reg_touch_cb);
  sock_register_async_run(reg_async_cb);
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  long offered = atomic_load(&async_offered);
  CHECK_EQ(sock_write(c.uuid, "reg", 3), 0);
  sock_flush_strong(c.uuid);
  char b[3];
  CHECK_EQ(raw_read_n(c.raw, b, 3, 5000, NULL), 3);
  conn_force_close(&c);
  CHECK_EQ(atomic_load(&reg_close), 1);
  CHECK_EQ(atomic_load(&reg_remove), 1);
  CHECK_GT(atomic_load(&reg_touch), 0);
  CHECK_EQ(close_count(c.uuid), 0); /* the program's definitions: not */
  CHECK_EQ(remove_count(c.uuid), 0);
  CHECK_EQ(touch_count(c.uuid), 0);
  CHECK_EQ(atomic_load(&async_offered), offered);
  NOTE("registered async_run offered %d flushes", atomic_load(&reg_async));
  /* NULL restores the program's definitions */
  sock_register_on_close(NULL);
  sock_register_remove(NULL);
  sock_register_touch(NULL);
  sock_register_async_run(NULL);
  REQUIRE(make_unix_pair(&c) == 0);
  CHECK_EQ(sock_write(c.uuid, "prog", 4), 0);
  sock_flush_strong(c.uuid);
  char b4[4];
  CHECK_EQ(raw_read_n(c.raw, b4, 4, 5000, NULL), 4);
  conn_force_close(&c);
  CHECK_EQ(close_count(c.uuid), 1);
  CHECK_EQ(remove_count(c.uuid), 1);
  CHECK_GT(touch_count(c.uuid), 0);
  CHECK_EQ(atomic_load(&reg_close), 1);
  CHECK_EQ(atomic_load(&reg_remove), 1);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(program_definitions_called);
  RUN(async_run_task_queue_delivers);
  RUN(deferred_flush_after_fd_reuse_is_harmless);
  RUN(registered_pointers_take_precedence);
  return HARNESS_END();
}
