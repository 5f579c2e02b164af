#!/usr/bin/env bash
# Runs every test of the project and prints one closing line:
#   N passed, N failed
# counting cargo tests and C harness cases (shared and static builds).
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

echo
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
