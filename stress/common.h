/*
 * stress/common.h -- shared machinery of the reliability programs
 * (stress.c, fuzz.c, liveness.c): framed messages, a verifying peer reader,
 * the connection registry and the recorded library callbacks. The code is
 * common.c, compiled once per build variant by stress/run.sh and linked
 * into each of these programs.
 *
 * Every byte a program writes through the library is part of a frame:
 *
 *   magic | connection id | writer | kind | sequence | length | checksum |
 *   header checksum | payload
 *
 * The connection id is unique for the whole run (never reused, unlike fds
 * and UUIDs), so a peer that receives a frame stamped with another id got
 * data through a stale UUID ("Bob and Alice"). Each writer (thread) numbers
 * its frames per connection and per kind: normal frames must arrive in
 * order with no gap and no duplicate; urgent frames (which may overtake
 * normal ones) likewise, in their own sequence.
 *
 * The peer end of every connection is read by reader threads (epoll) that
 * parse and verify the frames as they arrive. At the end of a run, each
 * connection's received frames are compared with what its writers had
 * accepted (sock_write* returned 0):
 *   - closed gracefully only (sock_close): exactly what was accepted, whole;
 *   - force-closed (sock_force_close): per writer, a prefix of what was
 *     accepted, possibly followed by one truncated frame;
 * and the library callbacks: reactor_remove then reactor_on_close, exactly
 * once per UUID, only for connections the program closed.
 *
 * common.c defines reactor_on_close, reactor_remove and sock_touch: do not
 * define TEST_DEFINE_CALLBACKS with this header.
 */
#ifndef LIBSOCK_STRESS_COMMON_H
#define LIBSOCK_STRESS_COMMON_H

#ifdef TEST_DEFINE_CALLBACKS
#error "stress/common.c defines the callbacks itself"
#endif
#include "../c-tests/util.h"

#include <dirent.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/mman.h>

/* ---- race-checker annotations -----------------------------------------
 * The programs' shared flags and counters are C11 atomics. DRD does not
 * model C11 atomics, so each one is declared to it as intentionally shared
 * (RL_ATOMIC). All other shared data is protected by pthread mutexes, which
 * DRD does see. Without the valgrind headers these are no-ops. */
#if defined(__has_include)
#if __has_include(<valgrind/drd.h>)
#include <valgrind/drd.h>
#define RL_HAVE_DRD 1
#endif
#endif
#ifdef RL_HAVE_DRD
#define RL_ATOMIC(var) DRD_IGNORE_VAR(var)
/* Memory the library owns and lends (pool packets checked out, the buffer
 * a write hook is given): its users are ordered by the library's own
 * futex-based locks, which DRD cannot see; exclude that memory from the
 * race check (until it is freed). */
#define RL_FRESH(addr, size)                                                  \
  ANNOTATE_BENIGN_RACE_SIZED(addr, size, "libsock-owned memory")
#else
#define RL_ATOMIC(var) ((void)0)
#define RL_FRESH(addr, size) ((void)0)
#endif

#define RL_MAXW 16 /* writers (threads) per run */

/* ---- random numbers (per thread, seeded) -------------------------------*/

typedef struct {
  uint64_t s;
} rng_t;

/* a 64-bit mixer (splitmix64's finaliser); rng_next: the next number */
uint64_t mix64(uint64_t x);
uint64_t rng_next(rng_t *r);
/* uniform in [0, n) (n > 0) */
uint32_t rng_below(rng_t *r, uint32_t n);
/* An index below n, each i with probability w[i] / (w[0] + ... + w[n-1]). */
int rng_pick(rng_t *r, const int *w, int n);
/* uniform in [lo, hi] */
uint32_t rng_range(rng_t *r, uint32_t lo, uint32_t hi);
/* true with this probability */
int rng_chance(rng_t *r, uint32_t percent);

/* ---- errors ------------------------------------------------------------
 * Invariant violations found by any thread, by class (a short name): all
 * counted, the first three of each class printed (indented, on stderr, like
 * the harness's diagnostics). A run goes on after a violation, so that one
 * frequent failure does not hide the others; rl_summary() lists them. */
extern atomic_long rl_nerrors;
/* Controls (stress.c): deliberate faults the checks must catch.
 *  1 every 50th frame is stamped with another connection's id
 *  2 every 50th accepted frame is not counted as accepted
 *  3 every 50th frame is counted as accepted but not sent */
extern int rl_inject;
extern atomic_long rl_injected;
#define RL_CLASSES 32
/* the classes seen so far and their counts, under rl_class_mtx */
typedef struct {
  const char *name;
  long count;
} rl_class_t;
extern rl_class_t rl_class[RL_CLASSES];
extern pthread_mutex_t rl_class_mtx;

