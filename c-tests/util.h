/*
 * util.h -- shared helpers for the libsock C tests: declarations. The code
 * is util.c (and callbacks.c), compiled once per run into the helpers'
 * archive that every program links (c-tests/run.sh: libctest.a).
 *
 * If TEST_DEFINE_CALLBACKS is defined before including this file, the
 * program defines the overridable library callbacks reactor_on_close(),
 * reactor_remove() and sock_touch() and records every call, so tests can
 * assert "exactly once", "remove before on_close" and "touched": the three
 * definitions are at the end of this file, the record they keep and its
 * queries are callbacks.h and callbacks.c. A program without it keeps the
 * library's defaults.
 */
#ifndef LIBSOCK_TEST_UTIL_H
#define LIBSOCK_TEST_UTIL_H

#include "harness.h"
#include "libsock.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

/* ---- time ---------------------------------------------------------------*/

/* CLOCK_MONOTONIC in milliseconds */
int64_t now_ms(void);

/* Wait up to `ms` for events on fd. Returns revents (0 on timeout). */
short wait_fd(int fd, short events, int ms);

/* A short bounded pause used only inside "loop until condition or deadline"
 * loops (never as synchronisation by itself). */
void tiny_wait(void);

/* ---- patterns -----------------------------------------------------------*/

/* byte i of the test pattern of seed; fill_pattern writes bytes start.. */
uint8_t pat_byte(uint64_t i, uint32_t seed);
void fill_pattern(uint8_t *buf, size_t n, uint64_t start, uint32_t seed);

/* index of the first mismatch, or n when all bytes match */
size_t check_pattern(const uint8_t *buf, size_t n, uint64_t start,
                     uint32_t seed);

/* ---- raw fd helpers -----------------------------------------------------*/

/* 1 if fd is an open descriptor */
int fd_is_open(int fd);
/* Number of open fds of the process. */
int count_fds(void);

/* 1 if fd is open and refers to the file (dev, ino) */
int fd_is_same_file(int fd, const struct stat *st);

/* O_NONBLOCK: is it set; clear it */
int is_nonblocking(int fd);
void set_blocking(int fd);

/* Read from a raw fd until n bytes, EOF, error or timeout. Returns bytes
 * read; *eof (optional) set to 1 when EOF/reset was seen. */
size_t raw_read_n(int fd, void *buf, size_t n, int ms, int *eof);

/* Read whatever is available right now (non-blocking), up to n bytes. */
size_t raw_read_avail(int fd, void *buf, size_t n);

/* Wait for EOF on fd, discarding nothing: returns 1 on EOF (or reset),
 * 0 on timeout, -1 when data arrived instead (that data is lost). */
int raw_expect_eof(int fd, int ms);

/* Read from a library connection until n bytes, error or timeout. */
size_t lib_read_n(intptr_t uuid, void *buf, size_t n, int ms);

/* Write all bytes to a raw fd within `ms` milliseconds: 0 when all went,
 * -1 on error or when the deadline passed. On sockets each send is
 * non-blocking (MSG_DONTWAIT), so a peer that stops reading makes this fail
 * at the deadline instead of hanging the test in a blocking write; other
 * fds (pipes) should be non-blocking for the same promise. */
int raw_write_all(int fd, const void *buf, size_t n, int ms);

/* ---- connection helpers ---------------------------------------------------*/

/* A library connection plus the raw peer fd. */
typedef struct {
  intptr_t uuid; /* library side */
  int lfd;       /* library side fd */
  int raw;       /* raw peer, blocking */
} conn_t;

/* AF_UNIX socketpair: one end registered with sock_open (non-blocking),
 * the other raw. sndbuf > 0 sets SO_SNDBUF on the library end. */
int make_unix_pair_buf(conn_t *c, int sndbuf);
int make_unix_pair(conn_t *c);

/* Loopback TCP: raw listener (SO_RCVBUF = rcvbuf if > 0, inherited by the
 * accepted raw peer), raw client (SO_SNDBUF = sndbuf if > 0) connected and
 * then registered with sock_open. The library side is the client. */
int make_tcp_pair_buf(conn_t *c, int sndbuf, int rcvbuf);
int make_tcp_pair(conn_t *c);

/* closes the raw peer (once) */
void conn_close_raw(conn_t *c);

/* Pick a free TCP port on the loopback of `family` by binding a probe socket
 * to port 0 and reading it back. Returns 0 and fills out[] ("12345"). */
int free_port(int family, char out[16]);

/* Wait until a library-created connecting socket is connected (POLLOUT). */
int wait_connected(intptr_t uuid, int ms);

/* Accept through the library, waiting (poll) up to ms for a pending
 * connection. */
intptr_t accept_wait(intptr_t srv, int ms);

/* Drive sock_flush on uuid until it reports the connection closed (-1) or
 * the deadline passes. Returns 1 when closed. */
int flush_until_closed(intptr_t uuid, int ms);

