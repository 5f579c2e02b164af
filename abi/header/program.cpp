// include/libsock.h from C++ (-std=c++11 -Wall -Wextra -pedantic -Werror),
// linked with libsock.so and run by scripts/check-header.sh:
// - the declarations have C linkage (the program links);
// - the static inline sock_sendfile (its C++ branch builds the
//   sock_write_info_s field by field) sends a file range;
// - sock_write2_fn takes a sock_write_info_s built in C++;
// - a callback defined here (reactor_on_close) gets C linkage from the
//   header's declaration and is called by the library.
// The sock_write/sock_write2 macros are C only (compound literals) and are
// not used here. Prints diagnostics on stderr; exits non-zero on failure.
#include "libsock.h"
#include "libsock.h"  // a second time: the include guard

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

static int closed = 0;
static intptr_t closed_uuid = -1;

void reactor_on_close(intptr_t uuid) {
  ++closed;
  closed_uuid = uuid;
}

static int failures = 0;
#define CHECK(cond)                                                       \
  do {                                                                    \
    if (!(cond)) {                                                        \
      std::fprintf(stderr, "  %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
      ++failures;                                                         \
    }                                                                     \
  } while (0)

static bool read_exactly(int fd, char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

int main() {
  CHECK(std::strcmp(LIB_SOCK, "") != 0);
  CHECK(BUFFER_FILE_READ_SIZE == BUFFER_PACKET_SIZE);

  int p[2];
  if (pipe(p) != 0) return 2;
  intptr_t uuid = sock_open(p[1]);
  CHECK(uuid != -1 && sock_isvalid(uuid) == 1);
  CHECK(sock_uuid2fd(uuid) == p[1]);

  char path[] = "/tmp/libsock-cxx-XXXXXX";
  int file = mkstemp(path);
  if (file < 0) return 2;
  unlink(path);
  CHECK(write(file, "0123456789", 10) == 10);

  CHECK(sock_sendfile(uuid, file, 2, 5) == 0);
  sock_flush_strong(uuid);
  char buf[16] = {0};
  CHECK(read_exactly(p[0], buf, 5) && std::memcmp(buf, "23456", 5) == 0);
  errno = 0;
  CHECK(fcntl(file, F_GETFD) == -1 && errno == EBADF);  // the library closed it

  sock_write_info_s options = sock_write_info_s();
  options.fduuid = uuid;
  options.buffer = "abc";
  options.length = 3;
  CHECK(sock_write2_fn(options) == 0);
  sock_flush_strong(uuid);
  CHECK(read_exactly(p[0], buf, 3) && std::memcmp(buf, "abc", 3) == 0);

  sock_force_close(uuid);
  CHECK(closed == 1 && closed_uuid == uuid);
  CHECK(sock_isvalid(uuid) == 0);
  close(p[0]);
  return failures == 0 ? 0 : 1;
}
