/*
 * async_run (issue 3): when the program provides a task queue, the flush that
 * follows a write is handed to it as async_run(task, (void *)uuid); a -1
 * answer makes the library flush inline; a deferred flush of a connection
 * that closed meanwhile does nothing (even when the fd was reused); a burst
 * of writes before the offered task runs offers no second task.
 */
#include "util.h"

#define QMAX 4096
static struct {
  void (*task)(void *);
  void *arg;
} q[QMAX];
static int qlen;
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;
static atomic_int accept_tasks; /* 0: decline (-1) */
static atomic_int offered;
static _Atomic intptr_t last_arg;

int async_run(void (*task)(void *), void *arg) {
  atomic_fetch_add(&offered, 1);
  atomic_store(&last_arg, (intptr_t)arg);
  if (!atomic_load(&accept_tasks))
    return -1;
  pthread_mutex_lock(&qlock);
  int ok = qlen < QMAX;
  if (ok) {
    q[qlen].task = task;
    q[qlen].arg = arg;
    qlen++;
    pthread_cond_signal(&qcond);
  }
  pthread_mutex_unlock(&qlock);
  return ok ? 0 : -1;
}

/* Runs every queued task; returns how many ran. */
static int run_tasks(void) {
  int n = 0;
  for (;;) {
    pthread_mutex_lock(&qlock);
    if (!qlen) {
      pthread_mutex_unlock(&qlock);
      return n;
    }
    void (*task)(void *) = q[0].task;
    void *arg = q[0].arg;
    memmove(q, q + 1, sizeof(q[0]) * (size_t)(--qlen));
    pthread_mutex_unlock(&qlock);
    task(arg);
    n++;
  }
}

TEST(flush_is_handed_to_the_task_queue) {
  atomic_store(&accept_tasks, 1);
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  CHECK_EQ(sock_write(c.uuid, "deferred", 8), 0);
  CHECK_EQ(atomic_load(&offered), 1);
  CHECK_EQ(atomic_load(&last_arg), c.uuid);
  /* nothing was written inline */
  char buf[16];
  CHECK_EQ(raw_read_avail(c.raw, buf, sizeof buf), 0);
  CHECK(sock_packets_pending(c.uuid));
  CHECK_EQ(run_tasks(), 1);
  CHECK_EQ(raw_read_n(c.raw, buf, 8, 2000, NULL), 8);
  CHECK(memcmp(buf, "deferred", 8) == 0);
  CHECK(!sock_packets_pending(c.uuid));
  conn_force_close(&c);
}

TEST(declined_task_means_inline_flush) {
  atomic_store(&accept_tasks, 0);
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  CHECK_EQ(sock_write(c.uuid, "inline", 6), 0);
  CHECK_EQ(atomic_load(&offered), 1);
  char buf[8];
  /* already in the socket when sock_write returned */
  CHECK_EQ(raw_read_avail(c.raw, buf, sizeof buf), 6);
  CHECK_EQ(run_tasks(), 0);
  conn_force_close(&c);
}

TEST(deferred_flush_of_closed_connection_is_noop) {
  atomic_store(&accept_tasks, 1);
  conn_t old;
  REQUIRE(make_unix_pair(&old) == 0);
  int fd = old.lfd;
  CHECK_EQ(sock_write(old.uuid, "for-bob", 7), 0);
  conn_force_close(&old);
  /* a new connection on the same fd number, with data of its own queued */
  conn_t alice;
  REQUIRE(make_unix_pair(&alice) == 0);
  if (alice.lfd != fd)
    NOTE("fd not reused (%d vs %d); still checking the stale task", alice.lfd, fd);
  CHECK_EQ(sock_write(alice.uuid, "alice", 5), 0);
  /* run the stale task first, then alice's */
  CHECK_EQ(run_tasks(), 2);
  char buf[16] = {0};
  CHECK_EQ(raw_read_n(alice.raw, buf, 5, 2000, NULL), 5);
  CHECK(memcmp(buf, "alice", 5) == 0);
  CHECK_EQ(raw_read_avail(alice.raw, buf, sizeof buf), 0); /* nothing of bob's */
  CHECK_EQ(sock_isvalid(alice.uuid), 1);
  conn_force_close(&alice);
}

