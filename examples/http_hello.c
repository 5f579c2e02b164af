/*
 * http_hello -- an HTTP/1.1 keep-alive server on libsock and a small epoll
 * loop (loop.c).
 *
 *   http_hello [-a address] [-p port] [-t idle_seconds] [folder]
 *
 * GET / serves the folder's index.html, or answers "Hello World!" when it
 * has none. Any other path is a file of `folder` (default "."), sent with
 * sock_sendfile(); a directory serves its index.html. Missing files get 404; paths that would leave the folder
 * (".." segments, also percent-encoded, or symbolic links pointing out)
 * get 403. Pipelined requests are answered in order; a connection stops
 * being read while more than PAUSE_ABOVE bytes of its answers wait in the
 * queue (backpressure, measured with the sock_pending_bytes extension). Idle
 * connections are closed after `idle_seconds` (default 10), tracked through
 * sock_touch. Port 0 picks a free port; the URL is printed on stdout.
 * SIGINT/SIGTERM stop the server cleanly (exit status 0).
 */
#define _GNU_SOURCE
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

#define HEAD_MAX 8192 /* request line + headers */
#define PATH_MAX_LEN 4096
/* Stop reading a connection while more than this waits in its queue. Not 0:
 * a small answer is often still queued right after sock_write (the flush
 * may run later, as an async_run task), and pausing for it would cost a
 * resume and one more read per request. */
#define PAUSE_ABOVE (64 * 1024)

typedef struct {
  size_t start, len; /* unparsed bytes: buf[start..len) */
  uint64_t skip;     /* request body bytes still to discard */
  char buf[HEAD_MAX];
} http_s;

static int root_fd = -1;
static char root_real[PATH_MAX];
static size_t root_len;
static int use_openat2 = 1;

/* ---- small helpers ------------------------------------------------------ */

/* "Date: ..." for the current second, formatted once per second. */
static const char *http_date(void) {
  static char line[64];
  static time_t cached = -1;
  time_t now = time(NULL);
  if (now != cached) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(line, sizeof line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    cached = now;
  }
  return line;
}

static const char *mime_type(const char *path) {
  static const struct {
    const char *ext, *type;
  } types[] = {
      {".html", "text/html; charset=utf-8"},
      {".htm", "text/html; charset=utf-8"},
      {".txt", "text/plain; charset=utf-8"},
      {".css", "text/css"},
      {".js", "text/javascript"},
      {".json", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".ico", "image/x-icon"},
      {".pdf", "application/pdf"},
      {".wasm", "application/wasm"},
  };
  const char *dot = strrchr(path, '.');
  const char *slash = strrchr(path, '/');
  if (dot && (!slash || dot > slash))
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
      if (!strcasecmp(dot, types[i].ext))
        return types[i].type;
  return "application/octet-stream";
}

static const char *reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 414: return "URI Too Long";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 505: return "HTTP Version Not Supported";
  default: return "Error";
  }
}

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* Percent-decodes the path of `target` (query and fragment dropped) and
 * normalises it into `out` as a path relative to the folder: "" for "/",
 * "a/b" for "/a//./b". Returns 0, or the HTTP status refusing it. */
static int relative_path(const char *target, size_t tlen, char *out,
                         size_t outsz) {
  char dec[PATH_MAX_LEN];
  size_t n = 0;
  if (tlen == 0 || target[0] != '/')
    return 400;
  for (size_t i = 0; i < tlen && target[i] != '?' && target[i] != '#'; i++) {
    int ch = (unsigned char)target[i];
    if (ch == '%') {
      int hi = i + 2 < tlen ? hexval(target[i + 1]) : -1;
      int lo = i + 2 < tlen ? hexval(target[i + 2]) : -1;
      if (hi < 0 || lo < 0)
        return 400;
      ch = hi * 16 + lo;
      i += 2;
    }
    if (ch == 0)
      return 400;
    if (n + 1 >= sizeof dec)
      return 414;
    dec[n++] = (char)ch;
  }
  dec[n] = 0;
  /* rebuild segment by segment: "" and "." vanish, ".." is refused */
  size_t o = 0;
  for (char *seg = dec, *end; *seg; seg = end) {
    while (*seg == '/')
      seg++;
    end = seg + strcspn(seg, "/");
    size_t sl = (size_t)(end - seg);
    if (sl == 0 || (sl == 1 && seg[0] == '.'))
      continue;
    if (sl == 2 && seg[0] == '.' && seg[1] == '.')
      return 403;
    if (o + sl + 2 >= outsz)
      return 414;
    if (o)
      out[o++] = '/';
    memcpy(out + o, seg, sl);
    o += sl;
  }
  out[o] = 0;
  return 0;
}

