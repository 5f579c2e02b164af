/*
 * Callbacks (issue 3): a program that defines none of the callbacks links
 * (shared and static) and runs with the library's defaults; the registration
 * API alone drives its callbacks.
 */
#include "util.h"

static atomic_int task_ran;
static void task(void *arg) { (void)arg; atomic_fetch_add(&task_ran, 1); }

TEST(defaults_are_linked_and_harmless) {
  reactor_on_close(42);
  CHECK_EQ(reactor_remove(42), -1);
  sock_touch(42);
  CHECK_EQ(async_run(task, NULL), -1);
  CHECK_EQ(atomic_load(&task_ran), 0);
  /* every close path works with the defaults */
  conn_t a, b, c;
  REQUIRE(make_unix_pair(&a) == 0);
  REQUIRE(make_unix_pair(&b) == 0);
  REQUIRE(make_unix_pair(&c) == 0);
  CHECK_EQ(sock_write(a.uuid, "data", 4), 0);
  sock_close(a.uuid);
  sock_force_close(b.uuid);
  close(c.raw);
  char buf[4];
  CHECK_EQ(sock_read(c.uuid, buf, sizeof buf), -1);
  CHECK_EQ(sock_isvalid(a.uuid) + sock_isvalid(b.uuid) + sock_isvalid(c.uuid), 0);
  char got[4];
  CHECK_EQ(raw_read_n(a.raw, got, 4, 2000, NULL), 4);
  CHECK_EQ(raw_expect_eof(a.raw, 2000), 1);
  close(a.raw);
  close(b.raw);
}

static atomic_int closes, removes, touches;
static void on_close(intptr_t uuid) { (void)uuid; atomic_fetch_add(&closes, 1); }
static int on_remove(intptr_t uuid) { (void)uuid; atomic_fetch_add(&removes, 1); return 0; }
static void on_touch(intptr_t uuid) { (void)uuid; atomic_fetch_add(&touches, 1); }

TEST(registration_alone_drives_callbacks) {
  sock_register_on_close(on_close);
  sock_register_remove(on_remove);
  sock_register_touch(on_touch);
  conn_t a;
  REQUIRE(make_unix_pair(&a) == 0);
  CHECK_EQ(sock_write(a.uuid, "data", 4), 0);
  CHECK_GE(atomic_load(&touches), 1);
  sock_force_close(a.uuid);
  CHECK_EQ(atomic_load(&removes), 1);
  CHECK_EQ(atomic_load(&closes), 1);
  sock_register_on_close(NULL);
  sock_register_remove(NULL);
  sock_register_touch(NULL);
  REQUIRE(make_unix_pair(&a) == 0);
  sock_force_close(a.uuid);
  CHECK_EQ(atomic_load(&closes), 1); /* reset: default again */
  close(a.raw);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(defaults_are_linked_and_harmless);
  RUN(registration_alone_drives_callbacks);
  return HARNESS_END();
}
