/*
 * An echo server on a real epoll loop (issue 3), written as an event-loop
 * library on top of libsock would be: its reactor_on_close frees the
 * per-connection state, its reactor_remove drops the fd from epoll, and its
 * sock_touch pushes back each connection's idle timeout. Clients close from
 * either side; idle ones are closed by the server, busy ones survive.
 */
#include <sys/epoll.h>

#include "util.h"

#define MAXFD 4096
/* Long against the busy client's pace (IDLE_MS / 10), so only a stall of
 * most of a second could expire it on a loaded machine. */
#define IDLE_MS 1000

typedef struct {
  intptr_t uuid;
  int64_t last_active;
  size_t echoed;
} state_t;

static state_t *states[MAXFD];
static pthread_mutex_t st_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int allocated, freed, removed, touched, timeouts;
static int epfd = -1;

static state_t *state_of(intptr_t uuid) {
  int fd = sock_uuid2fd(uuid);
  if (fd < 0 || fd >= MAXFD || !states[fd] || states[fd]->uuid != uuid)
    return NULL;
  return states[fd];
}

void reactor_on_close(intptr_t uuid) {
  pthread_mutex_lock(&st_lock);
  state_t *s = state_of(uuid);
  if (s) {
    states[sock_uuid2fd(uuid)] = NULL;
    free(s);
    atomic_fetch_add(&freed, 1);
  }
  pthread_mutex_unlock(&st_lock);
}

int reactor_remove(intptr_t uuid) {
  /* the fd is already closed (the kernel dropped it from epoll); a loop
   * that tracks fds forgets it here */
  (void)uuid;
  atomic_fetch_add(&removed, 1);
  return 0;
}

void sock_touch(intptr_t uuid) {
  pthread_mutex_lock(&st_lock);
  state_t *s = state_of(uuid);
  if (s)
    s->last_active = now_ms();
  pthread_mutex_unlock(&st_lock);
  atomic_fetch_add(&touched, 1);
}

static atomic_int stop;
/* Idle timeouts start once every client has had its first round: 40
 * rounds one after another may take longer than IDLE_MS on a loaded
 * machine, and a client waiting for its turn is not idle. */
static atomic_int timeouts_armed;
static intptr_t srv;

static void serve_readable(intptr_t uuid) {
  char buf[4096];
  for (;;) {
    ssize_t n = sock_read(uuid, buf, sizeof buf);
    if (n <= 0)
      return; /* 0: nothing more now; -1: closed (callbacks ran) */
    if (sock_write(uuid, buf, (size_t)n) != 0)
      return;
    pthread_mutex_lock(&st_lock);
    state_t *s = state_of(uuid);
    if (s)
      s->echoed += (size_t)n;
    pthread_mutex_unlock(&st_lock);
  }
}

static void *server(void *arg) {
  (void)arg;
  struct epoll_event ev = {.events = EPOLLIN}, evs[64];
  ev.data.u64 = (uint64_t)srv;
  epoll_ctl(epfd, EPOLL_CTL_ADD, sock_uuid2fd(srv), &ev);
  while (!atomic_load(&stop)) {
    int n = epoll_wait(epfd, evs, 64, 20);
    for (int i = 0; i < n; i++) {
      intptr_t uuid = (intptr_t)evs[i].data.u64;
      if (uuid == srv) {
        intptr_t c;
        while ((c = sock_accept(srv)) != -1) {
          int fd = sock_uuid2fd(c);
          state_t *s = calloc(1, sizeof *s);
          s->uuid = c;
          s->last_active = now_ms();
          pthread_mutex_lock(&st_lock);
          states[fd] = s;
          pthread_mutex_unlock(&st_lock);
          atomic_fetch_add(&allocated, 1);
          struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLET};
          e.data.u64 = (uint64_t)c;
          epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e);
        }
        continue;
      }
      if (evs[i].events & EPOLLOUT)
        sock_flush(uuid);
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        serve_readable(uuid);
    }
    /* idle timeouts, driven by sock_touch */
    if (!atomic_load(&timeouts_armed))
      continue;
    intptr_t expired[MAXFD];
    int ne = 0;
    int64_t now = now_ms();
    pthread_mutex_lock(&st_lock);
    for (int fd = 0; fd < MAXFD; fd++)
      if (states[fd] && now - states[fd]->last_active > IDLE_MS)
        expired[ne++] = states[fd]->uuid;
    pthread_mutex_unlock(&st_lock);
    for (int i = 0; i < ne; i++) {
      atomic_fetch_add(&timeouts, 1);
      sock_close(expired[i]); /* reactor_on_close frees the state */
    }
  }
  return NULL;
}

static int client_connect(const char *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int echo_round(int fd, size_t len, uint32_t seed) {
  uint8_t *out = malloc(len), *in = malloc(len);
  fill_pattern(out, len, 0, seed);
  int ok = raw_write_all(fd, out, len, 5000) == 0 &&
           raw_read_n(fd, in, len, 5000, NULL) == len && memcmp(in, out, len) == 0;
  free(out);
  free(in);
  return ok;
}

TEST(echo_server_with_idle_timeouts) {
  char port[16];
  REQUIRE(free_port(AF_INET, port) == 0);
  srv = sock_listen("127.0.0.1", port);
  REQUIRE(srv != -1);
  epfd = epoll_create1(0);
  REQUIRE(epfd >= 0);
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, server, NULL) == 0);

  enum { N = 40 };
  int fds[N];
  for (int i = 0; i < N; i++) {
    fds[i] = client_connect(port);
    REQUIRE(fds[i] >= 0);
  }
  /* many connections at once, data both small and larger than a packet */
  for (int i = 0; i < N; i++)
    CHECK(echo_round(fds[i], i % 2 ? 100 : 200000, (uint32_t)i));
  /* a third close from the client side (the server sees end of stream) */
  for (int i = 0; i < N / 3; i++) {
    close(fds[i]);
    fds[i] = -1;
  }
  /* one client stays busy beyond the idle timeout: sock_touch keeps it */
  atomic_store(&timeouts_armed, 1);
  int busy = fds[N - 1];
  int64_t until = now_ms() + 2 * IDLE_MS;
  while (now_ms() < until) {
    CHECK(echo_round(busy, 10, 99));
    wait_fd(-1, 0, IDLE_MS / 10); /* paced traffic, not synchronisation */
  }
  /* the idle ones were closed by the server: each sees EOF */
  for (int i = N / 3; i < N - 1; i++)
    CHECK_EQ(raw_expect_eof(fds[i], 5000), 1);
  CHECK(echo_round(busy, 1000, 5)); /* still served */
  close(busy);
  for (int i = N / 3; i < N - 1; i++)
    close(fds[i]);

  /* every connection's state is freed exactly once */
  int64_t end = now_ms() + 5000;
  while (atomic_load(&freed) < N && now_ms() < end)
    wait_fd(-1, 0, 10);
  atomic_store(&stop, 1);
  pthread_join(th, NULL);
  CHECK_EQ(atomic_load(&allocated), N);
  CHECK_EQ(atomic_load(&freed), N);
  CHECK_EQ(atomic_load(&removed), N);
  CHECK_GE(atomic_load(&timeouts), N - 1 - N / 3);
  CHECK_GT(atomic_load(&touched), N);
  sock_force_close(srv);
  close(epfd);
}

int main(int argc, char **argv) {
  HARNESS_INIT(argc, argv);
  RUN(echo_server_with_idle_timeouts);
  return HARNESS_END();
}
