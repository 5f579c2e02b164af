/*
 * loop_mt.c -- examples/loop.h driven the way the 2017 facil.io stack drove
 * libsock: one edge-triggered reactor thread plus a pool of worker threads
 * behind async_run.
 *
 * Linked with examples/http_hello.c instead of examples/loop.c, it runs the
 * same HTTP server in that shape (bench/run.sh: "the 2017 server pattern"):
 *   - the reactor thread waits on epoll (EPOLLIN | EPOLLOUT | EPOLLRDHUP |
 *     EPOLLET), accepts, calls sock_flush on EPOLLOUT, and hands a readable
 *     connection to the worker pool (it never reads);
 *   - the program defines async_run(), so the library's flush after every
 *     write runs as a task on a worker, concurrently with the reactor's
 *     sock_flush and with the other workers;
 *   - on_data runs on a worker, for one connection at a time (an event that
 *     arrives meanwhile makes the same worker run it again);
 *   - sock_touch and reactor_on_close may come from any thread;
 *   - a connection whose answers wait in the queue stops being read
 *     (loop_pause) until the queue drains: see maybe_resume.
 * Workers: LOOP_WORKERS (environment), default 4.
 *
 * Linked with bench/rawsock.c built with -DRAWSOCK_THREADS, it is the same
 * server on raw calls (there async_run is never called: the raw functions
 * send inline, under a per-connection mutex).
 */
#define _GNU_SOURCE
#include "loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define SHUTDOWN_GRACE_MS 2000
#define EXPIRE_EVERY_MS 100

/* One fd's connection state. Slots are never freed while the loop runs (a
 * thread may still hold a pointer to one); a slot still in use by a worker
 * when its fd number is reused is retired and a fresh one takes the fd. */
typedef struct slot_s {
  pthread_mutex_t mu;          /* guards the flags (never held in sock_*) */
  _Atomic intptr_t uuid;       /* the connection's UUID, -1 when none */
  _Atomic int64_t last_active; /* ms, set by sock_touch */
  unsigned busy : 1;           /* an on_data task is queued or running */
  unsigned again : 1;          /* an event came meanwhile: run it again */
  unsigned paused : 1;         /* reading stopped until the queue drains */
  unsigned closed : 1;         /* reactor_on_close ran */
  unsigned closing : 1;        /* the idle timeout called sock_close */
  struct slot_s *retired_next;
  loop_conn_s c; /* last: its udata follows */
} slot_s;

typedef struct task_s {
  struct task_s *next;
  void (*fn)(void *); /* a library task; NULL: on_data of `slot` */
  void *arg;
  slot_s *slot;
  intptr_t uuid;
} task_s;

static struct {
  int epfd, sigfd;
  intptr_t listener;
  const loop_handler_s *h;
  int timeout_ms;
  _Atomic int64_t now;
  _Atomic(slot_s *) *slots;
  size_t cap;
  atomic_int count;
  slot_s *retired;
  pthread_mutex_t qmu;
  pthread_cond_t qcv;
  task_s *qhead, *qtail, *qfree;
  int stop;
  pthread_t *workers;
  int nworkers;
} M = {.epfd = -1, .sigfd = -1, .listener = -1,
       .qmu = PTHREAD_MUTEX_INITIALIZER, .qcv = PTHREAD_COND_INITIALIZER};

int64_t loop_now_ms(void) { return atomic_load(&M.now); }

static int64_t clock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static slot_s *slot_of(intptr_t uuid) {
  int fd = sock_uuid2fd(uuid);
  if (fd < 0 || (size_t)fd >= M.cap)
    return NULL;
  slot_s *s = atomic_load(&M.slots[fd]);
  return s && atomic_load(&s->uuid) == uuid ? s : NULL;
}

/* ---- the task queue (async_run) ----------------------------------------- */