/* A broadcast writes many times to one connection before the program's
 * queue runs the first flush task: that one task sends them all, and only
 * a write after it started offers another. */
TEST(a_burst_of_writes_offers_one_task) {
  atomic_store(&accept_tasks, 1);
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  enum { N = 100, LEN = 10 };
  uint8_t data[N * LEN + 5];
  fill_pattern(data, sizeof data, 0, 3);
  for (int i = 0; i < N; i++)
    REQUIRE(sock_write(c.uuid, data + i * LEN, LEN) == 0);
  char *moved = malloc(5);
  REQUIRE(moved);
  memcpy(moved, data + N * LEN, 5);
  REQUIRE(sock_write2(.fduuid = c.uuid, .buffer = moved, .length = 5,
                      .move = 1) == 0);
  CHECK_EQ(atomic_load(&offered), 1);
  CHECK_EQ(atomic_load(&last_arg), c.uuid);
  CHECK_EQ(run_tasks(), 1);
  uint8_t got[sizeof data];
  CHECK_EQ(raw_read_n(c.raw, got, sizeof got, 2000, NULL), sizeof got);
  CHECK_EQ(check_pattern(got, sizeof got, 0, 3), sizeof got);
  CHECK(!sock_packets_pending(c.uuid));
  /* the task ran: the next write needs (and offers) a task of its own */
  CHECK_EQ(sock_write(c.uuid, "again", 5), 0);
  CHECK_EQ(atomic_load(&offered), 2);
  CHECK_EQ(run_tasks(), 1);
  char buf[8];
  CHECK_EQ(raw_read_n(c.raw, buf, 5, 2000, NULL), 5);
  CHECK(memcmp(buf, "again", 5) == 0);
  conn_force_close(&c);
}

static void flush_task(void *arg) { sock_flush((intptr_t)arg); }

static atomic_int worker_stop;
static void *worker(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&qlock);
    while (!qlen && !atomic_load(&worker_stop))
      pthread_cond_wait(&qcond, &qlock);
    int stop = !qlen && atomic_load(&worker_stop);
    pthread_mutex_unlock(&qlock);
    if (stop)
      return NULL;
    run_tasks();
  }
}

TEST(worker_thread_flushes_everything) {
  atomic_store(&accept_tasks, 1);
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, worker, NULL) == 0);
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  enum { CHUNK = 1000, N = 2000 };
  static uint8_t data[CHUNK * N];
  fill_pattern(data, sizeof data, 0, 7);
  for (int i = 0; i < N; i++)
    REQUIRE(sock_write(c.uuid, data + (size_t)i * CHUNK, CHUNK) == 0);
  static uint8_t got[CHUNK * N];
  size_t n = 0;
  int64_t end = now_ms() + 20000;
  while (n < sizeof got && now_ms() < end) {
    n += raw_read_n(c.raw, got + n, sizeof got - n, 100, NULL);
    /* the worker flushes what the writes left when the socket was full;
     * offer it a flush task as an event loop would on writability */
    if (n < sizeof got && sock_packets_pending(c.uuid))
      async_run(flush_task, (void *)c.uuid);
  }
  CHECK_EQ(n, sizeof got);
  CHECK_EQ(check_pattern(got, n, 0, 7), n);
  pthread_mutex_lock(&qlock);
  atomic_store(&worker_stop, 1);
  pthread_cond_broadcast(&qcond);
  pthread_mutex_unlock(&qlock);
  pthread_join(th, NULL);
  conn_force_close(&c);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(flush_is_handed_to_the_task_queue);
  RUN(declined_task_means_inline_flush);
  RUN(deferred_flush_of_closed_connection_is_noop);
  RUN(a_burst_of_writes_offers_one_task);
  RUN(worker_thread_flushes_everything);
  return HARNESS_END();
}