/* Like REQUIRE, for setup helpers that return int: reports the condition
 * that failed and returns -1, so the test can REQUIRE(helper(...) == 0). */
#define SETUP_REQUIRE(cond)                                                    \
  do {                                                                         \
    if (!(cond)) {                                                             \
      h_fail_at(__FILE__, __LINE__, "REQUIRE(%s) failed (errno=%d %s)", #cond, \
                errno, strerror(errno));                                       \
      return -1;                                                               \
    }                                                                          \
  } while (0)

/* A library listener on a free IPv4 loopback port (port[] receives it). */
int lib_tcp_listen(char port[16], intptr_t *srv);

/* Both ends through the library over IPv4 loopback: a listener on a free
 * port, a sock_connect client and the connection the listener accepted.
 * The client may still be connecting (see wait_connected). */
int lib_tcp_trio(char port[16], intptr_t *srv, intptr_t *cli,
                 intptr_t *acc);

/* sock_force_close of the three */
void lib_tcp_trio_close(intptr_t srv, intptr_t cli, intptr_t acc);

/* Both library ends write n pattern bytes at once (seeds sa for cl, sb for
 * ac) and both read while flushing; each must receive exactly what the
 * other wrote. */
void exchange_both_ways(intptr_t cl, intptr_t ac, size_t n, uint32_t sa,
                        uint32_t sb);

/* sock_read until it returns something other than 0 (data, or -1 once the
 * connection ended and was closed) or ms pass. Returns the last result (0 on
 * timeout); bytes read are discarded. */
ssize_t read_until_nonzero(intptr_t uuid, int ms);

/* The raw peer must read exactly these n bytes next. */
void expect_raw_bytes(conn_t *c, const char *expect, size_t n);

/* sock_force_close of the library end, close of the raw peer */
void conn_force_close(conn_t *c);

/* sock_write n pattern bytes (seed) from a buffer freed right after the
 * call (the library copies it). */
void write_pattern(intptr_t uuid, size_t n, uint32_t seed);

/* ---- temp files ---------------------------------------------------------*/

/* Create an unlinked temp file of `size` pattern bytes (seed). Returns fd. */
int make_temp_file(size_t size, uint32_t seed);

/* ---- drain thread: reads a raw fd, checks a pattern or stores data -------*/

typedef struct {
  int fd;
  size_t expect;   /* stop after this many bytes (0 = until EOF) */
  uint32_t seed;   /* pattern seed when check */
  uint64_t start;  /* pattern start offset */
  int check;       /* verify pattern */
  uint8_t *store;  /* optional: copy data here */
  size_t store_cap;
  int timeout_ms;  /* give up after this long without progress */
  int until_eof;   /* after `expect` bytes, keep reading until EOF */
  /* results */
  size_t got;
  size_t bad_at; /* first mismatching absolute position, SIZE_MAX if none */
  int eof;
  int err; /* errno when the stream ended in an error (0: EOF or limit) */
  pthread_t th;
} drain_t;

/* Starts the drain thread (timeout_ms 0: 20 s); drain_join waits for it. */
int drain_start(drain_t *d);
void drain_join(drain_t *d);

/* The raw peer of c reads (d) while the library flushes c until it has
 * closed (a pending sock_close, or one already done). Returns 1 when c
 * closed within ms; d holds what the peer read. */
int drain_while_closing(conn_t *c, drain_t *d, int ms);

/* ---- packet pool bound --------------------------------------------------*/

/* The caller holds every packet of the pool. A checkout on another thread
 * must then wait, and succeed once `release` is freed. Returns what a 300 ms
 * wait for that checkout saw before the release (0: it waited, as it must),
 * or -1 when no pipe could be made. */
int checkout_waits_for_release(sock_packet_s *release);

/* ---- a UUID guaranteed not to be valid for fd (stale counter) ------------*/

/* the UUID of fd with this counter (a stale one when the counter is not
 * the fd's current) */
intptr_t make_uuid(int fd, unsigned counter);

/* ---- recorded callbacks --------------------------------------------------*/
#ifdef TEST_DEFINE_CALLBACKS
#include "callbacks.h"

/* The program's own definitions of the library's callbacks, here rather than
 * in callbacks.c: only a program that asks for them may define them (the
 * library's defaults serve the others), and an archive member defining them
 * would be linked into any program that merely calls one. */
void reactor_on_close(intptr_t uuid) {
  cb_record('C', uuid);
  if (cb_on_close_extra)
    cb_on_close_extra(uuid);
}

int reactor_remove(intptr_t uuid) {
  cb_record('R', uuid);
  if (cb_remove_extra)
    cb_remove_extra(uuid);
  return 0;
}

void sock_touch(intptr_t uuid) {
  touch_record(uuid);
  if (cb_touch_extra)
    cb_touch_extra(uuid);
}

#endif /* TEST_DEFINE_CALLBACKS */

#endif /* LIBSOCK_TEST_UTIL_H */
