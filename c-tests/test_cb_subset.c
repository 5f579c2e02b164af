/*
 * Callbacks (issue 3): a program that defines only reactor_on_close gets its
 * definition called and the library's defaults for the others; registered
 * function pointers take precedence and can be changed or reset at any time;
 * reactor_remove comes before reactor_on_close, once per UUID, after the fd
 * is closed, with no library lock held (callbacks re-enter the library).
 *
 * Built and run against libsock.so and libsock.a (c-tests/run.sh).
 */
#include "util.h"

#include <sched.h>

static atomic_int prog_calls;
static _Atomic intptr_t prog_last = -1;

/* The program's own (strong) definition. */
void reactor_on_close(intptr_t uuid) {
  atomic_fetch_add(&prog_calls, 1);
  atomic_store(&prog_last, uuid);
}

static atomic_int reg_a_calls, reg_b_calls;
static void reg_a(intptr_t uuid) { (void)uuid; atomic_fetch_add(&reg_a_calls, 1); }
static void reg_b(intptr_t uuid) { (void)uuid; atomic_fetch_add(&reg_b_calls, 1); }

static atomic_int task_ran;
static void task(void *arg) { (void)arg; atomic_fetch_add(&task_ran, 1); }

TEST(program_definition_is_called) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  sock_force_close(c.uuid);
  CHECK_EQ(atomic_load(&prog_calls), 1);
  CHECK_EQ(atomic_load(&prog_last), c.uuid);
  close(c.raw);
}

TEST(defaults_serve_the_rest) {
  /* Not defined here, so these are the library's defaults. */
  CHECK_EQ(reactor_remove(12345), -1);
  CHECK_EQ(async_run(task, NULL), -1);
  CHECK_EQ(atomic_load(&task_ran), 0);
  sock_touch(12345); /* a no-op that must exist */
  /* and the library still flushes inline (async_run declined) */
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  CHECK_EQ(sock_write(c.uuid, "hello", 5), 0);
  char buf[8] = {0};
  CHECK_EQ(raw_read_n(c.raw, buf, 5, 2000, NULL), 5);
  CHECK(memcmp(buf, "hello", 5) == 0);
  conn_force_close(&c);
}

TEST(registered_pointer_wins_and_resets) {
  conn_t c1, c2, c3;
  sock_register_on_close(reg_a);
  REQUIRE(make_unix_pair(&c1) == 0);
  sock_force_close(c1.uuid);
  CHECK_EQ(atomic_load(&reg_a_calls), 1);
  CHECK_EQ(atomic_load(&prog_calls), 0);
  sock_register_on_close(reg_b); /* changed at run time */
  REQUIRE(make_unix_pair(&c2) == 0);
  sock_force_close(c2.uuid);
  CHECK_EQ(atomic_load(&reg_b_calls), 1);
  CHECK_EQ(atomic_load(&reg_a_calls), 1);
  sock_register_on_close(NULL); /* back to the program's definition */
  REQUIRE(make_unix_pair(&c3) == 0);
  sock_force_close(c3.uuid);
  CHECK_EQ(atomic_load(&prog_calls), 1);
  CHECK_EQ(atomic_load(&prog_last), c3.uuid);
  CHECK_EQ(atomic_load(&reg_a_calls) + atomic_load(&reg_b_calls), 2);
  close(c1.raw);
  close(c2.raw);
  close(c3.raw);
}

static atomic_int toggling;
static void *toggler(void *arg) {
  (void)arg;
  unsigned i = 0;
  while (atomic_load(&toggling)) {
    switch (i++ % 3) {
    case 0: sock_register_on_close(reg_a); break;
    case 1: sock_register_on_close(reg_b); break;
    default: sock_register_on_close(NULL); break;
    }
    /* Let the closing thread run: valgrind runs one thread at a time and
     * switches at system calls, so a toggler that never makes one gets a
     * whole time slice for each system call of the other thread (3000
     * closes then took over 280 s under memcheck). */
    sched_yield();
  }
  return NULL;
}

TEST(registration_is_thread_safe) {
  enum { N = 3000 };
  pthread_t th;
  atomic_store(&toggling, 1);
  REQUIRE(pthread_create(&th, NULL, toggler, NULL) == 0);
  int closed = 0;
  for (int i = 0; i < N; i++) {
    conn_t c;
    if (make_unix_pair(&c) != 0)
      break;
    conn_force_close(&c);
    closed++;
  }
  atomic_store(&toggling, 0);
  pthread_join(th, NULL);
  sock_register_on_close(NULL);
  CHECK_EQ(closed, N);
  /* every close reached exactly one of the three */
  CHECK_EQ(atomic_load(&reg_a_calls) + atomic_load(&reg_b_calls) +
               atomic_load(&prog_calls),
           N);
}

