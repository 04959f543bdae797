# duplex: plain Makefile. make, make test, make check (ASan+UBSan), make install.
CC ?= cc
PREFIX ?= /usr/local
BUILD ?= build
CFLAGS ?= -O2 -g
WARN = -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-missing-field-initializers
CPPFLAGS += -Iinclude -Isrc
SAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

LDLIBS += -pthread
# io_uring backend when liburing is installed (Debian: liburing-dev)
HAVE_URING := $(shell test -f /usr/include/liburing.h && echo 1)
ifeq ($(HAVE_URING),1)
CPPFLAGS += -DDX_HAVE_URING
LDLIBS += -luring
BACKENDS = epoll poll io_uring
else
BACKENDS = epoll poll
endif

LIB_SRCS = $(wildcard src/*.c)
CLI_SRCS = $(wildcard src/cli/*.c)
UNIT_SRCS = $(wildcard tests/unit/*.c)

LIB_OBJS = $(LIB_SRCS:%.c=$(BUILD)/%.o)
CLI_OBJS = $(CLI_SRCS:%.c=$(BUILD)/%.o)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

PYTEST ?= /usr/bin/python3 -m pytest
PYTEST_ARGS ?= -q

.PHONY: all deps test unit e2e check tsan install clean bench

all: $(BUILD)/duplex $(BUILD)/libduplex.a

$(BUILD)/%.o: %.c include/duplex.h $(wildcard src/*.h) $(wildcard src/cli/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libduplex.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/duplex: $(CLI_OBJS) $(BUILD)/libduplex.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJS) $(BUILD)/libduplex.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libduplex.a tests/unit/helpers.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -Wno-missing-prototypes $(CPPFLAGS) $(CFLAGS) $< -o $@ $(BUILD)/libduplex.a $(LDFLAGS) $(LDLIBS) -lcriterion

# Unit tests run once per backend (the loop's own tests cover both anyway).
unit: $(UNIT_BINS)
	@for t in $(UNIT_BINS); do for b in $(BACKENDS); do \
	  echo "== $$t (DUPLEX_BACKEND=$$b)"; \
	  DUPLEX_BACKEND=$$b $$t --timeout 30 || exit 1; done; done

e2e: $(BUILD)/duplex
	DUPLEX=$(abspath $(BUILD)/duplex) $(PYTEST) $(PYTEST_ARGS) tests/e2e

test: unit e2e

# The whole suite, built with AddressSanitizer and UndefinedBehaviorSanitizer,
# then the threaded models under ThreadSanitizer.
check:
	$(MAKE) BUILD=build/san CFLAGS="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" test
	$(MAKE) tsan

deps:
	scripts/install-deps

# Threads are used by --model thread and --threads: their tests under ThreadSanitizer.
tsan:
	$(MAKE) BUILD=build/tsan CFLAGS="-O1 -g -fsanitize=thread" LDFLAGS="-fsanitize=thread" all
	DUPLEX=$(abspath build/tsan/duplex) TSAN_OPTIONS="halt_on_error=1 exitcode=66" \
	  $(PYTEST) $(PYTEST_ARGS) tests/e2e/test_models.py

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(BUILD)/duplex $(DESTDIR)$(PREFIX)/bin/duplex
	install -m 644 $(BUILD)/libduplex.a $(DESTDIR)$(PREFIX)/lib/libduplex.a
	install -m 644 include/duplex.h $(DESTDIR)$(PREFIX)/include/duplex.h
	install -m 644 docs/duplex.1 $(DESTDIR)$(PREFIX)/share/man/man1/duplex.1

bench: $(BUILD)/duplex
	bench/run.sh $(abspath $(BUILD)/duplex)

clean:
	rm -rf build
