# TLS through the rw hooks (issue 7): OpenSSL adapter, example server,
# tests and the TLS bench row. Included by the Makefile (-include mk/*.mk).
#
#   make tls        build the adapter, examples/tls_server, the TLS tests
#                   and bench/bench_tls into build/tls/
#   make test-tls   run tests.d/30-tls.sh (ends with "N passed, N failed")
#   make bench-tls  run the TLS bench: bench/results/tls.md and the
#                   "## TLS" section of BENCHMARKS.md (when it exists)
#
# OpenSSL comes from Debian's libssl-dev: installed with the other test
# dependencies (scripts/deps.sh) when pkg-config cannot find it.

TLS_OUT    := build/tls
TLS_CC     ?= $(CC)
TLS_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -g \
              -Iinclude -Iexamples -Itls-tests
TLS_LDLIBS := -L$(LIBDIR) -lsock -lpthread -Wl,-rpath,$(CURDIR)/$(LIBDIR)
TLS_LIBSO  := $(LIBDIR)/libsock.so
TLS_DEPS   := examples/tls.c examples/tls.h include/libsock.h $(TLS_LIBSO) \
              $(TLS_OUT)/.openssl
TLS_BINS   := $(TLS_OUT)/tls_server $(TLS_OUT)/test_transfer \
              $(TLS_OUT)/test_lifecycle $(TLS_OUT)/bench_tls

.PHONY: tls test-tls bench-tls tls-openssl

tls: $(TLS_BINS)

# OpenSSL headers and libraries (libssl-dev), installed when missing.
tls-openssl:
	@pkg-config --exists openssl 2>/dev/null || scripts/deps.sh
	@pkg-config --exists openssl || { echo "OpenSSL still missing"; exit 1; }

$(TLS_OUT)/.openssl:
	@$(MAKE) --no-print-directory tls-openssl
	@mkdir -p $(TLS_OUT)
	@pkg-config --modversion openssl > $@

# The library itself: built once when missing (make build refreshes it).
$(TLS_LIBSO):
	@$(MAKE) --no-print-directory build

$(TLS_OUT)/%: examples/%.c $(TLS_DEPS)
	$(TLS_CC) $(TLS_CFLAGS) $$(pkg-config --cflags openssl) -o $@ $< \
	  examples/tls.c $(TLS_LDLIBS) $$(pkg-config --libs openssl)

$(TLS_OUT)/%: tls-tests/%.c tls-tests/tls_test.h $(TLS_DEPS)
	$(TLS_CC) $(TLS_CFLAGS) $$(pkg-config --cflags openssl) -o $@ $< \
	  examples/tls.c $(TLS_LDLIBS) $$(pkg-config --libs openssl)

$(TLS_OUT)/%: bench/%.c $(TLS_DEPS)
	$(TLS_CC) $(TLS_CFLAGS) $$(pkg-config --cflags openssl) -o $@ $< \
	  examples/tls.c $(TLS_LDLIBS) $$(pkg-config --libs openssl)

test-tls:
	@tests.d/30-tls.sh

bench-tls: tls
	@bench/tls-bench.sh
