/*
 * An event loop written for libsock the way facil.io's 2017 reactor was
 * (spec/callers.md): edge-triggered epoll, sock_flush on EPOLLOUT (its only
 * flush), sock_close on hang-up, reactor_remove as EPOLL_CTL_DEL on the fd
 * number, reactor_on_close to forget the connection.
 *
 * And, like that reactor, its source carries weak fallbacks of libsock
 * functions "in case libsock is not linked". Linked with -lsock (the
 * libsock.so linker script) or libsock.a, the library's definitions must
 * replace them; linked against libsock.so.0 alone they would stay, and
 * then: a flush that flushes nothing (the edge-triggered transfer stalls
 * for good), a close that closes the fd under the library's queue (the
 * last bytes never arrive), a write that drops what the kernel did not
 * take.
 */
#include "reactor.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the weak fallbacks -------------------------------------------------*/

#pragma weak sock_flush
ssize_t sock_flush(intptr_t uuid) {
  (void)uuid;
  atomic_fetch_add(&reactor_fallback_calls, 1);
  return 0;
}

#pragma weak sock_close
void sock_close(intptr_t uuid) {
  atomic_fetch_add(&reactor_fallback_calls, 1);
  shutdown(sock_uuid2fd(uuid), SHUT_RDWR);
  close(sock_uuid2fd(uuid));
  reactor_remove(uuid);
  reactor_on_close(uuid);
}

#pragma weak sock_write2_fn
ssize_t sock_write2_fn(sock_write_info_s options) {
  atomic_fetch_add(&reactor_fallback_calls, 1);
  if (options.is_fd)
    return -1;
  /* whatever the kernel takes now */
  ssize_t w = write(sock_uuid2fd(options.fduuid), options.buffer,
                    options.length);
  if (options.move)
    free((void *)options.buffer);
  return w < 0 ? -1 : 0;
}

/* ---- the loop -------------------------------------------------------------*/

atomic_int reactor_fallback_calls;
static int epfd = -1;
static atomic_int removes, closes;
static _Atomic intptr_t last_closed = -1;

int reactor_remove(intptr_t uuid) {
  atomic_fetch_add(&removes, 1);
  return epoll_ctl(epfd, EPOLL_CTL_DEL, sock_uuid2fd(uuid), NULL);
}

void reactor_on_close(intptr_t uuid) {
  atomic_store(&last_closed, uuid);
  atomic_fetch_add(&closes, 1);
}

int reactor_init(void) {
  epfd = epoll_create1(EPOLL_CLOEXEC);
  return epfd < 0 ? -1 : 0;
}

int reactor_add(intptr_t uuid) {
  struct epoll_event ev = {
      .events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLERR | EPOLLRDHUP | EPOLLHUP,
      .data.u64 = (uint64_t)uuid,
  };
  return epoll_ctl(epfd, EPOLL_CTL_ADD, sock_uuid2fd(uuid), &ev);
}

int reactor_review(int ms) {
  struct epoll_event evs[16];
  int n = epoll_wait(epfd, evs, 16, ms);
  if (n < 0)
    return errno == EINTR ? 0 : -1;
  for (int i = 0; i < n; i++) {
    intptr_t uuid = (intptr_t)evs[i].data.u64;
    uint32_t e = evs[i].events;
    if (e & EPOLLOUT) {
      if (sock_flush(uuid) < 0) {
        sock_close(uuid);
        continue;
      }
    }
    if (e & EPOLLIN) {
      char buf[4096];
      while (sock_read(uuid, buf, sizeof buf) > 0)
        ;
    }
    if (e & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
      sock_close(uuid);
  }
  return n;
}

int reactor_closes(void) { return atomic_load(&closes); }
int reactor_removes(void) { return atomic_load(&removes); }
intptr_t reactor_last_closed(void) { return atomic_load(&last_closed); }