static void push_task(void (*fn)(void *), void *arg, slot_s *s, intptr_t uuid) {
  pthread_mutex_lock(&M.qmu);
  task_s *t = M.qfree;
  if (t)
    M.qfree = t->next;
  else
    t = malloc(sizeof *t);
  *t = (task_s){.fn = fn, .arg = arg, .slot = s, .uuid = uuid};
  if (M.qtail)
    M.qtail->next = t;
  else
    M.qhead = t;
  M.qtail = t;
  pthread_cond_signal(&M.qcv);
  pthread_mutex_unlock(&M.qmu);
}

/* The library offers its flushes here: they run on a worker. */
int async_run(void (*task)(void *), void *arg) {
  push_task(task, arg, NULL, -1);
  return 0;
}

/* Schedules on_data for `s` (its mutex held): at most one at a time. */
static void schedule_data(slot_s *s) {
  if (s->busy) {
    s->again = 1;
    return;
  }
  s->busy = 1;
  s->again = 0;
  push_task(NULL, NULL, s, atomic_load(&s->uuid));
}

/* Resumes a connection paused while its answers were queued, once nothing
 * is pending. Called wherever the queue may just have drained: after the
 * reactor's sock_flush (EPOLLOUT), from sock_touch (the library moved bytes:
 * a worker's flush, after it ended its turn), and by the worker right after
 * on_data paused (the queue may have drained before the pause, and a flush
 * that finds the socket writable brings no EPOLLOUT). No mutex is held
 * while asking the library. */
static void maybe_resume(slot_s *s, intptr_t uuid) {
  pthread_mutex_lock(&s->mu);
  int paused = atomic_load(&s->uuid) == uuid && !s->closed && s->paused;
  pthread_mutex_unlock(&s->mu);
  if (!paused || sock_packets_pending(uuid))
    return;
  pthread_mutex_lock(&s->mu);
  if (atomic_load(&s->uuid) == uuid && !s->closed && s->paused) {
    s->paused = 0;
    schedule_data(s);
  }
  pthread_mutex_unlock(&s->mu);
}

static void run_data(slot_s *s, intptr_t uuid) {
  for (;;) {
    pthread_mutex_lock(&s->mu);
    if (atomic_load(&s->uuid) != uuid || s->closed || s->paused) {
      s->busy = 0;
      pthread_mutex_unlock(&s->mu);
      return;
    }
    s->again = 0;
    pthread_mutex_unlock(&s->mu);
    M.h->on_data(&s->c);
    /* Paused with its answer queued: the queue may have drained already,
     * while it was not yet paused (see maybe_resume). */
    maybe_resume(s, uuid);
    pthread_mutex_lock(&s->mu);
    int again = s->again && !s->closed && !s->paused;
    if (!again)
      s->busy = 0;
    pthread_mutex_unlock(&s->mu);
    if (!again)
      return;
  }
}

static void *worker_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&M.qmu);
  for (;;) {
    while (!M.qhead && !M.stop)
      pthread_cond_wait(&M.qcv, &M.qmu);
    if (!M.qhead)
      break;
    task_s t = *M.qhead;
    task_s *node = M.qhead;
    M.qhead = node->next;
    if (!M.qhead)
      M.qtail = NULL;
    node->next = M.qfree;
    M.qfree = node;
    pthread_mutex_unlock(&M.qmu);
    if (t.fn)
      t.fn(t.arg);
    else
      run_data(t.slot, t.uuid);
    pthread_mutex_lock(&M.qmu);
  }
  pthread_mutex_unlock(&M.qmu);
  return NULL;
}

/* ---- libsock's overridable callbacks (any thread) ---------------------- */

void sock_touch(intptr_t uuid) {
  slot_s *s = slot_of(uuid);
  if (!s)
    return;
  atomic_store_explicit(&s->last_active, atomic_load(&M.now),
                        memory_order_relaxed);
  maybe_resume(s, uuid);
}

void reactor_on_close(intptr_t uuid) {
  slot_s *s = slot_of(uuid);
  if (!s)
    return;
  pthread_mutex_lock(&s->mu);
  int first = atomic_load(&s->uuid) == uuid && !s->closed;
  s->closed = 1;
  pthread_mutex_unlock(&s->mu);
  if (!first)
    return;
  atomic_fetch_sub(&M.count, 1);
  if (M.h && M.h->on_close)
    M.h->on_close(&s->c);
}

