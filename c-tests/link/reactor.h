/* The event loop of reactor.c (weak libsock fallbacks in its source). */
#ifndef LIBSOCK_TEST_REACTOR_H
#define LIBSOCK_TEST_REACTOR_H

#include <stdatomic.h>

#include "libsock.h"

/* Calls of the weak fallbacks (0 when the library's definitions won). */
extern atomic_int reactor_fallback_calls;

int reactor_init(void);
/* Watches uuid's fd: EPOLLIN | EPOLLOUT | EPOLLET | hang-ups. */
int reactor_add(intptr_t uuid);
/* One epoll_wait of up to ms: EPOLLOUT -> sock_flush (negative: sock_close),
 * EPOLLIN -> sock_read until 0, hang-up/error -> sock_close. */
int reactor_review(int ms);
/* reactor_on_close / reactor_remove calls so far, last UUID closed. */
int reactor_closes(void);
int reactor_removes(void);
intptr_t reactor_last_closed(void);

#endif
