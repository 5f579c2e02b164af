# libsock-rs — build, test and install the C library.
#
#   make          release build: build/lib/libsock.{so,a} + include/libsock.h
#   make test     cargo tests, then the C harness against the shared and the
#                 static library; ends with "N passed, N failed"
#   make demo     see README (the example server)
#   make clean

SHELL   := /bin/bash
CARGO   ?= cargo
CC      ?= cc
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))
LIBDIR  := build/lib
SONAME  := libsock.so.$(MAJOR)

.PHONY: all build header test cargo-test c-test clean lint

all: build

# The release libraries, named like an installed C library, and the header.
build:
	$(CARGO) build --release
	@$(MAKE) --no-print-directory header
	@mkdir -p $(LIBDIR)
	cp -f target/release/libsock.so $(LIBDIR)/libsock.so.$(VERSION)
	ln -sf libsock.so.$(VERSION) $(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(LIBDIR)/libsock.so
	cp -f target/release/libsock.a $(LIBDIR)/libsock.a

# Copy the header cbindgen generated (newest build) into include/.
header:
	@h=$$(ls -t target/release/build/libsock-*/out/libsock.h 2>/dev/null | head -n 1); \
	  test -n "$$h" || { echo "no generated header: run cargo build --release"; exit 1; }; \
	  cmp -s "$$h" include/libsock.h || { cp "$$h" include/libsock.h; echo "include/libsock.h regenerated"; }

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# cargo tests first: they include the check that the committed header is
# the generated one, which must run before `build` refreshes it.
test:
	@scripts/test-all.sh

clean:
	$(CARGO) clean
	rm -rf build
