/*
 * drd_shim.c -- preloaded (LD_PRELOAD) into the c-tests that stress/run.sh
 * runs under DRD. It interposes sock_checkout_packet() and declares each
 * packet it hands out (header and storage) as library-owned memory, which
 * DRD is to leave out of the race check.
 *
 * Those programs link with -lsock, so their sock_checkout_packet is the
 * hidden definition from libsock_nonshared.a, which calls the library as
 * __libsock_sock_checkout_packet (README, "Using it"): that is the name
 * interposed here. (Interposing the public name would also have the
 * library warn that the program shadows it.)
 *
 * Why: a pool packet is written by one owner at a time, ownership passing
 * through the pool's parking_lot mutex (a futex DRD cannot see). Without
 * this, DRD reports the program's first write into a packet as racing with
 * the previous owner's, in the program's own frames, where a suppression
 * would have to name test code. The race check stays on for all of the
 * programs' own memory. The stress programs do the same themselves
 * (RL_FRESH in stress/common.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stddef.h>
#include <valgrind/drd.h>

#include "libsock.h"

static sock_packet_s *(*real_checkout)(void);

__attribute__((constructor)) static void shim_init(void) {
  real_checkout = (sock_packet_s * (*)(void)) dlsym(RTLD_NEXT, "__libsock_sock_checkout_packet");
}

sock_packet_s *__libsock_sock_checkout_packet(void);
sock_packet_s *__libsock_sock_checkout_packet(void) {
  sock_packet_s *p = real_checkout ? real_checkout() : NULL;
  if (p) {
    ANNOTATE_BENIGN_RACE_SIZED(p, sizeof(*p), "libsock pool packet header");
    ANNOTATE_BENIGN_RACE_SIZED(p->buffer, BUFFER_PACKET_SIZE,
                               "libsock pool packet storage");
  }
  return p;
}
