# libsock-rs — build, test and install the C library.
#
#   make          release build: build/lib/libsock.so.* and libsock.a, the
#                 -lsock linker script libsock.so with libsock_nonshared.a,
#                 and include/libsock.h
#   make test     cargo tests, then the C harness against the shared and the
#                 static library, then the ABI, symbol, header, version and
#                 install checks; ends with "N passed, N failed, N skipped"
#   make install  [PREFIX=/usr/local] [DESTDIR=]: the libraries, the header,
#                 libsock.pc and the man pages (see README, "Installing")
#   make man      the man pages, build/man/man3 (mk/man.mk)
#   make uninstall  removes exactly what `make install` put there
#   make demo     see README (the example server)
#   make clean

SHELL   := /bin/bash
CARGO   ?= cargo
CC      ?= cc
# The version is set in Cargo.toml only ([package] version).
VERSION := $(shell awk -F'"' '/^\[/ { pkg = ($$0 == "[package]") } pkg && /^version *=/ { print $$2; exit }' Cargo.toml)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))
LIBDIR  := build/lib
# `make build PROFILE=debug LIBDIR=build/debug/lib`: the same layout from a
# debug build, whose invariant checks abort on a violation (tests.d/15-debug.sh).
PROFILE ?= release
SONAME  := libsock.so.$(MAJOR)

# Installation (GNU conventions; DESTDIR is prepended, never recorded).
PREFIX       ?= /usr/local
prefix       ?= $(PREFIX)
libdir       ?= $(prefix)/lib
includedir   ?= $(prefix)/include
pkgconfigdir ?= $(libdir)/pkgconfig
mandir       ?= $(prefix)/share/man
man3dir      ?= $(mandir)/man3
INSTALL      ?= install
# What a program linking libsock.a needs besides it: rustc's
# `native-static-libs` for this crate (`make native-static-libs` prints it),
# without -lc.
LIBS_PRIVATE ?= -lgcc_s -lutil -lrt -lpthread -lm -ldl

.PHONY: all build header test cargo-test c-test clean lint abi-test \
	check-symbols check-header check-version check-install \
	pc install uninstall native-static-libs clang print-version

all: build man

# The release libraries, named like an installed C library, and the header.
# libsock.so is a linker script (src/libsock.so.in), as glibc's libc.so:
# -lsock links libsock.so.$(MAJOR) and, into the program,
# libsock_nonshared.a (src/nonshared.c), whose strong definitions make the
# library's functions win over a program's weak fallbacks (README, "Using it").
NONSHARED_CFLAGS := -std=c99 -O2 -g -fPIC -Wall -Wextra -Werror -Iinclude

build:
	$(CARGO) build $(if $(filter release,$(PROFILE)),--release)
	@$(if $(filter release,$(PROFILE)),$(MAKE) --no-print-directory header)
	@mkdir -p $(LIBDIR)
	@# copy, then rename: programs running against the old file keep it
	cp -f target/$(PROFILE)/libsock.so $(LIBDIR)/.libsock.so.new
	mv -f $(LIBDIR)/.libsock.so.new $(LIBDIR)/libsock.so.$(VERSION)
	ln -sf libsock.so.$(VERSION) $(LIBDIR)/$(SONAME)
	cp -f target/$(PROFILE)/libsock.a $(LIBDIR)/.libsock.a.new
	mv -f $(LIBDIR)/.libsock.a.new $(LIBDIR)/libsock.a
	$(CC) $(NONSHARED_CFLAGS) -c src/nonshared.c -o $(LIBDIR)/.nonshared.o
	rm -f $(LIBDIR)/.libsock_nonshared.a.new
	$(AR) rcD $(LIBDIR)/.libsock_nonshared.a.new $(LIBDIR)/.nonshared.o
	mv -f $(LIBDIR)/.libsock_nonshared.a.new $(LIBDIR)/libsock_nonshared.a
	@# mv replaces the file or an older build's symlink, never its target
	sed 's/@MAJOR@/$(MAJOR)/g' src/libsock.so.in > $(LIBDIR)/.libsock.so.script
	mv -f $(LIBDIR)/.libsock.so.script $(LIBDIR)/libsock.so

# Copy the header cbindgen generated (newest build) into include/.
header:
	@h=$$(ls -t target/release/build/libsock-*/out/libsock.h 2>/dev/null | head -n 1); \
	  test -n "$$h" || { echo "no generated header: run cargo build --release"; exit 1; }; \
	  cmp -s "$$h" include/libsock.h || { cp "$$h" include/libsock.h; echo "include/libsock.h regenerated"; }

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy -p libsock-abi-test --all-targets -- -D warnings

# cargo tests first: they include the check that the committed header is
# the generated one, which must run before `build` refreshes it.
test:
	@scripts/test-all.sh

# ABI of include/libsock.h against the Rust definitions (abi-test/): ctest2
# (sizes, alignments, fields, signatures, macros) and the bit-fields.
abi-test:
	$(CARGO) test -p libsock-abi-test

