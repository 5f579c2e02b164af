/*
 * include/libsock.h in use, the way programs written against the original
 * header use it: the macros (sock_write, sock_write2 with designated
 * arguments, sock_uuid2fd, FDUUID_FAIL), the static inline sock_sendfile,
 * the packet API with a compound literal, the hooks and the callbacks.
 * Compiled (not linked) by scripts/check-header.sh with gcc and clang,
 * -std=c99 and -std=c11, -Wall -Wextra -pedantic -Werror. Each function is
 * external so that nothing is "defined but not used".
 */
#include "libsock.h"
#include "libsock.h" /* a second time: the include guard */

#include <string.h>

int use_write(intptr_t uuid, const char *text, void *owned, size_t n);
int use_write(intptr_t uuid, const char *text, void *owned, size_t n) {
  int rc = 0;
  rc |= (int)sock_write(uuid, text, 0);
  rc |= (int)sock_write2(.fduuid = uuid, .buffer = owned, .length = n,
                         .move = 1);
  rc |= (int)sock_write2(.fduuid = uuid, .buffer = "!", .length = 1,
                         .urgent = 1);
  rc |= (int)sock_sendfile(uuid, 0, 0, BUFFER_FILE_READ_SIZE);
  return rc;
}

int use_uuid(intptr_t uuid);
int use_uuid(intptr_t uuid) {
  if (FDUUID_FAIL(uuid) || !sock_isvalid(uuid))
    return -1;
  return sock_uuid2fd(uuid);
}

static void free_nothing(void *buffer) { (void)buffer; }

ssize_t use_packets(intptr_t uuid, int fd);
ssize_t use_packets(intptr_t uuid, int fd) {
  sock_packet_s *first = sock_checkout_packet();
  sock_packet_s *second = sock_checkout_packet();
  if (!first || !second) {
    sock_free_packet(first);
    sock_free_packet(second);
    return -1;
  }
  memcpy(first->buffer, "ping", 4);
  first->length = 4;
  first->metadata.can_interrupt = 1;
  first->metadata.next = second;
  *second = (sock_packet_s){.buffer = (void *)(intptr_t)fd,
                            .length = -1,
                            .metadata.is_fd = 1,
                            .metadata.keep_open = 1,
                            .metadata.offset = 0};
  second->metadata.dealloc = free_nothing;
  if (sock_packets_pending(uuid) < 0)
    return -1;
  return sock_send_packet(uuid, first);
}

static ssize_t hook_read(intptr_t fduuid, void *buf, size_t count) {
  (void)fduuid;
  return read(0, buf, count);
}
static void hook_clear(intptr_t fduuid, struct sock_rw_hook_s *hook) {
  (void)fduuid;
  (void)hook;
}

int use_hooks(intptr_t uuid);
int use_hooks(intptr_t uuid) {
  static sock_rw_hook_s hooks = {.read = hook_read, .on_clear = hook_clear};
  if (sock_rw_hook_get(uuid) == &hooks)
    return 0;
  return sock_rw_hook_set(uuid, &hooks);
}

/* The callbacks, defined by the program with the header's signatures. */
void reactor_on_close(intptr_t uuid) { (void)uuid; }
int reactor_remove(intptr_t uuid) { return uuid == -1 ? -1 : 0; }
void sock_touch(intptr_t uuid) { (void)uuid; }
int async_run(void (*task)(void *), void *arg) {
  task(arg);
  return 0;
}

static void on_close(intptr_t uuid) { (void)uuid; }

void use_rest(void);
void use_rest(void) {
  char host[] = "localhost", port[] = "3000";
  intptr_t srv = sock_listen(NULL, "3000");
  intptr_t cli = sock_connect(host, port);
  sock_set_non_block(0);
  (void)sock_max_capacity();
  (void)sock_accept(srv);
  (void)sock_open(1);
  (void)sock_fd2uuid(1);
  {
    char buf[16];
    (void)sock_read(cli, buf, sizeof(buf));
  }
  (void)sock_flush(cli);
  sock_flush_strong(cli);
  sock_flush_all();
  sock_close(cli);
  sock_force_close(srv);
  (void)sock_set_packet_pool_size(BUFFER_PACKET_POOL);
  (void)sock_packet_pool_size();
  sock_register_on_close(on_close);
  sock_register_remove(NULL);
  sock_register_touch(NULL);
  sock_register_async_run(async_run);
  {
    fduuid_u u;
    u.uuid = srv;
    (void)u.data.counter;
    (void)LIB_SOCK;
    (void)(LIB_SOCK_VERSION_MAJOR + LIB_SOCK_VERSION_MINOR +
           LIB_SOCK_VERSION_PATCH + BUFFER_PACKET_SIZE);
  }
}
