/*
 * Callbacks (issue 3): definitions that are themselves weak in the program
 * (as an event-loop library shipping its own weak defaults would have) still
 * win over the library's defaults, with libsock.so and with libsock.a.
 */
#include "util.h"

static atomic_int on_close_calls, remove_calls, touch_calls, async_calls;
static _Atomic intptr_t last_closed = -1;

__attribute__((weak)) void reactor_on_close(intptr_t uuid) {
  atomic_fetch_add(&on_close_calls, 1);
  atomic_store(&last_closed, uuid);
}
__attribute__((weak)) int reactor_remove(intptr_t uuid) {
  (void)uuid;
  atomic_fetch_add(&remove_calls, 1);
  return 0;
}
__attribute__((weak)) void sock_touch(intptr_t uuid) {
  (void)uuid;
  atomic_fetch_add(&touch_calls, 1);
}
__attribute__((weak)) int async_run(void (*task)(void *), void *arg) {
  (void)task;
  (void)arg;
  atomic_fetch_add(&async_calls, 1);
  return -1; /* declined: the library flushes inline */
}

TEST(weak_program_definitions_win) {
  conn_t c;
  REQUIRE(make_unix_pair(&c) == 0);
  CHECK_EQ(sock_write(c.uuid, "abc", 3), 0);
  CHECK_GE(atomic_load(&async_calls), 1);
  CHECK_GE(atomic_load(&touch_calls), 1); /* the inline flush moved bytes */
  char buf[4] = {0};
  CHECK_EQ(raw_read_n(c.raw, buf, 3, 2000, NULL), 3);
  CHECK(memcmp(buf, "abc", 3) == 0);
  CHECK_EQ(raw_write_all(c.raw, "xy", 2, 2000), 0);
  REQUIRE(wait_fd(c.lfd, POLLIN, 2000) & POLLIN);
  int before = atomic_load(&touch_calls);
  CHECK_EQ(sock_read(c.uuid, buf, sizeof buf), 2);
  CHECK_EQ(atomic_load(&touch_calls), before + 1);
  sock_force_close(c.uuid);
  CHECK_EQ(atomic_load(&remove_calls), 1);
  CHECK_EQ(atomic_load(&on_close_calls), 1);
  CHECK_EQ(atomic_load(&last_closed), c.uuid);
  close(c.raw);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(weak_program_definitions_win);
  return HARNESS_END();
}
