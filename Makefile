# libqueue — the two commands a newcomer needs: `make demo` and `make test`.
CARGO ?= cargo
LOOM_TARGET := target-loom

.PHONY: all build lib test test-rust test-loom test-c lint demo bench clean

all: build

build: lib

# Release build of the library; cargo names the artifacts after the crate
# (liblibqueue.*), so link them as libqueue.so / libqueue.a for `-lqueue`.
lib:
	$(CARGO) build --release --lib
	ln -sf liblibqueue.so target/release/libqueue.so
	ln -sf liblibqueue.a target/release/libqueue.a

test: test-rust test-loom test-c lint

test-rust:
	$(CARGO) test --release --all-targets
	$(CARGO) test --release --doc

# Loom model checks of the hand-written lock-free primitives (src/sync/).
test-loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$(LOOM_TARGET) LOOM_MAX_PREEMPTIONS=3 \
		$(CARGO) test --release --lib sync::

# The C-facing artifacts link with -lqueue and answer.
test-c: lib
	mkdir -p target/ctest
	printf '#include <stdio.h>\n#include <string.h>\nconst char *lq_version(void);\nint main(void){const char*v=lq_version();printf("libqueue %%s\\n",v);return strcmp(v,"%s")!=0;}\n' \
		"$$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)" > target/ctest/version.c
	cc -std=c99 -Wall -Wextra -Werror target/ctest/version.c -Ltarget/release -lqueue -o target/ctest/version_so
	LD_LIBRARY_PATH=target/release ./target/ctest/version_so
	cc -std=c99 -Wall -Wextra -Werror target/ctest/version.c target/release/libqueue.a -lpthread -ldl -lm -o target/ctest/version_a
	./target/ctest/version_a

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	RUSTDOCFLAGS=-Dwarnings $(CARGO) doc --no-deps --release

demo:
	$(CARGO) run --release --example demo

bench:
	$(CARGO) bench --bench ready_path

clean:
	$(CARGO) clean
	rm -rf $(LOOM_TARGET)
