# libqueue — the two commands a newcomer needs: `make demo` and `make test`.
CARGO ?= cargo
LOOM_TARGET := target-loom

.PHONY: all build lib setup test-bridge test-bridge-long bench-bridge test-no-cbindgen pkgtool wheel sdist test-packaging header test test-python test-oslo bench-oslo bench-python test-rust test-loom test-c test-cpp test-header test-sanitize \
	test-valgrind test-install examples-c install lint demo bench bench-c crash-long fuzz fuzz-wire clean

all: build

build: lib

# Release build of the library; cargo names the artifacts after the crate
# (liblibqueue.*), so link them as libqueue.so / libqueue.a for `-lqueue`. The
# shared library's SONAME is libqueue.so.0 (build.rs), which programs linked with
# -lqueue record as NEEDED: the libqueue.so.0 link lets them run from target/release.
# Built with the cargo feature `bridge` (src/bridge/; the header declares
# lq_bridge_* under LQ_HAVE_BRIDGE), as `make install` and the Python package
# (bindings/python/setup.py) are; the crate's default features stay lean.
# One build of the crate serves `make lib`, test-header and test-bridge: the
# same features, and `--test header` here so the dev-dependencies take part in
# feature resolution as in `cargo test` (without it the library is a second
# build whose unhashed cdylib/staticlib files the other overwrites, and each
# target after another would recompile the crate). The pip installs below
# bundle this library (LIBQUEUE_LIBRARY) instead of running cargo again.
LIB_FEATURES := --features bridge
PIP_LIB := LIBQUEUE_LIBRARY=$(CURDIR)/target/release/liblibqueue.so
lib:
	$(CARGO) build --release --lib --test header $(LIB_FEATURES)
	ln -sf liblibqueue.so target/release/libqueue.so
	ln -sf liblibqueue.so target/release/libqueue.so.$(SOMAJOR)
	ln -sf liblibqueue.a target/release/libqueue.a

test: setup test-no-cbindgen test-rust test-loom test-c test-cpp test-sanitize test-valgrind test-install test-python test-oslo test-packaging lint

# What `make test` and `make demo` need beyond Rust (cargo), a C compiler and
# python3, installed only when missing: gcc, g++, valgrind, pkg-config, binutils
# (readelf, strip), python3-venv (Debian ships venv/ensurepip apart), nats-server
# and rabbitmq-server (the bridge's tests start their own; the Debian package's
# system service is not used), rustfmt and clippy. Uses apt-get
# (through sudo when not root); elsewhere it names what is missing.
setup:
	@missing=""; \
	command -v cc >/dev/null || missing="$$missing gcc"; \
	command -v c++ >/dev/null || missing="$$missing g++"; \
	command -v valgrind >/dev/null || missing="$$missing valgrind"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	{ command -v readelf && command -v strip; } >/dev/null || missing="$$missing binutils"; \
	python3 -c "import venv, ensurepip" 2>/dev/null || missing="$$missing python3-venv"; \
	{ command -v nats-server || test -x /usr/sbin/nats-server; } >/dev/null || missing="$$missing nats-server"; \
	test -x /usr/lib/rabbitmq/bin/rabbitmq-server || missing="$$missing rabbitmq-server"; \
	if [ -n "$$missing" ]; then \
		command -v apt-get >/dev/null || { echo "make setup: install$$missing (no apt-get here)" >&2; exit 1; }; \
		echo "make setup: installing$$missing"; \
		$(APT_GET) update -q && $(APT_GET) install -y -q $$missing; \
	fi
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

# One feature set for every Rust test, the library and the linters (`bridge` on:
# what the C library and the Python package ship), so a clean machine compiles
# the crate and its dependencies once; the bridge's tests (tests/bridge_*.rs)
# start their own servers, which `make setup` installs. The lean core (no
# features) is checked by `lint`.
test-rust: setup
	$(CARGO) test --release --all-targets --features bridge
	$(CARGO) test --release --doc --features bridge