# The dynamic symbols and SONAME of the shared library (after `make build`).
check-symbols:
	@scripts/check-symbols.sh

# The header alone, twice, in use, with gcc and clang (C99, C11) and as C++.
check-header: clang
	@scripts/check-header.sh

# clang for check-header: installed with the other test dependencies
# (scripts/deps.sh) when missing.
clang:
	@command -v clang >/dev/null && command -v clang++ >/dev/null || scripts/deps.sh

# Cargo.toml's version in the header, the SONAME, the file names, libsock.pc.
check-version:
	@scripts/check-version.sh

# make install / uninstall into temporary prefixes, then programs built with
# pkg-config against the installed shared and static library.
check-install:
	@scripts/check-install.sh

# libsock.pc for PREFIX, from pkgconfig/libsock.pc.in.
# libdir and includedir are written relative to ${prefix} when under it.
PCFILE ?= build/libsock.pc
pc:
	@mkdir -p $(dir $(PCFILE))
	sed -e 's|@PREFIX@|$(prefix)|g' \
	    -e 's|@LIBDIR@|$(patsubst $(prefix)/%,$${prefix}/%,$(libdir))|g' \
	    -e 's|@INCLUDEDIR@|$(patsubst $(prefix)/%,$${prefix}/%,$(includedir))|g' \
	    -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@LIBS_PRIVATE@|$(LIBS_PRIVATE)|g' pkgconfig/libsock.pc.in > $(PCFILE)

# install does not build: `make` first, as yourself (cargo run by `sudo make
# install` would leave root-owned files in target/).
install:
	@for f in libsock.so.$(VERSION) libsock.so libsock_nonshared.a libsock.a; do \
	  test -f $(LIBDIR)/$$f -a ! -L $(LIBDIR)/$$f || \
	    { echo "$(LIBDIR)/$$f missing (or from an older build): run make first"; exit 1; }; \
	done
	$(INSTALL) -d $(DESTDIR)$(libdir) $(DESTDIR)$(includedir) $(DESTDIR)$(pkgconfigdir)
	$(INSTALL) -m 755 $(LIBDIR)/libsock.so.$(VERSION) $(DESTDIR)$(libdir)/libsock.so.$(VERSION)
	ln -sf libsock.so.$(VERSION) $(DESTDIR)$(libdir)/$(SONAME)
	rm -f $(DESTDIR)$(libdir)/libsock.so
	$(INSTALL) -m 644 $(LIBDIR)/libsock.so $(DESTDIR)$(libdir)/libsock.so
	$(INSTALL) -m 644 $(LIBDIR)/libsock_nonshared.a $(DESTDIR)$(libdir)/libsock_nonshared.a
	$(INSTALL) -m 644 $(LIBDIR)/libsock.a $(DESTDIR)$(libdir)/libsock.a
	$(INSTALL) -m 644 include/libsock.h $(DESTDIR)$(includedir)/libsock.h
	@$(MAKE) --no-print-directory pc PCFILE=$(DESTDIR)$(pkgconfigdir)/libsock.pc
	chmod 644 $(DESTDIR)$(pkgconfigdir)/libsock.pc
	$(INSTALL) -d $(DESTDIR)$(man3dir)
	$(INSTALL) -m 644 $(addprefix $(MAN_OUT)/,$(MAN_PAGES)) $(DESTDIR)$(man3dir)

uninstall:
	@for f in $(DESTDIR)$(libdir)/libsock.so.$(VERSION) $(DESTDIR)$(libdir)/libsock.a \
	  $(DESTDIR)$(includedir)/libsock.h $(DESTDIR)$(pkgconfigdir)/libsock.pc; do test -e $$f && exit 0; done; \
	  echo "make uninstall: nothing to remove, libsock is not installed under $(DESTDIR)$(prefix) (give the PREFIX and DESTDIR of make install)"; exit 1
	rm -f $(DESTDIR)$(libdir)/libsock.so.$(VERSION) $(DESTDIR)$(libdir)/$(SONAME) \
	      $(DESTDIR)$(libdir)/libsock.so $(DESTDIR)$(libdir)/libsock_nonshared.a \
	      $(DESTDIR)$(libdir)/libsock.a \
	      $(DESTDIR)$(includedir)/libsock.h $(DESTDIR)$(pkgconfigdir)/libsock.pc
	rm -f $(addprefix $(DESTDIR)$(man3dir)/,$(MAN_PAGES))

# The version (from Cargo.toml), for scripts.
print-version:
	@echo $(VERSION)

# What rustc says a program linking libsock.a needs (rebuilds the crate once
# with an extra flag; compare with LIBS_PRIVATE above).
native-static-libs:
	$(CARGO) rustc --release --lib -- --print native-static-libs 2>&1 | grep native-static-libs

clean:
	$(CARGO) clean
	rm -rf build

# Targets contributed by the examples, benchmarks and TLS work.
-include mk/*.mk
