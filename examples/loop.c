/*
 * loop.c -- the examples' epoll event loop (see loop.h).
 */
#define _GNU_SOURCE
#include "loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define SHUTDOWN_GRACE_MS 2000
#define ACCEPT_RETRY_MS 100

static struct {
  int epfd;
  int sigfd;
  intptr_t listener;
  const loop_handler_s *h;
  int timeout_ms;
  int64_t now;
  loop_conn_s **conns; /* by fd */
  size_t cap;
  size_t count;
  loop_conn_s *idle_head, *idle_tail;
  loop_conn_s *dead;
  int64_t accept_retry_at; /* listener disabled until then (EMFILE), or 0 */
} L = {.epfd = -1, .sigfd = -1, .listener = -1};

int64_t loop_now_ms(void) { return L.now; }

static int64_t clock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the idle list (least recently active first) ------------------------ */

static void idle_unlink(loop_conn_s *c) {
  if (c->prev)
    c->prev->next = c->next;
  else if (L.idle_head == c)
    L.idle_head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  else if (L.idle_tail == c)
    L.idle_tail = c->prev;
  c->prev = c->next = NULL;
}

static void idle_push(loop_conn_s *c) {
  c->prev = L.idle_tail;
  c->next = NULL;
  if (L.idle_tail)
    L.idle_tail->next = c;
  else
    L.idle_head = c;
  L.idle_tail = c;
}

static loop_conn_s *conn_of(intptr_t uuid) {
  int fd = sock_uuid2fd(uuid);
  if (fd < 0 || (size_t)fd >= L.cap)
    return NULL;
  loop_conn_s *c = L.conns[fd];
  return c && c->uuid == uuid ? c : NULL;
}

/* ---- libsock's overridable callbacks ------------------------------------ */

/* Data moved on `uuid`: it is not idle. O(1): move it to the list's end. */
void sock_touch(intptr_t uuid) {
  loop_conn_s *c = conn_of(uuid);
  if (!c || c->closed)
    return;
  c->last_active = L.now;
  if (L.idle_tail != c) {
    idle_unlink(c);
    idle_push(c);
  }
}

/* The library closed `uuid` (its fd is closed already, so epoll dropped
 * it): forget the connection. Its memory is freed at the end of the loop
 * iteration, because the code that caused the close may still hold `c`. */
void reactor_on_close(intptr_t uuid) {
  loop_conn_s *c = conn_of(uuid);
  if (!c || c->closed)
    return;
  c->closed = 1;
  idle_unlink(c);
  L.conns[sock_uuid2fd(uuid)] = NULL;
  L.count--;
  if (L.h && L.h->on_close)
    L.h->on_close(c);
  c->dead_next = L.dead;
  L.dead = c;
}

/* ---- connections -------------------------------------------------------- */

static int table_fit(int fd) {
  if ((size_t)fd < L.cap)
    return 0;
  size_t cap = L.cap ? L.cap : 1024;
  while (cap <= (size_t)fd)
    cap *= 2;
  loop_conn_s **n = realloc(L.conns, cap * sizeof *n);
  if (!n)
    return -1;
  memset(n + L.cap, 0, (cap - L.cap) * sizeof *n);
  L.conns = n;
  L.cap = cap;
  return 0;
}

static void accept_all(void) {
  for (;;) {
    intptr_t uuid = sock_accept(L.listener);
    if (uuid == -1) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        /* out of descriptors: stop watching the listener for a moment
         * instead of spinning on it */
        struct epoll_event ev = {.events = 0, .data.u64 = (uint64_t)L.listener};
        epoll_ctl(L.epfd, EPOLL_CTL_MOD, sock_uuid2fd(L.listener), &ev);
        L.accept_retry_at = L.now + ACCEPT_RETRY_MS;
      }
      return;
    }
    int fd = sock_uuid2fd(uuid);
    loop_conn_s *c = NULL;
    if (table_fit(fd) == 0)
      c = calloc(1, sizeof *c + (L.h->udata_size ? L.h->udata_size : 1));
    if (!c) {
      sock_force_close(uuid);
      continue;
    }
    int one = 1; /* answers are written whole: don't let Nagle hold them */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->uuid = uuid;
    c->last_active = L.now;
    L.conns[fd] = c;
    L.count++;
    idle_push(c);
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        .data.u64 = (uint64_t)uuid,
    };
    if (epoll_ctl(L.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      sock_force_close(uuid);
      continue;
    }
    if (L.h->on_open)
      L.h->on_open(c);
  }
}

void loop_pause(loop_conn_s *c) { c->paused = 1; }

static void on_event(intptr_t uuid, uint32_t events) {
  loop_conn_s *c = conn_of(uuid);
  if (!c) /* closed earlier in this batch (the fd may even be reused) */
    return;
  if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
    sock_flush(uuid); /* may close it: then on_close ran */
    if (c->closed)
      return;
    if (c->paused && !sock_packets_pending(uuid)) {
      c->paused = 0;
      L.h->on_data(c);
      return;
    }
  }
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) && !c->paused &&
      !c->closed)
    L.h->on_data(c);
}

