#!/usr/bin/env bash
# `make install` / `make uninstall`, into temporary directories:
# - staged (DESTDIR=<tmp> PREFIX=/usr/local): exactly the expected files and
#   symlinks appear next to unrelated files already there, libsock.pc names
#   /usr/local (not DESTDIR), and `make uninstall` removes exactly them;
# - PREFIX=<tmp> (no DESTDIR): abi/install/prog.c built with
#   `pkg-config --cflags --libs libsock` (shared: -lsock finds the installed
#   linker script libsock.so, the program runs against the installed
#   libsock.so.<major>) and with `pkg-config --static` against libsock.a
#   (no libsock.so needed); both run; so does c-tests/link/weak_fallbacks.c
#   (a program with weak fallbacks of sock_* functions: the library's
#   definitions must run, in both links); `make uninstall` leaves nothing.
# Prints PASS/FAIL lines; exits non-zero when one failed.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/version.sh

failed=0
pass() { echo "PASS install/$1"; }
fail() { echo "FAIL install/$1${2:+ ($2)}"; failed=$((failed + 1)); }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CC=${CC:-cc}
MAKE_=(make --no-print-directory -s)

# Files and symlinks under a directory, relative, sorted.
contents() { (cd "$1" && find . \( -type f -o -type l \) | sed 's|^\./||' | sort); }

installed="lib/libsock.a
lib/libsock.so
lib/libsock_nonshared.a
lib/libsock.so.$major
lib/libsock.so.$version
lib/pkgconfig/libsock.pc
include/libsock.h"
installed=$(sort <<<"$installed")

# Default prefix.
dry=$(make --no-print-directory -n install 2>&1)
if grep -q "/usr/local/lib/libsock.so.$version" <<<"$dry"; then
  pass default-prefix-usr-local
else
  fail default-prefix-usr-local "make -n install does not target /usr/local/lib"
fi

# The man pages: built as `make` builds them, installed in share/man/man3.
"${MAKE_[@]}" man >"$tmp/log" 2>&1 || { sed 's/^/  /' "$tmp/log" >&2; fail man-pages-built "make man"; }
installed=$(sort <<<"$installed"$'\n'"$(python3 scripts/gen-man.py --list | sed 's|.*|share/man/man3/&.3|')")

# --- staged install next to other files --------------------------------------
stage=$tmp/stage
mkdir -p "$stage/usr/local/lib/pkgconfig" "$stage/usr/local/include"
touch "$stage/usr/local/lib/libother.so.1" "$stage/usr/local/include/other.h" \
  "$stage/usr/local/lib/pkgconfig/other.pc"
before=$(contents "$stage")
if "${MAKE_[@]}" install DESTDIR="$stage" PREFIX=/usr/local >"$tmp/log" 2>&1; then
  expected=$(sort <<<"$before"$'\n'"$(sed 's|^|usr/local/|' <<<"$installed")")
  if [[ $(contents "$stage") == "$expected" ]]; then
    pass staged-files
  else
    diff <(echo "$expected") <(contents "$stage") | sed 's/^/  /' >&2
    fail staged-files "unexpected files under DESTDIR"
  fi
  lib=$stage/usr/local/lib
  if [[ $(readlink "$lib/libsock.so.$major") == "libsock.so.$version" &&
    -f $lib/libsock.so && ! -L $lib/libsock.so &&
    -f $lib/libsock.so.$version && ! -L $lib/libsock.so.$version ]] &&
    cmp -s "$lib/libsock.so.$version" "build/lib/libsock.so.$version" &&
    cmp -s "$lib/libsock.so" build/lib/libsock.so &&
    cmp -s "$lib/libsock_nonshared.a" build/lib/libsock_nonshared.a &&
    cmp -s "$lib/libsock.a" build/lib/libsock.a &&
    cmp -s "$stage/usr/local/include/libsock.h" include/libsock.h; then
    pass staged-libraries-and-symlinks
  else
    fail staged-libraries-and-symlinks "libsock.so.$major -> libsock.so.$version; libsock.so (the linker script), libsock_nonshared.a, libsock.a: copies of build/"
  fi
  pc=$lib/pkgconfig/libsock.pc
  if grep -qx 'prefix=/usr/local' "$pc" && ! grep -q "$stage" "$pc" &&
    grep -qx "Version: $version" "$pc"; then
    pass staged-pc-prefix
  else
    sed 's/^/  /' "$pc" >&2
    fail staged-pc-prefix "libsock.pc must name PREFIX, not DESTDIR"
  fi
  "${MAKE_[@]}" uninstall DESTDIR="$stage" PREFIX=/usr/local >>"$tmp/log" 2>&1
  if [[ $(contents "$stage") == "$before" ]]; then
    pass staged-uninstall-exact
  else
    diff <(echo "$before") <(contents "$stage") | sed 's/^/  /' >&2
    fail staged-uninstall-exact "uninstall left or removed other files"
  fi