/* Records a violation of class cls (counted; printed the first 3 times). */
__attribute__((format(printf, 2, 3))) void
rl_fail(const char *cls, const char *fmt, ...);
#define rl_error(...) rl_fail("invariant", __VA_ARGS__)

/* One line per class of violation seen; returns the total. */
long rl_summary(void);

/* ---- frames --------------------------------------------------------------*/

#define FR_MAGIC 0x4C52534Cu /* "LSRL" */
enum { FR_NORMAL = 0, FR_URGENT = 1 };

typedef struct {
  uint32_t magic;
  uint32_t conn;   /* connection id (unique per run) */
  uint16_t writer; /* thread index */
  uint8_t kind;    /* FR_NORMAL / FR_URGENT */
  uint8_t how;     /* how it was sent (SEND_*), for diagnostics */
  uint32_t seq;    /* per (conn, writer, kind) */
  uint32_t len;    /* payload bytes */
  uint32_t sum;    /* checksum of the payload */
  uint32_t hsum;   /* checksum of the fields above */
} fr_hdr;
_Static_assert(sizeof(fr_hdr) == 28, "frame header layout");

/* Adler-32-like running checksum: position dependent, incremental. */
typedef struct {
  uint32_t a, b;
} ck_t;
#define CK_INIT ((ck_t){1, 0})
void ck_update(ck_t *c, const uint8_t *p, size_t n);
uint32_t ck_value(const ck_t *c);

/* the checksum of a header's fields before hsum */
uint32_t fr_hsum(const fr_hdr *h);

/* Payload bytes of a frame, from a seed (fast: one mix per 8 bytes). */
void fr_fill(uint8_t *p, size_t n, uint64_t seed);

/* the payload seed of a frame */
uint64_t fr_seed(uint32_t conn, unsigned writer, unsigned kind,
                 uint32_t seq);

/* Index of the first of n bytes at payload position pos that differs from
 * what the frame's seed gives, n when all match. */
size_t fr_compare(const uint8_t *p, size_t n, uint64_t pos, uint64_t seed);

/* Writes a whole frame (header + len payload bytes) at dst. */
size_t fr_build(uint8_t *dst, uint32_t conn, unsigned writer,
                unsigned kind, unsigned how, uint32_t seq, uint32_t len);

/* ---- receiving side: a frame parser per peer ------------------------------*/

typedef struct {
  uint32_t conn; /* the connection id this peer may see */
  /* ids of later connections registered on the same fd (sock_open of an fd
   * still marked open, fuzz.c): allowed in this order, never going back */
  uint32_t later[4];
  int nlater, at; /* at: 0 = conn, k = later[k-1] */
  char desc[64]; /* what the connection is (diagnostics) */
  uint8_t hbuf[sizeof(fr_hdr)];
  uint32_t hgot; /* header bytes buffered */
  fr_hdr cur;
  uint32_t pgot; /* payload bytes of cur seen */
  int in_payload;
  int64_t first_bad; /* payload position of cur's first wrong byte, or -1 */
  uint8_t bad_bytes[16];
  uint64_t frame_start; /* stream offset of cur's header */
  ck_t ck;
  uint32_t next[2][RL_MAXW]; /* next expected seq, per kind and writer */
  uint64_t bytes, frames;
  int bad; /* a violation was recorded: stop parsing */
  int eof;
} rx_t;

/* Parses and checks the next n bytes the peer received. */
void rx_feed(rx_t *rx, const uint8_t *p, size_t n);

/* a frame was cut short at the end of the stream */
int rx_truncated(const rx_t *rx);

/* ---- connections ----------------------------------------------------------*/

enum { LK_UNIX, LK_PIPE, LK_TCP_ACCEPTED, LK_TCP_CONNECTED, LK_LISTENER };
extern const char *const lk_name[]; /* by LK_* */

typedef struct lconn {
  uint32_t id;
  int kind;
  intptr_t uuid;
  int lfd; /* library side fd (informational once closed) */
  int owner; /* thread owning a private connection, -1 when shared */
  int small; /* small kernel buffers */
  int hook_mode; /* HOOK_* or -1 */
  atomic_int close_req, force_req; /* set before sock_close/force_close */
  atomic_int closed;               /* reactor_on_close seen */
  atomic_int n_close, n_remove;
  /* accepted frames per writer (written only by that writer's thread) */
  uint32_t acc[2][RL_MAXW];
  /* peer end: written (peer -> library bytes) under peer_mtx, closed by
   * the reader under peer_mtx once it saw the end of the stream */
  pthread_mutex_t peer_mtx;
  int peer;
  uint64_t pw_off;
  atomic_int peer_done;
  /* library-side reads (sock_read), one thread at a time */
  pthread_mutex_t rd_mtx;
  uint64_t rd_off;
  /* frames received by the peer */
  pthread_mutex_t rx_mtx;
  rx_t rx;
  /* rw hooks (NULL: none); freed with the registry, not by on_clear, so a
   * hook called after its on_clear is caught rather than a crash */
  struct hookst *hook;
  atomic_int fail_ok; /* a failure (and so dropped data) is expected */
  /* closed by the library because its fd was registered again while marked
   * open (sock_open); nothing was queued then */
  atomic_int replaced;
  struct lconn *alias_of; /* the connection whose peer this one writes to */
  int writer; /* fuzz.c: the writer index its frames use */
  /* verify_all: the accepted counts and force flags of its aliases */
  uint32_t alias_acc[2][RL_MAXW];
  int alias_forced;
  struct lconn *next_all, *prev_all, *hnext;
} lconn_t;

