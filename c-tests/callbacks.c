/*
 * callbacks.c -- the record of the library's callbacks kept by the C tests
 * that define TEST_DEFINE_CALLBACKS (declared in callbacks.h). It defines
 * none of the library's symbols: a program that calls reactor_remove
 * without defining it must still get the library's default, so the
 * definitions stay in the program (util.h).
 */
#include "callbacks.h"

#include <fcntl.h>
#include <pthread.h>

#include "libsock.h"

#define CB_MAX_EVENTS 65536
typedef struct {
  char kind; /* 'R' reactor_remove, 'C' reactor_on_close */
  intptr_t uuid;
  int fd_open; /* at the time of the call: was the uuid's fd still open? */
} cb_event_t;

static cb_event_t cb_events[CB_MAX_EVENTS];
static atomic_int cb_nevents;
atomic_int cb_overflow;
static pthread_mutex_t cb_lock = PTHREAD_MUTEX_INITIALIZER;
void (*cb_on_close_extra)(intptr_t uuid);
void (*cb_remove_extra)(intptr_t uuid);
void (*cb_touch_extra)(intptr_t uuid);

void cb_record(char kind, intptr_t uuid) {
  int fd = sock_uuid2fd(uuid);
  int open = fd >= 0 && fcntl(fd, F_GETFD) != -1;
  pthread_mutex_lock(&cb_lock);
  int n = atomic_load(&cb_nevents);
  if (n < CB_MAX_EVENTS) {
    cb_events[n].kind = kind;
    cb_events[n].uuid = uuid;
    cb_events[n].fd_open = open;
    atomic_store(&cb_nevents, n + 1);
  } else {
    atomic_store(&cb_overflow, 1);
  }
  pthread_mutex_unlock(&cb_lock);
}

int cb_count(char kind, intptr_t uuid) {
  int c = 0;
  pthread_mutex_lock(&cb_lock);
  int n = atomic_load(&cb_nevents);
  for (int i = 0; i < n; i++)
    if (cb_events[i].kind == kind && cb_events[i].uuid == uuid)
      c++;
  pthread_mutex_unlock(&cb_lock);
  return c;
}
int close_count(intptr_t uuid) { return cb_count('C', uuid); }
int remove_count(intptr_t uuid) { return cb_count('R', uuid); }
int total_close_events(void) {
  int c = 0;
  pthread_mutex_lock(&cb_lock);
  int n = atomic_load(&cb_nevents);
  for (int i = 0; i < n; i++)
    c += cb_events[i].kind == 'C';
  pthread_mutex_unlock(&cb_lock);
  return c;
}
int remove_before_close(intptr_t uuid) {
  int r = -1, c = -1;
  pthread_mutex_lock(&cb_lock);
  int n = atomic_load(&cb_nevents);
  for (int i = 0; i < n; i++) {
    if (cb_events[i].uuid != uuid)
      continue;
    if (cb_events[i].kind == 'R' && r < 0)
      r = i;
    if (cb_events[i].kind == 'C' && c < 0)
      c = i;
  }
  pthread_mutex_unlock(&cb_lock);
  return r >= 0 && c >= 0 && r < c;
}
int close_saw_fd_open(intptr_t uuid) {
  int res = -1;
  pthread_mutex_lock(&cb_lock);
  int n = atomic_load(&cb_nevents);
  for (int i = 0; i < n && res < 0; i++)
    if (cb_events[i].kind == 'C' && cb_events[i].uuid == uuid)
      res = cb_events[i].fd_open;
  pthread_mutex_unlock(&cb_lock);
  return res;
}

/* sock_touch: per-uuid counters */
#define TOUCH_SLOTS 4096
static struct {
  intptr_t uuid;
  long count;
  int used;
} touch_tab[TOUCH_SLOTS];
static pthread_mutex_t touch_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_long touch_total;

void touch_record(intptr_t uuid) {
  atomic_fetch_add(&touch_total, 1);
  pthread_mutex_lock(&touch_lock);
  size_t h = ((uint64_t)uuid * 0x9E3779B97F4A7C15ull) >> 52;
  for (size_t i = 0; i < TOUCH_SLOTS; i++) {
    size_t k = (h + i) % TOUCH_SLOTS;
    if (!touch_tab[k].used) {
      touch_tab[k].used = 1;
      touch_tab[k].uuid = uuid;
      touch_tab[k].count = 1;
      break;
    }
    if (touch_tab[k].uuid == uuid) {
      touch_tab[k].count++;
      break;
    }
  }
  pthread_mutex_unlock(&touch_lock);
}

long touch_count(intptr_t uuid) {
  long c = 0;
  pthread_mutex_lock(&touch_lock);
  size_t h = ((uint64_t)uuid * 0x9E3779B97F4A7C15ull) >> 52;
  for (size_t i = 0; i < TOUCH_SLOTS; i++) {
    size_t k = (h + i) % TOUCH_SLOTS;
    if (!touch_tab[k].used)
      break;
    if (touch_tab[k].uuid == uuid) {
      c = touch_tab[k].count;
      break;
    }
  }
  pthread_mutex_unlock(&touch_lock);
  return c;
}
