#!/usr/bin/env bash
# Runs every test of the project and prints one closing line:
#   N passed, N failed, N skipped
# counting cargo tests, C harness cases (shared and static builds), the ABI
# tests of abi-test/ and the PASS/FAIL lines of the symbol, version, header,
# man and install checks (scripts/check-*.sh), and the suites in tests.d/.
# Skipped tests (a SKIP line, a cargo test marked ignored) are counted and
# listed with their reason just before that line; each section says how
# long it took.
#
# First, scripts/deps.sh installs the Debian packages the tests need when
# one is missing (apt-get, once, quietly).
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
skipped=0
log=$(mktemp)
skips=$(mktemp)  # "SKIP name (reason)  [section]", one a line
times=$(mktemp)  # "section: seconds"
trap 'rm -f "$log" "$skips" "$times"' EXIT

section=
started=$SECONDS
# begin NAME: starts a section (and ends the previous one, timing it)
begin() {
  [[ -n $section ]] && echo "$section: $((SECONDS - started)) s" >>"$times"
  section=$1
  started=$SECONDS
  echo "== $section"
}

# skip_lines FILE: adds FILE's SKIP lines to the list, tagged with the
# section; prints how many there were
skip_lines() {
  grep '^SKIP ' "$1" | awk -v tag="$section" '{ print $0 "  [" tag "]" }' >>"$skips"
  grep -c '^SKIP ' "$1"
}

# cargo_counts FILE: adds the "test result:" lines of a cargo test run;
# ignored tests are skips
cargo_counts() {
  local p f i
  while read -r p f i; do
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + i))
  done < <(sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed; \([0-9]*\) ignored.*/\1 \2 \3/p' "$1")
  sed -n 's/^test \(.*\) \.\.\. ignored\(, \(.*\)\)\{0,1\}$/SKIP cargo:\1 (\3)/p' "$1" |
    sed 's/ ()$/ (marked #[ignore])/' | awk -v tag="$section" '{ print $0 "  [" tag "]" }' >>"$skips"
}

closing() {
  [[ -n $section ]] && echo "$section: $((SECONDS - started)) s" >>"$times"
  echo
  echo "time per section:"
  sed 's/^/  /' "$times"
  if [[ $skipped -gt 0 ]]; then
    echo "skipped ($skipped):"
    sed 's/^/  /' "$skips"
    local listed
    listed=$(wc -l <"$skips")
    [[ $listed -lt $skipped ]] && echo "  ($((skipped - listed)) more without a SKIP line: see the sections above)"
  fi
  echo "$passed passed, $failed failed, $skipped skipped"
}

begin "dependencies (scripts/deps.sh)"
if ! scripts/deps.sh; then
  echo "FAIL dependencies (the tests that need them will fail too)"; failed=$((failed + 1))
fi

begin "cargo test"
cargo test 2>&1 | tee "$log"
cargo_rc=${PIPESTATUS[0]}
cargo_counts "$log"
if [[ $cargo_rc -ne 0 ]] && ! grep -q '^test result: FAILED' "$log"; then
  echo "cargo test did not run (build failure)"; failed=$((failed + 1))
fi

begin build
if ! make --no-print-directory build; then
  echo "build failed"; failed=$((failed + 1))
  closing
  exit 1
fi

for mode in shared static; do
  begin "C harness ($mode)"
  c-tests/run.sh "$mode" | tee "$log"
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  if [[ -z $line ]]; then
    echo "C harness ($mode) printed no summary"; failed=$((failed + 1)); continue
  fi
  p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
  passed=$((passed + p)); failed=$((failed + f))
  skipped=$((skipped + $(skip_lines "$log")))
done

# The ABI of include/libsock.h against the Rust definitions: the bit-field
# tests (counted like cargo tests) and ctest2's generated checks (one case:
# a `main` that prints "PASSED <n> tests" or panics).
begin "ABI (abi-test: ctest2, bit-fields)"
cargo test -p libsock-abi-test --no-fail-fast 2>&1 | tee "$log"
abi_rc=${PIPESTATUS[0]}
cargo_counts "$log"
if n=$(sed -n 's/^PASSED \([0-9]*\) tests$/\1/p' "$log") && [[ -n $n ]]; then
  echo "PASS abi/ctest2 ($n checks)"; passed=$((passed + 1))
else
  echo "FAIL abi/ctest2"; failed=$((failed + 1))
fi
if [[ $abi_rc -ne 0 ]] && ! grep -q -e '^test result: FAILED' -e '^bad ' "$log"; then
  echo "FAIL abi-test (exit status $abi_rc: build failure or crash)"; failed=$((failed + 1))
fi

# Checks that print PASS/FAIL (and SKIP) lines; a check that fails without
# printing a FAIL line (crash, missing tool) counts as one failure.
for check in check-symbols check-version check-header check-man check-install; do
  begin "$check"
  make --no-print-directory "$check" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log")
  passed=$((passed + p)); failed=$((failed + f))
  skipped=$((skipped + $(skip_lines "$log")))
  if [[ $rc -ne 0 && $f -eq 0 ]]; then
    echo "FAIL $check (exit status $rc)"; failed=$((failed + 1))
  fi
done

# Suites of the examples, TLS and reliability work: every executable
# tests.d/*.sh, whose last line is "N passed, N failed" or
# "N passed, N failed, N skipped"; without the skipped count, its SKIP lines
# are counted.
for suite in tests.d/*.sh; do
  [[ -x $suite ]] || continue
  begin "$suite"
  "$suite" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  line=$(tail -n 1 "$log")
  if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
    passed=$((passed + BASH_REMATCH[1])); failed=$((failed + BASH_REMATCH[2]))
    s=$(skip_lines "$log")
    skipped=$((skipped + ${BASH_REMATCH[4]:-$s}))
    if [[ $rc -ne 0 && ${BASH_REMATCH[2]} -eq 0 ]]; then
      echo "FAIL $suite (exit status $rc)"; failed=$((failed + 1))
    fi
  else
    echo "FAIL $suite (no closing summary line)"; failed=$((failed + 1))
  fi
done

closing
[[ $failed -eq 0 ]]
