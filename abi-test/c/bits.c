/*
 * The C side of the bit-field checks (tests/bitfields.rs).
 *
 * ctest2 cannot take the offset of a bit-field, so the bit-fields of
 * libsock.h are checked through these functions, compiled against the
 * header: each one builds or decodes a struct the way a C program does
 * (through the bit-field names, designated initializers, compound literals,
 * the header's macros), and the Rust test reads or builds the same bytes
 * through the Rust definitions (the `flags` word and its accessors).
 *
 * Bit-fields are numbered in declaration order:
 *   sock_write_info_s:          0 move, 1 urgent, 2 is_fd, 3 rsv
 *   sock_packet_s.metadata:     0 can_interrupt, 1 is_fd, 2 keep_open,
 *                               3 external, 4 urgent, 5 internal_flag, 6 rsrv
 */
#include <string.h>

#include "libsock.h"

/* Sets bit-field `field` of a zeroed sock_write_info_s to all ones.
 * Returns -1 (and leaves *out zeroed) for an unknown field. */
int abi_write_info_set(unsigned field, sock_write_info_s *out) {
  memset(out, 0, sizeof(*out));
  switch (field) {
  case 0: out->move = 1; return 0;
  case 1: out->urgent = 1; return 0;
  case 2: out->is_fd = 1; return 0;
  case 3: out->rsv = 1; return 0;
  default: return -1;
  }
}

/* Bit `n` of the result is set when bit-field `n` of `in` (received by value,
 * as sock_write2_fn receives it) is non-zero. */
unsigned abi_write_info_get(sock_write_info_s in) {
  return (in.move ? 1u : 0u) | (in.urgent ? 2u : 0u) | (in.is_fd ? 4u : 0u) |
         (in.rsv ? 8u : 0u);
}

/* Sets bit-field `field` of the metadata of a zeroed packet to all ones.
 * Returns -1 (and leaves *out zeroed) for an unknown field. */
int abi_packet_set(unsigned field, sock_packet_s *out) {
  memset(out, 0, sizeof(*out));
  switch (field) {
  case 0: out->metadata.can_interrupt = 1; return 0;
  case 1: out->metadata.is_fd = 1; return 0;
  case 2: out->metadata.keep_open = 1; return 0;
  case 3: out->metadata.external = 1; return 0;
  case 4: out->metadata.urgent = 1; return 0;
  case 5: out->metadata.internal_flag = 1; return 0;
  case 6: out->metadata.rsrv = 3; return 0;
  default: return -1;
  }
}

/* Bit `n` of the result is set when metadata bit-field `n` is non-zero. */
unsigned abi_packet_get(const sock_packet_s *in) {
  const struct sock_packet_metadata_s *m = &in->metadata;
  return (m->can_interrupt ? 1u : 0u) | (m->is_fd ? 2u : 0u) |
         (m->keep_open ? 4u : 0u) | (m->external ? 8u : 0u) |
         (m->urgent ? 16u : 0u) | (m->internal_flag ? 32u : 0u) |
         (m->rsrv ? 64u : 0u);
}

/* A program's compound literal, returned by value. */
sock_write_info_s abi_write_info_literal(intptr_t uuid, int fd, off_t offset,
                                         size_t length) {
  return (sock_write_info_s){.fduuid = uuid,
                             .buffer = (void *)(intptr_t)fd,
                             .length = length,
                             .offset = offset,
                             .is_fd = 1};
}

/* The packet literal of the spec (libsock-api.md, sock_packet_s). */
void abi_packet_literal(sock_packet_s *packet) {
  *packet = (sock_packet_s){
      .buffer = "\x89\x00", .length = 2, .metadata.urgent = 1};
}

/* The header's inline sock_sendfile and the sock_write macro, as a program
 * calls them: both reach the library's sock_write2_fn with a
 * sock_write_info_s built by a compound literal. */
ssize_t abi_sendfile(intptr_t uuid, int fd, off_t offset, size_t length) {
  return sock_sendfile(uuid, fd, offset, length);
}

ssize_t abi_write(intptr_t uuid, const char *text) {
  return sock_write(uuid, text, 0);
}

/* A UUID made through the union's bit-fields. */
intptr_t abi_uuid_make(int fd, unsigned counter) {
  fduuid_u u;
  memset(&u, 0, sizeof(u));
  u.data.fd = fd;
  u.data.counter = counter;
  return u.uuid;
}

/* The header's sock_uuid2fd (reads the fd bit-field through the union). */
int abi_uuid2fd(intptr_t uuid) { return sock_uuid2fd(uuid); }

/* The counter bit-field of a UUID. */
unsigned abi_uuid_counter(intptr_t uuid) {
  fduuid_u u;
  u.uuid = uuid;
  return u.data.counter;
}

/* FDUUID_FAIL as a program uses it. */
int abi_uuid_fail(intptr_t uuid) { return FDUUID_FAIL(uuid); }
