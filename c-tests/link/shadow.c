/*
 * Deliverable 2 of issue 11: a program that still shadows library functions
 * (reactor.c's weak fallbacks, linked against libsock.so.0 directly with
 * -l:libsock.so.0) is told so once on stderr, at its first call into the
 * library; the same program linked with -lsock, or without the fallbacks,
 * is told nothing.
 *
 * Four threads start at once and each make many calls (first uses race),
 * from a process that runs no fork in between. Prints "shadow: done" on
 * stdout; tests.d/10-link.sh counts the warnings on stderr.
 */
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libsock.h"

#define THREADS 4
static pthread_barrier_t start;

static void *worker(void *arg) {
  (void)arg;
  pthread_barrier_wait(&start);
  for (int i = 0; i < 50; i++) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
      return (void *)1;
    intptr_t uuid = sock_open(sv[0]);
    if (uuid == -1 || !sock_isvalid(uuid))
      return (void *)1;
    sock_force_close(uuid);
    close(sv[1]);
  }
  return NULL;
}

int main(void) {
  pthread_t th[THREADS];
  pthread_barrier_init(&start, NULL, THREADS);
  for (int i = 0; i < THREADS; i++)
    if (pthread_create(&th[i], NULL, worker, NULL) != 0)
      return 1;
  int bad = 0;
  for (int i = 0; i < THREADS; i++) {
    void *r;
    pthread_join(th[i], &r);
    bad |= r != NULL;
  }
  if (bad)
    return 1;
  puts("shadow: done");
  return 0;
}
