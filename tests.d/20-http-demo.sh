#!/usr/bin/env bash
# The examples, checked from the outside as a user would (issue 5):
# http_hello with curl (a real HTTP client) and a raw pipelining client,
# the client example against it, echo with many concurrent clients, the
# demo's folder and make variables (issue 14). Loopback only; every wait is
# bounded.
#
# Prints one PASS/FAIL line per check; the last line is exactly
# "N passed, N failed"; exits non-zero when a check failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

passed=0
failed=0
pids=()
declare -A DRAIN # server name -> pid of the cat copying its output to the log
tmp=$(mktemp -d "${TMPDIR:-/tmp}/libsock-http-demo.XXXXXX")

cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

pass() { echo "PASS http-demo/$1"; passed=$((passed + 1)); }
fail() { echo "FAIL http-demo/$1${2:+: $2}"; failed=$((failed + 1)); }
finish() {
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
  exit
}

# ---- prerequisites -----------------------------------------------------------

if ! make --no-print-directory examples >"$tmp/build.log" 2>&1; then
  tail -n 30 "$tmp/build.log"
  fail build "make examples failed"
  finish
fi
pass build

# a second `make examples` (as every `make demo` runs it) relinks nothing:
# the library was rebuilt, but the programs load it at run time
if make --no-print-directory examples >"$tmp/build2.log" 2>&1 &&
  ! grep -q -- '-o build/examples/' "$tmp/build2.log"; then
  pass examples-not-relinked
else
  fail examples-not-relinked "$(grep -- '-o build/examples/' "$tmp/build2.log" | head -c 300)"
fi

# make demo PORT=n serves port n
if make -n --no-print-directory demo PORT=3999 2>/dev/null | grep -q 'http_hello -a [^ ]* -p 3999 '; then
  pass demo-port-variable
else
  fail demo-port-variable "make -n demo PORT=3999 does not run http_hello -p 3999"
fi

command -v curl >/dev/null 2>&1 || scripts/deps.sh # make test installed it already
PY=$(command -v python3 || true)
if ! command -v curl >/dev/null 2>&1; then
  fail prerequisites "curl is missing and could not be installed"
  finish
fi
if [[ -z $PY ]]; then
  fail prerequisites "python3 is missing (raw clients)"
  finish
fi

CURL=(curl -sS --noproxy '*' --max-time 60)

# ---- helpers -------------------------------------------------------------------

# start NAME PROGRAM ARGS...: runs the program in the background, waits (up to
# 10 s) for its first line of output, which names its port, and sets
# SRV_PID and SRV_PORT. The rest of its output goes to $tmp/NAME.log.
start() {
  local name=$1
  shift
  local fifo="$tmp/$name.fifo" line=
  mkfifo "$fifo"
  "$@" >"$fifo" 2>"$tmp/$name.err" &
  SRV_PID=$!
  pids+=("$SRV_PID")
  exec {rfd}<"$fifo"
  read -r -t 10 -u "$rfd" line
  echo "$line" >"$tmp/$name.log"
  cat <&"$rfd" >>"$tmp/$name.log" &
  DRAIN[$name]=$!
  exec {rfd}<&-
  SRV_PORT=$(sed -n 's/.*http:\/\/[^ ]*:\([0-9][0-9]*\)\/.*/\1/p; s/.* port \([0-9][0-9]*\) .*/\1/p' <<<"$line")
  [[ -n $SRV_PORT ]]
}

# stop NAME PID SIGNAL: sends the signal and checks the program exits with
# status 0 within 10 s, having printed "stopped".
stop() {
  local name=$1 pid=$2 sig=$3 rc
  kill "-$sig" "$pid"
  # wait for it, 10 s at most (an external waiter: a subshell watchdog would
  # inherit this script's EXIT trap if signalled early)
  timeout 10 tail --pid="$pid" -s 0.05 -f /dev/null || kill -KILL "$pid" 2>/dev/null
  wait "$pid"
  rc=$?
  wait "${DRAIN[$name]}" # the output is all in the log once the copy ends
  if [[ $rc -eq 0 ]] && grep -q stopped "$tmp/$name.log"; then
    pass "$name-stops-on-SIG$sig"
  else
    fail "$name-stops-on-SIG$sig" "exit status $rc; $(tr '\n' ' ' <"$tmp/$name.err" | head -c 300)"
  fi
}

# ---- the folder served ---------------------------------------------------------

