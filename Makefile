# Set-up, build, run and test targets. Each target installs what it needs when missing: Debian packages through
# apt-get (run as root, or with sudo available) and Python packages through pip.

SWIFT ?= swift
PYTHON ?= python3
APT_PACKAGES := libssl-dev libcurl4-openssl-dev pkg-config
# webhook is the second ingest reference and gnuplot-nox draws bench/results.png.
BENCH_PACKAGES := nginx-light wrk webhook gnuplot-nox
# Comma-separated benchmark parts, e.g. `make bench BENCH_ONLY=ingest,sweep`; empty runs all of them.
BENCH_ONLY ?=
# A sentence for bench/results.md about the run's conditions, e.g. BENCH_NOTE="Taken on a quiet machine."
BENCH_NOTE ?=
# The demo's sink verifies signatures with standardwebhooks; the tests also run schemathesis.
RUN_PIP_PACKAGES := standardwebhooks==1.3.0
PIP_PACKAGES := $(RUN_PIP_PACKAGES) schemathesis==4.32.5
FUZZ_SECONDS ?= 60

.PHONY: build release run test test-thread-sanitizer test-address-sanitizer bench crash-test fuzz deps run-deps \
	test-deps bench-deps clean

deps:
	@tools/ensure-packages apt $(APT_PACKAGES)

run-deps: deps
	@tools/ensure-packages pip $(RUN_PIP_PACKAGES)

# promtool checks the metrics page and the alerting rules in the tests. The frozen-disk test makes an ext4 file
# system on a loop device (e2fsprogs) and freezes it (fsfreeze, from util-linux).
TEST_PACKAGES := e2fsprogs util-linux

test-deps: deps
	@tools/ensure-packages apt $(TEST_PACKAGES)
	@tools/ensure-packages pip $(PIP_PACKAGES)
	@tools/ensure-promtool .build/tools/promtool

bench-deps: test-deps
	@tools/ensure-packages apt $(BENCH_PACKAGES)

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Starts a signature-checking sink, the relay on config.json and the carrier emulator, prints what happens and
# keeps them running until Ctrl-C.
run: release run-deps
	@$(PYTHON) tools/demo.py --binary .build/release/portout-relay --config config.json

# Tests use loopback sockets and temporary directories only.
test: test-deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-xctest

# The test suite under ThreadSanitizer, in its own build directory; CI runs it after `make test`.
test-thread-sanitizer: test-deps
	$(SWIFT) test --scratch-path .build/thread-sanitizer --sanitize=thread --disable-xctest

# The test suite under AddressSanitizer. Leak detection is off: the leaks it reports are in Foundation's file
# reading and process spawning in the tests, and a test server kept for the whole run. Builds into
# .build/address-sanitizer so that it does not replace the normal build.
test-address-sanitizer: test-deps
	ASAN_OPTIONS=detect_leaks=0 $(SWIFT) test --scratch-path .build/address-sanitizer --sanitize=address --disable-xctest

# bench/README.md describes each part and how long a full run takes.
bench: release bench-deps
	@$(PYTHON) bench/run.py --binary .build/release/portout-relay --bench-binary .build/release/portout-bench \
		$(if $(BENCH_ONLY),--only $(BENCH_ONLY)) $(if $(BENCH_NOTE),--note "$(BENCH_NOTE)")

# Kills the relay with SIGKILL in 20 rounds under load and checks that nothing acknowledged is lost, that order
# holds and that every duplicate was in flight at a kill. Loopback only, under a minute; CI runs it.
crash-test: release
	@$(PYTHON) tools/crash_test.py --binary .build/release/portout-relay --rounds 20

# Builds the libFuzzer targets in Fuzz/Targets into .build/fuzz and runs each for FUZZ_SECONDS seconds, one at a
# time. libFuzzer's runtime comes with the Swift toolchain. Exits non-zero if any target crashed.
fuzz: deps
	@$(PYTHON) tools/fuzz.py --swift $(SWIFT) --seconds $(FUZZ_SECONDS)

clean:
	rm -rf .build
