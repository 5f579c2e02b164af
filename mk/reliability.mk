# Reliability under threads, faults and hostile use (issue 6): stress/,
# tests.d/40-reliability.sh. Included by the Makefile (-include mk/*.mk).
#
#   make test-reliability  the quick run that `make test` makes (2-3 min)
#   make test-stress       long stress runs (several seeds), 40 fuzz seeds
#   make test-valgrind     the C harness (c-tests/run.sh, VALGRIND=1) and the
#                          stress programs under valgrind memcheck
#   make test-threads      DRD on the stress programs and on selected c-tests
#   make test-asan         the stress programs and the C harness (shared and
#                          static) built with -fsanitize=address,undefined
#   make test-checkers     all four above (what .ci/run should add)
#
# Every target prints PASS/FAIL lines and ends with "N passed, N failed";
# see stress/run.sh for the knobs (STRESS_SEED, STRESS_SECONDS, FUZZ_SEEDS,
# FUZZ_OPS).

.PHONY: test-reliability test-stress test-valgrind test-threads test-asan \
	test-checkers

test-reliability: build
	@stress/run.sh quick

test-stress: build
	@stress/run.sh stress

test-valgrind: build
	@stress/run.sh valgrind

test-threads: build
	@stress/run.sh threads

test-asan: build
	@stress/run.sh asan

test-checkers: build
	@stress/run.sh all
