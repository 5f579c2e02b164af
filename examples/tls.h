/*
 * tls.h - TLS (OpenSSL) under libsock, through the read/write hooks.
 *
 * A connection becomes a TLS connection by attaching a session to its UUID:
 *
 *   intptr_t uuid = sock_accept(srv);
 *   tls_attach_server(uuid, ctx);        // or tls_attach_client(...)
 *   sock_write(uuid, "hello", 5);        // plaintext in, TLS records out
 *   n = sock_read(uuid, buf, sizeof buf); // TLS records in, plaintext out
 *   tls_close(uuid);                     // queued data, close_notify, close
 *
 * Everything else is libsock as usual: the user-land buffer, sock_sendfile
 * (files go through the read-and-write path and are encrypted on the way),
 * sock_flush on writability, reactor_on_close. The session is freed by the
 * hook's on_clear when libsock closes the connection.
 *
 * Event loops: read until sock_read returns 0 or -1 (OpenSSL may hold a
 * decrypted record the kernel no longer reports as readable), and call
 * sock_flush on writability (and after reading: the handshake may have left
 * records to send and queued data to release).
 *
 * Thread safety: hooks of one connection are serialised by a per-session
 * mutex, so libsock may call them from several threads. tls_close/tls_info
 * may be called from any thread.
 */
#ifndef LIBSOCK_EXAMPLES_TLS_H
#define LIBSOCK_EXAMPLES_TLS_H

#include <stdint.h>

#include <openssl/ssl.h>

#include "libsock.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A server context with the certificate chain and key (PEM files), TLS 1.2
 * or later, renegotiation off. NULL on error (printed to stderr). */
SSL_CTX *tls_server_ctx(const char *cert_pem, const char *key_pem);

/** A client context that trusts `ca_pem` (and verifies the peer), or
 * trusts anything when `ca_pem` is NULL. NULL on error. */
SSL_CTX *tls_client_ctx(const char *ca_pem);

/** Puts a server-side TLS session under the connection `uuid` (typically
 * right after sock_accept). Returns 0, or -1 with errno: ENODEV (invalid
 * UUID or NULL ctx), EEXIST (the connection already has hooks), ENOMEM.
 * The handshake happens as data moves. */
int tls_attach_server(intptr_t uuid, SSL_CTX *ctx);

/** Puts a client-side TLS session under `uuid` (right after sock_connect,
 * even while the connection is in progress) and starts the handshake.
 * `server_name`: sent as SNI and, when the context verifies, checked
 * against the certificate; may be NULL. Returns 0 or -1. */
int tls_attach_client(intptr_t uuid, SSL_CTX *ctx, const char *server_name);

/** Closes a TLS connection gracefully: everything queued is sent, then a
 * TLS close_notify, then libsock closes the fd (sock_close). A plain
 * sock_close also sends everything queued but no close_notify: the 0.2.2
 * hook interface tells the flush hook nothing about closing. Returns 0, or
 * -1 when `uuid` is not an open TLS connection of this adapter (sock_close
 * is still called). */
int tls_close(intptr_t uuid);

/** What the adapter knows about a session. */
typedef struct tls_info_s {
  intptr_t uuid;
  int handshake_done;        /* the handshake completed */
  int received_close_notify; /* the peer closed the TLS session cleanly */
  int sent_close_notify;     /* we sent close_notify (tls_close, or reply) */
  int failed;                /* transport or protocol error */
  int tls_version;           /* e.g. TLS1_3_VERSION, 0 before handshake */
  unsigned long long bytes_in, bytes_out; /* plaintext through the hooks */
} tls_info_s;

/** Fills `info` for an open TLS connection. Returns 0, or -1. */
int tls_info(intptr_t uuid, tls_info_s *info);

/** Called by on_clear, once per session, just before it is freed (after
 * libsock closed the fd). NULL: none. Process-wide. */
void tls_set_on_finish(void (*callback)(const tls_info_s *info));

/** Sessions attached and not yet freed (for tests and leak checks). */
long tls_live_sessions(void);

#ifdef __cplusplus
}
#endif

#endif /* LIBSOCK_EXAMPLES_TLS_H */
