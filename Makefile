# duplex: plain Makefile. make, make test, make check (ASan+UBSan), make install, make uninstall.
CC ?= cc
PREFIX ?= /usr/local
BUILD ?= build
CFLAGS ?= -O2 -g
WARN = -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-missing-field-initializers
CPPFLAGS += -Iinclude -Isrc
SAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# Windows: `make windows` cross-compiles with mingw-w64 (this same Makefile,
# run again with WINDOWS=1 into build/windows) and copies the program to
# build/duplex.exe: one statically linked PE32+ console program.
WIN_CC ?= x86_64-w64-mingw32-gcc-posix
WIN_BUILD = build/windows
ifeq ($(WINDOWS),1)
# POSIX-only files (multiplexers Windows lacks, the Linux socket lister):
# their features are refused at run time, naming the platform. Where a
# concern differs, src/foo_win32.c stands in for src/foo.c.
WIN_LIB_EXCLUDE = src/os_posix.c src/backend_epoll.c src/backend_poll.c src/backend_uring.c \
	src/diag.c
WIN_CLI_EXCLUDE = src/cli/stdio.c src/cli/exec.c src/cli/cluster.c
LIB_SRCS = $(filter-out $(WIN_LIB_EXCLUDE),$(wildcard src/*.c))
CLI_SRCS = $(filter-out $(WIN_CLI_EXCLUDE),$(wildcard src/cli/*.c))
CPPFLAGS += -D_WIN32_WINNT=0x0601 -D__USE_MINGW_ANSI_STDIO=1
LDLIBS += -static -pthread -lws2_32 -liphlpapi
EXE = .exe
SHLIBS =
else
LDLIBS += -pthread
# what libduplex itself needs (the shared library's link, duplex.pc's private part)
LIB_LDLIBS = -pthread
PC_REQUIRES_PRIVATE =
# io_uring backend when liburing is installed (Debian: liburing-dev)
HAVE_URING := $(shell test -f /usr/include/liburing.h && echo 1)
ifeq ($(HAVE_URING),1)
CPPFLAGS += -DDX_HAVE_URING
LDLIBS += -luring
LIB_LDLIBS += -luring
PC_REQUIRES_PRIVATE += liburing
BACKENDS = epoll poll io_uring
else
BACKENDS = epoll poll
endif

# TLS (--ssl) when OpenSSL is installed (Debian: libssl-dev); without it the
# options are a usage error ("built without TLS")
HAVE_TLS := $(shell pkg-config --exists openssl 2>/dev/null && echo 1)
ifeq ($(HAVE_TLS),1)
CPPFLAGS += -DDX_HAVE_TLS $(shell pkg-config --cflags openssl)
LDLIBS += $(shell pkg-config --libs openssl)
# the library links OpenSSL only once its own sources use it
ifneq ($(shell grep -l '<openssl/' src/*.c 2>/dev/null),)
LIB_LDLIBS += $(shell pkg-config --libs openssl)
PC_REQUIRES_PRIVATE += libssl libcrypto
endif
endif
SHLIBS = $(BUILD)/$(SHLIB) $(BUILD)/$(SONAME) $(BUILD)/libduplex.so

# listen --cluster (cluster.c) writes and parses Redis commands with libhiredis (Debian:
# libhiredis-dev), a dependency of the command only, never of libduplex
ifeq ($(wildcard /usr/include/hiredis/read.h),)
$(error libhiredis is missing (listen --cluster needs it): install libhiredis-dev, or run scripts/install-deps)
endif
CLI_LDLIBS = -lhiredis

LIB_SRCS = $(filter-out src/%_win32.c src/backend_wsapoll.c,$(wildcard src/*.c))
CLI_SRCS = $(filter-out %_win32.c,$(wildcard src/cli/*.c))
EXE =
endif
UNIT_SRCS = $(wildcard tests/unit/*.c)

# The shared library (not on Windows): the file is named by the release
# (DX_VERSION), the soname by the ABI (SOVERSION: bump it when a function is
# removed or changed, or a struct the program allocates changes layout;
# 1: dx_acl_add_file_with() removed).
VERSION := $(shell sed -n 's/^\#define DX_VERSION "\(.*\)"/\1/p' include/duplex.h)
SOVERSION = 2
SONAME = libduplex.so.$(SOVERSION)
SHLIB = libduplex.so.$(VERSION)

LIB_OBJS = $(LIB_SRCS:%.c=$(BUILD)/%.o)
PIC_OBJS = $(LIB_SRCS:%.c=$(BUILD)/pic/%.o)
CLI_OBJS = $(CLI_SRCS:%.c=$(BUILD)/%.o)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

PYTEST ?= /usr/bin/python3 -m pytest
PYTEST_ARGS ?= -q
# A peer (haproxy, ncat, ...) missing fails its tests instead of skipping
# them: README's test command installs every one (scripts/install-deps).
# DUPLEX_PEERS_REQUIRED=0 skips them, e.g. on a machine without root.
DUPLEX_PEERS_REQUIRED ?= 1
export DUPLEX_PEERS_REQUIRED

.PHONY: pkg-test all examples windows unit-windows win-unit-bins test-windows e2e-windows deps test unit e2e check tsan install uninstall clean bench fuzz fuzz-build fuzz-smoke mutants

all: $(BUILD)/duplex$(EXE) $(BUILD)/libduplex.a $(SHLIBS)

# The examples (examples/*.c) against this tree's static library; their own
# Makefile builds them against an installed one with pkg-config.
EXAMPLES_OUT ?= $(BUILD)/examples
examples: $(BUILD)/libduplex.a
	$(MAKE) -C examples OUT=$(abspath $(EXAMPLES_OUT)) DUPLEX_CFLAGS=-I$(abspath include) \
	  DUPLEX_LIBS="$(abspath $(BUILD)/libduplex.a) $(LDLIBS)"

windows:
	$(MAKE) WINDOWS=1 CC=$(WIN_CC) AR=x86_64-w64-mingw32-ar BUILD=$(WIN_BUILD) all
	cp $(WIN_BUILD)/duplex.exe $(BUILD)/duplex.exe

$(BUILD)/%.o: %.c include/duplex.h $(wildcard src/*.h) $(wildcard src/cli/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libduplex.a: $(LIB_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

# Position-independent objects for the shared library, every symbol hidden
# but the declarations of include/duplex.h (marked visibility default there):
# the dx__* helpers of src/os.h and src/internal.h are not exported.
$(BUILD)/pic/%.o: %.c include/duplex.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CPPFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

$(BUILD)/$(SHLIB): $(PIC_OBJS) Makefile
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,-z,defs -Wl,--as-needed \
	  -o $@ $(PIC_OBJS) $(LIB_LDLIBS)

$(BUILD)/$(SONAME) $(BUILD)/libduplex.so: $(BUILD)/$(SHLIB)
	ln -sf $(SHLIB) $@

$(BUILD)/duplex$(EXE): $(CLI_OBJS) $(BUILD)/libduplex.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJS) $(BUILD)/libduplex.a $(CLI_LDLIBS) $(LDLIBS)

# Windows unit tests (tests/windows/unit, a TAP harness of their own): built
# with mingw-w64 and run under wine, each in its build directory, with a
# throw-away WINEPREFIX under build/. A failing test or a crash fails the target.
WINE ?= /usr/lib/wine/wine64
WINESERVER ?= /usr/lib/wine/wineserver64
WIN_WINEPREFIX = $(abspath build/wineprefix)
WIN_UNIT_SRCS = $(wildcard tests/windows/unit/test_*.c)
WIN_UNIT_BINS = $(WIN_UNIT_SRCS:tests/windows/unit/%.c=$(WIN_BUILD)/tests/%.exe)

win-unit-bins: $(WIN_UNIT_BINS)

$(WIN_BUILD)/tests/%.exe: tests/windows/unit/%.c $(WIN_BUILD)/libduplex.a tests/windows/unit/tap.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -Wno-missing-prototypes $(CPPFLAGS) $(CFLAGS) $< -o $@ $(WIN_BUILD)/libduplex.a $(LDFLAGS) $(LDLIBS)

unit-windows:
	$(MAKE) WINDOWS=1 CC=$(WIN_CC) AR=x86_64-w64-mingw32-ar BUILD=$(WIN_BUILD) win-unit-bins
	@mkdir -p $(WIN_WINEPREFIX)
	@# one persistent wineserver for the run (each test starts fast, and no
	@# test's wine can lose a server that another start is shutting down)
	@WINEPREFIX=$(WIN_WINEPREFIX) $(WINESERVER) -p; \
	pass=0; fail=0; for t in $(WIN_UNIT_BINS); do \
	  echo "== $$t (wine)"; log=$$t.log; \
	  (cd $(dir $(firstword $(WIN_UNIT_BINS))) && WINEPREFIX=$(WIN_WINEPREFIX) WINEDEBUG=-all \
	    WINEDLLOVERRIDES="mscoree,mshtml=" \
	    $(WINE) $$(basename $$t)) > $$log 2>&1; rc=$$?; \
	  grep -v '^wine: ' $$log; \
	  p=$$(grep -c '^ok ' $$log); f=$$(grep -c '^not ok ' $$log); \
	  if [ $$rc -ne 0 ] && [ $$f -eq 0 ]; then f=1; echo "** $$t exited $$rc"; fi; \
	  pass=$$((pass + p)); fail=$$((fail + f)); \
	done; WINEPREFIX=$(WIN_WINEPREFIX) $(WINESERVER) -k 2>/dev/null; \
	echo "unit-windows: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

# End-to-end tests of duplex.exe under wine against Linux peers (ncat, socat,
# nc, Python, the Linux duplex): tests/windows/e2e (one throw-away wine prefix
# and one persistent wineserver per run, both under build/). Missing wine or
# mingw fail them; DUPLEX_WINDOWS_OPTIONAL=1 makes them skip instead.
e2e-windows: windows $(BUILD)/duplex
	DUPLEX_EXE=$(abspath $(BUILD)/duplex.exe) DUPLEX=$(abspath $(BUILD)/duplex) \
	  $(PYTEST) $(PYTEST_ARGS) tests/windows/e2e

# The Windows port's tests: the platform layer's unit tests, then the
# end-to-end tests (one after the other: both build into build/windows).
test-windows:
	$(MAKE) unit-windows
	$(MAKE) e2e-windows

# The command's files without main.c, for unit tests of its helpers
# (test_httpauth.c): only the objects a test uses are linked in.
$(BUILD)/libcli.a: $(filter-out %/main.o,$(CLI_OBJS))
	rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libcli.a $(BUILD)/libduplex.a tests/unit/helpers.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -Wno-missing-prototypes $(CPPFLAGS) $(CFLAGS) $< -o $@ $(BUILD)/libcli.a $(BUILD)/libduplex.a $(LDFLAGS) $(CLI_LDLIBS) $(LDLIBS) -lcriterion

# Unit tests run once per backend (the loop's own tests cover both anyway).
unit: $(UNIT_BINS)
	@for t in $(UNIT_BINS); do for b in $(BACKENDS); do \
	  echo "== $$t (DUPLEX_BACKEND=$$b)"; \
	  DUPLEX_BACKEND=$$b $$t --timeout 30 || exit 1; done; done

e2e: $(BUILD)/duplex
	DUPLEX=$(abspath $(BUILD)/duplex) $(PYTEST) $(PYTEST_ARGS) tests/e2e

# The packaging: the shared library's export list (nm -D) against the
# header, then install, pkg-config builds (shared and static), uninstall.
pkg-test: all
	/usr/bin/python3 tests/pkg/exports.py $(BUILD)/$(SHLIB) include/duplex.h tests/pkg/abi.txt docs/libduplex.3
	CC="$(CC)" tests/pkg/install.sh "$(MAKE)" "$(BUILD)"

test: unit e2e fuzz-smoke pkg-test

# Deliberate breakages (tests/mutants/list), each built in one scratch copy
# and run against the tests named to catch it; not part of `make test`.
# MUTANTS="name ..." runs only those (scripts/mutants -l lists them).
mutants:
	/usr/bin/python3 scripts/mutants $(MUTANTS)

# The whole suite, built with AddressSanitizer and UndefinedBehaviorSanitizer,
# then the threaded models under ThreadSanitizer.
check:
	@# not pkg-test: a program built with pkg-config alone cannot link a sanitized archive
	$(MAKE) BUILD=build/san CFLAGS="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" unit e2e fuzz-smoke
	$(MAKE) tsan

deps:
	scripts/install-deps

# Threads are used by --model thread and --threads: their tests under ThreadSanitizer
# (TLS too: one SSL_CTX shared by the --threads loops).
tsan:
	$(MAKE) BUILD=build/tsan CFLAGS="-O1 -g -fsanitize=thread" LDFLAGS="-fsanitize=thread" all
	DUPLEX=$(abspath build/tsan/duplex) TSAN_OPTIONS="halt_on_error=1 exitcode=66" \
	  $(PYTEST) $(PYTEST_ARGS) tests/e2e/test_models.py tests/e2e/test_tls.py::test_threads_two_over_tls \
	  tests/e2e/test_tls.py::test_model_thread_over_tls 'tests/e2e/test_tls.py::test_model_echo_over_tls_3mib_each[thread]' \
	  'tests/e2e/test_tls.py::test_client_certificate_check_fails_closed_on_each_path[thread]'

# What install puts where; uninstall removes exactly these files (never a
# directory: /usr/local/bin is not ours). No shared library on Windows.
BASH_COMPLETION_DIR ?= $(PREFIX)/share/bash-completion/completions
ZSH_COMPLETION_DIR ?= $(PREFIX)/share/zsh/site-functions
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR ?= $(PREFIX)/share/man
MAN1 = $(wildcard docs/*.1)
MAN3 = $(wildcard docs/*.3)
INSTALLED = $(PREFIX)/bin/duplex$(EXE) $(LIBDIR)/libduplex.a $(INCLUDEDIR)/duplex.h \
	$(PKGCONFIGDIR)/duplex.pc $(addprefix $(LIBDIR)/,$(notdir $(SHLIBS))) \
	$(MAN1:docs/%=$(MANDIR)/man1/%) $(MAN3:docs/%=$(MANDIR)/man3/%) \
	$(BASH_COMPLETION_DIR)/duplex $(ZSH_COMPLETION_DIR)/_duplex

# duplex.pc names the install's own directories; the private part (what a
# static link needs) lists only what the library was built with.
$(BUILD)/duplex.pc: FORCE
	@mkdir -p $(dir $@)
	@{ echo 'prefix=$(PREFIX)'; echo 'libdir=$(LIBDIR)'; echo 'includedir=$(INCLUDEDIR)'; echo; \
	  echo 'Name: duplex'; \
	  echo 'Description: small non-blocking socket library (loop, streams, pumps) of the duplex tool'; \
	  echo 'Version: $(VERSION)'; \
	  echo 'Cflags: -I$${includedir}'; \
	  echo 'Libs: -L$${libdir} -lduplex'; \
	  echo 'Libs.private: $(filter-out -l%,$(LIB_LDLIBS))'; \
	  echo 'Requires.private: $(strip $(PC_REQUIRES_PRIVATE))'; } > $@.tmp
	@cmp -s $@.tmp $@ 2>/dev/null && rm -f $@.tmp || mv $@.tmp $@

.PHONY: FORCE
FORCE:

install: all $(BUILD)/duplex.pc
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -d $(DESTDIR)$(BASH_COMPLETION_DIR) $(DESTDIR)$(ZSH_COMPLETION_DIR)
	install -m 755 $(BUILD)/duplex$(EXE) $(DESTDIR)$(PREFIX)/bin/duplex$(EXE)
	install -m 644 $(BUILD)/libduplex.a $(DESTDIR)$(LIBDIR)/libduplex.a
ifneq ($(SHLIBS),)
	install -m 755 $(BUILD)/$(SHLIB) $(DESTDIR)$(LIBDIR)/$(SHLIB)
	ln -sf $(SHLIB) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SHLIB) $(DESTDIR)$(LIBDIR)/libduplex.so
endif
	install -m 644 include/duplex.h $(DESTDIR)$(INCLUDEDIR)/duplex.h
	install -m 644 $(BUILD)/duplex.pc $(DESTDIR)$(PKGCONFIGDIR)/duplex.pc
ifneq ($(MAN1),)
	install -d $(DESTDIR)$(MANDIR)/man1
	install -m 644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/
endif
ifneq ($(MAN3),)
	install -d $(DESTDIR)$(MANDIR)/man3
	install -m 644 $(MAN3) $(DESTDIR)$(MANDIR)/man3/
endif
	install -m 644 completions/duplex.bash $(DESTDIR)$(BASH_COMPLETION_DIR)/duplex
	install -m 644 completions/_duplex $(DESTDIR)$(ZSH_COMPLETION_DIR)/_duplex

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))

# The end-to-end scenarios under valgrind memcheck (epoll backend): errors or
# definitely lost bytes fail.
.PHONY: valgrind
valgrind: $(BUILD)/duplex
	scripts/valgrind-e2e $(abspath $(BUILD)/duplex)

bench: $(BUILD)/duplex
	bench/run.sh $(abspath $(BUILD)/duplex)

# libFuzzer harnesses (tests/fuzz/fuzz_*.c, clang): `make fuzz` runs each for
# FUZZ_SECS seconds on a scratch copy of its seed corpus (tests/fuzz/corpus/T)
# plus tests/fuzz/regressions/T; `make fuzz-smoke` runs each once over those
# inputs only. Crash inputs land in build/fuzz/work/T/.
FUZZ_CC ?= clang
FUZZ_SECS ?= 30
FUZZ_BUILD = build/fuzz
# clang warns where gcc does not (e.g. -Wsign-compare in NLMSG_OK): warnings, not errors
FUZZ_WARN = $(filter-out -Werror,$(WARN))
FUZZ_CFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_RUN_FLAGS = -timeout=5 -rss_limit_mb=1024 -print_final_stats=1
FUZZ_TARGETS = $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS = $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)
FUZZ_LIB_OBJS = $(LIB_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_CLI_OBJS = $(filter-out %/main.o,$(CLI_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o))

$(FUZZ_BUILD)/obj/%.o: %.c include/duplex.h $(wildcard src/*.h) $(wildcard src/cli/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_WARN) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libduplex.a: $(FUZZ_LIB_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

# the CLI without main.c (fuzz_chat includes serve.c: the archive's copy is never pulled in)
$(FUZZ_BUILD)/libcli.a: $(FUZZ_CLI_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_BUILD)/libcli.a $(FUZZ_BUILD)/libduplex.a $(wildcard src/cli/*.c)
	$(FUZZ_CC) $(FUZZ_WARN) $(CPPFLAGS) -Isrc/cli $(FUZZ_CFLAGS) -fsanitize=fuzzer $< -o $@ \
	  $(FUZZ_BUILD)/libcli.a $(FUZZ_BUILD)/libduplex.a $(CLI_LDLIBS) $(LDLIBS)

fuzz-build: $(FUZZ_BINS)

# FUZZ_JOBS harnesses at a time (one per core); a failure is summed up last.
FUZZ_JOBS ?= 2
fuzz: fuzz-build
	scripts/fuzz-all $(FUZZ_BUILD) $(FUZZ_SECS) $(FUZZ_JOBS) "$(FUZZ_RUN_FLAGS)" $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	@fail=0; for t in $(FUZZ_TARGETS); do \
	  w=$(FUZZ_BUILD)/work/$$t; mkdir -p $$w; \
	  reg=; [ -d tests/fuzz/regressions/$$t ] && reg=tests/fuzz/regressions/$$t; \
	  if out=$$($(FUZZ_BUILD)/$$t -runs=0 $(FUZZ_RUN_FLAGS) -artifact_prefix=$$w/ tests/fuzz/corpus/$$t $$reg 2>&1); then \
	    echo "$$out" | grep -E 'INITED' | sed "s/^/$$t: /"; \
	  else echo "$$out" | tail -40; echo "** $$t FAILED"; fail=1; fi; \
	done; exit $$fail

clean:
	rm -rf build
