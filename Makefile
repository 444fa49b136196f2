# The project's interface: `make demo`, `make test`, `make bench`.
# Each target installs missing Debian packages first (scripts/install-deps.sh).

BUILD      ?= build/release
ASAN_BUILD ?= build/asan
JOBS       ?= $(shell nproc)
MAKEFLAGS  += --no-print-directory

.PHONY: all deps build build-asan demo test test-cpp test-asan test-python valgrind bench format clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# AddressSanitizer + UndefinedBehaviorSanitizer build of the C++ core and its tests.
build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSTACKLESS_SANITIZE=ON \
	       -DSTACKLESS_PYTHON=OFF >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)

demo: build
	@scripts/demo.sh $(BUILD)

test: test-cpp test-python test-asan

test-cpp: build
	@echo "== C++ tests (release build)"
	@ctest --test-dir $(BUILD) -j$(JOBS) --output-on-failure

test-python: build
	@echo "== Python tests (Debian's /usr/bin/python3 with the freshly built module)"
	@./stackless -m pytest -q tests/python

test-asan: build-asan
	@echo "== C++ tests under AddressSanitizer and UndefinedBehaviorSanitizer"
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	 ctest --test-dir $(ASAN_BUILD) -j$(JOBS) --output-on-failure

# Memory errors under valgrind's memcheck (minutes; not part of make test).
valgrind: build
	@scripts/valgrind.sh $(abspath $(BUILD))

# The echo and timer benchmarks exit non-zero when a program fails: make says so and goes on.
bench: build
	@BUILD_DIR=$(abspath $(BUILD)) bench/run_native.sh
	-@BUILD_DIR=$(abspath $(BUILD)) ECHO_EXTRA_SERVERS="ours=$(abspath $(BUILD))/bench/bench_echo_ours" \
	  bench/echo/run.sh
	-@BUILD_DIR=$(abspath $(BUILD)) TIMER_EXTRA="ours=$(abspath $(BUILD))/bench/timer_ours" \
	  bench/timers/run.sh
	@./stackless bench/python/bench.py
	@./stackless bench/python/scale.py
	@./stackless bench/python/floor.py

format:
	@clang-format -i $$(git ls-files '*.hpp' '*.cpp')

clean:
	@rm -rf build