# The bridges to NATS JetStream and RabbitMQ (feature `bridge`, src/bridge/):
# nats-server and rabbitmq-server come from Debian through `make setup` (the tests
# start their own on 127.0.0.1 with temporary directories and stop them). Its unit
# tests (bridge::), tests/bridge_nats.rs and tests/bridge_rabbit.rs (one RabbitMQ
# node for the whole file: it takes 10-20 s to start; 100,000 messages each way);
# test-bridge-long adds 100,000 messages each way through NATS and keeps both
# servers down for 10 s (LQ_BRIDGE_OUTAGE_MS=120000 for 2 minutes). test-rust
# runs the same tests (one feature set for the whole build).
test-bridge: setup
	$(CARGO) test --release --features bridge --lib --test bridge_nats --test bridge_rabbit -- bridge:: nats_ rabbit_

test-bridge-long: setup
	LQ_BRIDGE_OUTAGE_MS=10000 $(CARGO) test --release --features bridge --test bridge_nats -- --include-ignored nats_
	LQ_BRIDGE_OUTAGE_MS=10000 $(CARGO) test --release --features bridge --test bridge_rabbit -- rabbit_

# Outbound throughput through the bridge beside a plain async-nats publisher
# with PubAck, then beside a plain AMQP publisher with confirms on a private
# RabbitMQ (benches/rabbitmq.sh); 64 B and 4 KiB; not part of `make bench` yet.
bench-bridge: setup
	$(CARGO) bench --features bridge --bench bridge

# Loom model checks of the hand-written lock-free primitives (src/sync/).
test-loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$(LOOM_TARGET) LOOM_MAX_PREEMPTIONS=3 \
		$(CARGO) test --release --lib sync::

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))
CFLAGS_STRICT := -Wall -Wextra -Wpedantic -Werror -Iinclude -DEXPECTED_VERSION='"$(VERSION)"'

# The header compiles as C99 and C++17; the C-facing artifacts link with -lqueue
# (shared and static) and agree with the header and Cargo.toml on the version.
# Then the C tests of the whole ABI (tests/c/test_*.c) against the shared library.
CTEST := target/ctest
# test_bridge starts its own nats-server (from `make setup`) on 127.0.0.1, and
# test_bridge_rabbit its own rabbitmq-server (benches/rabbitmq.sh; 10-20 s of it).
C_TESTS := test_api test_errors test_fork test_close_race test_multiprocess test_bridge test_bridge_rabbit
test-c: setup lib test-header
	mkdir -p $(CTEST)
	cc -std=c99 $(CFLAGS_STRICT) tests/c/version.c -Ltarget/release -lqueue -o $(CTEST)/version_so
	LD_LIBRARY_PATH=target/release ./$(CTEST)/version_so
	cc -std=c99 $(CFLAGS_STRICT) tests/c/version.c target/release/libqueue.a -lpthread -ldl -lm -o $(CTEST)/version_a
	./$(CTEST)/version_a
	c++ -std=c++17 -x c++ $(CFLAGS_STRICT) tests/c/version.c -Ltarget/release -lqueue -o $(CTEST)/version_cpp
	LD_LIBRARY_PATH=target/release ./$(CTEST)/version_cpp
	set -e; for t in $(C_TESTS); do \
		cc -std=c99 $(CFLAGS_STRICT) -g tests/c/$$t.c -Ltarget/release -lqueue -lpthread -o $(CTEST)/$$t; \
		LD_LIBRARY_PATH=target/release ./$(CTEST)/$$t; \
	done

# The C++ wrapper: the header alone, from two translation units, and its tests
# (test_bridge.cpp starts its own nats-server, from `make setup`).
CXXFLAGS_STRICT := -std=c++17 -Wall -Wextra -Wpedantic -Werror -Iinclude -Ibindings/cpp/include
test-cpp: setup lib test-header
	mkdir -p $(CTEST)
	c++ $(CXXFLAGS_STRICT) -c tests/cpp/header_alone.cpp -o $(CTEST)/header_alone.o
	c++ $(CXXFLAGS_STRICT) tests/cpp/tu_a.cpp tests/cpp/tu_b.cpp -Ltarget/release -lqueue -o $(CTEST)/two_tu
	LD_LIBRARY_PATH=target/release ./$(CTEST)/two_tu
	c++ $(CXXFLAGS_STRICT) -g tests/cpp/test_wrapper.cpp -Ltarget/release -lqueue -lpthread -o $(CTEST)/test_wrapper
	LD_LIBRARY_PATH=target/release ./$(CTEST)/test_wrapper
	c++ $(CXXFLAGS_STRICT) -g tests/cpp/test_bridge.cpp -Ltarget/release -lqueue -lpthread -o $(CTEST)/test_bridge_cpp
	LD_LIBRARY_PATH=target/release ./$(CTEST)/test_bridge_cpp  # starts its own nats-server
	c++ $(CXXFLAGS_STRICT) -fPIC -shared examples/cpp/tour_producer.cpp -o $(CTEST)/libtour_producer.so  # make demo's

