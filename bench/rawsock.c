/*
 * rawsock.c -- the baseline for the HTTP benchmark: the part of libsock's
 * API that examples/loop.c and examples/http_hello.c use, written directly
 * on read/write/sendfile the way one would by hand, with no library.
 *
 * Linking http_hello.c + loop.c with this file instead of -lsock gives "the
 * same server built on raw read/write/sendfile": every request makes the
 * same system calls the library version makes (read, write or sendfile),
 * and bytes the kernel does not take at once are copied into a malloc'd
 * queue, sent when epoll reports the socket writable.
 *
 * UUIDs are plain fds (no generation counter). Not thread-safe, unless
 * built with -DRAWSOCK_THREADS (bench/loop_mt.c, the 2017 server pattern):
 * then every connection has a mutex, held while its queue is used or its
 * socket written (as a hand-written threaded server would), never while
 * calling the program's callbacks.
 */
#define _GNU_SOURCE
#include "libsock.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#ifdef RAWSOCK_THREADS
#include <pthread.h>
#endif

typedef struct out_s {
  struct out_s *next;
  int file;       /* file fd, or -1 for bytes */
  off_t offset;   /* file: next offset */
  size_t left;    /* bytes still to send */
  size_t pos;     /* bytes: next byte */
  char data[];    /* bytes */
} out_s;

typedef struct {
  unsigned open : 1, closing : 1;
  out_s *head, *tail;
#ifdef RAWSOCK_THREADS
  pthread_mutex_t mu;
#endif
} raw_conn_s;

#ifdef RAWSOCK_THREADS
#define LOCK(c) pthread_mutex_lock(&(c)->mu)
#define UNLOCK(c) pthread_mutex_unlock(&(c)->mu)
#else
#define LOCK(c) ((void)(c))
#define UNLOCK(c) ((void)(c))
#endif

static raw_conn_s *conns;
static size_t nconns;

ssize_t sock_max_capacity(void) {
  static ssize_t cap;
  if (!cap) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    cap = (ssize_t)rl.rlim_cur;
    conns = calloc((size_t)cap, sizeof *conns);
    nconns = (size_t)cap;
#ifdef RAWSOCK_THREADS
    for (size_t i = 0; i < nconns; i++)
      pthread_mutex_init(&conns[i].mu, NULL);
#endif
    signal(SIGPIPE, SIG_IGN);
  }
  return cap;
}

static raw_conn_s *conn(intptr_t uuid) {
  if (uuid < 0 || (size_t)uuid >= nconns || !conns[uuid].open)
    return NULL;
  return &conns[uuid];
}

/* The connection `uuid`, locked, if open (NULL otherwise). */
static raw_conn_s *conn_locked(intptr_t uuid) {
  if (uuid < 0 || (size_t)uuid >= nconns)
    return NULL;
  raw_conn_s *c = &conns[uuid];
  LOCK(c);
  if (!c->open) {
    UNLOCK(c);
    return NULL;
  }
  return c;
}

int sock_set_non_block(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static intptr_t open_fd(int fd) {
  sock_max_capacity();
  if (fd < 0 || (size_t)fd >= nconns) {
    if (fd >= 0)
      close(fd);
    errno = EMFILE;
    return -1;
  }
  raw_conn_s *c = &conns[fd];
  LOCK(c);
  c->open = 1;
  c->closing = 0;
  c->head = c->tail = NULL;
  UNLOCK(c);
  return fd;
}

intptr_t sock_listen(const char *address, const char *port) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE},
                  *ai;
  if (getaddrinfo(address, port, &hints, &ai) != 0) {
    errno = EADDRNOTAVAIL;
    return -1;
  }
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
      bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, SOMAXCONN)) {
    freeaddrinfo(ai);
    if (fd >= 0)
      close(fd);
    return -1;
  }
  freeaddrinfo(ai);
  return open_fd(fd);
}