/* The registry: every connection not yet retired (a list, reg_all, and a
 * hash by UUID for the callbacks). Long runs retire connections once
 * verified (reg_retire), so memory stays bounded. */
extern lconn_t *reg_all;
/* totals of the retired connections */
extern long reg_done_conns;
extern uint64_t reg_done_frames, reg_done_bytes;
/* sock_touch calls; reactor_on_close calls of UUIDs nobody held */
extern atomic_long rl_touches, rl_unknown_closes;
/* sock_touch calls made on the calling thread: a call of this thread that
 * made the count grow moved bytes itself */
long rl_thread_touches(void);
/* the epoll set the readers wait on (peer ends) */
extern int rl_epoll;

/* Sets the registry up, and the readers' epoll set. */
void reg_init(void);

/* the registered connection of uuid, NULL if none */
lconn_t *reg_find(intptr_t uuid);

/* A new connection record of kind, not yet published. */
lconn_t *lconn_alloc(int kind, int owner);

/* Publishes a connection whose uuid is set: id, registry, reader. */
void lconn_publish(lconn_t *c);

/* The program did something after which the connection may be closed. */
int closing_expected(lconn_t *c);

/* ---- the library callbacks ------------------------------------------------*/

/* common.c defines reactor_remove (counted per connection), reactor_on_close
 * (checked: once per UUID, after reactor_remove, only for a connection the
 * program closed) and sock_touch (counted). */

/* Optional: what the program's event loop does in reactor_remove (for
 * liveness.c, the epoll_ctl DEL of the fd that real reactors do). Runs
 * first, while the fd number is still the connection's. */
extern void (*rl_on_remove)(intptr_t uuid);

/* ---- the readers of the peer ends -----------------------------------------*/

typedef struct {
  pthread_t th[4];
  int n;
  atomic_int stop;
} readers_t;

/* The peer saw the end of c's stream: out of the epoll set, closed. */
void peer_finish(lconn_t *c);
/* Reads c's peer end into its stream check (c->rx), up to `budget` bytes
 * in reads of at most `cap` into buf, until EAGAIN. Returns the bytes read;
 * *eof is set at end of stream (or a reset after all data). The caller
 * holds c->rx_mtx. */
size_t peer_read(lconn_t *c, uint8_t *buf, size_t cap, size_t budget,
                 int *eof);

/* n reader threads (at most 4) read and check the peer ends; stop joins
 * them. */
void readers_start(readers_t *r, int n);
void readers_stop(readers_t *r);

/* ---- rw hooks ----------------------------------------------------------------
 * Transparent transports that misbehave within the hook contract:
 *   HOOK_PASS    write/read pass through to the fd, but answer EAGAIN at
 *                random and move random partial amounts;
 *   HOOK_BUFFER  like a TLS library: write takes bytes into an internal
 *                buffer (EAGAIN when full), flush writes them out (partially,
 *                or EAGAIN at random) and returns the bytes still held;
 * optionally failing for good (EIO) after `fail_after` bytes (set fail_ok on
 * the connection first). The frames must arrive exactly as without hooks,
 * and on_clear must come once, after the last hook call. */
enum { HOOK_PASS, HOOK_BUFFER };

typedef struct hookst {
  sock_rw_hook_s h;
  lconn_t *c;
  int mode;
  pthread_mutex_t mtx; /* the hook state below */
  uint64_t rng;
  uint8_t *buf;
  size_t len, cap;
  long fail_after; /* bytes still accepted before EIO; < 0: never */
  atomic_int cleared;
  atomic_long calls;
} hookst_t;

/* Prepares hooks of `mode` for connection c (no read hook on pipes);
 * hook_install() hands them to the library. Prepared before the connection
 * is published, so that threads that find it see the state. */
void hook_prepare(lconn_t *c, int mode, uint64_t seed, long fail_after);
int hook_install(lconn_t *c);

/* ---- creating connections --------------------------------------------------
 * Each creator (thread) has its own listeners, so the connection it accepts
 * is the one it just connected. */