www="$tmp/www"
mkdir -p "$www/sub" "$www/docs"
printf 'Hello World!' >"$tmp/expected-root"
printf 'a small file\n' >"$www/small.txt"
printf '<p>docs</p>\n' >"$www/docs/index.html"
head -c 10485760 /dev/urandom >"$www/big.bin"
big_sha=$(sha256sum <"$www/big.bin" | cut -d' ' -f1)
secret="TOP-SECRET-$RANDOM$RANDOM"
printf '%s\n' "$secret" >"$tmp/secret.txt" # outside the folder
ln -s ../secret.txt "$www/escape"          # a link pointing out of it
ln -s ../../secret.txt "$www/sub/escape2"

# ---- http_hello ----------------------------------------------------------------

if ! start http build/examples/http_hello -a 127.0.0.1 -p 0 -t 1 "$www"; then
  fail http-start "no URL printed: $(cat "$tmp/http.err")"
  finish
fi
pass http-start
HTTP_PID=$SRV_PID
url="http://127.0.0.1:$SRV_PORT"

# GET /
body=$("${CURL[@]}" -w '\n%{http_code}' "$url/")
if [[ $body == $'Hello World!\n200' ]]; then pass root; else fail root "got: $body"; fi

# a 10 MiB random file, byte-exact
"${CURL[@]}" -o "$tmp/big.dl" "$url/big.bin"
got=$(sha256sum <"$tmp/big.dl" 2>/dev/null | cut -d' ' -f1)
if [[ $got == "$big_sha" ]]; then pass big-file-sha256; else fail big-file-sha256 "sha256 $got, want $big_sha"; fi

# a small file, a folder's index.html
body=$("${CURL[@]}" "$url/small.txt")
if [[ $body == "a small file" ]]; then pass small-file; else fail small-file "got: $body"; fi
body=$("${CURL[@]}" "$url/docs/")
if [[ $body == "<p>docs</p>" ]]; then pass folder-index; else fail folder-index "got: $body"; fi

# a missing file
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' "$url/no-such-file.txt")
if [[ $code == 404 ]]; then pass missing-404; else fail missing-404 "status $code"; fi

# escapes from the folder: refused, and the secret never served
escape() {
  local name=$1 path=$2 code
  code=$("${CURL[@]}" --path-as-is -o "$tmp/esc.out" -w '%{http_code}' "$url$path")
  if [[ $code =~ ^4[0-9][0-9]$ ]] && ! grep -q "$secret" "$tmp/esc.out"; then
    pass "$name"
  else
    fail "$name" "GET $path: status $code"
  fi
}
escape escape-dotdot "/../secret.txt"
escape escape-dotdot-nested "/sub/../../secret.txt"
escape escape-encoded "/%2e%2e/secret.txt"
escape escape-encoded-upper "/%2E%2E%2Fsecret.txt"
escape escape-encoded-slash "/sub%2f..%2f..%2fsecret.txt"
escape escape-symlink "/escape"
escape escape-symlink-nested "/sub/escape2"

# keep-alive: two URLs in one curl call share one connection
"${CURL[@]}" -v -o /dev/null -o /dev/null -w '%{num_connects}\n' \
  "$url/" "$url/small.txt" >"$tmp/ka.out" 2>"$tmp/ka.err"
if grep -q 'Re-using existing connection' "$tmp/ka.err" &&
  [[ $(tr '\n' ' ' <"$tmp/ka.out") == "1 0 " ]]; then
  pass keep-alive-reuse
else
  fail keep-alive-reuse "connects: $(tr '\n' ' ' <"$tmp/ka.out")"
fi

# pipelining: four requests in one write (one of them the 10 MiB file),
# answers read back in order with a raw client
timeout 60 "$PY" - "$SRV_PORT" "$big_sha" >"$tmp/pipe.out" 2>&1 <<'EOF'
import hashlib, socket, sys
port, big_sha = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=30)
reqs = [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n"]
s.sendall(b"".join(reqs))
buf = b""
def fill():
    global buf
    d = s.recv(1 << 20)
    if not d:
        raise SystemExit("connection closed early")
    buf += d
answers = []
for _ in reqs:
    while b"\r\n\r\n" not in buf:
        fill()
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(l.split(":", 1)[1]) for l in lines[1:]
                  if l.lower().startswith("content-length:"))
    while len(buf) < length:
        fill()
    body, buf = buf[:length], buf[length:]
    answers.append((status, body))
want = [(200, b"Hello World!"), (200, None), (200, b"a small file\n"), (404, None)]
for i, ((st, body), (wst, wbody)) in enumerate(zip(answers, want)):
    if st != wst or (wbody is not None and body != wbody):
        raise SystemExit(f"answer {i}: status {st}, body {body[:40]!r}")
if hashlib.sha256(answers[1][1]).hexdigest() != big_sha:
    raise SystemExit("answer 1: the big file differs")
print("ok")
EOF
if [[ $(tail -n 1 "$tmp/pipe.out") == ok ]]; then pass pipelining-in-order; else fail pipelining-in-order "$(tail -n 3 "$tmp/pipe.out" | tr '\n' ' ')"; fi

