/*
 * callbacks.h -- the record of the library's callbacks that a test program
 * defining TEST_DEFINE_CALLBACKS keeps (util.h defines reactor_on_close,
 * reactor_remove and sock_touch in that program; they record here). The
 * code is callbacks.c: a member of the helpers' archive, linked into the
 * programs that use the record and no other.
 */
#ifndef LIBSOCK_TEST_CALLBACKS_H
#define LIBSOCK_TEST_CALLBACKS_H

#include <stdatomic.h>
#include <stdint.h>

/* Extra actions run inside the callbacks (re-entrancy tests); NULL: none. */
extern void (*cb_on_close_extra)(intptr_t uuid);
extern void (*cb_remove_extra)(intptr_t uuid);
extern void (*cb_touch_extra)(intptr_t uuid);
/* set when more calls came than the record holds */
extern atomic_int cb_overflow;

/* Records a call of reactor_on_close ('C') or reactor_remove ('R'), with
 * whether uuid's fd was still open. */
void cb_record(char kind, intptr_t uuid);
/* Counts a call of sock_touch. */
void touch_record(intptr_t uuid);

/* calls recorded of reactor_on_close ('C') or reactor_remove ('R') */
int cb_count(char kind, intptr_t uuid);
int close_count(intptr_t uuid);
int remove_count(intptr_t uuid);
int total_close_events(void);
/* 1 when a reactor_remove(uuid) precedes the first reactor_on_close(uuid) */
int remove_before_close(intptr_t uuid);
/* fd state recorded at the (first) reactor_on_close(uuid) call; -1 if none */
int close_saw_fd_open(intptr_t uuid);
/* sock_touch(uuid) calls */
long touch_count(intptr_t uuid);

#endif /* LIBSOCK_TEST_CALLBACKS_H */
