#!/usr/bin/env bash
# What `make test` needs besides a Rust toolchain, a C compiler and make:
# the Debian packages below, installed in one quiet step (apt-get update,
# then one apt-get install) when any is missing. `make test` runs it first;
# the targets that need one of them (make check-header, make tls) run it
# too, so they work on their own.
#
#   scripts/deps.sh          install what is missing (as root), or say what
#                            is missing and fail (not root, no apt-get)
#   scripts/deps.sh --list   the packages, one a line, and what needs them
#
# Prints one line when nothing is missing.
set -uo pipefail

# package | how to tell it is there | what needs it
DEPS=(
  "clang|command -v clang && command -v clang++|make check-header (C and C++ with clang)"
  "g++|command -v g++|make check-header (C++ with g++)"
  "pkg-config|command -v pkg-config|make check-install, the TLS build"
  "libssl-dev|pkg-config --exists openssl|the TLS adapter and its tests (tests.d/30-tls.sh)"
  "openssl|command -v openssl|tests.d/30-tls.sh (certificates, s_client)"
  "valgrind|command -v valgrind|the memcheck and DRD runs (tests.d/30-tls.sh, tests.d/40-reliability.sh)"
  "curl|command -v curl|tests.d/20-http-demo.sh"
  "python3|command -v python3|tests.d/20-http-demo.sh (raw clients), make man"
  "bc|command -v bc|c-tests/run.sh (timings)"
  "groff-base|command -v groff|make check-man"
  "man-db|command -v man|make check-man, make check-install (man -l, man -M)"
)

if [[ ${1:-} == --list ]]; then
  for d in "${DEPS[@]}"; do
    IFS='|' read -r pkg _ why <<<"$d"
    printf '%-12s %s\n' "$pkg" "$why"
  done
  exit 0
fi

missing=()
for d in "${DEPS[@]}"; do
  IFS='|' read -r pkg test _ <<<"$d"
  bash -c "$test" >/dev/null 2>&1 || missing+=("$pkg")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: every package make test needs is installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [[ $(id -u) -ne 0 ]]; then
  echo "deps: missing: ${missing[*]} (as root: apt-get install ${missing[*]})"
  exit 1
fi
echo "deps: installing ${missing[*]} (apt-get, once)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { timeout 900 apt-get update -qq &&
  timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  tail -n 20 "$log" | sed 's/^/  /'
  echo "deps: apt-get failed"
  exit 1
fi
