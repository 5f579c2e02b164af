# The example programs (examples/) and `make demo`.
#
#   make examples   build/examples/http_hello, echo and client
#   make demo       http_hello on $(DEMO_ADDR):$(PORT) serving
#                   build/demo-www (generated); Ctrl-C stops it.
#                   make demo PORT=3001 serves another port.
#
# The examples are C11 programs using only libsock's public API and
# POSIX/Linux, linked against build/lib/libsock.so (rpath set). They are
# relinked when their sources or the header change, not when the library
# is rebuilt: a program linked with libsock.so picks up the new one as it
# starts.

EX_DIR    := build/examples
EX_CFLAGS := -std=c11 -Wall -Wextra -Werror -O2 -g -Iinclude -Iexamples
EX_LIBS   := -L$(LIBDIR) -lsock -lpthread -Wl,-rpath,$(CURDIR)/$(LIBDIR)
EX_COMMON := examples/loop.c examples/loop.h include/libsock.h
EX_PROGS  := $(EX_DIR)/http_hello $(EX_DIR)/echo $(EX_DIR)/client

DEMO_ADDR ?= 127.0.0.1
PORT      ?= 3000
DEMO_PORT ?= $(PORT)
DEMO_IDLE ?= 10
DEMO_WWW  := build/demo-www

.PHONY: examples demo demo-www

examples: build
	@$(MAKE) --no-print-directory $(EX_PROGS)

$(EX_DIR)/%: examples/%.c $(EX_COMMON) | $(LIBDIR)/libsock.so
	@mkdir -p $(EX_DIR)
	$(CC) $(EX_CFLAGS) -o $@ $< examples/loop.c $(EX_LIBS)

# The client runs its own epoll loop (no listener, it ends with its
# connection): not on loop.c.
$(EX_DIR)/client: examples/client.c include/libsock.h | $(LIBDIR)/libsock.so
	@mkdir -p $(EX_DIR)
	$(CC) $(EX_CFLAGS) -o $@ $< $(EX_LIBS)

# Sample files: an index (what GET / serves) saying what the demo shows and
# linking the others, a text file, a nested folder and a larger binary file
# (8 MiB, random).
demo-www: $(DEMO_WWW)/.done

$(DEMO_WWW)/.done: mk/examples.mk
	@rm -rf $(DEMO_WWW) && mkdir -p $(DEMO_WWW)/docs
	@printf '%s\n' '<!doctype html>' '<meta charset="utf-8">' \
	  '<title>libsock-rs demo</title>' \
	  '<h1>libsock-rs: the http_hello example</h1>' \
	  '<p>This page, and every file below, is sent by <code>examples/http_hello.c</code>:' \
	  'an HTTP/1.1 keep-alive server on libsock and a small edge-triggered epoll loop' \
	  '(<code>examples/loop.c</code>). Headers go out with <code>sock_write</code>,' \
	  'files with <code>sock_sendfile</code> (the kernel&#39;s <code>sendfile</code>);' \
	  'what a slow client cannot take yet waits in the library&#39;s buffer and goes out' \
	  'when the loop calls <code>sock_flush</code> on <code>EPOLLOUT</code>.</p>' \
	  '<ul>' \
	  '<li><a href="/hello.txt">hello.txt</a>: a small text file</li>' \
	  '<li><a href="/docs/">docs/</a>: a folder answers with its index.html</li>' \
	  '<li><a href="/big.bin">big.bin</a>: 8 MiB of random bytes</li>' \
	  '<li><a href="/no-such-file">no-such-file</a>: 404</li>' \
	  '</ul>' \
	  '<p>The client side: <code>build/examples/client -p PORT /hello.txt</code>' \
	  '(<code>examples/client.c</code>: <code>sock_connect</code>, wait for writability,' \
	  'write, read, close). <code>man libsock</code> after <code>make install</code>.</p>' \
	  > $(DEMO_WWW)/index.html
	@printf 'Hello from a file sent by libsock-rs.\n' > $(DEMO_WWW)/hello.txt
	@printf '%s\n' '<!doctype html>' '<meta charset="utf-8">' \
	  '<title>docs</title>' '<p>A folder answers with its index.html.</p>' \
	  > $(DEMO_WWW)/docs/index.html
	@head -c 8388608 /dev/urandom > $(DEMO_WWW)/big.bin
	@touch $@

demo: examples demo-www
	@echo "make demo: sample files in $(DEMO_WWW) -- open http://$(DEMO_ADDR):$(DEMO_PORT)/ (make demo PORT=n for another port)"
	@$(EX_DIR)/http_hello -a $(DEMO_ADDR) -p $(DEMO_PORT) -t $(DEMO_IDLE) $(DEMO_WWW)
