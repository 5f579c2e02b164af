#!/usr/bin/env bash
# Builds and runs the reliability programs of stress/ (issue 6).
#
#   stress/run.sh quick     what `make test` runs (tests.d/40-reliability.sh):
#                           regressions, faults, a short stress, fuzz and
#                           liveness run, and short runs of the same under
#                           ASan/UBSan, valgrind memcheck and DRD (about 2-3
#                           minutes)
#   stress/run.sh stress    long stress runs (several seeds), many fuzz seeds,
#                           minutes of the liveness harness
#   stress/run.sh liveness  only the liveness harness (stress/liveness.c), as
#                           quick runs it, and its control
#   stress/run.sh valgrind  the C harness (c-tests/run.sh, VALGRIND=1) and the
#                           stress programs under memcheck
#   stress/run.sh threads   DRD on the stress programs and selected c-tests
#   stress/run.sh asan      stress programs and c-tests with
#                           -fsanitize=address,undefined (shared and static)
#   stress/run.sh all       stress, valgrind, threads and asan
#
# Every check prints "PASS name" or "FAIL name"; the last line is exactly
# "N passed, N failed"; the exit status is non-zero when a check failed.
#
# The programs link a private copy of build/lib (build/reliability/lib), so
# a concurrent `make build` (which rewrites build/lib/libsock.so.* in place)
# cannot change the library under a running test.
#
# Environment: STRESS_SEED (default: 1), STRESS_SECONDS, FUZZ_SEEDS, FUZZ_OPS,
# LIVENESS_SECONDS (the quick run's per liveness profile: 1), RL_OUT
# (default build/reliability), CC (default cc).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
root=$PWD
mode=${1:-quick}
OUT=${RL_OUT:-build/reliability}
[[ $OUT == /* ]] || OUT=$root/$OUT # absolute: rpaths and LD_PRELOAD hold from any directory
CC=${CC:-cc}
CFLAGS=(-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -g -Iinclude)
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=undefined
  -fno-omit-frame-pointer)
STATIC_LIBS=(-lgcc_s -lutil -lrt -lpthread -lm -ldl)
PROGS=(regress faults stress fuzz)
export STRESS_SEED=${STRESS_SEED:-1}

passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1${2:+ ($2)}"; failed=$((failed + 1)); }
finish() {
  [[ -z ${bg_pid:-} ]] || wait "$bg_pid"
  echo
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
  exit $?
}

mkdir -p "$OUT/bin" "$OUT/log" "$OUT/lib"
log="$OUT/log"

# ---- the library, snapshotted -------------------------------------------------
if [[ ! -f build/lib/libsock.a || ! -f build/lib/libsock_nonshared.a ]]; then
  make --no-print-directory build >"$log/make-build.log" 2>&1 ||
    { tail -n 20 "$log/make-build.log"; fail "make build"; finish; }
fi
# libsock.so is the -lsock linker script; it names the library by its
# SONAME and libsock_nonshared.a, found next to it.
so=$(readlink -f "$(ls -d build/lib/libsock.so.[0-9]* | head -n 1)")
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
cp -f "$so" "$OUT/lib/.libsock.so.new" && mv -f "$OUT/lib/.libsock.so.new" "$OUT/lib/$soname"
for f in libsock.a libsock_nonshared.a libsock.so; do
  cp -f "build/lib/$f" "$OUT/lib/.$f.new" && mv -f "$OUT/lib/.$f.new" "$OUT/lib/$f"
done
LIB=$OUT/lib

# helpers <set>: the code the programs share, compiled once per run for
# each set of compile flags (plain: the shared, static, control and inline
# builds; asan: asan and asan-static) into $OBJ/<set>: libctest.a (the C
# harness's c-tests/harness.c, util.c and callbacks.c, as c-tests/run.sh
# builds it) and common.o (stress/common.c). The lock lets prebuild's
# background compiler and the foreground ask for the same set.
OBJ=$OUT/obj
rm -rf "$OBJ" "$log"/build-helpers-*.log
helpers() {
  local set=$1 dir=$OBJ/$1 flags=()
  [[ $set == asan ]] && flags=("${SAN[@]}" -O1)
  mkdir -p "$dir"
  (
    flock 9
    [[ -f $dir/rc ]] && exit
    rc=0
    for src in c-tests/harness.c c-tests/util.c c-tests/callbacks.c stress/common.c; do
      "$CC" "${CFLAGS[@]}" "${flags[@]}" -c -o "$dir/$(basename "$src" .c).o" "$src" ||
        { rc=1; break; }
    done
    if [[ $rc -eq 0 ]]; then
      "${AR:-ar}" rcs "$dir/libctest.a" "$dir/harness.o" "$dir/util.o" "$dir/callbacks.o" || rc=1
    fi
    echo "$rc" >"$dir/rc"
  ) 9>"$dir/lock" >>"$log/build-helpers-$set.log" 2>&1
  [[ $(cat "$dir/rc" 2>/dev/null) == 0 ]]
}

# compile <variant> <prog>: variant shared | static | asan | asan-static, or
# control | inline (liveness.c: shared, built with -DLIVENESS_CONTROL or
# -DLIVENESS_INLINE). The sanitized builds use -O1, as ASan advises: they
# compile in half the time of -O2. Each program links the helpers of its
# set (see helpers): libctest.a, and common.o when it includes common.h.
compile() {
  local variant=$1 prog=$2 src bin flags=() libs=() set=plain objs=()
  [[ $variant == asan* ]] && set=asan
  src=stress/$prog.c
  if ! helpers "$set"; then
    cp "$log/build-helpers-$set.log" "$log/build-$prog-$variant.log"
    return 1
  fi
  grep -q '^#include "common.h"' "$src" && objs+=("$OBJ/$set/common.o")
  objs+=("$OBJ/$set/libctest.a")
  bin=$OUT/bin/$prog${variant:+-$variant}
  [[ $variant == shared ]] && bin=$OUT/bin/$prog
  case $variant in
    shared) libs=(-L"$LIB" -lsock -lpthread -Wl,-rpath,"$LIB") ;;
    control | inline)
      flags=("-DLIVENESS_${variant^^}")
      libs=(-L"$LIB" -lsock -lpthread -Wl,-rpath,"$LIB")
      ;;
    static) libs=("$LIB/libsock.a" "${STATIC_LIBS[@]}") ;;
    asan) flags=("${SAN[@]}" -O1); libs=(-L"$LIB" -lsock -lpthread -Wl,-rpath,"$LIB") ;;
    asan-static) flags=("${SAN[@]}" -O1); libs=("$LIB/libsock.a" "${STATIC_LIBS[@]}") ;;
  esac
  "$CC" "${CFLAGS[@]}" "${flags[@]}" -o "$bin" "$src" "${objs[@]}" "${libs[@]}" \
    >"$log/build-$prog-$variant.log" 2>&1
}

# build <variant> <prog>: compiles (see compile) once per run (the sources
# and the library snapshot do not change meanwhile), or waits for
# prebuild's background compiler to have done it.
declare -A BUILT=() QUEUED=()
bg_pid=
build() {
  local variant=$1 prog=$2 rc
  [[ -n ${BUILT[$variant/$prog]:-} ]] && return 0
  if [[ -n ${QUEUED[$variant/$prog]:-} ]]; then
    if [[ -n $bg_pid ]]; then
      wait "$bg_pid"
      bg_pid=
    fi
    rc=$(cat "$log/build-$prog-$variant.rc" 2>/dev/null) || rc=1
    unset "QUEUED[$variant/$prog]"
  else
    compile "$variant" "$prog"
    rc=$?
  fi
  if [[ $rc -eq 0 ]]; then
    BUILT[$variant/$prog]=1
    return 0
  fi
  cat "$log/build-$prog-$variant.log"
  fail "build $prog ($variant)"
  return 1
}

# prebuild <variant/prog>...: compiles these one after the other in the
# background, while the tests run (the time-bounded runs lose nothing
# by it, and a quick pass saves most of its compile time).
prebuild() {
  local item list=()
  if [[ -n $bg_pid ]]; then
    wait "$bg_pid"
    bg_pid=
  fi
  for item; do
    [[ -n ${BUILT[$item]:-}${QUEUED[$item]:-} ]] && continue
    QUEUED[$item]=1
    list+=("$item")
  done
  (
    for item in "${list[@]}"; do
      rm -f "$log/build-${item#*/}-${item%%/*}.rc"
      compile "${item%%/*}" "${item#*/}"
      echo $? >"$log/build-${item#*/}-${item%%/*}.rc"
    done
  ) &
  bg_pid=$!
}

