#!/usr/bin/env bash
# Header hygiene of include/libsock.h:
# - C: included alone, included twice, and in use (abi/header/use.c: every
#   macro, the static inline, the types, the callbacks), with gcc and clang,
#   -std=c99 and -std=c11, -Wall -Wextra -pedantic -Werror;
# - C++: included alone with g++ and clang++ -std=c++11 (same warnings), and
#   abi/header/program.cpp (sock_sendfile, sock_write2_fn, a callback)
#   linked with build/lib/libsock.so and run;
# - the C-only macros (compound literals) are documented as such.
# `make check-header` installs clang first when it is missing.
# Prints PASS/FAIL lines; exits non-zero when one failed.
set -uo pipefail
cd "$(dirname "$0")/.."

failed=0
pass() { echo "PASS header/$1"; }
fail() { echo "FAIL header/$1${2:+ ($2)}"; failed=$((failed + 1)); }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
WARN=(-Wall -Wextra -pedantic -Werror)
printf '#include "libsock.h"\n' >"$tmp/alone.c"
printf '#include "libsock.h"\n#include "libsock.h"\n' >"$tmp/twice.c"
cp "$tmp/alone.c" "$tmp/alone.cpp"

# compile <name> <compiler> <args...>: PASS/FAIL <name>, the errors on stderr.
compile() {
  local name=$1 cc=$2
  shift 2
  if ! command -v "$cc" >/dev/null; then
    fail "$name" "$cc not found (make check-header installs clang)"
  elif "$cc" "$@" >"$tmp/log" 2>&1; then
    pass "$name"
  else
    sed 's/^/  /' "$tmp/log" >&2
    fail "$name"
  fi
}

for cc in gcc clang; do
  for std in c99 c11; do
    for tu in alone twice; do
      compile "$cc-$std-$tu" "$cc" -std=$std "${WARN[@]}" -Iinclude -c -o "$tmp/$tu.o" "$tmp/$tu.c"
    done
    compile "$cc-$std-use" "$cc" -std=$std "${WARN[@]}" -Iinclude -c -o "$tmp/use.o" abi/header/use.c
  done
done

for cxx in g++ clang++; do
  compile "$cxx-c++11-alone" "$cxx" -std=c++11 "${WARN[@]}" -Iinclude -c -o "$tmp/alone.o" "$tmp/alone.cpp"
  name=$cxx-c++11-program
  compile "$name-build" "$cxx" -std=c++11 "${WARN[@]}" -Iinclude -o "$tmp/program-$cxx" \
    abi/header/program.cpp -Lbuild/lib -lsock "-Wl,-rpath,$PWD/build/lib"
  if [[ -x $tmp/program-$cxx ]]; then
    if timeout 60 "$tmp/program-$cxx" 2>"$tmp/log"; then
      pass "$name-run"
    else
      sed 's/^/  /' "$tmp/log" >&2
      fail "$name-run"
    fi
  fi
done

# The doc comment right above each compound-literal macro says "C only", and
# so does the README.
c_only=1
for macro in sock_write2 sock_write; do
  awk -v m="#define $macro(" '
    /\/\*\*/ { doc = "" } { doc = doc $0 "\n" }
    index($0, m) == 1 { found = 1; exit !(doc ~ /C only/) }
    END { if (!found) exit 1 }' include/libsock.h || c_only=0
done
grep -q 'C only' README.md || c_only=0
if [[ $c_only == 1 ]]; then
  pass c-only-macros-documented
else
  fail c-only-macros-documented "sock_write/sock_write2 (compound literals) not marked 'C only' in the header and README"
fi

[[ $failed -eq 0 ]]