# The examples (examples/c, examples/cpp), built against the shared library
# (test-sanitize builds and runs them; two_processes: a host and an attached process).
EXAMPLES := target/examples
examples-c: lib
	mkdir -p $(EXAMPLES)
	for e in producer consumer epoll_loop two_processes; do \
		cc -std=c99 $(CFLAGS_STRICT) -O2 examples/c/$$e.c -Ltarget/release -lqueue -lpthread -o $(EXAMPLES)/$$e || exit 1; \
	done
	c++ $(CXXFLAGS_STRICT) -O2 examples/cpp/octavia_consumer.cpp -Ltarget/release -lqueue -lpthread -o $(EXAMPLES)/octavia_consumer

# The C and C++ tests and the examples rebuilt with AddressSanitizer + UBSan
# (the executables are instrumented; they link the Rust shared library, whose
# allocations ASan sees through malloc) and run. LeakSanitizer reports nothing
# to suppress today; tests/c/lsan.supp is where a narrow suppression would go.
SAN := target/sanitize
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -g -O1
SANENV := LD_LIBRARY_PATH=target/release ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/c/lsan.supp
test-sanitize: setup lib test-header
	mkdir -p $(SAN)
	for t in $(C_TESTS); do \
		cc -std=c99 $(CFLAGS_STRICT) $(SANFLAGS) tests/c/$$t.c -Ltarget/release -lqueue -lpthread -o $(SAN)/$$t || exit 1; \
		$(SANENV) ./$(SAN)/$$t || exit 1; \
	done
	c++ $(CXXFLAGS_STRICT) $(SANFLAGS) tests/cpp/test_wrapper.cpp -Ltarget/release -lqueue -lpthread -o $(SAN)/test_wrapper
	$(SANENV) ./$(SAN)/test_wrapper
	c++ $(CXXFLAGS_STRICT) $(SANFLAGS) tests/cpp/test_bridge.cpp -Ltarget/release -lqueue -lpthread -o $(SAN)/test_bridge_cpp
	$(SANENV) ./$(SAN)/test_bridge_cpp
	c++ $(CXXFLAGS_STRICT) $(SANFLAGS) tests/cpp/tu_a.cpp tests/cpp/tu_b.cpp -Ltarget/release -lqueue -o $(SAN)/two_tu
	$(SANENV) ./$(SAN)/two_tu
	for e in producer consumer epoll_loop two_processes; do \
		cc -std=c99 $(CFLAGS_STRICT) $(SANFLAGS) examples/c/$$e.c -Ltarget/release -lqueue -lpthread -o $(SAN)/$$e || exit 1; \
	done
	c++ $(CXXFLAGS_STRICT) $(SANFLAGS) examples/cpp/octavia_consumer.cpp -Ltarget/release -lqueue -lpthread -o $(SAN)/octavia_consumer
	rm -rf $(SAN)/data && mkdir -p $(SAN)/data
	$(SANENV) ./$(SAN)/producer $(SAN)/data 300
	$(SANENV) ./$(SAN)/consumer $(SAN)/data 300
	$(SANENV) ./$(SAN)/epoll_loop 200
	rm -rf $(SAN)/shared && $(SANENV) ./$(SAN)/two_processes $(SAN)/shared 300
	$(SANENV) ./$(SAN)/octavia_consumer 4 > $(SAN)/octavia.log || { tail -20 $(SAN)/octavia.log; exit 1; }
	@echo "sanitizers: C tests, C++ tests and examples clean"

# The C tests once under valgrind: no leaks, no errors.
VALGRIND ?= valgrind
test-valgrind: setup test-c
	for t in $(C_TESTS); do \
		LD_LIBRARY_PATH=target/release $(VALGRIND) -q --leak-check=full --show-leak-kinds=definite,indirect \
			--errors-for-leak-kinds=definite,indirect --error-exitcode=1 ./$(CTEST)/$$t || exit 1; \
	done