# run <label> <seconds> <command...>: counts the harness's PASS/FAIL lines;
# a crash or non-zero exit without a FAIL line is one failure.
run() {
  local label=$1 limit=$2
  shift 2
  local out="$log/$label.out" rc start
  start=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$out.raw" 2>"$log/$label.err"
  rc=$?
  # under a checker, the test names say which one (they repeat otherwise)
  sed -E "s/^(PASS|FAIL|SKIP) ([^ ]*)(.*)\$/\1 \2${TAG:+ [$TAG]}\3/" "$out.raw" >"$out"
  cat "$out"
  local p f
  p=$(grep -c '^PASS ' "$out")
  f=$(grep -c '^FAIL ' "$out")
  passed=$((passed + p))
  failed=$((failed + f))
  if [[ $f -gt 0 ]]; then
    grep -E 'VIOLATION|failed|FAIL|ERROR|Invalid|lost in|Conflicting' \
      "$log/$label.err" | head -n 30 | sed 's/^/    /'
  fi
  if [[ $rc -ne 0 && $f -eq 0 ]]; then
    tail -n 15 "$log/$label.err" | sed 's/^/    /'
    fail "$label" "exit status $rc$([[ $rc -eq 124 ]] && echo ", timeout after ${limit}s")"
  fi
  echo "  ($label: $(($(date +%s) - start)) s; log $log/$label.err)"
}

