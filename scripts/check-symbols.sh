#!/usr/bin/env bash
# The exported interface of the shared library (run after `make build`):
# - the dynamic symbols of libsock.so.<version> (nm -D --defined-only) are
#   exactly abi/libsock.symbols: the functions of libsock.h, the four
#   overridable callbacks, and __libsock_<name> for every other function,
#   nothing of Rust's std or the dependencies, nothing missing;
# - abi/libsock.symbols without the __libsock_ names is exactly what
#   include/libsock.h declares (every extern function; sock_sendfile is
#   static inline, not a symbol);
# - each __libsock_<name> is an alias of <name> (same address), for every
#   function but the callbacks;
# - libsock_nonshared.a defines exactly those functions, hidden (plus the
#   marker the linker script pulls it in by), and needs nothing but their
#   __libsock_ names;
# - the SONAME is libsock.so.<major>, libsock.so.<major> points to
#   libsock.so.<version>, and libsock.so is the linker script naming
#   libsock.so.<major> and libsock_nonshared.a.
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
grep -v '^__libsock_' "$tmp/pinned" >"$tmp/public"
callbacks='async_run reactor_on_close reactor_remove sock_touch'
grep -v -x -F "${callbacks// /$'\n'}" "$tmp/public" >"$tmp/forwarded"
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
  if [[ -s $tmp/declared ]] && diff -u "$tmp/public" "$tmp/declared" >"$tmp/diff2"; then
    pass "list-is-the-header ($(wc -l <"$tmp/declared") declarations)"
  else
    sed -n 's/^+\([^+]\)/  declared, not in the list: \1/p; s/^-\([^-]\)/  in the list, not declared: \1/p' "$tmp/diff2" >&2
    fail list-is-the-header "include/libsock.h declares other functions than $list"
  fi
else
  cat "$tmp/err" >&2
  fail list-is-the-header "include/libsock.h does not compile"
fi

# Second names: __libsock_<name> for exactly the functions that are not
# callbacks, each at <name>'s address.
nm -D --defined-only "$lib" | awk 'NF == 3 { print $3, $1 }' | sort >"$tmp/addr"
sed -n 's/^__libsock_//p' "$tmp/pinned" | sort >"$tmp/aliased"
bad=""
while read -r name; do
  a=$(awk -v n="$name" '$1 == n { print $2 }' "$tmp/addr")
  b=$(awk -v n="__libsock_$name" '$1 == n { print $2 }' "$tmp/addr")
  [[ -n $a && $a == "$b" ]] || bad+=" $name"
done <"$tmp/forwarded"
if [[ -z $bad ]] && diff -q "$tmp/forwarded" "$tmp/aliased" >/dev/null; then
  pass "aliases (__libsock_<name> = <name>, $(wc -l <"$tmp/aliased") functions)"
else
  diff -u "$tmp/forwarded" "$tmp/aliased" | sed -n 's/^[-+][^-+].*/  &/p' >&2
  fail aliases "__libsock_ names differ from the non-callback functions or point elsewhere:${bad:- (list)}"
fi

# libsock_nonshared.a: hidden strong definitions of the same functions.
ns=build/lib/libsock_nonshared.a
if [[ -f $ns ]]; then
  readelf -sW "$ns" | awk '$5 == "GLOBAL" || $5 == "WEAK" { print $5, $6, $7, $8 }' >"$tmp/ns"
  awk '$3 != "UND" { print $4 }' "$tmp/ns" | sort >"$tmp/ns-defined"
  awk '$3 != "UND" && !($1 == "GLOBAL" && $2 == "HIDDEN") { print $4 }' "$tmp/ns" >"$tmp/ns-exposed"
  awk '$3 == "UND" { print $4 }' "$tmp/ns" | sort >"$tmp/ns-needed"
  { cat "$tmp/forwarded"; echo __libsock_nonshared; } | sort >"$tmp/ns-want"
  sed 's/^/__libsock_/' "$tmp/forwarded" | sort >"$tmp/ns-want-needed"
  if diff -u "$tmp/ns-want" "$tmp/ns-defined" >"$tmp/diff3" &&
    diff -u "$tmp/ns-want-needed" "$tmp/ns-needed" >>"$tmp/diff3" && [[ ! -s $tmp/ns-exposed ]]; then
    pass "nonshared ($(wc -l <"$tmp/forwarded") hidden strong definitions)"
  else
    sed -n 's/^[-+][^-+].*/  &/p' "$tmp/diff3" >&2
    sed 's/^/  not GLOBAL HIDDEN: /' "$tmp/ns-exposed" >&2
    fail nonshared "$ns does not define exactly the non-callback functions, hidden"
  fi
else
  fail nonshared "$ns missing: run make build"
fi

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [[ $soname == "libsock.so.$major" ]]; then
  pass "soname ($soname)"
else
  fail soname "SONAME '$soname', expected libsock.so.$major"
fi

# libsock.so: the -lsock linker script (comments aside, exactly these two
# commands), next to the symlink it names.
script=build/lib/libsock.so
if [[ $(readlink build/lib/libsock.so.$major) == "libsock.so.$version" ]] &&
  [[ -f $script && ! -L $script ]] &&
  [[ $(sed 's|/\*.*\*/||; /\/\*/,/\*\//d; /^[[:space:]]*$/d' "$script") == \
    "EXTERN ( __libsock_nonshared )"$'\n'"GROUP ( libsock.so.$major libsock_nonshared.a )" ]]; then
  pass "layout (libsock.so.$major -> libsock.so.$version; libsock.so: GROUP ( libsock.so.$major libsock_nonshared.a ))"
else
  fail layout "build/lib/libsock.so.$major must point to libsock.so.$version, libsock.so be the linker script"
fi

[[ $failed -eq 0 ]]