# `make install PREFIX=...`: the libraries, both headers and libqueue.pc. The
# shared library as libqueue.so.$(VERSION) (SONAME libqueue.so.$(SOMAJOR)) with the
# links libqueue.so.$(SOMAJOR) (the loader's) and libqueue.so (the linker's), and
# libqueue.a; both stripped of debug information as distributions do (the build
# keeps it in target/release for debuggers and profilers).
PREFIX ?= /usr/local
STRIP ?= strip
install: lib
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 644 target/release/liblibqueue.a $(DESTDIR)$(PREFIX)/lib/libqueue.a
	$(STRIP) --strip-debug --enable-deterministic-archives $(DESTDIR)$(PREFIX)/lib/libqueue.a
	install -m 755 target/release/liblibqueue.so $(DESTDIR)$(PREFIX)/lib/libqueue.so.$(VERSION)
	$(STRIP) --strip-unneeded $(DESTDIR)$(PREFIX)/lib/libqueue.so.$(VERSION)
	ln -sf libqueue.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libqueue.so.$(SOMAJOR)
	ln -sf libqueue.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libqueue.so
	install -m 644 include/libqueue.h bindings/cpp/include/libqueue.hpp $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' bindings/pkgconfig/libqueue.pc.in \
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/libqueue.pc

# Installs into a temporary prefix, checks the files (SONAME, links, no debug
# sections), then builds C and C++ programs with pkg-config, shared and static
# (tests/install/check.sh).
test-install: setup
	rm -rf target/install-test
	$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/target/install-test
	sh tests/install/check.sh $(CURDIR)/target/install-test $(VERSION)

# include/libqueue.h is generated by cbindgen and committed. tests/header.rs runs
# cbindgen's library (pinned =0.27.0 in Cargo.toml, a dev-dependency: no cbindgen
# binary needed) and fails when the header is stale; `make header` rewrites it.
header:
	LQ_WRITE_HEADER=1 $(CARGO) test --release $(LIB_FEATURES) --test header -- --nocapture

test-header:
	$(CARGO) test --release $(LIB_FEATURES) --test header

# ... and needs no cbindgen binary: test-header with none on PATH (tests/setup/).
test-no-cbindgen:
	MAKE=$(MAKE) sh tests/setup/no_cbindgen.sh

# Clippy and rustdoc with the bridge feature on: its code and everything else.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets --features bridge -- -D warnings
	$(CARGO) clippy --release --lib -- -D warnings  # the lean core, no features
	RUSTDOCFLAGS=-Dwarnings $(CARGO) doc --no-deps --release --features bridge

# The C boundary's cost (same loop through Rust and the C ABI, one run), then
# C ABI send/receive throughput beside moodycamel's ConcurrentQueue (1 and 4
# producers, same run). Installs libconcurrentqueue-dev if missing. Not part of
# `make test`. Both write JSON into $(BENCH_RUN) for `make bench`'s report.
bench-c: lib
	dpkg -s libconcurrentqueue-dev >/dev/null 2>&1 || { $(APT_GET) update && $(APT_GET) install -y libconcurrentqueue-dev; }
	$(CARGO) bench --bench ffi_boundary
	mkdir -p target/bench-c $(BENCH_RUN)
	c++ -std=c++17 -O2 -Wall -Wextra -Iinclude benches/c/throughput.cpp -Ltarget/release -lqueue -lpthread -o target/bench-c/throughput
	LD_LIBRARY_PATH=target/release ./target/bench-c/throughput $(BENCH_RUN)/cpp.json

# The long crash run: hundreds of SIGKILLs of a child writing to the journal, then
# dozens of SIGKILLs of the host of a directory that attached processes use (takeover).
crash-long:
	LQ_CRASH_ROUNDS=$${LQ_CRASH_ROUNDS:-300} $(CARGO) test --release --test journal_crash sigkill -- --nocapture
	LQ_TAKEOVER_ROUNDS=$${LQ_TAKEOVER_ROUNDS:-60} $(CARGO) test --release --test multiprocess takeover_under_load -- --nocapture