# control <label> <pattern> <command...>: the command must fail (it runs
# a deliberate fault) and its stderr must show <pattern>: the checker works.
control() {
  local label=$1 pattern=$2
  shift 2
  timeout --kill-after=10 600 "$@" >"$log/$label.out" 2>"$log/$label.err"
  local rc=$?
  if [[ $rc -ne 0 ]] && grep -qE "$pattern" "$log/$label.err" "$log/$label.out"; then
    pass "$label"
  else
    fail "$label" "status $rc, no '$pattern' in $log/$label.err"
  fi
}

VG_MEMCHECK=(valgrind -q --error-exitcode=99 --leak-check=full
  --errors-for-leak-kinds=definite --show-leak-kinds=definite
  --track-fds=no --child-silent-after-fork=no)
# DRD: data races in the programs' own data and in what they hand to the
# library; the library's parking_lot locks (futexes) are invisible to DRD,
# see stress/drd.supp for what is suppressed and why.
VG_DRD=(valgrind -q --tool=drd --error-exitcode=98
  --suppressions=stress/drd.supp --check-stack-var=no
  --free-is-write=yes)
have_valgrind() { command -v valgrind >/dev/null; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# ---- modes ------------------------------------------------------------------------

native() { # the programs as they are, linked with the shared library
  local secs=$1 seeds=$2 ops=$3
  for p in "${PROGS[@]}"; do build shared "$p" || return; done
  build static stress && run stress-static-quick 120 env STRESS_SECONDS=2 \
    "$OUT/bin/stress-static" mixed
  run stress-controls 300 env STRESS_CONTROLS=1 "$OUT/bin/stress" \
    control_foreign_frame control_uncounted_frame control_phantom_frame
  run regress 240 "$OUT/bin/regress"
  run faults 300 "$OUT/bin/faults"
  run stress 900 env STRESS_SECONDS="$secs" "$OUT/bin/stress"
  run fuzz 900 env FUZZ_SEEDS="$seeds" FUZZ_OPS="$ops" "$OUT/bin/fuzz"
  # the fuzz's pinned regression seeds run when FUZZ_SEEDS is unset
  run fuzz-regress-seeds 300 env -u FUZZ_SEEDS FUZZ_OPS=1 "$OUT/bin/fuzz" \
    $(sed -n 's/^    {\([0-9]*\), .*/regress_seed_\1/p' stress/fuzz.c)
}

# liveness <seconds per profile> [static profiles]: the event-loop liveness
# harness (stress/liveness.c), shared (every profile) and static (the ones
# named; default all), and its control: a reactor that drops the EPOLLOUT
# flushes of one connection must make the watchdog fail the run and name
# that connection.
liveness() {
  local secs=$1 static_profiles=${2:-} hto
  # each profile's watchdog (harness.h): twice what a profile may take,
  # its run plus LIVENESS_DRAIN_MS (30 s) for connections to close
  hto=$((${secs%.*} * 4 + 90))
  build shared liveness && build static liveness && build control liveness ||
    return
  run liveness 300 env HARNESS_TIMEOUT=$hto LIVENESS_SECONDS="$secs" \
    "$OUT/bin/liveness"
  run liveness-static 300 env HARNESS_TIMEOUT=$hto LIVENESS_SECONDS="$secs" \
    "$OUT/bin/liveness-static" $static_profiles
  control "control: the liveness watchdog reports a dropped wake-up" \
    "LIVENESS STALL \[control victim\]" env LIVENESS_SECONDS=1 \
    "$OUT/bin/liveness-control"
}

asan_progs() { # the programs under ASan/UBSan
  local secs=$1 seeds=$2
  for p in "${PROGS[@]}"; do build asan "$p" || return; done
  build asan-static stress || return
  build asan liveness || return
  control "control: ASan reports a deliberate leak" "LeakSanitizer" \
    env STRESS_CONTROLS=1 "$OUT/bin/stress-asan" control_leak
  run regress-asan 300 "$OUT/bin/regress-asan"
  run faults-asan 300 "$OUT/bin/faults-asan"
  run stress-asan 900 env STRESS_SECONDS="$secs" STRESS_THREADS=3 "$OUT/bin/stress-asan"
  run stress-asan-static 300 env STRESS_SECONDS="$secs" STRESS_THREADS=3 \
    "$OUT/bin/stress-asan-static" mixed
  run fuzz-asan 600 env FUZZ_SEEDS="$seeds" "$OUT/bin/fuzz-asan"
  # short, whatever the mode: what ASan adds is the check of every access
  # (quick: two profiles)
  run liveness-asan 300 env HARNESS_TIMEOUT=94 LIVENESS_SECONDS=1 \
    "$OUT/bin/liveness-asan" \
    $([[ $secs -le 5 ]] && echo mixed hooks)
}

memcheck_progs() { # the programs under valgrind memcheck
  local secs=$1 seeds=$2 ops=$3 tests=${4:-} TAG=memcheck
  local -x RL_VALGRIND=1 # tests that move many bytes move fewer (faults.c)
  have_valgrind || { fail "valgrind memcheck" "valgrind not installed"; return; }
  for p in "${PROGS[@]}"; do build shared "$p" || return; done
  control "control: memcheck reports a deliberate leak" "definitely lost" \
    env STRESS_CONTROLS=1 "${VG_MEMCHECK[@]}" "$OUT/bin/stress" control_leak
  run regress-memcheck 600 env HARNESS_TIMEOUT=120 "${VG_MEMCHECK[@]}" "$OUT/bin/regress"
  run faults-memcheck 900 env HARNESS_TIMEOUT=300 "${VG_MEMCHECK[@]}" "$OUT/bin/faults" $tests
  run stress-memcheck 1200 env HARNESS_TIMEOUT=400 STRESS_SECONDS="$secs" STRESS_THREADS=2 \
    STRESS_SHARED=4 "${VG_MEMCHECK[@]}" "$OUT/bin/stress"
  run fuzz-memcheck 900 env HARNESS_TIMEOUT=400 FUZZ_SEEDS="$seeds" FUZZ_OPS="$ops" \
    "${VG_MEMCHECK[@]}" "$OUT/bin/fuzz"
}

drd_progs() { # the programs under DRD
  local secs=$1 profiles=$2 TAG=drd
  local -x RL_VALGRIND=1
  have_valgrind || { fail "valgrind DRD" "valgrind not installed"; return; }
  for p in "${PROGS[@]}"; do build shared "$p" || return; done
  control "control: DRD reports a deliberate race in program code" \
    "Conflicting (load|store).*" env STRESS_CONTROLS=1 "${VG_DRD[@]}" \
    "$OUT/bin/stress" control_race
  run stress-drd 1800 env HARNESS_TIMEOUT=900 STRESS_SECONDS="$secs" STRESS_THREADS=3 \
    STRESS_SHARED=4 "${VG_DRD[@]}" "$OUT/bin/stress" $profiles
  run regress-drd 900 env HARNESS_TIMEOUT=300 "${VG_DRD[@]}" "$OUT/bin/regress"
}

drd_ctests() { # selected c-tests (threads, close, pool, callbacks) under DRD
  local t src bin TAG=drd shim=$OUT/bin/drd_shim.so
  local -x RL_VALGRIND=1 # tests that move many bytes move fewer
  # the shim marks pool packets as library memory (see stress/drd_shim.c)
  if ! "$CC" -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O1 -g -Iinclude \
    -shared -fPIC -o "$shim" stress/drd_shim.c -ldl >"$log/build-drd-shim.log" 2>&1; then
    cat "$log/build-drd-shim.log"; fail "build stress/drd_shim.c"; return
  fi
  if ! helpers plain; then
    cat "$log/build-helpers-plain.log"; fail "build the C harness's helpers"; return
  fi
  for t in test_threads test_close test_pool test_callbacks test_signals; do
    src=c-tests/$t.c
    bin=$OUT/bin/c-$t
    if ! "$CC" "${CFLAGS[@]}" -O1 -o "$bin" "$src" "$OBJ/plain/libctest.a" -L"$LIB" -lsock -lpthread \
      -Wl,-rpath,"$LIB" >"$log/build-c-$t.log" 2>&1; then
      cat "$log/build-c-$t.log"; fail "build c-tests/$t"; continue
    fi
    run "c-$t-drd" 1800 env HARNESS_TIMEOUT=900 LD_PRELOAD="$shim" \
      "${VG_DRD[@]}" "$bin"
  done
}

# ctests_count <output file> <tag> <what> <status>: shows a c-tests/run.sh
# run's PASS/FAIL/SKIP lines tagged, and adds its "N passed, N failed" to
# ours; a run that printed no summary is one failure.
ctests_count() {
  local out=$1 tag=$2 what=$3 rc=$4 line p f
  grep -E '^(PASS|FAIL|SKIP) ' "$out" | sed "s/^\(PASS\|FAIL\|SKIP\) /\1 $tag: /"
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
  if [[ -z $line ]]; then
    tail -n 20 "$out"
    fail "$what" "no summary, status $rc"
    return
  fi
  p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
  passed=$((passed + p)); failed=$((failed + f))
}

ctests_asan() { # the C harness with ASan/UBSan, shared and static
  local wrapper=$OUT/asan-cc m
  # c-tests/run.sh takes a compiler, not flags: a wrapper adds them. With
  # the instrumentation, gcc's -Wformat-truncation misjudges a bounded
  # snprintf in test_read_write.c (clean without sanitizers): not an error
  # here.
  printf '#!/bin/sh\nexec %s "$@" %s -Wno-error=format-truncation\n' "$CC" "${SAN[*]}" >"$wrapper"
  chmod +x "$wrapper"
  for m in shared static; do
    CC=$wrapper c-tests/run.sh "$m" "$OUT/ctests-asan-$m" >"$log/ctests-asan-$m.out" 2>&1
    ctests_count "$log/ctests-asan-$m.out" "asan-$m" "c-tests under ASan ($m)" $?
  done
}

ctests_valgrind() { # the C harness under memcheck (its own VALGRIND=1 mode)
  have_valgrind || { fail "c-tests under valgrind" "valgrind not installed"; return; }
  RL_VALGRIND=1 VALGRIND=1 c-tests/run.sh shared "$OUT/ctests-valgrind" >"$log/ctests-valgrind.out" 2>&1
  ctests_count "$log/ctests-valgrind.out" memcheck "c-tests under valgrind" $?
}

mode_quick() {
  prebuild shared/liveness static/liveness control/liveness asan/regress \
    asan/faults asan/stress asan/fuzz asan-static/stress asan/liveness
  native 5 "1 2 3 4" 3000
  liveness "${LIVENESS_SECONDS:-1}" "mixed hooks"
  asan_progs 3 "1 2"
  memcheck_progs 4 "1" 1500 "peer_reset_tcp_writes signal_flood pool_exhausted_peer_never_reads_force_close file_truncated_while_sendfile hooks_eagain_and_partial_writes_lose_nothing hook_write_failure_closes_once"
  drd_progs 4 mixed
}
mode_stress() {
  native 30 "$(seq -s ' ' 1 40)" 5000
  local s
  for s in 2 3; do
    STRESS_SEED=$s run "stress-seed$s" 900 env STRESS_SECONDS=30 "$OUT/bin/stress"
  done
  # the liveness harness for minutes: 3 seeds x 4 profiles x 15 s, the
  # static build and the caller without a task pool (inline flushes) too
  liveness 15
  build inline liveness || return
  for s in 2 3; do
    STRESS_SEED=$s run "liveness-seed$s" 600 env HARNESS_TIMEOUT=150 \
      LIVENESS_SECONDS=15 "$OUT/bin/liveness"
  done
  run liveness-inline 600 env HARNESS_TIMEOUT=150 LIVENESS_SECONDS=10 \
    "$OUT/bin/liveness-inline"
}
mode_liveness() {
  liveness "${LIVENESS_SECONDS:-1}" "mixed hooks"
}
mode_valgrind() {
  ctests_valgrind
  memcheck_progs 20 "1 2 3" 3000
}
mode_threads() {
  drd_progs 15 ""
  drd_ctests
}
mode_asan() {
  asan_progs 15 "$(seq -s ' ' 1 10)"
  ctests_asan
}

case $mode in
  quick | stress | valgrind | threads | asan | liveness) "mode_$mode" ;;
  all) mode_stress; mode_valgrind; mode_threads; mode_asan ;;
  *)
    echo "usage: $0 quick|stress|valgrind|threads|asan|liveness|all" >&2
    exit 2
    ;;
esac
finish
