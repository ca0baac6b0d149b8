# moert build, test and install entry points.
#   make            release library + CLI, staged under build/ (bin/, lib/, include/, lib/pkgconfig/)
#   make test       everything CI runs: Swift tests, the C tests, the CLI tests, the binding tests
#   make install PREFIX=/usr/local
# The version and ABI come from include/moert.h, their one source.
VERSION   := $(shell sed -n 's/^\#define MOERT_VERSION "\(.*\)"/\1/p' include/moert.h)
ABI       := $(shell sed -n 's/^\#define MOERT_ABI_VERSION \([0-9]*\).*/\1/p' include/moert.h)
PREFIX    ?= /usr/local
STAGE     := $(CURDIR)/build
SWIFT     ?= swift
ifeq ($(origin CC),default)
CC        := gcc
endif
ifeq ($(origin CXX),default)
CXX       := g++
endif
PYTHON    ?= python3
RELEASE   := $(shell $(SWIFT) build -c release --show-bin-path 2>/dev/null)
SWIFT_SRC := $(shell find Sources include Plugins -type f) Package.swift
# Plugins written in C are compiled with the C compiler for installation (no Swift runtime dependency), each with
# its own hidden copy of the helpers in Plugins/common.
C_PLUGINS := gru hash comet moepp
SWIFT_PLUGINS := dynamic

.PHONY: all lib test test-swift test-c test-cli test-python test-cpp install clean

all: $(STAGE)/.staged

# Release build; the library carries the Swift runtime statically and has the SONAME libmoert.so.$(ABI).
$(STAGE)/.staged: $(SWIFT_SRC) Makefile tools/moert.pc.in
	$(SWIFT) build -c release
	mkdir -p $(STAGE)/bin $(STAGE)/lib/pkgconfig $(STAGE)/include
	cp $(RELEASE)/moert-cli $(STAGE)/bin/moert
	cp $(RELEASE)/libmoert.so $(STAGE)/lib/libmoert.so.$(VERSION)
	ln -sf libmoert.so.$(VERSION) $(STAGE)/lib/libmoert.so.$(ABI)
	ln -sf libmoert.so.$(ABI) $(STAGE)/lib/libmoert.so
	for p in $(C_PLUGINS); do \
	  $(CC) -O2 -std=c11 -Wall -Werror -shared -fPIC -fvisibility=hidden -Iinclude -IPlugins/common \
	    Plugins/$$p/*.c Plugins/common/*.c -lm \
	    -o $(STAGE)/lib/libmoert_$$p.so || exit 1; done
	for p in $(SWIFT_PLUGINS); do cp $(RELEASE)/libmoert_$$p.so $(STAGE)/lib/; done
	cp include/moert*.h $(STAGE)/include/
	sed -e 's|@PREFIX@|$(STAGE)|' -e 's|@VERSION@|$(VERSION)|' tools/moert.pc.in > $(STAGE)/lib/pkgconfig/moert.pc
	touch $@

lib: all

test: all test-swift test-c test-cli test-python test-cpp

# The tests keep their kernel choices in build/, not in the user's cache file.
test test-swift test-c test-cli test-python test-cpp: export MOERT_KERNEL_CACHE = $(STAGE)/test-kernels.tsv

# The parity and session tests run again once per kernel this CPU can run (`moert kernels --available`), forced by
# MOERT_KERNELS on every product that has it: every kernel of every product meets transformers' logits.
PARITY_TESTS = 'TransformersParityTests|SessionTests|ExpertBudgetTests|HalfKernelTests|QuantizedModelTests|KVCacheTypeTests'
test-swift: all
	$(SWIFT) test
	for k in $$($(STAGE)/bin/moert kernels --available); do \
	  echo "make: parity tests with MOERT_KERNELS=$$k"; \
	  MOERT_KERNELS=$$k $(SWIFT) test --skip-build --filter $(PARITY_TESTS) || exit 1; done

# A suite whose runner or directory is missing fails the target, naming what is missing: never skipped in silence.
need = @test -e $(1) || { echo "make: $(1) is missing: the $@ suite cannot run" >&2; exit 1; }

test-c: all
	$(call need,tools/run_c_tests.sh)
	$(call need,Tests/c/run_plugin_abi_tests.sh)
	$(call need,Tests/c/run_valgrind_tests.sh)
	$(call need,Tests/c/run_plugin_tests.sh)
	$(call need,Tests/c/run_plugin_tests_moepp_dynamic.sh)
	tools/run_c_tests.sh $(STAGE)
	Tests/c/run_plugin_abi_tests.sh $(STAGE)
	Tests/c/run_valgrind_tests.sh $(STAGE)
	Tests/c/run_plugin_tests.sh
	Tests/c/run_plugin_tests_moepp_dynamic.sh

# The `moert` command as users run it (Tests/cli, pytest).
test-cli: all
	$(call need,Tests/cli)
	MOERT_CLI=$(STAGE)/bin/moert $(PYTHON) -m pytest -q Tests/cli

test-python: all
	$(call need,bindings/python/tests)
	MOERT_LIBRARY=$(STAGE)/lib/libmoert.so $(PYTHON) -m pytest -q bindings/python/tests

test-cpp: all
	$(call need,bindings/cpp/tests/run.sh)
	bindings/cpp/tests/run.sh $(STAGE)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(STAGE)/bin/moert $(DESTDIR)$(PREFIX)/bin/moert
	install -m 755 $(STAGE)/lib/libmoert.so.$(VERSION) $(STAGE)/lib/libmoert_*.so $(DESTDIR)$(PREFIX)/lib/
	ln -sf libmoert.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libmoert.so.$(ABI)
	ln -sf libmoert.so.$(ABI) $(DESTDIR)$(PREFIX)/lib/libmoert.so
	install -m 644 include/moert*.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' tools/moert.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/moert.pc

clean:
	rm -rf $(STAGE) .build
