/*
 * harness.c -- the runner of the C tests' framework (declared in harness.h):
 * fork per test, watchdog, PASS/FAIL/SKIP lines, and the state CHECK and
 * friends record into. One copy per program, shared with the helpers
 * (util.c) whose checks count for the running test.
 */
#include "harness.h"

#define H_EXIT_PASS 0
#define H_EXIT_FAIL 1
#define H_EXIT_TIMEOUT 3
#define H_EXIT_SKIP 77

const char *h_prog = "test";
const char *h_current = "";
atomic_int h_cur_failed;
static atomic_int h_cur_skipped;
static int h_npass, h_nfail, h_nskip;
static int h_timeout = 60;
static int h_nofork;
static int h_argc;
static char **h_argv;
static volatile pid_t h_child;
/* Why the current test skipped: shared with its forked child (MAP_SHARED),
 * so the parent's SKIP line can say it. */
#define H_WHY_MAX 256
static char *h_skip_why;

void h_fail_at(const char *file, int line, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  fprintf(stderr, "  %s:%d: [%s/%s] %s\n", file, line, h_prog, h_current, msg);
  fflush(stderr);
  atomic_store(&h_cur_failed, 1);
}

void h_note_at(const char *file, int line, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  fprintf(stderr, "  %s:%d: [%s/%s] note: %s\n", file, line, h_prog, h_current,
          msg);
  fflush(stderr);
}

void h_skip_at(const char *file, int line, const char *fmt, ...) {
  char msg[H_WHY_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  h_note_at(file, line, "SKIP: %s", msg);
  if (h_skip_why)
    snprintf(h_skip_why, H_WHY_MAX, "%s", msg);
  atomic_store(&h_cur_skipped, 1);
}

/* ---- runner ------------------------------------------------------------ */

static void h_child_alarm(int sig) {
  (void)sig;
  static const char m[] = "  watchdog: test timed out\n";
  ssize_t r = write(2, m, sizeof(m) - 1);
  (void)r;
  _exit(H_EXIT_TIMEOUT);
}

static void h_parent_alarm(int sig) {
  (void)sig;
  if (h_child > 0)
    kill(h_child, SIGKILL);
}

static void h_inproc_alarm(int sig) {
  (void)sig;
  char m[512];
  int n = snprintf(m, sizeof(m), "FAIL %s/%s (timeout)\n", h_prog, h_current);
  ssize_t r = write(1, m, (size_t)n);
  (void)r;
  _exit(H_EXIT_FAIL);
}

void h_init(int argc, char **argv) {
  const char *p = argv[0] ? strrchr(argv[0], '/') : NULL;
  h_prog = p ? p + 1 : (argv[0] ? argv[0] : "test");
  h_argc = argc;
  h_argv = argv;
  const char *e = getenv("HARNESS_NOFORK");
  h_nofork = e && *e && *e != '0';
  e = getenv("HARNESS_TIMEOUT");
  if (e && atoi(e) > 0)
    h_timeout = atoi(e);
  setvbuf(stdout, NULL, _IOLBF, 0);
}

static int h_selected(const char *name) {
  if (h_argc <= 1)
    return 1;
  for (int i = 1; i < h_argc; i++)
    if (!strcmp(h_argv[i], name))
      return 1;
  return 0;
}

static void h_result(const char *name, int code, const char *why) {
  if (code == H_EXIT_PASS) {
    h_npass++;
    printf("PASS %s/%s\n", h_prog, name);
  } else if (code == H_EXIT_SKIP) {
    h_nskip++;
    printf("SKIP %s/%s (%s)\n", h_prog, name,
           h_skip_why && h_skip_why[0] ? h_skip_why : "no reason given");
  } else {
    h_nfail++;
    if (why && *why)
      printf("FAIL %s/%s (%s)\n", h_prog, name, why);
    else
      printf("FAIL %s/%s\n", h_prog, name);
  }
  fflush(stdout);
}

void h_run(const char *name, void (*fn)(void)) {
  if (!h_selected(name))
    return;
  h_current = name;
  atomic_store(&h_cur_failed, 0);
  atomic_store(&h_cur_skipped, 0);
  if (!h_skip_why) {
    void *m = mmap(NULL, H_WHY_MAX, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    h_skip_why = m == MAP_FAILED ? NULL : m;
  }
  if (h_skip_why)
    h_skip_why[0] = 0;
  fflush(stdout);
  fflush(stderr);
  if (h_nofork) {
    signal(SIGALRM, h_inproc_alarm);
    alarm((unsigned)h_timeout);
    fn();
    alarm(0);
    signal(SIGALRM, SIG_DFL);
    h_result(name,
             atomic_load(&h_cur_failed)    ? H_EXIT_FAIL
             : atomic_load(&h_cur_skipped) ? H_EXIT_SKIP
                                           : H_EXIT_PASS,
             NULL);
    return;
  }
  pid_t pid = fork();
  if (pid < 0) {
    h_result(name, H_EXIT_FAIL, "fork failed");
    return;
  }
  if (pid == 0) {
    signal(SIGALRM, h_child_alarm);
    alarm((unsigned)h_timeout);
    fn();
    alarm(0);
    fflush(stdout);
    fflush(stderr);
    exit(atomic_load(&h_cur_failed)    ? H_EXIT_FAIL
         : atomic_load(&h_cur_skipped) ? H_EXIT_SKIP
                                       : H_EXIT_PASS);
  }
  h_child = pid;
  struct sigaction sa, old;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = h_parent_alarm;
  sigaction(SIGALRM, &sa, &old);
  alarm((unsigned)h_timeout + 15);
  int status = 0;
  pid_t w;
  do {
    w = waitpid(pid, &status, 0);
  } while (w < 0 && errno == EINTR);
  alarm(0);
  sigaction(SIGALRM, &old, NULL);
  h_child = 0;
  char why[128] = "";
  int code;
  if (w < 0) {
    code = H_EXIT_FAIL;
    snprintf(why, sizeof(why), "waitpid failed");
  } else if (WIFEXITED(status)) {
    code = WEXITSTATUS(status);
    if (code == H_EXIT_TIMEOUT)
      snprintf(why, sizeof(why), "timeout after %ds", h_timeout);
    else if (code != H_EXIT_PASS && code != H_EXIT_SKIP && code != H_EXIT_FAIL)
      snprintf(why, sizeof(why), "exit status %d", code);
    if (code != H_EXIT_PASS && code != H_EXIT_SKIP)
      code = H_EXIT_FAIL;
  } else if (WIFSIGNALED(status)) {
    code = H_EXIT_FAIL;
    snprintf(why, sizeof(why), "killed by signal %d (%s)", WTERMSIG(status),
             strsignal(WTERMSIG(status)));
  } else {
    code = H_EXIT_FAIL;
    snprintf(why, sizeof(why), "unknown wait status %d", status);
  }
  h_result(name, code, why);
}

int h_end(void) {
  fprintf(stderr, "  %s: %d passed, %d failed, %d skipped\n", h_prog, h_npass,
          h_nfail, h_nskip);
  return h_nfail ? 1 : 0;
}

int h_deadline_ms(void) { return h_timeout * 1000 / 2; }
