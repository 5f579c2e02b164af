/*
 * sink -- the reading end of the transfer benchmarks (a separate process,
 * so `strace -c -f` of the writer counts only the writer's system calls).
 *
 *   sink fast|slow BYTES [check64]
 *
 * Listens on 127.0.0.1 (a free port, printed on stdout), accepts one
 * connection, reads exactly BYTES bytes, answers with one byte (the
 * writer's clock stops when it arrives), then waits for the writer to close
 * and exits. `fast` reads 256 KiB at a time as fast as it can; `slow` reads
 * 16 KiB and then sleeps 1 ms (at most ~16 MB/s) with a fixed 128 KiB
 * receive buffer, so the writer meets a full socket (backpressure). With `check64` the stream must be 64-byte
 * messages whose first 8 bytes are their sequence number (little-endian):
 * a lost, repeated or reordered message makes the sink exit with status 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: sink fast|slow BYTES [check64]\n");
    return 2;
  }
  int slow = !strcmp(argv[1], "slow");
  uint64_t total = strtoull(argv[2], NULL, 10);
  int check = argc > 3 && !strcmp(argv[3], "check64");

  int srv = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (slow) { /* no receive-buffer autotuning (up to tcp_rmem[2], often
               * 32 MiB): the writer meets a full socket early */
    int rcv = 131072;
    setsockopt(srv, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  }
  if (srv < 0 || bind(srv, (struct sockaddr *)&a, sizeof a) ||
      listen(srv, 1) || getsockname(srv, (struct sockaddr *)&a, &len)) {
    perror("sink: listen");
    return 1;
  }
  printf("%d\n", ntohs(a.sin_port));
  fflush(stdout);
  int fd = accept(srv, NULL, NULL);
  if (fd < 0) {
    perror("sink: accept");
    return 1;
  }
  close(srv);

  size_t bufsz = slow ? 16384 : 262144;
  unsigned char *buf = malloc(bufsz);
  unsigned char msg[64];
  size_t mfill = 0;
  uint64_t got = 0, seq = 0;
  struct timespec nap = {.tv_sec = 0, .tv_nsec = 1000000};
  while (got < total) {
    size_t want = total - got < bufsz ? (size_t)(total - got) : bufsz;
    ssize_t n = read(fd, buf, want);
    if (n <= 0) {
      if (n < 0 && errno == EINTR)
        continue;
      fprintf(stderr, "sink: stream ended after %llu of %llu bytes\n",
              (unsigned long long)got, (unsigned long long)total);
      return 1;
    }
    got += (uint64_t)n;
    for (size_t i = 0; check && i < (size_t)n;) {
      size_t take = 64 - mfill < (size_t)n - i ? 64 - mfill : (size_t)n - i;
      memcpy(msg + mfill, buf + i, take);
      mfill += take;
      i += take;
      if (mfill == 64) {
        uint64_t s;
        memcpy(&s, msg, 8);
        if (s != seq) {
          fprintf(stderr, "sink: message %llu carries sequence %llu\n",
                  (unsigned long long)seq, (unsigned long long)s);
          return 1;
        }
        seq++;
        mfill = 0;
      }
    }
    if (slow)
      nanosleep(&nap, NULL);
  }
  if (write(fd, "k", 1) != 1)
    return 1;
  while (read(fd, buf, bufsz) > 0) /* until the writer closes */
    ;
  return 0;
}