intptr_t sock_accept(intptr_t srv) {
  if (!conn(srv))
    return -1;
  int fd = accept4((int)srv, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  return fd < 0 ? -1 : open_fd(fd);
}

static void free_queue(out_s *o) {
  for (out_s *n; o; o = n) {
    n = o->next;
    if (o->file >= 0)
      close(o->file);
    free(o);
  }
}

/* Closes the locked connection `c`: unlocks it, then releases its queue
 * and calls reactor_on_close. */
static void close_unlock(raw_conn_s *c, intptr_t uuid, int force) {
  out_s *q = c->head;
  c->head = c->tail = NULL;
  c->open = c->closing = 0;
  if (force)
    shutdown((int)uuid, SHUT_RDWR);
  close((int)uuid);
  UNLOCK(c);
  free_queue(q);
  reactor_on_close(uuid);
}

void sock_force_close(intptr_t uuid) {
  raw_conn_s *c = conn_locked(uuid);
  if (c)
    close_unlock(c, uuid, 1);
}

ssize_t sock_read(intptr_t uuid, void *buf, size_t count) {
  if (!conn(uuid)) {
    errno = ENODEV;
    return -1;
  }
  ssize_t n = read((int)uuid, buf, count);
  if (n > 0) {
    sock_touch(uuid);
    return n;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return 0;
  sock_close(uuid);
  return -1;
}

/* Sends queued items of the locked `c` until done or the kernel is full:
 * 0, or -1 when it closed the connection (then unlocked). */
static ssize_t flush_locked(raw_conn_s *c, intptr_t uuid, int *moved) {
  while (c->head) {
    out_s *o = c->head;
    ssize_t n = o->file >= 0
                    ? sendfile((int)uuid, o->file, &o->offset, o->left)
                    : write((int)uuid, o->data + o->pos, o->left);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR)
        break;
      close_unlock(c, uuid, 1);
      return -1;
    }
    if (n == 0 && o->file >= 0)
      o->left = 0; /* end of file */
    *moved |= n > 0;
    o->left -= (size_t)n;
    o->pos += (size_t)n;
    if (o->left == 0) {
      c->head = o->next;
      if (!c->head)
        c->tail = NULL;
      if (o->file >= 0)
        close(o->file);
      free(o);
    }
  }
  if (!c->head && c->closing) {
    close_unlock(c, uuid, 0);
    return -1;
  }
  return 0;
}

ssize_t sock_flush(intptr_t uuid) {
  raw_conn_s *c = conn_locked(uuid);
  if (!c)
    return -1;
  int moved = 0;
  ssize_t r = flush_locked(c, uuid, &moved);
  if (r == 0)
    UNLOCK(c);
  if (moved)
    sock_touch(uuid);
  return r;
}

void sock_close(intptr_t uuid) {
  raw_conn_s *c = conn_locked(uuid);
  if (!c)
    return;
  c->closing = 1;
  int moved = 0;
  if (flush_locked(c, uuid, &moved) == 0)
    UNLOCK(c);
  if (moved)
    sock_touch(uuid);
}

int sock_packets_pending(intptr_t uuid) {
  raw_conn_s *c = conn_locked(uuid);
  if (!c)
    return 0;
  int r = c->head != NULL;
  UNLOCK(c);
  return r;
}

size_t sock_pending_bytes(intptr_t uuid) {
  raw_conn_s *c = conn_locked(uuid);
  if (!c)
    return 0;
  size_t n = 0;
  for (out_s *o = c->head; o; o = o->next)
    n += o->left;
  UNLOCK(c);
  return n;
}

static void enqueue(raw_conn_s *c, out_s *o) {
  if (c->tail)
    c->tail->next = o;
  else
    c->head = o;
  c->tail = o;
}

ssize_t sock_write2_fn(sock_write_info_s o) {
  raw_conn_s *c = conn_locked(o.fduuid);
  int fd = (int)o.fduuid;
  int moved = 0;
  if (o.is_fd) {
    int file = (int)(intptr_t)o.buffer;
    if (!c) {
      close(file);
      errno = ENODEV;
      return -1;
    }
    off_t off = o.offset;
    size_t left = o.length;
    while (!c->head && left) { /* nothing queued: straight to the kernel */
      ssize_t n = sendfile(fd, file, &off, left);
      if (n <= 0) {
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
          close(file);
          close_unlock(c, o.fduuid, 1);
          return -1;
        }
        if (n == 0)
          left = 0;
        break;
      }
      left -= (size_t)n;
      moved = 1;
    }
    if (!left) {
      close(file);
    } else {
      out_s *q = malloc(sizeof *q);
      *q = (out_s){.file = file, .offset = off, .left = left};
      enqueue(c, q);
    }
    UNLOCK(c);
    if (moved)
      sock_touch(o.fduuid);
    return 0;
  }
  const char *buf = o.buffer;
  size_t len = o.length ? o.length : strlen(buf);
  if (!c) {
    if (o.move)
      free((void *)buf);
    errno = ENODEV;
    return -1;
  }
  size_t done = 0;
  if (!c->head) { /* nothing queued: straight to the kernel */
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      if (o.move)
        free((void *)buf);
      close_unlock(c, o.fduuid, 1);
      return -1;
    }
    if (n > 0) {
      done = (size_t)n;
      moved = 1;
    }
  }
  if (done < len) {
    out_s *q = malloc(sizeof *q + len - done);
    *q = (out_s){.file = -1, .left = len - done};
    memcpy(q->data, buf + done, len - done);
    enqueue(c, q);
  }
  UNLOCK(c);
  if (o.move)
    free((void *)buf);
  if (moved)
    sock_touch(o.fduuid);
  return 0;
}
