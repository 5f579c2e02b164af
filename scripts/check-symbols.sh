#!/usr/bin/env bash
# The exported interface of the shared library (run after `make build`):
# - its dynamic symbols (nm -D --defined-only) are exactly abi/libsock.symbols:
#   the functions of libsock.h plus the four overridable callbacks, nothing of
#   Rust's std or the dependencies, nothing missing;
# - abi/libsock.symbols is exactly what include/libsock.h declares (every
#   extern function; sock_sendfile is static inline, not a symbol);
# - the SONAME is libsock.so.<major> and the symlinks of build/lib follow it.
# Prints PASS/FAIL lines; exits non-zero when one failed.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/version.sh

failed=0
pass() { echo "PASS symbols/$1"; }
fail() { echo "FAIL symbols/$1${2:+ ($2)}"; failed=$((failed + 1)); }

lib=build/lib/libsock.so.$version
list=abi/libsock.symbols
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [[ ! -f $lib ]]; then
  fail library-built "$lib missing: run make build"
  exit 1
fi

# Names only (a versioned name would keep its @VERSION suffix and differ).
nm -D --defined-only "$lib" | awk 'NF == 3 { print $3 }' | sort >"$tmp/actual"
grep -v -e '^#' -e '^[[:space:]]*$' "$list" | sort >"$tmp/pinned"
if diff -u "$tmp/pinned" "$tmp/actual" >"$tmp/diff"; then
  pass "exported-exactly ($(wc -l <"$tmp/actual") symbols)"
else
  sed -n 's/^+\([^+]\)/  leaked (exported, not in the list): \1/p; s/^-\([^-]\)/  missing (in the list, not exported): \1/p' "$tmp/diff" >&2
  fail exported-exactly "nm -D differs from $list"
fi

# The functions the header declares, as the C compiler reads them.
echo '#include "libsock.h"' >"$tmp/h.c"
if ${CC:-cc} -std=c11 -Iinclude -fsyntax-only -aux-info "$tmp/aux" "$tmp/h.c" 2>"$tmp/err"; then
  grep 'include/libsock\.h:[0-9]*:[A-Z]* \*/ extern ' "$tmp/aux" |
    sed 's|^.*\*/ extern ||' | awk '{ sub(/ \(.*/, ""); n = split($0, w, /[ *]+/); print w[n] }' |
    sort >"$tmp/declared"
  if [[ -s $tmp/declared ]] && diff -u "$tmp/pinned" "$tmp/declared" >"$tmp/diff2"; then
    pass "list-is-the-header ($(wc -l <"$tmp/declared") declarations)"
  else
    sed -n 's/^+\([^+]\)/  declared, not in the list: \1/p; s/^-\([^-]\)/  in the list, not declared: \1/p' "$tmp/diff2" >&2
    fail list-is-the-header "include/libsock.h declares other functions than $list"
  fi
else
  cat "$tmp/err" >&2
  fail list-is-the-header "include/libsock.h does not compile"
fi

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [[ $soname == "libsock.so.$major" ]]; then
  pass "soname ($soname)"
else
  fail soname "SONAME '$soname', expected libsock.so.$major"
fi

links_ok=1
[[ $(readlink build/lib/libsock.so.$major) == "libsock.so.$version" ]] || links_ok=0
[[ $(readlink build/lib/libsock.so) == "libsock.so.$major" ]] || links_ok=0
if [[ $links_ok == 1 ]]; then
  pass "symlinks (libsock.so -> libsock.so.$major -> libsock.so.$version)"
else
  fail symlinks "build/lib/libsock.so{,.$major} do not point along the SONAME"
fi

[[ $failed -eq 0 ]]
