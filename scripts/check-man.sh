#!/usr/bin/env bash
# The man pages (make man, issue 14):
# - the generator's own checks (scripts/gen-man.py --self-test);
# - every page renders with `groff -man -ww` (all warnings) without a
#   warning, and `man -l` shows it under its name;
# - every function of abi/libsock.symbols (the header's functions and the
#   four callbacks it declares), the macros sock_write, sock_write2,
#   sock_sendfile, sock_uuid2fd and FDUUID_FAIL, and the overview libsock
#   have a page; and no page names something the header lost.
# Prints PASS/FAIL lines; exits non-zero when one failed.
set -uo pipefail
cd "$(dirname "$0")/.."

failed=0
pass() { echo "PASS man/$1"; }
fail() { echo "FAIL man/$1${2:+ ($2)}"; failed=$((failed + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=build/man/man3

if python3 scripts/gen-man.py --self-test >"$tmp/self" 2>&1; then
  pass "generator-self-test ($(tail -n 1 "$tmp/self"))"
else
  sed 's/^/  /' "$tmp/self" >&2
  fail generator-self-test
fi

if ! make --no-print-directory -s man >"$tmp/log" 2>&1; then
  sed 's/^/  /' "$tmp/log" >&2
  fail build "make man"
  exit 1
fi
pass build

# Rendering: no warning from groff (-ww: all of them) nor from man.
for page in "$out"/*.3; do
  name=$(basename "$page" .3)
  groff -man -Tutf8 -ww -z "$page" >"$tmp/warn" 2>&1
  MANWIDTH=80 man --warnings -l "$page" 2>>"$tmp/warn" >"$tmp/text"
  if [[ -s $tmp/warn ]]; then
    sed 's/^/  /' "$tmp/warn" >&2
    fail "render/$name" "warnings"
  elif ! grep -Eq "^ *$name +- " "$tmp/text"; then
    fail "render/$name" "no NAME line '$name - ...' in man -l's output"
  else
    pass "render/$name"
  fi
done

# Coverage: the exported functions (the pinned symbol list, less the
# __libsock_ second names the -lsock wrappers call), the macros of the
# header, and the overview.
want=$( (grep -v -e '^#' -e '^__libsock_' abi/libsock.symbols
  printf '%s\n' sock_write sock_write2 sock_sendfile sock_uuid2fd FDUUID_FAIL libsock) | sort)
have=$(cd "$out" && ls -- *.3 | sed 's/\.3$//' | sort)
missing=$(comm -23 <(echo "$want") <(echo "$have"))
extra=$(comm -13 <(echo "$want") <(echo "$have"))
if [[ -z $missing ]]; then
  pass "every-function-and-macro-has-a-page ($(wc -l <<<"$want") pages)"
else
  fail every-function-and-macro-has-a-page "missing: $(echo $missing)"
fi
# a function declared in the header but missing from the symbol list would
# get a page the list does not name: say so
if [[ -z $extra ]]; then
  pass no-page-without-a-symbol
else
  fail no-page-without-a-symbol "pages for names abi/libsock.symbols lacks: $(echo $extra)"
fi

[[ $failed -eq 0 ]]