/* Order, count and fd state, recorded through registered callbacks. */
static char order[64];
static atomic_int norder;
static int fd_open_at_close = -1;
static intptr_t seen_uuid;
static int rec_remove(intptr_t uuid) {
  int n = atomic_fetch_add(&norder, 1);
  if (n < 63)
    order[n] = 'R';
  seen_uuid = uuid;
  return 0;
}
static void rec_close(intptr_t uuid) {
  int n = atomic_fetch_add(&norder, 1);
  if (n < 63)
    order[n] = 'C';
  int fd = sock_uuid2fd(uuid);
  fd_open_at_close = fcntl(fd, F_GETFD) != -1;
  CHECK_EQ(uuid, seen_uuid);
  CHECK_EQ(sock_isvalid(uuid), 0);
}

TEST(remove_then_on_close_once_after_fd_closed) {
  sock_register_remove(rec_remove);
  sock_register_on_close(rec_close);
  /* every way a connection closes */
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  sock_force_close(c.uuid);
  sock_force_close(c.uuid); /* stale: nothing more */
  close(c.raw);
  CHECK_EQ(atomic_load(&norder), 2);
  CHECK(order[0] == 'R' && order[1] == 'C');
  CHECK_EQ(fd_open_at_close, 0);

  REQUIRE(make_unix_pair(&c) == 0);
  CHECK_EQ(sock_write(c.uuid, "bye", 3), 0);
  sock_close(c.uuid); /* graceful */
  sock_close(c.uuid);
  CHECK_EQ(atomic_load(&norder), 4);
  CHECK(order[2] == 'R' && order[3] == 'C');
  CHECK_EQ(fd_open_at_close, 0);
  close(c.raw);

  REQUIRE(make_unix_pair(&c) == 0);
  close(c.raw); /* peer goes away: the read sees end of stream */
  char b[4];
  CHECK_EQ(sock_read(c.uuid, b, sizeof b), -1);
  CHECK_EQ(sock_read(c.uuid, b, sizeof b), -1);
  CHECK_EQ(atomic_load(&norder), 6);
  CHECK(order[4] == 'R' && order[5] == 'C');
  CHECK_EQ(fd_open_at_close, 0);
  sock_register_remove(NULL);
  sock_register_on_close(NULL);
}

/* Callbacks call back into the library: no deadlock, no lock held. */
static conn_t other, third;
static atomic_int reentered;
static void reenter_close(intptr_t uuid) {
  if (uuid == third.uuid) {
    atomic_fetch_add(&reentered, 100);
    return;
  }
  CHECK_EQ(sock_isvalid(uuid), 0);
  CHECK_EQ(sock_write(uuid, "x", 1), -1);          /* its own, now stale */
  CHECK_EQ(sock_write(other.uuid, "from-cb", 7), 0); /* another connection */
  sock_force_close(third.uuid);                      /* a nested close */
  atomic_fetch_add(&reentered, 1);
}
static atomic_int touch_reentered;
static void reenter_touch(intptr_t uuid) {
  /* called after data moved on `uuid`: the library is free to use */
  (void)sock_packets_pending(uuid);
  (void)sock_flush(uuid);
  (void)sock_rw_hook_get(uuid);
  atomic_fetch_add(&touch_reentered, 1);
}

TEST(callbacks_reenter_the_library) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  REQUIRE(make_unix_pair(&other) == 0);
  REQUIRE(make_unix_pair(&third) == 0);
  sock_register_on_close(reenter_close);
  sock_register_touch(reenter_touch);
  CHECK_EQ(sock_write(c.uuid, "ping", 4), 0);
  CHECK_GE(atomic_load(&touch_reentered), 1);
  sock_force_close(c.uuid);
  CHECK_EQ(atomic_load(&reentered), 101);
  CHECK_EQ(sock_isvalid(third.uuid), 0);
  char buf[8] = {0};
  CHECK_EQ(raw_read_n(other.raw, buf, 7, 2000, NULL), 7);
  CHECK(memcmp(buf, "from-cb", 7) == 0);
  sock_register_on_close(NULL);
  sock_register_touch(NULL);
  sock_force_close(other.uuid);
  close(c.raw);
  close(other.raw);
  close(third.raw);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(program_definition_is_called);
  RUN(defaults_serve_the_rest);
  RUN(registered_pointer_wins_and_resets);
  RUN(registration_is_thread_safe);
  RUN(remove_then_on_close_once_after_fd_closed);
  RUN(callbacks_reenter_the_library);
  return HARNESS_END();
}