/* Opens `rel` for reading, refusing anything that resolves outside the
 * folder (symbolic links included): openat2(RESOLVE_BENEATH) where the
 * kernel has it, otherwise realpath() and a prefix check, then O_NOFOLLOW. */
static int open_beneath(const char *rel) {
#ifdef SYS_openat2
  if (use_openat2) {
    struct open_how how = {
        .flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, root_fd, rel, &how, sizeof how);
    if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
      return fd;
    use_openat2 = 0; /* old kernel, or a seccomp filter refuses it */
  }
#endif
  char full[PATH_MAX], real[PATH_MAX];
  if (snprintf(full, sizeof full, "%s/%s", root_real, rel) >= (int)sizeof full) {
    errno = ENAMETOOLONG;
    return -1;
  }
  if (!realpath(full, real))
    return -1;
  if (root_len > 1 && (strncmp(real, root_real, root_len) != 0 ||
                       (real[root_len] != '/' && real[root_len] != 0))) {
    errno = EXDEV;
    return -1;
  }
  return open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
}

/* ---- answers ------------------------------------------------------------ */

/* Whether the folder has an index.html (for GET /), looked up at every
 * request: files may come and go while the server runs. */
static int has_index(void) {
  int fd = open_beneath("index.html");
  if (fd < 0)
    return 0;
  close(fd);
  return 1;
}

/* Queues a complete answer with a short text body. */
static int answer_text(intptr_t uuid, int status, const char *body, int keep,
                       int head_only) {
  char msg[512];
  size_t blen = strlen(body);
  int n = snprintf(msg, sizeof msg,
                   "HTTP/1.1 %d %s\r\n%sServer: libsock-rs-http_hello\r\n"
                   "Content-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: %zu\r\n%s%s\r\n%s",
                   status, reason(status), http_date(), blen,
                   status == 405 ? "Allow: GET, HEAD\r\n" : "",
                   keep ? "" : "Connection: close\r\n", head_only ? "" : body);
  return sock_write(uuid, msg, (size_t)n);
}

/* Answers a file request. Returns 0, or -1 when the connection is gone. */
static int answer_file(intptr_t uuid, const char *rel, int keep,
                       int head_only) {
  char path[PATH_MAX_LEN + 16];
  snprintf(path, sizeof path, "%s", rel);
  int fd = open_beneath(path);
  struct stat st;
  if (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    close(fd);
    snprintf(path, sizeof path, "%s/index.html", rel);
    fd = open_beneath(path);
  }
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    int e = errno;
    if (fd >= 0) {
      close(fd);
      e = ENOENT; /* not a regular file (device, fifo, socket) */
    }
    int status = (e == ENOENT || e == ENOTDIR || e == ENAMETOOLONG) ? 404
                 : (e == EXDEV || e == ELOOP || e == EACCES || e == EPERM)
                     ? 403
                     : 500;
    const char *body = status == 404   ? "404 Not Found\n"
                       : status == 403 ? "403 Forbidden\n"
                                       : "500 Internal Server Error\n";
    return answer_text(uuid, status, body, keep, head_only);
  }
  char hdr[512];
  int n = snprintf(hdr, sizeof hdr,
                   "HTTP/1.1 200 OK\r\n%sServer: libsock-rs-http_hello\r\n"
                   "Content-Type: %s\r\nContent-Length: %lld\r\n%s\r\n",
                   http_date(), mime_type(path), (long long)st.st_size,
                   keep ? "" : "Connection: close\r\n");
  if (sock_write(uuid, hdr, (size_t)n) != 0) {
    close(fd);
    return -1;
  }
  if (head_only || st.st_size == 0) {
    close(fd);
    return 0;
  }
  /* the library sends it (sendfile), then closes fd */
  return sock_sendfile(uuid, fd, 0, (size_t)st.st_size) == 0 ? 0 : -1;
}

