/*
 * The library's default callbacks, as weak symbols.
 *
 * A program that defines any of these functions (strongly or weakly) has its
 * definition called instead: with libsock.a the static linker takes the
 * program's definition; with libsock.so these symbols are exported and the
 * library calls them through the GOT, so the program's definition interposes.
 */
#include <stdint.h>

__attribute__((weak)) void reactor_on_close(intptr_t uuid) { (void)uuid; }

__attribute__((weak)) int reactor_remove(intptr_t uuid) {
  (void)uuid;
  return -1;
}

__attribute__((weak)) void sock_touch(intptr_t uuid) { (void)uuid; }

/* The default async_run under a name of its own, so the library can tell
 * whether the program replaced it (and then offer it every flush). Hidden:
 * not part of the library's interface. */
__attribute__((visibility("hidden"))) int
sock_default_async_run(void (*task)(void *), void *arg) {
  (void)task;
  (void)arg;
  return -1;
}

__attribute__((weak, alias("sock_default_async_run"))) int
async_run(void (*task)(void *), void *arg);
