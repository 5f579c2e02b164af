/*
 * A program built against an installed libsock with pkg-config, shared and
 * static (scripts/check-install.sh): the header is found through --cflags,
 * the library through --libs; it writes through the library into a pipe and
 * gets its own reactor_on_close called. Exits non-zero on failure.
 */
#include <libsock.h>

#include <string.h>

static intptr_t closed = -1;
void reactor_on_close(intptr_t uuid) { closed = uuid; }

int main(void) {
  int p[2];
  char buf[8] = {0};
  intptr_t uuid;
  if (sock_max_capacity() <= 0 || pipe(p) != 0)
    return 1;
  uuid = sock_open(p[1]);
  if (uuid == -1 || sock_write(uuid, "hello", 0) != 0)
    return 2;
  sock_flush_strong(uuid);
  if (read(p[0], buf, 5) != 5 || memcmp(buf, "hello", 5) != 0)
    return 3;
  sock_force_close(uuid);
  if (closed != uuid)
    return 4;
  printf("libsock %s ok\n", LIB_SOCK);
  return 0;
}