# libFuzzer on the journal's record decoder (tests/fuzz; nightly, cargo-fuzz
# installed if missing), seeded with valid segments a real broker writes. Crashes
# land in tests/fuzz/artifacts/. `make test` runs a short seeded version on
# stable (tests/fuzz_decode.rs).
FUZZ_TIME ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	FUZZ_CORPUS=$(CURDIR)/tests/fuzz/corpus/decode_record \
		$(CARGO) test --release --test fuzz_decode -- --ignored --exact write_seed_corpus
	$(CARGO) +nightly fuzz run --fuzz-dir tests/fuzz decode_record -- -max_total_time=$(FUZZ_TIME)

# libFuzzer on the wire format's decoders (tests/fuzz target decode_frame: the
# host's request decoding, the framing of a stream, HELLO, every value), seeded
# with one valid frame of every op. `make test` runs a short seeded version on
# stable (tests/fuzz_wire.rs).
fuzz-wire:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	FUZZ_CORPUS=$(CURDIR)/tests/fuzz/corpus/decode_frame \
		$(CARGO) test --release --test fuzz_wire -- --ignored --exact write_seed_corpus
	$(CARGO) +nightly fuzz run --fuzz-dir tests/fuzz decode_frame -- -max_total_time=$(FUZZ_TIME)

# The tour (examples/python/tour.py, about 15 s): one process embeds a persistent
# broker; Python and a C++ shared object (examples/cpp/tour_producer.cpp) produce
# into it, pools consume; then producer and consumer processes share the directory,
# the hosting one is SIGKILLed mid-stream, another takes over, and the journal
# proves nothing durable was lost.
# Then the bridge scene (examples/bridge_demo.rs, feature `bridge`, about 10 s):
# a local queue forwarding to a JetStream server it starts itself (nats-server
# from `make setup`, 127.0.0.1, temporary store), killed and restarted meanwhile;
# the stream against the sent set proves every message arrived exactly once.
demo: setup lib
	mkdir -p $(EXAMPLES)
	c++ $(CXXFLAGS_STRICT) -O2 -fPIC -shared examples/cpp/tour_producer.cpp -o $(EXAMPLES)/libtour_producer.so
	test -x $(PYENV)/bin/python || python3 -m venv $(PYENV)
	$(PIP_LIB) $(PYENV)/bin/pip install -q ./bindings/python
	$(PYENV)/bin/python examples/python/tour.py --cpp $(EXAMPLES)/libtour_producer.so
	$(CARGO) run --release --features bridge --example bridge_demo

# The comparison harness (issue 7), one run: the Rust benches (criterion groups
# and plain programs), the C/C++ and the Python comparisons, each writing into
# $(BENCH_RUN), and oslo.messaging's transports (RabbitMQ included, bench-oslo);
# then benches/report.py merges them into benches/results/latest.json
# and renders BENCHMARKS.md and the plots. LQ_BENCH_QUICK=1: a short smoke run.
BENCH_RUN := target/bench-run
APT_GET := $(if $(filter 0,$(shell id -u)),,sudo) apt-get
bench bench-c bench-python bench-oslo: export LQ_BENCH_OUT := $(CURDIR)/$(BENCH_RUN)
bench: export CRITERION_HOME := $(CURDIR)/$(BENCH_RUN)/criterion
bench: lib
	rm -rf $(BENCH_RUN) && mkdir -p $(BENCH_RUN)
	{ date -u '+%Y-%m-%d %H:%M UTC'; cat /proc/loadavg; python3 benches/report.py --commit; } > $(BENCH_RUN)/started
	$(CARGO) bench --bench ready_path --bench scaling --bench dispatch --bench persist --bench latency --bench memory --bench recovery
	$(MAKE) --no-print-directory bench-c bench-python bench-oslo
	target/pybench/bin/pip install -q matplotlib || echo "warning: matplotlib did not install: no plots" >&2
	target/pybench/bin/python benches/report.py $(BENCH_RUN)

clean:
	$(CARGO) clean
	rm -rf $(LOOM_TARGET)

