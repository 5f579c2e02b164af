/*
 * harness.h -- a tiny test framework for the libsock C tests: the macros and
 * the runner's interface; the runner is harness.c, compiled once per run
 * (c-tests/run.sh) and linked into every program.
 *
 *   TEST(name) { CHECK(...); CHECK_EQ(a, b); REQUIRE(...); SKIP("why"); }
 *
 *   int main(int argc, char **argv) {
 *     HARNESS_INIT(argc, argv);
 *     RUN(name);
 *     ...
 *     return HARNESS_END();
 *   }
 *
 * Every test runs in its own forked child process (so a crash, a hang, or a
 * SIGPIPE in one test is reported as that test's failure and the other tests
 * still run, each with a fresh library state). A per-test alarm() watchdog
 * (HARNESS_TIMEOUT seconds, default 60) turns a hang into a failure.
 *
 * Output, one line per test on stdout:
 *   PASS <program>/<test>
 *   FAIL <program>/<test> [(reason)]
 *   SKIP <program>/<test> (reason)
 * Diagnostics go to stderr and are indented (they never start with PASS/FAIL).
 * The program exits non-zero when any test failed.
 *
 * Environment:
 *   HARNESS_NOFORK=1   run the tests in-process (for gdb); a failed CHECK
 *                      still continues, a crash ends the program.
 *   HARNESS_TIMEOUT=n  per-test watchdog in seconds.
 * Command line: any arguments are test names; only those tests run.
 */
#ifndef LIBSOCK_TEST_HARNESS_H
#define LIBSOCK_TEST_HARNESS_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the runner's state and functions (harness.c) --------------------- */

extern const char *h_prog;    /* the program's name (argv[0] without dirs) */
extern const char *h_current; /* the running test's name */
extern atomic_int h_cur_failed; /* the running test recorded a failure */

/* A failure of the running test at file:line (CHECK and friends call it). */
__attribute__((format(printf, 3, 4))) void
h_fail_at(const char *file, int line, const char *fmt, ...);
/* A diagnostic line on stderr (NOTE). */
__attribute__((format(printf, 3, 4))) void
h_note_at(const char *file, int line, const char *fmt, ...);
/* The running test skips, for this reason (SKIP). */
__attribute__((format(printf, 3, 4))) void
h_skip_at(const char *file, int line, const char *fmt, ...);
void h_init(int argc, char **argv);
void h_run(const char *name, void (*fn)(void));
int h_end(void);
/* Half of the per-test watchdog, in milliseconds: the longest a test's own
 * deadline may be (the watchdog grows under valgrind and DRD, so a test's
 * deadline grows with it and stays inside it). */
int h_deadline_ms(void);

/* ---- assertion macros -------------------------------------------------- */

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond))                                                               \
      h_fail_at(__FILE__, __LINE__, "CHECK(%s) failed", #cond);                \
  } while (0)

#define CHECK_MSG(cond, ...)                                                   \
  do {                                                                         \
    if (!(cond)) {                                                             \
      char h_m_[512];                                                          \
      snprintf(h_m_, sizeof(h_m_), __VA_ARGS__);                               \
      h_fail_at(__FILE__, __LINE__, "CHECK(%s) failed: %s", #cond, h_m_);      \
    }                                                                          \
  } while (0)

#define H_CMP_(a, b, op, ret)                                                  \
  do {                                                                         \
    long long h_a_ = (long long)(a), h_b_ = (long long)(b);                    \
    if (!(h_a_ op h_b_)) {                                                     \
      h_fail_at(__FILE__, __LINE__, "CHECK(%s %s %s) failed: %lld vs %lld",    \
                #a, #op, #b, h_a_, h_b_);                                      \
      ret;                                                                     \
    }                                                                          \
  } while (0)

#define CHECK_EQ(a, b) H_CMP_(a, b, ==, (void)0)
#define CHECK_NE(a, b) H_CMP_(a, b, !=, (void)0)
#define CHECK_GE(a, b) H_CMP_(a, b, >=, (void)0)
#define CHECK_GT(a, b) H_CMP_(a, b, >, (void)0)
#define CHECK_LE(a, b) H_CMP_(a, b, <=, (void)0)
#define CHECK_LT(a, b) H_CMP_(a, b, <, (void)0)

/* REQUIRE*: like CHECK*, but return from the (void) test function. */
#define REQUIRE(cond)                                                          \
  do {                                                                         \
    if (!(cond)) {                                                             \
      h_fail_at(__FILE__, __LINE__, "REQUIRE(%s) failed (errno=%d %s)", #cond, \
                errno, strerror(errno));                                       \
      return;                                                                  \
    }                                                                          \
  } while (0)
#define REQUIRE_EQ(a, b) H_CMP_(a, b, ==, return)
#define REQUIRE_NE(a, b) H_CMP_(a, b, !=, return)

#define NOTE(...) h_note_at(__FILE__, __LINE__, __VA_ARGS__)

/* SKIP("why", ...): the test cannot run here; the reason is printed on its
 * SKIP line. */
#define SKIP(...)                                                              \
  do {                                                                         \
    h_skip_at(__FILE__, __LINE__, __VA_ARGS__);                                \
    return;                                                                    \
  } while (0)

#define TEST(name) static void test_##name(void)
#define RUN(name) h_run(#name, test_##name)
#define HARNESS_INIT(argc, argv) h_init((argc), (argv))
#define HARNESS_END() h_end()

/* true when the current test already recorded a failure */
#define TEST_FAILED() (atomic_load(&h_cur_failed) != 0)

#endif /* LIBSOCK_TEST_HARNESS_H */