else
  sed 's/^/  /' "$tmp/log" >&2
  fail staged-install "make install DESTDIR=... failed"
fi

# --- a prefix, used through pkg-config ---------------------------------------
prefix=$tmp/prefix
if "${MAKE_[@]}" install PREFIX="$prefix" >"$tmp/log" 2>&1; then
  export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
  if [[ $(pkg-config --modversion libsock 2>/dev/null) == "$version" ]]; then
    pass pkg-config-finds-libsock
  else
    fail pkg-config-finds-libsock "pkg-config --modversion libsock"
  fi

  # Shared: the flags as pkg-config gives them; the loader finds
  # libsock.so.<major> (the SONAME) in the prefix.
  # shellcheck disable=SC2046
  if $CC -std=c11 -Wall -Wextra -Werror -o "$tmp/prog-shared" abi/install/prog.c \
    $(pkg-config --cflags --libs libsock) >"$tmp/log" 2>&1; then
    needed=$(readelf -d "$tmp/prog-shared" | sed -n 's/.*(NEEDED).*\[\(libsock[^]]*\)\].*/\1/p')
    resolved=$(LD_LIBRARY_PATH=$prefix/lib ldd "$tmp/prog-shared" | awk '$1 ~ /^libsock/ { print $3 }')
    if [[ $needed == "libsock.so.$major" && $resolved == "$prefix/lib/libsock.so.$major" ]] &&
      LD_LIBRARY_PATH=$prefix/lib timeout 60 "$tmp/prog-shared" >"$tmp/out" 2>&1 &&
      grep -qx "libsock $version ok" "$tmp/out"; then
      pass shared-program
    else
      sed 's/^/  /' "$tmp/out" >&2
      fail shared-program "NEEDED '$needed', resolved '$resolved'"
    fi
  else
    sed 's/^/  /' "$tmp/log" >&2
    fail shared-program "build with pkg-config --cflags --libs libsock"
  fi

  # Static: pkg-config --static adds Libs.private; -lsock is pointed at the
  # archive (-l:libsock.a), as the shared library sits next to it.
  static_libs=$(pkg-config --static --libs libsock | sed 's/\(^\| \)-lsock\( \|$\)/\1-l:libsock.a\2/')
  # shellcheck disable=SC2046,SC2086
  if $CC -std=c11 -Wall -Wextra -Werror -o "$tmp/prog-static" abi/install/prog.c \
    $(pkg-config --static --cflags libsock) $static_libs >"$tmp/log" 2>&1; then
    if ! readelf -d "$tmp/prog-static" | grep -q 'NEEDED.*libsock' &&
      timeout 60 "$tmp/prog-static" >"$tmp/out" 2>&1 &&
      grep -qx "libsock $version ok" "$tmp/out"; then
      pass static-program
    else
      sed 's/^/  /' "$tmp/out" >&2
      fail static-program "needs libsock.so or failed"
    fi
  else
    sed 's/^/  /' "$tmp/log" >&2
    fail static-program "build with pkg-config --static ($static_libs)"
  fi

  # A program whose event loop carries weak fallbacks of sock_flush,
  # sock_close and sock_write2_fn, shared (-lsock: the linker script) and
  # static: its test cases pass only when the library's definitions run.
  weak=(c-tests/link/weak_fallbacks.c c-tests/link/reactor.c c-tests/harness.c c-tests/util.c)
  wflags=(-std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O1 -Ic-tests -Ic-tests/link)
  for mode in shared static; do
    if [[ $mode == shared ]]; then
      # shellcheck disable=SC2207
      libs=($(pkg-config --libs libsock) -lpthread -Wl,-rpath,"$prefix/lib")
    else
      # shellcheck disable=SC2206
      libs=($static_libs)
    fi
    # shellcheck disable=SC2046
    if $CC "${wflags[@]}" $(pkg-config --cflags libsock) -o "$tmp/weak-$mode" "${weak[@]}" \
      "${libs[@]}" -Wl,--fatal-warnings >"$tmp/log" 2>&1; then
      timeout 240 "$tmp/weak-$mode" >"$tmp/out" 2>"$tmp/err"
      rc=$?
      if [[ $rc -eq 0 ]] && ! grep -q '^FAIL' "$tmp/out" && grep -q '^PASS' "$tmp/out" &&
        ! grep -q '^libsock:' "$tmp/err"; then
        pass "weak-fallbacks-$mode ($(grep -c '^PASS' "$tmp/out") cases)"
      else
        sed 's/^/  /' "$tmp/out" "$tmp/err" >&2
        fail "weak-fallbacks-$mode" "the program's weak fallbacks ran, or the library warned"
      fi
    else
      sed 's/^/  /' "$tmp/log" >&2
      fail "weak-fallbacks-$mode" "build with pkg-config"
    fi
  done

  "${MAKE_[@]}" uninstall PREFIX="$prefix" >"$tmp/log" 2>&1
  if [[ -z $(contents "$prefix") ]]; then
    pass uninstall-leaves-nothing
  else
    contents "$prefix" | sed 's/^/  left: /' >&2
    fail uninstall-leaves-nothing
  fi
