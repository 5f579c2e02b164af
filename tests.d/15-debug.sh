#!/usr/bin/env bash
# The C harness (a selection: threads, closes, liveness, hooks, urgent data,
# packets, the extensions) against a debug build of the library, whose
# invariant checks (src/table.rs, Conn::check) abort on a violation: the
# connection state's invariants are checked at every lock the tests take.
# The last line is "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
lib=build/debug/lib
if ! make --no-print-directory build PROFILE=debug LIBDIR=$lib >build/debug-build.log 2>&1; then
  tail -n 20 build/debug-build.log
  echo "FAIL debug build"
  echo "0 passed, 1 failed"
  exit 1
fi
LIBDIR=$lib TESTS="test_threads test_close test_liveness test_hooks test_urgent test_packets test_extensions test_linger" \
  exec c-tests/run.sh shared build/debug/ctests
