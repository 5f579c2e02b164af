#!/usr/bin/env bash
# How -lsock links (issue 11), checked with programs that carry weak
# fallbacks of sock_* functions (c-tests/link/reactor.c):
# - c-tests/link/weak_fallbacks.c + reactor.c (with the C harness's
#   harness.c and util.c) linked with -lsock (the libsock.so linker
#   script) by cc (PIE, -no-pie, -Wl,--as-needed) and
#   clang (its default linker, and lld when installed), and with
#   libsock.a: every case of the program passes (the library's definitions
#   run) and nothing is printed on stderr by the library;
# - a -lsock program exports no sock_* function and needs libsock.so.<major>;
# - c-tests/link/shadow.c + reactor.c linked against libsock.so.0 directly
#   (-l:libsock.so.0): exactly one warning on stderr, naming the shadowed
#   functions and the fix; the same without the fallbacks (a program linked
#   before libsock.so became a script), or with -lsock: none.
# The install checks (scripts/check-install.sh) build the same program
# through pkg-config from an installed prefix.
#
# Environment: LIBDIR (default build/lib: run `make build` first), CC.
# Prints one PASS/FAIL line per check (the program's own PASS/FAIL lines
# included); the last line is exactly "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
. scripts/version.sh

passed=0
failed=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/libsock-link.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pass() { echo "PASS link/$1"; passed=$((passed + 1)); }
fail() { echo "FAIL link/$1${2:+ ($2)}"; failed=$((failed + 1)); }
finish() {
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
  exit
}