# a small answer queued behind a large file, for a client that reads at its
# own pace: it must be sent once the file is, not left queued until the
# idle timeout closes the connection (then the next request would fail)
timeout 60 "$PY" - "$SRV_PORT" >"$tmp/after-big.out" 2>&1 <<'EOF'
import socket, sys, time
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=20)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s.sendall(b"GET /big.bin HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
buf = b""
while not buf.endswith(b"Hello World!"):
    d = s.recv(65536)
    if not d:
        raise SystemExit(f"closed after {len(buf)} bytes")
    buf += d
    time.sleep(0.002)  # a client slower than loopback
s.sendall(b"GET /small.txt HTTP/1.1\r\n\r\n")
buf = b""
while not buf.endswith(b"a small file\n"):
    d = s.recv(65536)
    if not d:
        raise SystemExit("the connection was closed: the answer after the "
                         "file waited for the idle timeout")
    buf += d
print("ok")
EOF
if [[ $(tail -n 1 "$tmp/after-big.out") == ok ]]; then pass answer-after-large-file-not-held; else fail answer-after-large-file-not-held "$(tail -n 2 "$tmp/after-big.out" | tr '\n' ' ')"; fi

# HEAD, Connection: close, an idle connection closed by the server (-t 1)
timeout 60 "$PY" - "$SRV_PORT" >"$tmp/misc.out" 2>&1 <<'EOF'
import socket, sys
port = int(sys.argv[1])
def conn():
    return socket.create_connection(("127.0.0.1", port), timeout=20)
def read_all(s):
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out
        out += d
# HEAD: headers only; then Connection: close ends the stream
s = conn()
s.sendall(b"HEAD /small.txt HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n")
out = read_all(s)
parts = out.split(b"\r\n\r\n")
if not (out.startswith(b"HTTP/1.1 200") and b"Content-Length: 13" in parts[0]
        and parts[1].startswith(b"HTTP/1.1 200") and out.endswith(b"Hello World!")):
    raise SystemExit(f"HEAD/close: {out[:300]!r}")
print("head-and-close ok")
# idle: the server closes a silent connection after its timeout (1 s)
s = conn()
if read_all(s) != b"":
    raise SystemExit("idle connection got data")
print("idle ok")
EOF
if grep -q 'head-and-close ok' "$tmp/misc.out"; then pass head-and-connection-close; else fail head-and-connection-close "$(tail -n 2 "$tmp/misc.out" | tr '\n' ' ')"; fi
if grep -q 'idle ok' "$tmp/misc.out"; then pass idle-timeout-closes; else fail idle-timeout-closes "$(tail -n 2 "$tmp/misc.out" | tr '\n' ' ')"; fi

# still serving after all that
body=$("${CURL[@]}" "$url/")
if [[ $body == "Hello World!" ]]; then pass still-serving; else fail still-serving "got: $body"; fi

# the client example (examples/client.c): connect, wait for writability,
# write the request, read the answer in an epoll loop, close
if timeout 30 build/examples/client -a 127.0.0.1 -p "$SRV_PORT" /small.txt \
  >"$tmp/client.out" 2>"$tmp/client.err" &&
  head -n 1 "$tmp/client.out" | grep -q '^HTTP/1.1 200 OK' &&
  [[ $(tail -c 13 "$tmp/client.out") == "a small file" ]]; then
  pass client-small-file
else
  fail client-small-file "$(head -c 300 "$tmp/client.out" "$tmp/client.err" | tr '\n' ' ')"
fi
# a 10 MiB answer, which the client reads as it arrives (edge-triggered)
timeout 60 build/examples/client -a 127.0.0.1 -p "$SRV_PORT" /big.bin >"$tmp/client-big.out" 2>"$tmp/client.err"
rc=$?
got=$("$PY" -c 'import hashlib, sys
d = open(sys.argv[1], "rb").read()
print(hashlib.sha256(d.split(b"\r\n\r\n", 1)[1]).hexdigest() if b"\r\n\r\n" in d else "no-header")' "$tmp/client-big.out")
if [[ $rc -eq 0 && $got == "$big_sha" ]]; then
  pass client-big-file-sha256
else
  fail client-big-file-sha256 "status $rc, body sha256 $got; $(head -c 200 "$tmp/client.err")"
fi
# nothing listening: the failed connection is reported, exit status 1
closed_port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
timeout 30 build/examples/client -a 127.0.0.1 -p "$closed_port" >"$tmp/client.out" 2>"$tmp/client.err"
rc=$?
if [[ $rc -eq 1 ]] && grep -q 'Connection refused' "$tmp/client.err"; then
  pass client-connection-refused
else
  fail client-connection-refused "status $rc; $(head -c 200 "$tmp/client.err")"
fi

stop http "$HTTP_PID" INT

# ---- the demo's folder (make demo-www): GET / is its index page ---------------

if ! make --no-print-directory demo-www >"$tmp/www.log" 2>&1; then
  fail demo-www "$(tail -n 5 "$tmp/www.log" | tr '\n' ' ')"
elif ! start demo build/examples/http_hello -a 127.0.0.1 -p 0 -t 1 build/demo-www; then
  fail demo-start "no URL printed: $(cat "$tmp/demo.err")"
else
  DEMO_PID=$SRV_PID
  body=$("${CURL[@]}" "http://127.0.0.1:$SRV_PORT/")
  if grep -q 'href="/hello.txt"' <<<"$body" && grep -q 'href="/big.bin"' <<<"$body" &&
    grep -q 'sock_sendfile' <<<"$body"; then
    pass demo-root-is-the-index-page
  else
    fail demo-root-is-the-index-page "got: $(head -c 200 <<<"$body")"
  fi
  body=$("${CURL[@]}" "http://127.0.0.1:$SRV_PORT/hello.txt")
  if [[ $body == "Hello from a file sent by libsock-rs." ]]; then pass demo-linked-file; else fail demo-linked-file "got: $body"; fi
  stop demo "$DEMO_PID" INT
fi

# ---- echo ----------------------------------------------------------------------

if ! start echo build/examples/echo -a 127.0.0.1 -p 0; then
  fail echo-start "no port printed: $(cat "$tmp/echo.err")"
  finish
fi
pass echo-start
ECHO_PID=$SRV_PID

# 200 clients at once, each sending 256 KiB of random bytes in pieces while
# reading its echo; every byte compared
timeout 120 "$PY" - "$SRV_PORT" >"$tmp/echo.out" 2>&1 <<'EOF'
import os, selectors, socket, sys, time
port, n, size = int(sys.argv[1]), 200, 256 * 1024
sel = selectors.DefaultSelector()
clients = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.setblocking(False)
    c = {"s": s, "out": os.urandom(size), "sent": 0, "got": bytearray()}
    clients.append(c)
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
left, deadline = n, time.monotonic() + 100
while left and time.monotonic() < deadline:
    for key, ev in sel.select(timeout=1):
        c = key.data
        if ev & selectors.EVENT_WRITE and c["sent"] < size:
            try:
                c["sent"] += c["s"].send(c["out"][c["sent"]:c["sent"] + 7000])
            except BlockingIOError:
                pass
            if c["sent"] == size:
                sel.modify(c["s"], selectors.EVENT_READ, c)
        if ev & selectors.EVENT_READ:
            try:
                d = c["s"].recv(65536)
            except BlockingIOError:
                continue
            if not d:
                raise SystemExit("server closed a connection")
            c["got"] += d
            if len(c["got"]) >= size:
                sel.unregister(c["s"])
                left -= 1
bad = sum(1 for c in clients if bytes(c["got"]) != c["out"])
if left or bad:
    raise SystemExit(f"{left} clients unfinished, {bad} with wrong bytes")
print("ok")
EOF
if [[ $(tail -n 1 "$tmp/echo.out") == ok ]]; then pass echo-200-clients-bytes-equal; else fail echo-200-clients-bytes-equal "$(tail -n 2 "$tmp/echo.out" | tr '\n' ' ')"; fi

# a client that sends without reading must not stall the others
timeout 60 "$PY" - "$SRV_PORT" >"$tmp/echo-bp.out" 2>&1 <<'EOF'
import os, socket, sys
port = int(sys.argv[1])
hog = socket.create_connection(("127.0.0.1", port), timeout=20)
hog.setblocking(False)
sent, chunk = 0, b"x" * 65536
while True:  # until the server stops reading it (both buffers full)
    try:
        sent += hog.send(chunk)
    except BlockingIOError:
        break
    if sent > 256 << 20:
        raise SystemExit("the server never pushed back")
other = socket.create_connection(("127.0.0.1", port), timeout=20)
msg = os.urandom(100000)
other.sendall(msg)
got = b""
while len(got) < len(msg):
    d = other.recv(65536)
    if not d:
        raise SystemExit("closed")
    got += d
if got != msg:
    raise SystemExit("wrong echo")
print(f"ok (the hog was stopped after {sent >> 10} KiB)")
EOF
if grep -q '^ok' "$tmp/echo-bp.out"; then pass echo-backpressure-others-served; else fail echo-backpressure-others-served "$(tail -n 2 "$tmp/echo-bp.out" | tr '\n' ' ')"; fi

stop echo "$ECHO_PID" TERM

finish