# The Python package (bindings/python): pip-installed into a venv under target/
# (its build runs cargo and bundles liblibqueue.so), then its pytest suite.
PYENV := target/pyenv
test-python: setup lib
	test -x $(PYENV)/bin/python || python3 -m venv $(PYENV)
	$(PYENV)/bin/pip install -q --upgrade pip pytest pytest-timeout mypy
	$(PIP_LIB) $(PYENV)/bin/pip install -q ./bindings/python
	$(PYENV)/bin/python -m pytest -q -p no:cacheprovider --timeout 60 bindings/python/tests
	# Typing: the package's own code, then a user script against the installed package
	# (its stubs included) with no Any in any expression.
	cd bindings/python && $(CURDIR)/$(PYENV)/bin/python -m mypy --strict --cache-dir $(CURDIR)/target/mypy-cache libqueue
	$(PYENV)/bin/python -m mypy --strict --disallow-any-expr --cache-dir $(CURDIR)/target/mypy-cache bindings/python/tests/typing_user.py
	$(PYENV)/bin/python -m py_compile examples/python/tour.py  # make demo's driver
	$(PYENV)/bin/python examples/python/multiprocess.py  # worker processes on one directory

# The oslo.messaging driver (libqueue.oslo, docs/oslo-messaging.md) in its own venv
# with oslo.messaging and the test tools its functional suite needs: our driver
# tests under coverage (the driver's line coverage must stay >= 90 %), then
# oslo.messaging's own functional suite (shipped inside the installed package) on
# libqueue:// and on libqueue:////<fresh dir> (tests/oslo/run_suite.py, parallel
# lanes, about a minute), then the Octavia consumer example, which checks itself.
OSLOENV := target/osloenv
OSLO_TEST_DEPS := pytest pytest-timeout coverage testtools testscenarios fixtures oslotest requests
test-oslo: setup lib
	test -x $(OSLOENV)/bin/python || python3 -m venv $(OSLOENV)
	$(OSLOENV)/bin/python -c "import oslo_messaging, oslo_metrics, testscenarios, coverage" 2>/dev/null || \
		$(OSLOENV)/bin/pip install -q --upgrade pip "oslo.messaging>=14" oslo.metrics $(OSLO_TEST_DEPS)
	$(PIP_LIB) $(OSLOENV)/bin/pip install -q "./bindings/python[oslo]"
	rm -f target/oslo-coverage
	cd tests/oslo && $(CURDIR)/$(OSLOENV)/bin/python -m coverage run --data-file=$(CURDIR)/target/oslo-coverage \
		--source=libqueue.oslo -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning --timeout 120 test_driver.py
	$(OSLOENV)/bin/python -m coverage report --data-file=target/oslo-coverage --fail-under=90
	$(OSLOENV)/bin/python tests/oslo/run_suite.py
	$(OSLOENV)/bin/python -W ignore examples/python/octavia_oslo.py
	rm -rf target/oslo-octavia
	$(OSLOENV)/bin/python -W ignore examples/python/octavia_oslo.py --pool-size 2 \
		--url libqueue:///$(CURDIR)/target/oslo-octavia
	rm -rf target/oslo-octavia
	$(OSLOENV)/bin/python -W ignore examples/python/octavia_oslo.py --pool-size 2 --two-processes \
		--url libqueue:///$(CURDIR)/target/oslo-octavia

# oslo.messaging cast throughput and call round trip (benches/python/oslo_bench.py,
# median of 3 runs): libqueue://, libqueue:////<tmp dir>, fake:// and rabbit:// against
# a private RabbitMQ on 127.0.0.1 (benches/rabbitmq.sh: temp dir, own node and ports,
# stopped afterwards; the Debian rabbitmq-server is installed if missing, its system
# service is never used), in the same run. Writes $(BENCH_RUN)/oslo.json for `make
# bench`'s report. Not part of `make test`.
bench-oslo: lib
	dpkg -s rabbitmq-server >/dev/null 2>&1 || { $(APT_GET) update && $(APT_GET) install -y rabbitmq-server; }
	test -x $(OSLOENV)/bin/python || python3 -m venv $(OSLOENV)
	$(OSLOENV)/bin/python -c "import oslo_messaging" 2>/dev/null || $(OSLOENV)/bin/pip install -q "oslo.messaging>=14"
	$(PIP_LIB) $(OSLOENV)/bin/pip install -q "./bindings/python[oslo]"
	mkdir -p $(BENCH_RUN)
	dir=$$(mktemp -d /tmp/lq-rabbitmq.XXXXXX) && trap "benches/rabbitmq.sh stop $$dir" EXIT && trap 'exit 1' INT TERM && \
		url=$$(benches/rabbitmq.sh start $$dir) && \
		$(OSLOENV)/bin/python -W ignore benches/python/oslo_bench.py --rabbit $$url --json $(BENCH_RUN)/oslo.json