CC=${CC:-cc}
LIBDIR=${LIBDIR:-build/lib}
[[ $LIBDIR == /* ]] || LIBDIR=$PWD/$LIBDIR
if [[ ! -e $LIBDIR/libsock.so || ! -f $LIBDIR/libsock.a ]]; then
  fail libraries "no libraries in $LIBDIR: run make build"
  finish
fi
CFLAGS=(-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O1 -g -Iinclude -Ic-tests -Ic-tests/link)
SHARED=(-L"$LIBDIR" -lsock -lpthread -Wl,-rpath,"$LIBDIR")
DIRECT=(-L"$LIBDIR" -l:libsock.so."$major" -lpthread -Wl,-rpath,"$LIBDIR")
STATIC=("$LIBDIR/libsock.a" -lpthread -ldl -lm)
# the harness and helpers (c-tests/harness.c, util.c) are linked as
# sources: each build here has a compiler or link line of its own
WEAK=(c-tests/link/weak_fallbacks.c c-tests/link/reactor.c c-tests/harness.c c-tests/util.c)
SHADOW=(c-tests/link/shadow.c c-tests/link/reactor.c)

# build <name> <cc and flags...> -- <sources and link flags...>
build() {
  local name=$1 cc=()
  shift
  while [[ $1 != -- ]]; do cc+=("$1"); shift; done
  shift
  if "${cc[@]}" "${CFLAGS[@]}" -o "$tmp/$name" "$@" -Wl,--fatal-warnings >"$tmp/$name.build" 2>&1; then
    return 0
  fi
  sed 's/^/  /' "$tmp/$name.build"
  fail "$name" "build"
  return 1
}

# The library's warnings on stderr of a run (lines starting "libsock:").
warnings() { grep -c '^libsock:' "$1"; }

# run_weak <name>: the harness program; its PASS/FAIL lines count, then a
# check that the library printed nothing.
run_weak() {
  local name=$1 out err p f
  out=$tmp/$name.out
  err=$tmp/$name.err
  timeout 240 "$tmp/$name" >"$out" 2>"$err"
  local rc=$?
  cat "$out"
  p=$(grep -c '^PASS ' "$out")
  f=$(grep -c '^FAIL ' "$out")
  passed=$((passed + p))
  failed=$((failed + f))
  if [[ $rc -ne 0 && $f -eq 0 ]]; then
    fail "$name" "exit status $rc"
  fi
  [[ $f -gt 0 ]] && sed 's/^/  /' "$err"
  if [[ $(warnings "$err") -eq 0 ]]; then
    pass "$name/no-warning"
  else
    grep '^libsock:' "$err" | sed 's/^/  /'
    fail "$name/no-warning" "the library warned"
  fi
}

# ---- the weak-fallback program, every way -lsock and libsock.a link --------

if [[ -f $LIBDIR/libsock.so && ! -L $LIBDIR/libsock.so ]] && grep -q 'GROUP' "$LIBDIR/libsock.so"; then
  pass libsock.so-is-a-linker-script
else
  fail libsock.so-is-a-linker-script "$LIBDIR/libsock.so"
fi

build weak-cc "$CC" -- "${WEAK[@]}" "${SHARED[@]}" && run_weak weak-cc
build weak-cc-no-pie "$CC" -no-pie -- "${WEAK[@]}" "${SHARED[@]}" && run_weak weak-cc-no-pie
build weak-cc-as-needed "$CC" -- "${WEAK[@]}" -Wl,--as-needed "${SHARED[@]}" && run_weak weak-cc-as-needed
build weak-static "$CC" -- "${WEAK[@]}" "${STATIC[@]}" && run_weak weak-static
if command -v clang >/dev/null; then
  build weak-clang clang -- "${WEAK[@]}" "${SHARED[@]}" && run_weak weak-clang
  if command -v ld.lld >/dev/null; then
    build weak-clang-lld clang -fuse-ld=lld -- "${WEAK[@]}" "${SHARED[@]}" && run_weak weak-clang-lld
  else
    echo "SKIP link/weak-clang-lld (no ld.lld)"
  fi
else
  echo "SKIP link/weak-clang (no clang: make clang installs it)"
fi

# A -lsock program keeps the strong definitions to itself and loads the
# library by its SONAME.
if [[ -x $tmp/weak-cc ]]; then
  exported=$(readelf --dyn-syms -W "$tmp/weak-cc" | awk '$7 != "UND" && $8 ~ /^(__libsock_)?sock_/ { print $8 }')
  needed=$(readelf -d "$tmp/weak-cc" | sed -n 's/.*(NEEDED).*\[\(libsock[^]]*\)\].*/\1/p')
  if [[ -z $exported && $needed == "libsock.so.$major" ]]; then
    pass lsock-exports-nothing-needs-soname
  else
    fail lsock-exports-nothing-needs-soname "exports '${exported//$'\n'/ }', needs '$needed'"
  fi
fi

# ---- the warning of a program that still shadows the library ----------------

# shadow <name> <expected warnings> <sources and link flags...>
shadow() {
  local name=$1 want=$2
  shift 2
  build "$name" "$CC" -- "$@" || return
  local err=$tmp/$name.err
  if ! timeout 60 "$tmp/$name" >"$tmp/$name.out" 2>"$err" ||
    ! grep -qx 'shadow: done' "$tmp/$name.out"; then
    sed 's/^/  /' "$err"
    fail "$name" "did not run"
    return
  fi
  local n
  n=$(warnings "$err")
  if [[ $want -eq 0 ]]; then
    if [[ $n -eq 0 ]]; then
      pass "$name/no-warning"
    else
      sed 's/^/  /' "$err"
      fail "$name/no-warning" "$n warnings"
    fi
    return
  fi
  local line
  line=$(grep '^libsock:' "$err")
  if [[ $n -eq 1 && $line == *sock_flush* && $line == *sock_close* &&
    $line == *sock_write2_fn* && $line == *-lsock* ]]; then
    pass "$name/warned-once"
    sed 's/^/  /' "$err"
  else
    sed 's/^/  /' "$err"
    fail "$name/warned-once" "$n warnings; one naming sock_flush, sock_close, sock_write2_fn and -lsock expected"
  fi
}

shadow shadow-direct 1 "${SHADOW[@]}" "${DIRECT[@]}"
shadow shadow-lsock 0 "${SHADOW[@]}" "${SHARED[@]}"
shadow shadow-static 0 "${SHADOW[@]}" "${STATIC[@]}"
shadow plain-direct 0 c-tests/link/shadow.c "${DIRECT[@]}"

finish