void loop_pause(loop_conn_s *c) {
  slot_s *s = (slot_s *)((char *)c - offsetof(slot_s, c));
  pthread_mutex_lock(&s->mu);
  s->paused = 1;
  pthread_mutex_unlock(&s->mu);
}

/* ---- the reactor ----------------------------------------------------------- */

static void accept_all(void) {
  for (;;) {
    intptr_t uuid = sock_accept(M.listener);
    if (uuid == -1)
      return;
    int fd = sock_uuid2fd(uuid);
    if (fd < 0 || (size_t)fd >= M.cap) {
      sock_force_close(uuid);
      continue;
    }
    slot_s *s = atomic_load(&M.slots[fd]);
    if (s) {
      pthread_mutex_lock(&s->mu);
      int busy = s->busy;
      pthread_mutex_unlock(&s->mu);
      if (busy) { /* a worker still runs the old connection's on_data */
        s->retired_next = M.retired;
        M.retired = s;
        s = NULL;
      }
    }
    size_t udata = M.h->udata_size ? M.h->udata_size : 1;
    if (!s) {
      s = calloc(1, sizeof *s + udata);
      if (!s) {
        sock_force_close(uuid);
        continue;
      }
      pthread_mutex_init(&s->mu, NULL);
    }
    pthread_mutex_lock(&s->mu);
    s->busy = s->again = s->paused = s->closed = s->closing = 0;
    memset(s->c.udata, 0, udata);
    s->c.uuid = uuid;
    atomic_store(&s->last_active, atomic_load(&M.now));
    atomic_store(&s->uuid, uuid);
    pthread_mutex_unlock(&s->mu);
    atomic_store(&M.slots[fd], s);
    atomic_fetch_add(&M.count, 1);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        .data.u64 = (uint64_t)uuid,
    };
    if (epoll_ctl(M.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      sock_force_close(uuid);
      continue;
    }
    if (M.h->on_open)
      M.h->on_open(&s->c);
  }
}

static void on_event(intptr_t uuid, uint32_t events) {
  slot_s *s = slot_of(uuid);
  if (!s)
    return;
  if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
    sock_flush(uuid);
    maybe_resume(s, uuid);
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
    pthread_mutex_lock(&s->mu);
    if (atomic_load(&s->uuid) == uuid && !s->closed && !s->paused)
      schedule_data(s);
    pthread_mutex_unlock(&s->mu);
  }
}

/* Closes what was idle too long (sock_close, then sock_force_close one
 * timeout later). The calls are made with no slot mutex held. */
static void expire(void) {
  int64_t now = atomic_load(&M.now);
  for (size_t fd = 0; fd < M.cap; fd++) {
    slot_s *s = atomic_load(&M.slots[fd]);
    if (!s)
      continue;
    pthread_mutex_lock(&s->mu);
    intptr_t uuid = atomic_load(&s->uuid);
    int act = 0;
    if (uuid != -1 && !s->closed &&
        now - atomic_load(&s->last_active) >= M.timeout_ms) {
      act = s->closing ? 2 : 1;
      s->closing = 1;
      atomic_store(&s->last_active, now);
    }
    pthread_mutex_unlock(&s->mu);
    if (act == 1)
      sock_close(uuid);
    else if (act == 2) {
      sock_force_close(uuid);
      reactor_on_close(uuid); /* in case the library did not know it */
    }
  }
}

static void close_all(int force) {
  for (size_t fd = 0; fd < M.cap; fd++) {
    slot_s *s = atomic_load(&M.slots[fd]);
    if (!s)
      continue;
    pthread_mutex_lock(&s->mu);
    intptr_t uuid = s->closed ? -1 : atomic_load(&s->uuid);
    pthread_mutex_unlock(&s->mu);
    if (uuid == -1)
      continue;
    if (force) {
      sock_force_close(uuid);
      reactor_on_close(uuid);
    } else {
      sock_close(uuid);
    }
  }
}