typedef struct {
  lconn_t *lib_listener; /* sock_listen: connections come from sock_accept */
  struct sockaddr_in lib_addr;
  int raw_listener; /* raw listener: sock_connect connects to it */
  char raw_port[16];
} creator_t;

/* The creator's listeners (0), or -1; creator_close closes them. */
int creator_init(creator_t *cr, int owner);
void creator_close(creator_t *cr);

/* A new connection of `kind` (library end + raw peer end read by the
 * readers); NULL when the system refuses (fd limits). small: small kernel
 * buffers, so the library's user-land buffer fills. (TCP peers keep their
 * default receive buffer: a loopback receive window below the 64 KiB MSS
 * makes the sender wait for persist-timer probes, seconds apart.) */
lconn_t *lconn_create(creator_t *cr, int kind, int owner, int small,
                      int hook_mode, uint64_t hook_seed);

/* ---- sending frames ---------------------------------------------------------*/

enum {
  SEND_COPY,   /* sock_write */
  SEND_MOVE,   /* sock_write2 .move */
  SEND_URGENT, /* sock_write2 .urgent (copy) */
  SEND_FILE,   /* sock_write2 .is_fd, a memfd (optionally at an offset) */
  SEND_PIPE,   /* sock_write2 .is_fd, a pipe holding the frame */
  SEND_PACKET, /* sock_checkout_packet + sock_send_packet */
  SEND_KINDS
};
extern const char *const send_name[]; /* by SEND_* */

/* A memfd (or unlinked temp file) holding `pre` filler bytes, the frame,
 * and `post` filler bytes. */
int frame_file(const uint8_t *frame, size_t n, size_t pre, size_t post);

typedef struct {
  int writer; /* thread index */
  rng_t rng;
  uint8_t *buf; /* frame buffer */
  size_t cap;
  long ok[SEND_KINDS], failed[SEND_KINDS];
  /* the last send_frame: the connection's reactor_on_close had run when
   * the library was called (checking a packet out first may flush, and so
   * complete a graceful close the program asked for) */
  int closed_at_call;
  size_t last_n; /* bytes of the last frame accepted */
} wctx_t;

/* a writer's context (its frame buffer, its random numbers); free frees */
void wctx_init(wctx_t *w, int writer, uint64_t seed);
void wctx_free(wctx_t *w);

/* A random payload size: mostly small, some medium, a few large. */
uint32_t pick_size(rng_t *r, uint32_t large_max);

/* Sends one frame on connection c with method `how`. Returns what the
 * library returned (0 accepted, -1 refused); keeps the writer's accepted
 * counts and checks the return conventions:
 *  - a UUID whose reactor_on_close had already run must be refused;
 *  - a refusal is ENODEV and leaves the UUID invalid, and happens only to
 *    connections the program closed. */
int send_frame(wctx_t *w, lconn_t *c, int how, uint32_t len);

/* ---- library-side reads and peer-side writes (peer -> library data) -------*/

/* the pattern seed of the peer -> library bytes of c */
uint32_t in_seed(const lconn_t *c);

/* The peer sends up to n pattern bytes to the library end (non-blocking). */
void peer_send(lconn_t *c, size_t n);

/* sock_read on c (one reader at a time per connection): what arrives must
 * be the next bytes the peer sent. */
void lib_read(lconn_t *c, size_t n);

/* ---- end of run ---------------------------------------------------------------*/

/* count_fds() once it is back to `expect`, or after `ms`: a graceful close
 * lingers (the library keeps the fd until the peer has closed its side, see
 * README "Lingering close"), so the count settles a little after the last
 * peer is closed. */
int count_fds_settled(int expect, int ms);

/* Prints the first open fds above `from` (diagnostics for fd leaks). */
void list_fds(int from);

/* Closes (gracefully) every connection still open, and waits until the
 * library reported every close and every peer saw the end of its stream. */
int close_all_and_wait(int ms);

/* What was accepted compared with what was received, for a connection that
 * is closed, whose peer saw the end of the stream, and that no writer will
 * write to any more. */
void verify_one(lconn_t *c, int nwriters);

/* The final comparison of what was accepted with what was received. */
void verify_all(int nwriters);

/* Verifies and frees a connection nobody can reach any more: closed
 * (reactor_on_close ran), its peer done, out of every slot, and every
 * writer has started a new operation since (stress.c makes sure). Returns
 * 0 when it is not finished yet. */
int reg_retire(lconn_t *c, int nwriters);

/* Frees the registry at the end (valgrind's leak check sees the rest). */
void reg_free(void);

/* Checks that every pool packet is back: all of them can be checked out
 * (in a helper thread, bounded in time). */
void check_pool_whole(int ms);

/* Environment knobs: integer with a default. */
long env_long(const char *name, long dflt);

#endif /* LIBSOCK_STRESS_COMMON_H */