# The Python package's distributions, built in their own tool venv: `make wheel`,
# the abi3 wheel (libqueue-<version>-cp39-abi3-<platform>.whl, one for every
# CPython >= 3.9; the bundled library stripped) into target/wheels; `make sdist`, the
# self-contained source tarball (the crate inside) into target/dist. test-packaging
# installs each into a fresh venv, the wheel with no cargo on PATH, and runs
# tests/packaging/smoke.py (tests/packaging/check.sh).
PKGTOOL := target/pkgtool
WHEELS := target/wheels
DISTS := target/dist
pkgtool: setup
	test -x $(PKGTOOL)/bin/python || python3 -m venv $(PKGTOOL)
	$(PKGTOOL)/bin/python -c "import build" 2>/dev/null || $(PKGTOOL)/bin/pip install -q --upgrade pip build

wheel: pkgtool lib
	rm -rf $(WHEELS) && mkdir -p $(WHEELS)
	$(PIP_LIB) $(PKGTOOL)/bin/pip wheel -q --no-deps -w $(WHEELS) ./bindings/python
	@ls -l $(WHEELS)

sdist: pkgtool
	rm -rf $(DISTS)
	$(PKGTOOL)/bin/python -m build -q --sdist --outdir $(DISTS) bindings/python
	@ls -l $(DISTS)

test-packaging: wheel sdist
	sh tests/packaging/check.sh $(WHEELS) $(DISTS) $(CURDIR)/target/sdist-target

# Python beside queue.Queue, persist-queue, queuelib and litequeue (installed for the
# benchmark only, in their own venv); prints a table, writes $(BENCH_RUN)/python.json.
# Then across processes beside the peers (benches/python/multiprocess.py, issue 14):
# multiprocessing.Queue, ZeroMQ ipc, persist-queue and litequeue on a temp dir, and
# a private RabbitMQ (benches/rabbitmq.sh) and nats-server -js (benches/python/nats.sh)
# on 127.0.0.1 in temp dirs, started here with bounded waits and always stopped and
# removed (trap); median of 3 runs (LQ_BENCH_QUICK=1: one short run, --quick),
# $(BENCH_RUN)/python_multiprocess.json. The peers' packages are pinned.
PYBENCH_PEERS := persist-queue==1.1.0 queuelib==1.10.0 litequeue==0.9 pyzmq==27.3.0 pika==1.4.4 nats-py==2.16.0
bench-python: lib
	python3 -c "import venv, ensurepip" 2>/dev/null || { $(APT_GET) update && $(APT_GET) install -y python3-venv python3-pip; }
	dpkg -s rabbitmq-server >/dev/null 2>&1 || { $(APT_GET) update && $(APT_GET) install -y rabbitmq-server; }
	{ command -v nats-server || test -x /usr/sbin/nats-server; } >/dev/null || $(MAKE) --no-print-directory setup
	test -x target/pybench/bin/python || python3 -m venv target/pybench
	target/pybench/bin/pip install -q --upgrade pip $(PYBENCH_PEERS)
	$(PIP_LIB) target/pybench/bin/pip install -q ./bindings/python
	mkdir -p $(BENCH_RUN)
	target/pybench/bin/python benches/python/compare.py --json $(BENCH_RUN)/python.json \
		$(if $(filter-out 0,$(LQ_BENCH_QUICK)),--n 20000 --n-disk 2000)
	dir=$$(mktemp -d /tmp/lq-peers.XXXXXX) && \
		trap "benches/rabbitmq.sh stop $$dir/rabbit; benches/python/nats.sh stop $$dir/nats; rm -rf $$dir" EXIT && \
		trap 'exit 1' INT TERM && \
		rabbit=$$(benches/rabbitmq.sh start $$dir/rabbit) && nats=$$(benches/python/nats.sh start $$dir/nats) && \
		target/pybench/bin/python benches/python/multiprocess.py --rabbit $$rabbit --nats $$nats \
			--json $(BENCH_RUN)/python_multiprocess.json $(if $(filter-out 0,$(LQ_BENCH_QUICK)),--quick)
