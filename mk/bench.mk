# `make bench`: the benchmark programs (bench/) and their run (bench/run.sh),
# which prints the table and writes BENCHMARKS.md. Knobs: see bench/run.sh
# (e.g. `make bench BENCH_QUICK=1` for a quick smoke run).
#
# The programs link a private copy of the freshly built library
# (build/bench/lib), replaced by a rename: `make build` rewrites
# build/lib/libsock.so in place (cp -f), which crashes programs that have it
# mapped when someone rebuilds meanwhile.

BENCH_DIR    := build/bench
BENCH_LIBDIR := $(BENCH_DIR)/lib
BENCH_CFLAGS := -std=c11 -Wall -Wextra -Werror -O2 -g -Iinclude -Iexamples
BENCH_LIBS   := -L$(BENCH_LIBDIR) -lsock -lpthread -Wl,-rpath,$(CURDIR)/$(BENCH_LIBDIR)
BENCH_HTTP   := examples/http_hello.c examples/loop.c
# the same server in the 2017 stack's shape: reactor thread + async_run workers
BENCH_HTTP_MT := examples/http_hello.c bench/loop_mt.c

.PHONY: bench bench-progs

bench: bench-progs
	@bench/run.sh

bench-progs: build
	@mkdir -p $(BENCH_LIBDIR)
	cp $(LIBDIR)/libsock.so.$(VERSION) $(BENCH_LIBDIR)/.$(SONAME).new
	mv -f $(BENCH_LIBDIR)/.$(SONAME).new $(BENCH_LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(BENCH_LIBDIR)/libsock.so
	$(CC) $(BENCH_CFLAGS) -o $(BENCH_DIR)/sink bench/sink.c
	$(CC) $(BENCH_CFLAGS) -o $(BENCH_DIR)/writer bench/writer.c $(BENCH_LIBS)
	$(CC) $(BENCH_CFLAGS) -o $(BENCH_DIR)/mem bench/mem.c $(BENCH_LIBS)
	$(CC) $(BENCH_CFLAGS) -o $(BENCH_DIR)/flushall bench/flushall.c $(BENCH_LIBS)
	$(CC) $(BENCH_CFLAGS) -o $(BENCH_DIR)/syscalls bench/syscalls.c $(BENCH_LIBS)
	$(CC) $(BENCH_CFLAGS) -o $(BENCH_DIR)/burst bench/burst.c $(BENCH_LIBS)
	$(CC) $(BENCH_CFLAGS) -DNO_LIBSOCK -o $(BENCH_DIR)/mem_raw bench/mem.c
	$(CC) $(BENCH_CFLAGS) -o $(BENCH_DIR)/http_hello_lib $(BENCH_HTTP) $(BENCH_LIBS)
	$(CC) $(BENCH_CFLAGS) -o $(BENCH_DIR)/http_hello_raw $(BENCH_HTTP) bench/rawsock.c
	$(CC) $(BENCH_CFLAGS) -o $(BENCH_DIR)/http_hello_mt_lib $(BENCH_HTTP_MT) $(BENCH_LIBS)
	$(CC) $(BENCH_CFLAGS) -DRAWSOCK_THREADS -o $(BENCH_DIR)/http_hello_mt_raw $(BENCH_HTTP_MT) bench/rawsock.c -lpthread