/* Closes what was idle too long: gracefully, then forcibly when a
 * connection is still stuck (its peer does not read) one timeout later. */
static void expire(int64_t timeout) {
  while (L.idle_head && L.now - L.idle_head->last_active >= timeout) {
    loop_conn_s *c = L.idle_head;
    intptr_t uuid = c->uuid;
    if (c->closing) {
      sock_force_close(uuid); /* calls reactor_on_close: unlinks c */
      if (!c->closed)         /* the library did not know it: forget it */
        reactor_on_close(uuid);
    } else {
      c->closing = 1;
      c->last_active = L.now;
      idle_unlink(c);
      idle_push(c);
      sock_close(uuid); /* closes now, or once the queue is sent */
    }
  }
}

static void free_dead(void) {
  while (L.dead) {
    loop_conn_s *c = L.dead;
    L.dead = c->dead_next;
    free(c);
  }
}

intptr_t loop_listen(const char *address, const char *port, int *bound_port) {
  intptr_t srv = sock_listen(address, port);
  if (srv == -1)
    return -1;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int fd = sock_uuid2fd(srv);
  int p = 0;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
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
  L.listener = listener;
  L.h = handler;
  L.timeout_ms = idle_timeout_ms;
  L.now = clock_ms();
  sock_max_capacity(); /* raises RLIMIT_NOFILE to the hard limit */

  /* A shell starts background jobs with SIGINT ignored, and an ignored
   * signal is discarded even while blocked: restore the default action (the
   * signals stay blocked, so they only reach the signalfd). */
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0)
    return -1;
  L.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  L.epfd = epoll_create1(EPOLL_CLOEXEC);
  if (L.sigfd < 0 || L.epfd < 0)
    return -1;
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)-1};
  if (epoll_ctl(L.epfd, EPOLL_CTL_ADD, L.sigfd, &ev) != 0)
    return -1;
  ev.data.u64 = (uint64_t)listener;
  if (epoll_ctl(L.epfd, EPOLL_CTL_ADD, sock_uuid2fd(listener), &ev) != 0)
    return -1;

  struct epoll_event evs[MAX_EVENTS];
  int64_t stop_deadline = 0; /* set once a signal arrived */
  for (;;) {
    int wait = -1;
    if (L.timeout_ms > 0 && L.idle_head) {
      int64_t due = L.idle_head->last_active + L.timeout_ms - L.now;
      wait = due < 0 ? 0 : (int)(due > 1000 ? 1000 : due) + 1;
    }
    if (L.accept_retry_at && (wait < 0 || wait > ACCEPT_RETRY_MS))
      wait = ACCEPT_RETRY_MS;
    if (stop_deadline && (wait < 0 || wait > 50))
      wait = 50;
    int n = epoll_wait(L.epfd, evs, MAX_EVENTS, wait);
    if (n < 0 && errno != EINTR)
      break;
    L.now = clock_ms();
    for (int i = 0; i < n; i++) {
      intptr_t id = (intptr_t)evs[i].data.u64;
      if (id == -1) {
        struct signalfd_siginfo si;
        while (read(L.sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
          if (stop_deadline) { /* second signal: stop now */
            stop_deadline = L.now;
            continue;
          }
          stop_deadline = L.now + SHUTDOWN_GRACE_MS;
          if (L.listener != -1) {
            sock_force_close(L.listener);
            L.listener = -1;
          }
          /* close every connection once its queue is sent */
          for (size_t fd = 0; fd < L.cap; fd++) {
            loop_conn_s *c = L.conns[fd];
            if (c && !c->closed) {
              c->closing = 1;
              sock_close(c->uuid);
            }
          }
        }
      } else if (L.listener != -1 && id == L.listener) {
        accept_all();
      } else {
        on_event(id, evs[i].events);
      }
    }
    if (L.accept_retry_at && L.now >= L.accept_retry_at && L.listener != -1) {
      L.accept_retry_at = 0;
      struct epoll_event e = {.events = EPOLLIN, .data.u64 = (uint64_t)L.listener};
      epoll_ctl(L.epfd, EPOLL_CTL_MOD, sock_uuid2fd(L.listener), &e);
    }
    if (L.timeout_ms > 0)
      expire(L.timeout_ms);
    free_dead();
    if (stop_deadline && (L.count == 0 || L.now >= stop_deadline))
      break;
  }
  /* what is left did not drain in time */
  for (size_t fd = 0; fd < L.cap; fd++)
    if (L.conns[fd])
      sock_force_close(L.conns[fd]->uuid);
  for (size_t fd = 0; fd < L.cap; fd++) /* unknown to the library: forget */
    if (L.conns[fd])
      reactor_on_close(L.conns[fd]->uuid);
  free_dead();
  if (L.listener != -1)
    sock_force_close(L.listener);
  free(L.conns);
  L.conns = NULL;
  L.cap = 0;
  close(L.epfd);
  close(L.sigfd);
  L.epfd = L.sigfd = -1;
  return stop_deadline ? 0 : -1;
}
