/*
 * The registration API (issue 3) for programs that cannot define global
 * symbols: this program loads libsock.so.0 with dlopen(RTLD_LOCAL), as a
 * plugin host would, reaches every function through dlsym, and gets its
 * callbacks only by registering them. It calls no sock_* symbol directly,
 * so it behaves the same in both link modes of the harness.
 *
 * LIBSOCK_SO names the library (default build/lib/libsock.so.<major>, the
 * SONAME: build/lib/libsock.so is the linker script -lsock reads, which
 * dlopen cannot load).
 */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "harness.h"
#include "libsock.h" /* LIB_SOCK_VERSION_MAJOR only: no sock_* symbol is used */

typedef intptr_t (*open_fn)(int);
typedef void (*close_fn)(intptr_t);
typedef int (*isvalid_fn)(intptr_t);
typedef void (*reg_uuid_fn)(void (*)(intptr_t));
typedef void (*reg_remove_fn)(int (*)(intptr_t));
typedef ssize_t (*read_fn)(intptr_t, void *, size_t);

static atomic_int closes, removes, touches;
static _Atomic intptr_t closed_uuid = -1;
static void on_close(intptr_t uuid) {
  atomic_fetch_add(&closes, 1);
  atomic_store(&closed_uuid, uuid);
}
static int on_remove(intptr_t uuid) {
  (void)uuid;
  atomic_fetch_add(&removes, 1);
  return 0;
}
static void on_touch(intptr_t uuid) {
  (void)uuid;
  atomic_fetch_add(&touches, 1);
}

#define SONAME_MAJOR_(m) #m
#define SONAME_MAJOR(m) SONAME_MAJOR_(m)

#define SYM(T, name)                                                           \
  T name = (T)dlsym(lib, #name);                                               \
  REQUIRE(name != NULL)

TEST(plugin_registers_callbacks) {
  const char *path = getenv("LIBSOCK_SO");
  if (!path)
    path = "build/lib/libsock.so." SONAME_MAJOR(LIB_SOCK_VERSION_MAJOR);
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib)
    h_fail_at(__FILE__, __LINE__, "dlopen(%s): %s", path, dlerror());
  REQUIRE(lib != NULL);
  SYM(open_fn, sock_open);
  SYM(close_fn, sock_force_close);
  SYM(isvalid_fn, sock_isvalid);
  SYM(read_fn, sock_read);
  SYM(reg_uuid_fn, sock_register_on_close);
  SYM(reg_remove_fn, sock_register_remove);
  SYM(reg_uuid_fn, sock_register_touch);

  sock_register_on_close(on_close);
  sock_register_remove(on_remove);
  sock_register_touch(on_touch);

  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  intptr_t uuid = sock_open(sv[0]);
  REQUIRE(uuid != -1);
  REQUIRE(write(sv[1], "hi", 2) == 2);
  char buf[4];
  CHECK_EQ(sock_read(uuid, buf, sizeof buf), 2);
  CHECK_EQ(atomic_load(&touches), 1);
  sock_force_close(uuid);
  CHECK_EQ(sock_isvalid(uuid), 0);
  CHECK_EQ(atomic_load(&removes), 1);
  CHECK_EQ(atomic_load(&closes), 1);
  CHECK_EQ(atomic_load(&closed_uuid), uuid);

  /* reset: the library's defaults again */
  sock_register_on_close(NULL);
  sock_register_remove(NULL);
  sock_register_touch(NULL);
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv + 0) == 0);
  uuid = sock_open(sv[0]);
  REQUIRE(uuid != -1);
  sock_force_close(uuid);
  CHECK_EQ(atomic_load(&closes), 1);
  close(sv[1]);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(plugin_registers_callbacks);
  return HARNESS_END();
}
