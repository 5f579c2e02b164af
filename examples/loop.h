/*
 * loop.h -- the small epoll event loop shared by the examples.
 *
 * It is written the way an event library on top of libsock is: it defines
 * the library's overridable callbacks reactor_on_close() (forget and free a
 * connection, whoever closed it) and sock_touch() (push back the idle
 * timeout whenever data moves), and it calls sock_flush() when epoll reports
 * a connection writable. The program supplies three callbacks:
 *
 *   on_open(c)   a connection was accepted (optional);
 *   on_data(c)   the connection is readable, or was resumed: sock_read()
 *                until it returns 0 (nothing now) or -1 (closed: on_close
 *                already ran, don't touch `c` any more), or stop early with
 *                loop_pause(c) while output is queued (backpressure);
 *   on_close(c)  the connection is gone (optional): release udata.
 *
 * Idle connections (no byte read or written for `idle_timeout_ms`) are
 * closed: gracefully first, forcibly if still stuck one timeout later.
 * SIGINT/SIGTERM stop the loop: the listener closes, open connections are
 * closed once their queued data is sent (at most 2 s), loop_run returns 0.
 *
 * Single-threaded: every callback runs on the thread in loop_run().
 */
#ifndef EXAMPLES_LOOP_H
#define EXAMPLES_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include "libsock.h"

typedef struct loop_conn_s loop_conn_s;

struct loop_conn_s {
  intptr_t uuid;
  /* loop-private from here */
  int64_t last_active;      /* ms (CLOCK_MONOTONIC), set by sock_touch */
  loop_conn_s *prev, *next; /* idle list: least recently active first */
  loop_conn_s *dead_next;   /* freed at the end of the loop iteration */
  unsigned paused : 1;      /* reading stopped until the queue drains */
  unsigned closed : 1;      /* reactor_on_close ran */
  unsigned closing : 1;     /* sock_close was called by the loop */
  _Alignas(max_align_t) unsigned char udata[]; /* udata_size bytes, zeroed */
};

typedef struct {
  size_t udata_size; /* bytes of per-connection state (loop_udata) */
  void (*on_open)(loop_conn_s *c);
  void (*on_data)(loop_conn_s *c);
  void (*on_close)(loop_conn_s *c);
} loop_handler_s;

/* Listens on address:port ("0" picks a free port) and returns the
 * listener's UUID (-1 on error, errno set); *bound_port gets the port. */
intptr_t loop_listen(const char *address, const char *port, int *bound_port);

/* Runs until SIGINT or SIGTERM. Returns 0 after a clean stop, -1 if the
 * loop could not start. */
int loop_run(intptr_t listener, const loop_handler_s *handler,
             int idle_timeout_ms);

/* Stops reading `c` until its queued output has been sent; then on_data is
 * called again. Use it when sock_packets_pending(c->uuid) after writing. */
void loop_pause(loop_conn_s *c);

static inline void *loop_udata(loop_conn_s *c) { return c->udata; }

/* The loop's clock (ms, CLOCK_MONOTONIC), updated once per iteration. */
int64_t loop_now_ms(void);

#endif
