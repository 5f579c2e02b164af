#!/usr/bin/env bash
# Runs every test of the project and prints one closing line:
#   N passed, N failed
# counting cargo tests, C harness cases (shared and static builds), the ABI
# tests of abi-test/ and the PASS/FAIL lines of the symbol, version, header,
# man and install checks (scripts/check-*.sh), and the suites in tests.d/.
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== cargo test"
cargo test 2>&1 | tee "$log"
cargo_rc=${PIPESTATUS[0]}
while read -r p f; do
  passed=$((passed + p)); failed=$((failed + f))
done < <(sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$log")
if [[ $cargo_rc -ne 0 ]] && ! grep -q '^test result: FAILED' "$log"; then
  echo "cargo test did not run (build failure)"; failed=$((failed + 1))
fi

echo "== build"
if ! make --no-print-directory build; then
  echo "build failed"; echo "$passed passed, $((failed + 1)) failed"; exit 1
fi

for mode in shared static; do
  echo "== C harness ($mode)"
  c-tests/run.sh "$mode" | tee "$log"
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  if [[ -z $line ]]; then
    echo "C harness ($mode) printed no summary"; failed=$((failed + 1)); continue
  fi
  p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
  passed=$((passed + p)); failed=$((failed + f))
done

# The ABI of include/libsock.h against the Rust definitions: the bit-field
# tests (counted like cargo tests) and ctest2's generated checks (one case:
# a `main` that prints "PASSED <n> tests" or panics).
echo "== ABI (abi-test: ctest2, bit-fields)"
cargo test -p libsock-abi-test --no-fail-fast 2>&1 | tee "$log"
abi_rc=${PIPESTATUS[0]}
while read -r p f; do
  passed=$((passed + p)); failed=$((failed + f))
done < <(sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$log")
if n=$(sed -n 's/^PASSED \([0-9]*\) tests$/\1/p' "$log") && [[ -n $n ]]; then
  echo "PASS abi/ctest2 ($n checks)"; passed=$((passed + 1))
else
  echo "FAIL abi/ctest2"; failed=$((failed + 1))
fi
if [[ $abi_rc -ne 0 ]] && ! grep -q -e '^test result: FAILED' -e '^bad ' "$log"; then
  echo "FAIL abi-test (exit status $abi_rc: build failure or crash)"; failed=$((failed + 1))
fi

# Checks that print PASS/FAIL lines; a check that fails without printing a
# FAIL line (crash, missing tool) counts as one failure.
for check in check-symbols check-version check-header check-man check-install; do
  echo "== $check"
  make --no-print-directory "$check" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log")
  passed=$((passed + p)); failed=$((failed + f))
  if [[ $rc -ne 0 && $f -eq 0 ]]; then
    echo "FAIL $check (exit status $rc)"; failed=$((failed + 1))
  fi
done

# Suites of the examples, TLS and reliability work: every executable
# tests.d/*.sh, whose last line is "N passed, N failed".
for suite in tests.d/*.sh; do
  [[ -x $suite ]] || continue
  echo "== $suite"
  "$suite" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  line=$(tail -n 1 "$log")
  if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
    passed=$((passed + BASH_REMATCH[1])); failed=$((failed + BASH_REMATCH[2]))
    if [[ $rc -ne 0 && ${BASH_REMATCH[2]} -eq 0 ]]; then
      echo "FAIL $suite (exit status $rc)"; failed=$((failed + 1))
    fi
  else
    echo "FAIL $suite (no closing summary line)"; failed=$((failed + 1))
  fi
done

echo
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
