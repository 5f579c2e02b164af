#!/usr/bin/env bash
# Reliability (issue 6): threads, faults and hostile use — the quick run of
# stress/run.sh: regression tests of the failures found, the fault programs,
# a short stress and fuzz run, the same under ASan/UBSan, and short runs
# under valgrind memcheck and DRD, plus controls that prove the checkers
# catch deliberate faults. Every check prints "PASS name" or "FAIL name";
# the last line is "N passed, N failed"; the exit status is non-zero when a
# check failed. The full checker runs: make test-stress test-valgrind
# test-threads test-asan (mk/reliability.mk).
exec "$(dirname "$0")/../stress/run.sh" quick
