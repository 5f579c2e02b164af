#!/usr/bin/env bash
# The interface version is set once, in Cargo.toml ([package] version), and
# everything else takes it from there (run after `make build`):
# - the header's LIB_SOCK and LIB_SOCK_VERSION_MAJOR/MINOR/PATCH, as the C
#   compiler reads them (build.rs fills cbindgen.toml's @VERSION@ etc.);
# - the SONAME libsock.so.<major> (build.rs) and the file name
#   libsock.so.<version> (Makefile);
# - the Makefile's VERSION and the Version of the generated libsock.pc;
# - Cargo.lock's entry for the crate;
# - no build file spells the version out itself.
# Prints PASS/FAIL lines; exits non-zero when one failed.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/version.sh

failed=0
pass() { echo "PASS version/$1"; }
fail() { echo "FAIL version/$1${2:+ ($2)}"; failed=$((failed + 1)); }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [[ ! $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  fail cargo-toml "no MAJOR.MINOR.PATCH version in Cargo.toml: '$version'"
  exit 1
fi

cat >"$tmp/v.c" <<'C'
#include <stdio.h>
#include "libsock.h"
int main(void) {
  printf("%s %d %d %d\n", LIB_SOCK, LIB_SOCK_VERSION_MAJOR,
         LIB_SOCK_VERSION_MINOR, LIB_SOCK_VERSION_PATCH);
  return 0;
}
C
if ${CC:-cc} -std=c11 -Wall -Wextra -Werror -Iinclude -o "$tmp/v" "$tmp/v.c" &&
  got=$("$tmp/v") && [[ $got == "$version $major $minor $patch" ]]; then
  pass "header ($got)"
else
  fail header "LIB_SOCK and LIB_SOCK_VERSION_* give '${got:-?}', Cargo.toml $version"
fi

so=build/lib/libsock.so.$version
soname=$(readelf -d "$so" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [[ $soname == "libsock.so.$major" ]]; then
  pass "soname ($so: $soname)"
else
  fail soname "$so: SONAME '${soname:-none}', expected libsock.so.$major"
fi

mk=$(make --no-print-directory -s print-version)
if [[ $mk == "$version" ]]; then
  pass "makefile ($mk)"
else
  fail makefile "make print-version gives '$mk'"
fi

if make --no-print-directory -s pc PCFILE="$tmp/pc/libsock.pc" PREFIX=/usr/local >/dev/null &&
  pcv=$(PKG_CONFIG_PATH="$tmp/pc" PKG_CONFIG_LIBDIR="$tmp/pc" pkg-config --modversion libsock) &&
  [[ $pcv == "$version" ]]; then
  pass "pkg-config ($pcv)"
else
  fail pkg-config "libsock.pc Version '${pcv:-?}'"
fi

lock=$(awk '/^name = "libsock"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [[ $lock == "$version" ]]; then
  pass "cargo-lock ($lock)"
else
  fail cargo-lock "Cargo.lock has libsock $lock"
fi

# The build machinery must derive the version, not repeat it.
files=(Makefile build.rs cbindgen.toml pkgconfig scripts abi abi-test/build.rs abi-test/src abi-test/tests abi-test/c)
if hits=$(grep -rnF -- "$version" "${files[@]}" 2>/dev/null); then
  echo "$hits" | sed 's/^/  /' >&2
  fail single-source "the version is written out in the files above"
else
  pass single-source
fi

[[ $failed -eq 0 ]]