else
  sed 's/^/  /' "$tmp/log" >&2
  fail prefix-install "make install PREFIX=$prefix failed"
fi

# --- man finds the installed pages; uninstall with a wrong PREFIX ------------
mp=$tmp/man-prefix
if "${MAKE_[@]}" install PREFIX="$mp" >"$tmp/log" 2>&1; then
  missing=()
  for name in $(python3 scripts/gen-man.py --list); do
    [[ $(man -M "$mp/share/man" -s 3 -w "$name" 2>/dev/null) == "$mp/share/man/man3/$name.3" ]] &&
      MANWIDTH=80 man -M "$mp/share/man" -s 3 "$name" 2>/dev/null | grep -q '^NAME' ||
      missing+=("$name")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    pass "man-finds-every-page ($(python3 scripts/gen-man.py --list | wc -l) pages)"
  else
    fail man-finds-every-page "man -M $mp/share/man -s 3 finds no page for: ${missing[*]}"
  fi
  # a PREFIX where nothing was installed: an error that says so, and nothing
  # removed from where it was installed
  if "${MAKE_[@]}" uninstall PREFIX="$tmp/not-installed-here" >"$tmp/log" 2>&1; then
    fail uninstall-wrong-prefix-fails "make uninstall PREFIX=<empty dir> succeeded"
  elif ! grep -q 'nothing to remove' "$tmp/log"; then
    sed 's/^/  /' "$tmp/log" >&2
    fail uninstall-wrong-prefix-fails "no 'nothing to remove' message"
  elif [[ ! -f $mp/include/libsock.h ]]; then
    fail uninstall-wrong-prefix-fails "files removed from the real prefix"
  else
    pass uninstall-wrong-prefix-fails
  fi
  # the README's two static links, as written there: with pkg-config
  # against the installed library, and in the tree with the flags of
  # libsock.pc's Libs.private
  recipe=$(grep -m 1 '^cc prog.c $(pkg-config --static.*# static$' README.md)
  recipe=${recipe%%#*}
  if [[ -n $recipe ]] && PKG_CONFIG_PATH=$mp/lib/pkgconfig \
    eval "${recipe/#cc prog.c/$CC abi/install/prog.c} -o $tmp/prog-readme" >"$tmp/log" 2>&1 &&
    ! readelf -d "$tmp/prog-readme" | grep -q 'NEEDED.*libsock' &&
    timeout 60 "$tmp/prog-readme" | grep -qx "libsock $version ok"; then
    pass readme-pkg-config-static-recipe
  else
    sed 's/^/  /' "$tmp/log" >&2
    fail readme-pkg-config-static-recipe "README: '$recipe'"
  fi
  private=$(sed -n 's/^Libs.private: //p' "$mp/lib/pkgconfig/libsock.pc")
  readme=$(sed -n 's|^cc -Iinclude prog.c build/lib/libsock.a \(.*\) -o prog .*# static$|\1|p' README.md)
  if [[ -n $readme && $readme == "$private" ]]; then
    pass readme-static-flags-are-libs-private
  else
    fail readme-static-flags-are-libs-private "README '$readme', libsock.pc '$private'"
  fi
  "${MAKE_[@]}" uninstall PREFIX="$mp" >"$tmp/log" 2>&1
  if [[ -z $(contents "$mp") ]]; then
    pass uninstall-removes-man-pages
  else
    contents "$mp" | sed 's/^/  left: /' >&2
    fail uninstall-removes-man-pages
  fi
else
  sed 's/^/  /' "$tmp/log" >&2
  fail man-prefix-install "make install PREFIX=$mp failed"
fi

[[ $failed -eq 0 ]]
