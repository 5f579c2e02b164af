#!/usr/bin/env bash
# TLS through the rw hooks (issue 7), over loopback:
#   a  `openssl s_client` talks to examples/tls_server (libsock + TLS hooks)
#   b  a libsock TLS client: 64 MiB echoed, a 64 MiB file via sock_sendfile
#   c  graceful close: everything queued, then close_notify, then the fd
#   d  peers that drop mid-stream: -1 and exactly one reactor_on_close
#   e  on_clear frees every session: valgrind, no definite leaks
#   f  urgent data while the TLS transport is full
# Every check prints "PASS name" or "FAIL name"; the last line is
# "N passed, N failed"; the exit status is non-zero when a check failed.
#
# Environment: TLS_TEST_MIB (64) size of the b transfers; TLS_TEST_VALGRIND=0
# skips the valgrind checks (they are counted as failed, not hidden).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }
finish() {
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
  exit $?
}

work=$(mktemp -d "${TMPDIR:-/tmp}/libsock-tls-tests.XXXXXX")
srv_pid=
cleanup() {
  [[ -n $srv_pid ]] && kill "$srv_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# Runs a test program; counts its PASS/FAIL lines, and a crash or a
# non-zero exit without FAIL lines as one failure.
run_prog() {
  local name=$1
  shift
  local out="$work/$name.out" rc
  timeout 600 "$@" >"$out" 2>"$work/$name.err"
  rc=$?
  cat "$out"
  local p f
  p=$(grep -c '^PASS ' "$out")
  f=$(grep -c '^FAIL ' "$out")
  passed=$((passed + p))
  failed=$((failed + f))
  if [[ $rc -ne 0 && $f -eq 0 ]]; then
    fail "$name exits cleanly" "status $rc; stderr: $(tail -n 5 "$work/$name.err" | tr '\n' ' ')"
  fi
}

# ---- build ------------------------------------------------------------------
if make --no-print-directory tls >"$work/build.log" 2>&1; then
  pass "build: make tls (adapter, example server, tests, bench; -std=c11 -Wall -Wextra -Werror)"
else
  tail -n 30 "$work/build.log"
  fail "build: make tls"
  finish
fi
B=build/tls

if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" >"$work/req.log" 2>&1; then
  pass "certificate generated at test time (openssl req -x509, P-256)"
else
  cat "$work/req.log"
  fail "certificate generated at test time"
  finish
fi

# ---- a: the example server and openssl s_client ------------------------------
coproc SRV { exec timeout 900 "$B/tls_server" "$work/cert.pem" "$work/key.pem" 0 2>"$work/server.err"; }
srv_pid=$SRV_PID
port=
if read -r -t 20 line <&"${SRV[0]}"; then
  port=${line##*:}
fi
if [[ $port =~ ^[0-9]+$ ]]; then
  pass "example server listens (port $port)"
else
  fail "example server listens" "got '${line:-nothing}'; $(cat "$work/server.err")"
  finish
fi

sclient() { # sclient [extra options] < input
  timeout 60 openssl s_client -connect "127.0.0.1:$port" -servername localhost \
    -CAfile "$work/cert.pem" -verify_return_error -verify_hostname localhost \
    -quiet "$@" 2>>"$work/s_client.err"
}

out=$(printf 'hello from s_client\nQUIT\n' | sclient)
rc=$?
if [[ $rc -eq 0 && $out == $'hello from s_client\nBYE' ]]; then
  pass "a openssl s_client (TLS 1.3, verified) exchanges lines with the libsock server"
else
  fail "a openssl s_client exchanges lines" "rc $rc, output '$out'"
fi

out=$(printf 'tls one two\nQUIT\n' | sclient -tls1_2)
rc=$?
if [[ $rc -eq 0 && $out == $'tls one two\nBYE' ]]; then
  pass "a openssl s_client -tls1_2 exchanges lines with the libsock server"
else
  fail "a openssl s_client -tls1_2 exchanges lines" "rc $rc, output '$out'"
fi

head -c $((3 * 1024 * 1024 + 12345)) /dev/urandom >"$work/s_client-file.bin"
printf 'FILE %s\n' "$work/s_client-file.bin" | sclient >"$work/s_client-file.out"
rc=$?
if [[ $rc -eq 0 ]] && cmp -s "$work/s_client-file.bin" "$work/s_client-file.out"; then
  pass "a openssl s_client receives a 3 MiB file sent with sock_sendfile, byte-exact"
else
  fail "a openssl s_client receives a file" "rc $rc, $(stat -c %s "$work/s_client-file.out") of $(stat -c %s "$work/s_client-file.bin") bytes"
fi

# ---- b: a libsock TLS client against the example server ----------------------
run_prog test_transfer "$B/test_transfer" "$port" "$work/cert.pem" "$work" "${TLS_TEST_MIB:-64}"

out=$(printf 'STOP\n' | sclient)
if [[ $out == STOPPING ]] && timeout 30 tail --pid="$srv_pid" -f /dev/null; then
  wait "$srv_pid" 2>/dev/null
  rc=$?
  srv_pid=
  if [[ $rc -eq 0 ]]; then
    pass "example server stops cleanly"
  else
    fail "example server stops cleanly" "status $rc; $(tail -n 5 "$work/server.err")"
  fi
else
  fail "example server stops" "answer '$out'"
fi

# ---- c, d, f: lifecycle against plain OpenSSL peers --------------------------
run_prog test_lifecycle "$B/test_lifecycle" "$work"

# ---- e: valgrind ---------------------------------------------------------------
VG=(valgrind -q --leak-check=full --errors-for-leak-kinds=definite
  --error-exitcode=97)
if [[ ${TLS_TEST_VALGRIND:-1} == 0 ]] || ! command -v valgrind >/dev/null; then
  fail "e valgrind checks" "skipped (TLS_TEST_VALGRIND=0 or no valgrind)"
else
  TLS_TEST_SLOW=20 timeout 900 "${VG[@]}" "$B/test_lifecycle" "$work" --small \
    >"$work/vg.out" 2>"$work/vg.err"
  rc=$?
  nfail=$(grep -c '^FAIL ' "$work/vg.out")
  npass=$(grep -c '^PASS ' "$work/vg.out")
  if [[ $rc -eq 0 && $nfail -eq 0 && $npass -gt 10 ]]; then
    pass "e valgrind: test_lifecycle ($npass checks) with no definite leak and no memory error"
  else
    grep '^FAIL ' "$work/vg.out" | sed 's/^/  under valgrind: /'
    tail -n 30 "$work/vg.err"
    fail "e valgrind: test_lifecycle" "status $rc, $nfail failed checks"
  fi
  timeout 120 "${VG[@]}" "$B/test_lifecycle" --leak-control >/dev/null 2>"$work/vgc.err"
  rc=$?
  if [[ $rc -eq 97 ]] && grep -q 'definitely lost' "$work/vgc.err"; then
    pass "e valgrind harness reports a deliberate definite leak (control)"
  else
    fail "e valgrind harness reports a deliberate definite leak (control)" "status $rc"
  fi
fi

finish
