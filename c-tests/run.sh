#!/usr/bin/env bash
# Builds and runs the C test programs (c-tests/test_*.c) against libsock.
#
#   c-tests/run.sh <shared|static> [outdir]
#
# shared: links -Lbuild/lib -lsock (rpath to build/lib)
# static: links build/lib/libsock.a
#
# Every program prints one line per test case (PASS/FAIL/SKIP <prog>/<test>;
# a SKIP line says why). A program that fails to compile, crashes, or times
# out counts as one FAIL under its own name. The skipped tests are listed
# again at the end; the last line is exactly
# "N passed, N failed, N skipped".
#
# Environment:
#   VALGRIND=1      run each program under valgrind memcheck (leaks of kind
#                   "definite" and memory errors fail the test; longer
#                   timeouts; the big-data programs take minutes)
#   TESTS="a b"     only these programs (names without .c)
#   CC              compiler (default cc)
#   AR              archiver (default ar)
#
# The helpers (harness.c, util.c, callbacks.c: declared in harness.h,
# util.h, callbacks.h) are compiled once per run into <outdir>/libctest.a,
# which every program links; the linker takes from it only the members a
# program uses (callbacks.c, the record of the library's callbacks, only
# for the programs that define TEST_DEFINE_CALLBACKS).
set -uo pipefail

mode=${1:-}
if [[ $mode != shared && $mode != static ]]; then
  echo "usage: $0 <shared|static> [outdir]" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
outdir=${2:-$(mktemp -d "${TMPDIR:-/tmp}/libsock-ctests-$mode.XXXXXX")}
mkdir -p "$outdir"
CC=${CC:-cc}
CFLAGS=(-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O1 -g -Iinclude)
# `make build` lays the libraries out like an installed C library in
# build/lib (libsock.so -> libsock.so.0 -> libsock.so.0.2.2, libsock.a).
LIBDIR=${LIBDIR:-build/lib}
if [[ ! -e $LIBDIR/libsock.so || ! -e $LIBDIR/libsock.a ]]; then
  echo "no libraries in $LIBDIR: run make build" >&2
  exit 2
fi
if [[ $mode == shared ]]; then
  LIBS=(-L"$LIBDIR" -lsock -lpthread -ldl "-Wl,-rpath,$PWD/$LIBDIR")
else
  LIBS=("$LIBDIR/libsock.a" -lpthread -ldl -lm)
fi
# A program that defines none, some or all of the callbacks must link
# without a single linker warning, in both modes.
LIBS+=(-Wl,--fatal-warnings)

passed=0
failed=0
skipped=0
failed_names=()
skip_lines=()

helpers=(c-tests/harness.c c-tests/util.c c-tests/callbacks.c)
helper_lib=$outdir/libctest.a
rm -f "$helper_lib"
for src in "${helpers[@]}"; do
  obj=$outdir/$(basename "$src" .c).o
  if ! "$CC" "${CFLAGS[@]}" -c -o "$obj" "$src" >"$outdir/helpers.build.log" 2>&1 ||
    ! "${AR:-ar}" rcs "$helper_lib" "$obj" >>"$outdir/helpers.build.log" 2>&1; then
    cat "$outdir/helpers.build.log"
    echo "FAIL c-tests helpers: $src (compile)"
    echo "0 passed, 1 failed, 0 skipped"
    exit 1
  fi
done

progs=()
if [[ -n ${TESTS:-} ]]; then
  for t in $TESTS; do progs+=("c-tests/${t%.c}.c"); done
else
  progs=(c-tests/test_*.c)
fi

for src in "${progs[@]}"; do
  name=$(basename "$src" .c)
  bin="$outdir/$name"
  log="$outdir/$name.log"
  if ! "$CC" "${CFLAGS[@]}" -o "$bin" "$src" "$helper_lib" "${LIBS[@]}" >"$outdir/$name.build.log" 2>&1; then
    cat "$outdir/$name.build.log"
    echo "FAIL $name (compile)"
    failed=$((failed + 1))
    failed_names+=("$name(compile)")
    continue
  fi
  start=$(date +%s.%N)
  if [[ -n ${VALGRIND:-} ]]; then
    # each test still runs in its own forked child (memcheck follows the
    # fork); a child with memcheck errors exits 99 and its test FAILs
    HARNESS_TIMEOUT=${HARNESS_TIMEOUT:-280} timeout 1800 valgrind -q \
      --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
      --show-leak-kinds=definite "$bin" >"$log" 2>&1
    rc=$?
  else
    timeout 300 "$bin" >"$log" 2>&1
    rc=$?
  fi
  end=$(date +%s.%N)
  cat "$log"
  p=$(grep -c '^PASS ' "$log")
  f=$(grep -c '^FAIL ' "$log")
  s=$(grep -c '^SKIP ' "$log")
  passed=$((passed + p))
  skipped=$((skipped + s))
  mapfile -t -O "${#skip_lines[@]}" skip_lines < <(grep '^SKIP ' "$log")
  if [[ $rc -ne 0 && $f -eq 0 ]]; then
    case $rc in
      124) why="timeout" ;;
      99) why="valgrind errors" ;;
      *) if [[ $rc -gt 128 ]]; then why="killed by signal $((rc - 128))"; else why="exit status $rc"; fi ;;
    esac
    echo "FAIL $name ($why)"
    f=1
  fi
  if [[ $f -gt 0 ]]; then failed_names+=("$name"); fi
  failed=$((failed + f))
  printf '  (%s: %.1fs)\n' "$name" "$(echo "$end - $start" | bc)"
done

echo
if [[ $skipped -gt 0 ]]; then
  echo "skipped ($mode):"
  printf '  %s\n' "${skip_lines[@]}"
fi
[[ ${#failed_names[@]} -gt 0 ]] && echo "failing programs: ${failed_names[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