intptr_t loop_listen(const char *address, const char *port, int *bound_port) {
  intptr_t srv = sock_listen(address, port);
  if (srv == -1)
    return -1;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int p = 0;
  if (getsockname(sock_uuid2fd(srv), (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET)
      p = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
      p = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  }
  if (bound_port)
    *bound_port = p;
  return srv;
}

int loop_run(intptr_t listener, const loop_handler_s *handler,
             int idle_timeout_ms) {
  M.listener = listener;
  M.h = handler;
  M.timeout_ms = idle_timeout_ms;
  atomic_store(&M.now, clock_ms());
  ssize_t cap = sock_max_capacity();
  M.cap = cap > 0 ? (size_t)cap : 1024;
  M.slots = calloc(M.cap, sizeof *M.slots);
  if (!M.slots)
    return -1;

  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  /* blocked before the workers start, so they inherit it */
  if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0)
    return -1;
  M.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  M.epfd = epoll_create1(EPOLL_CLOEXEC);
  if (M.sigfd < 0 || M.epfd < 0)
    return -1;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)-1};
  if (epoll_ctl(M.epfd, EPOLL_CTL_ADD, M.sigfd, &ev) != 0)
    return -1;
  ev.data.u64 = (uint64_t)listener;
  if (epoll_ctl(M.epfd, EPOLL_CTL_ADD, sock_uuid2fd(listener), &ev) != 0)
    return -1;

  const char *w = getenv("LOOP_WORKERS");
  M.nworkers = w && atoi(w) > 0 ? atoi(w) : 4;
  M.workers = calloc((size_t)M.nworkers, sizeof *M.workers);
  for (int i = 0; i < M.nworkers; i++)
    if (pthread_create(&M.workers[i], NULL, worker_main, NULL) != 0)
      return -1;

  struct epoll_event evs[MAX_EVENTS];
  int64_t stop_deadline = 0, next_expire = 0;
  for (;;) {
    int wait = M.timeout_ms > 0 ? EXPIRE_EVERY_MS : -1;
    if (stop_deadline)
      wait = 50;
    int n = epoll_wait(M.epfd, evs, MAX_EVENTS, wait);
    if (n < 0 && errno != EINTR)
      break;
    atomic_store(&M.now, clock_ms());
    int64_t now = atomic_load(&M.now);
    for (int i = 0; i < n; i++) {
      intptr_t id = (intptr_t)evs[i].data.u64;
      if (id == -1) {
        struct signalfd_siginfo si;
        while (read(M.sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
          if (stop_deadline) {
            stop_deadline = now;
            continue;
          }
          stop_deadline = now + SHUTDOWN_GRACE_MS;
          if (M.listener != -1) {
            sock_force_close(M.listener);
            M.listener = -1;
          }
          close_all(0);
        }
      } else if (M.listener != -1 && id == M.listener) {
        accept_all();
      } else {
        on_event(id, evs[i].events);
      }
    }
    if (M.timeout_ms > 0 && now >= next_expire) {
      expire();
      next_expire = now + EXPIRE_EVERY_MS;
    }
    if (stop_deadline && (atomic_load(&M.count) == 0 || now >= stop_deadline))
      break;
  }
  /* the workers finish what is queued, then stop */
  pthread_mutex_lock(&M.qmu);
  M.stop = 1;
  pthread_cond_broadcast(&M.qcv);
  pthread_mutex_unlock(&M.qmu);
  for (int i = 0; i < M.nworkers; i++)
    pthread_join(M.workers[i], NULL);
  close_all(1);
  if (M.listener != -1)
    sock_force_close(M.listener);
  for (size_t fd = 0; fd < M.cap; fd++)
    free(atomic_load(&M.slots[fd]));
  while (M.retired) {
    slot_s *s = M.retired;
    M.retired = s->retired_next;
    free(s);
  }
  while (M.qfree) {
    task_s *t = M.qfree;
    M.qfree = t->next;
    free(t);
  }
  free(M.slots);
  free(M.workers);
  close(M.epfd);
  close(M.sigfd);
  return stop_deadline ? 0 : -1;
}