/* Does the comma-separated header value contain `token`? */
static int has_token(const char *v, size_t vl, const char *token) {
  size_t tl = strlen(token);
  for (size_t i = 0; i < vl;) {
    while (i < vl && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
      i++;
    size_t s = i;
    while (i < vl && v[i] != ',')
      i++;
    size_t e = i;
    while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
      e--;
    if (e - s == tl && !strncasecmp(v + s, token, tl))
      return 1;
  }
  return 0;
}

/* Answers one request whose head is buf[0..hlen) (ending in CRLFCRLF).
 * Returns 0 to go on with the connection, 1 when it is closing. */
static int handle(loop_conn_s *c, http_s *h, const char *buf, size_t hlen) {
  const char *end = buf + hlen;
  const char *eol = memchr(buf, '\r', hlen);
  const char *sp1 = memchr(buf, ' ', (size_t)(eol - buf));
  const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
  int keep = 0, head_only = 0, status = 0;
  if (!sp1 || !sp2 || eol - sp2 != 9 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0) {
    status = 400;
  } else if (sp2[8] == '1') {
    keep = 1;
  } else if (sp2[8] != '0') {
    status = 505;
  }
  int http10 = status == 0 && sp2[8] == '0';
  /* headers */
  uint64_t body = 0;
  for (const char *l = eol + 2; status == 0 && l < end - 2;) {
    const char *le = memchr(l, '\r', (size_t)(end - l));
    const char *colon = memchr(l, ':', (size_t)(le - l));
    if (!colon || colon == l || *l == ' ' || *l == '\t' || le[1] != '\n') {
      status = 400;
      break;
    }
    const char *v = colon + 1;
    while (v < le && (*v == ' ' || *v == '\t'))
      v++;
    size_t nl = (size_t)(colon - l), vl = (size_t)(le - v);
    if (nl == 10 && !strncasecmp(l, "connection", 10)) {
      if (has_token(v, vl, "close"))
        keep = 0;
      else if (http10 && has_token(v, vl, "keep-alive"))
        keep = 1;
    } else if (nl == 14 && !strncasecmp(l, "content-length", 14)) {
      body = 0;
      if (vl == 0)
        status = 400;
      for (size_t i = 0; i < vl && status == 0; i++) {
        if (v[i] < '0' || v[i] > '9' || body > UINT64_MAX / 10 - 10)
          status = 400;
        else
          body = body * 10 + (uint64_t)(v[i] - '0');
      }
    } else if (nl == 17 && !strncasecmp(l, "transfer-encoding", 17)) {
      status = 501; /* request bodies in chunks: not supported */
    }
    l = le + 2;
  }
  char rel[PATH_MAX_LEN];
  if (status == 0) {
    size_t mlen = (size_t)(sp1 - buf);
    if (mlen == 4 && !memcmp(buf, "HEAD", 4))
      head_only = 1;
    else if (!(mlen == 3 && !memcmp(buf, "GET", 3)))
      status = 405;
    if (status == 0)
      status = relative_path(sp1 + 1, (size_t)(sp2 - sp1 - 1), rel, sizeof rel);
  }
  if (status != 0 && status != 405)
    keep = 0; /* the stream may be out of sync: close after answering */
  h->skip = body;
  int r;
  if (status == 405) {
    r = answer_text(c->uuid, 405, "405 Method Not Allowed\n", keep, 0);
  } else if (status) {
    char text[64];
    snprintf(text, sizeof text, "%d %s\n", status, reason(status));
    r = answer_text(c->uuid, status, text, keep, head_only);
  } else if (rel[0] == 0 && !has_index()) {
    r = answer_text(c->uuid, 200, "Hello World!", keep, head_only);
  } else if (rel[0] == 0) {
    r = answer_file(c->uuid, "index.html", keep, head_only);
  } else {
    r = answer_file(c->uuid, rel, keep, head_only);
  }
  if (r != 0)
    return 1;
  if (!keep) {
    sock_close(c->uuid); /* once the answer is sent */
    return 1;
  }
  return 0;
}

/* Answers every complete request buffered, in order. Returns 0 when more
 * input is wanted, 1 to stop reading (closing, or paused for backpressure). */
static int serve_buffered(loop_conn_s *c, http_s *h) {
  for (;;) {
    if (h->skip) {
      size_t k = h->len - h->start;
      if (k > h->skip)
        k = (size_t)h->skip;
      h->start += k;
      h->skip -= k;
      if (h->skip)
        break;
    }
    char *p = h->buf + h->start;
    size_t avail = h->len - h->start;
    char *e = avail >= 4 ? memmem(p, avail, "\r\n\r\n", 4) : NULL;
    if (!e) {
      if (h->start == 0 && h->len == sizeof h->buf) {
        answer_text(c->uuid, 431, "431 Request Header Fields Too Large\n", 0,
                    0);
        sock_close(c->uuid);
        return 1;
      }
      break;
    }
    size_t hlen = (size_t)(e - p) + 4;
    h->start += hlen;
    if (handle(c, h, p, hlen))
      return 1;
    if (sock_pending_bytes(c->uuid) > PAUSE_ABOVE) {
      /* the client is not reading as fast as it asks: wait for the queue */
      loop_pause(c);
      return 1;
    }
  }
  if (h->start == h->len) {
    h->start = h->len = 0;
  } else if (h->start) {
    memmove(h->buf, h->buf + h->start, h->len - h->start);
    h->len -= h->start;
    h->start = 0;
  }
  return 0;
}

static void on_data(loop_conn_s *c) {
  http_s *h = loop_udata(c);
  for (;;) {
    if (serve_buffered(c, h))
      return;
    size_t room = sizeof h->buf - h->len;
    ssize_t n = sock_read(c->uuid, h->buf + h->len, room);
    if (n <= 0)
      return; /* 0: nothing more now; -1: closed (on_close ran) */
    h->len += (size_t)n;
    if ((size_t)n < room) {
      /* a short read emptied the socket: epoll (edge-triggered) reports
       * the next bytes, no need for a read that would say EAGAIN */
      serve_buffered(c, h);
      return;
    }
  }
}

static void usage(const char *prog) {
  fprintf(stderr,
          "usage: %s [-a address] [-p port] [-t idle_seconds] [folder]\n"
          "  defaults: -a 127.0.0.1 -p 3000 -t 10, folder \".\"; -p 0 picks "
          "a free port\n",
          prog);
  exit(2);
}

int main(int argc, char **argv) {
  const char *address = "127.0.0.1", *port = "3000", *folder = ".";
  double idle = 10;
  int opt;
  while ((opt = getopt(argc, argv, "a:p:t:h")) != -1) {
    switch (opt) {
    case 'a': address = optarg; break;
    case 'p': port = optarg; break;
    case 't': idle = atof(optarg); break;
    default: usage(argv[0]);
    }
  }
  if (optind < argc)
    folder = argv[optind++];
  if (optind < argc || idle < 0)
    usage(argv[0]);
  root_fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0 || !realpath(folder, root_real)) {
    fprintf(stderr, "http_hello: cannot open folder %s: %s\n", folder,
            strerror(errno));
    return 1;
  }
  root_len = strlen(root_real);

  int bound = 0;
  intptr_t srv = loop_listen(address, port, &bound);
  if (srv == -1) {
    fprintf(stderr, "http_hello: cannot listen on %s:%s: %s\n", address, port,
            strerror(errno));
    return 1;
  }
  int v6 = strchr(address, ':') != NULL;
  printf("http_hello: serving %s at http://%s%s%s:%d/ (Ctrl-C to stop)\n",
         root_real, v6 ? "[" : "", address, v6 ? "]" : "", bound);
  fflush(stdout);

  loop_handler_s handler = {.udata_size = sizeof(http_s), .on_data = on_data};
  int r = loop_run(srv, &handler, (int)(idle * 1000));
  close(root_fd);
  printf("http_hello: stopped\n");
  return r == 0 ? 0 : 1;
}
