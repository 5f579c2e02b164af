/*
 * libsock_nonshared.a: the part of -lsock that is linked into the program.
 *
 * `-lsock` finds $libdir/libsock.so, a GNU ld script (written by the
 * Makefile, as glibc's libc.so is):
 *
 *   EXTERN ( __libsock_nonshared )
 *   GROUP ( libsock.so.0 libsock_nonshared.a )
 *
 * The EXTERN makes the linker take this object out of the archive for every
 * program. It defines, strongly and with hidden visibility, every function
 * of libsock.h except the four callbacks the program may override; each only
 * calls the shared library's implementation under its second name
 * (__libsock_<name>, an alias exported by libsock.so.0).
 *
 * Why: event-loop libraries written for libsock carry weak fallbacks of
 * sock_* functions "in case libsock is not linked" (`#pragma weak
 * sock_flush` and a body that does nothing). A static link replaces them
 * with the library's strong definitions; a link against a shared library
 * alone keeps the program's own, because a definition in the program wins
 * over one in a shared library. Linking these strong definitions into the
 * program gives both kinds of link the same result: the library's code
 * runs. Hidden, they stay inside the program (or the shared object) that
 * linked them: nothing is exported, so other modules still reach
 * libsock.so.0 directly, and a program with no fallbacks behaves exactly as
 * before (one more jump per call).
 *
 * The callbacks (reactor_on_close, reactor_remove, sock_touch, async_run)
 * are not here: the program's definitions of those must keep winning.
 *
 * Each definition below must match the header's declaration (the compiler
 * checks it); scripts/check-symbols.sh checks that the archive defines
 * exactly the header's functions minus the callbacks.
 */
#pragma GCC visibility push(hidden)
#include "libsock.h"
#pragma GCC visibility pop

/* Taken by the EXTERN of the linker script: pulls this object in. */
__attribute__((visibility("hidden"))) const char __libsock_nonshared = 1;

/* __libsock_<name>: the library's <name>, same type, default visibility. */
#define FORWARD(ret, name, params, args)                                       \
  extern __typeof__(name) __libsock_##name;                                    \
  ret name params { return __libsock_##name args; }
#define FORWARD_VOID(name, params, args)                                       \
  extern __typeof__(name) __libsock_##name;                                    \
  void name params { __libsock_##name args; }

FORWARD(int, sock_set_non_block, (int fd), (fd))
FORWARD(ssize_t, sock_max_capacity, (void), ())
FORWARD(intptr_t, sock_listen, (const char *address, const char *port),
        (address, port))
FORWARD(intptr_t, sock_accept, (intptr_t srv_uuid), (srv_uuid))
FORWARD(intptr_t, sock_connect, (char *address, char *port), (address, port))
FORWARD(intptr_t, sock_open, (int fd), (fd))
FORWARD(int, sock_isvalid, (intptr_t uuid), (uuid))
FORWARD(intptr_t, sock_fd2uuid, (int fd), (fd))
FORWARD(ssize_t, sock_read, (intptr_t uuid, void *buf, size_t count),
        (uuid, buf, count))
FORWARD(ssize_t, sock_write2_fn, (struct sock_write_info_s options),
        (options))
FORWARD(ssize_t, sock_flush, (intptr_t uuid), (uuid))
FORWARD_VOID(sock_flush_strong, (intptr_t uuid), (uuid))
FORWARD_VOID(sock_flush_all, (void), ())
FORWARD_VOID(sock_close, (intptr_t uuid), (uuid))
FORWARD_VOID(sock_force_close, (intptr_t uuid), (uuid))
FORWARD(struct sock_packet_s *, sock_checkout_packet, (void), ())
FORWARD(ssize_t, sock_send_packet,
        (intptr_t uuid, struct sock_packet_s *packet), (uuid, packet))
FORWARD(int, sock_packets_pending, (intptr_t uuid), (uuid))
FORWARD(int, sock_is_closing, (intptr_t uuid), (uuid))
FORWARD_VOID(sock_set_linger_timeout, (unsigned int milliseconds),
             (milliseconds))
FORWARD(unsigned int, sock_linger_timeout, (void), ())
FORWARD(int, sock_set_pending_limit, (intptr_t uuid, size_t bytes),
        (uuid, bytes))
FORWARD_VOID(sock_set_default_pending_limit, (size_t bytes), (bytes))
FORWARD(size_t, sock_pending_bytes, (intptr_t uuid), (uuid))
FORWARD(int, sock_peer_addr,
        (intptr_t uuid, struct sockaddr *addr, socklen_t *addrlen),
        (uuid, addr, addrlen))
FORWARD(int, sock_hijack, (intptr_t uuid), (uuid))
FORWARD_VOID(sock_free_packet, (struct sock_packet_s *packet), (packet))
FORWARD(struct sock_rw_hook_s *, sock_rw_hook_get, (intptr_t uuid), (uuid))
FORWARD(int, sock_rw_hook_set,
        (intptr_t uuid, struct sock_rw_hook_s *rw_hooks), (uuid, rw_hooks))
FORWARD(int, sock_set_packet_pool_size, (size_t packets), (packets))
FORWARD(size_t, sock_packet_pool_size, (void), ())
FORWARD_VOID(sock_register_on_close, (void (*callback)(intptr_t uuid)),
             (callback))
FORWARD_VOID(sock_register_remove, (int (*callback)(intptr_t uuid)),
             (callback))
FORWARD_VOID(sock_register_touch, (void (*callback)(intptr_t uuid)),
             (callback))
FORWARD_VOID(sock_register_async_run,
             (int (*callback)(sock_task_fn task, void *arg)), (callback))
