# ptlab — build and test. `make test` is what CI runs (.ci/run).
GO ?= go
SHELL := /bin/bash
# Packages whose code runs concurrently (CPUs as goroutines, locks): they also
# run under the race detector.
RACE_PKGS = ./physmem/... ./pgtable/... ./cpu/... ./explore/...

.PHONY: build test vet race bench peer
build:
	$(GO) build -o ptlab ./cmd/ptlab

vet:
	$(GO) vet ./...

# Tests that need something outside Go (QEMU, a browser) run on their own
# and verbosely, so the output says whether they ran or why they skipped.
EXTERNAL_TESTS = ^(TestCaptureOnRealKernel|TestTraceOnRealKernel|TestHTMLInBrowser)$$
# The live trace loop records a real guest and compares the replay with it
# (skipped without QEMU). Every difference it tolerates is explained from the
# recording (trace/fidelity.go); a difference it cannot explain fails make
# test, like any other test.
LIVE_TRACE = $(GO) test -count=1 -timeout 30m -v -run '^TestTraceOnRealKernel$$' ./trace/ 2>&1 | \
		grep -E -- '^(--- |ok|FAIL|panic)|_test\.go:[0-9]+: ' | grep -v 'explained page difference' ; test $${PIPESTATUS[0]} -eq 0

test: vet
	$(GO) test -skip '$(EXTERNAL_TESTS)' ./...
	@echo "--- tests that need QEMU or a browser:"
	@$(GO) test -count=1 -timeout 30m -v -run '$(EXTERNAL_TESTS)' ./capture/ ./cmd/ptlab/ 2>&1 | \
		grep -E -- '^(--- |ok|FAIL|panic)|_test\.go:[0-9]+: ' ; test $${PIPESTATUS[0]} -eq 0
	@$(LIVE_TRACE)
	$(GO) test -race -short -timeout 20m $(RACE_PKGS)

bench:
	$(GO) test -run XXX -bench . -benchmem ./...

# Side-by-side benchmarks against gVisor's page tables (a separate module, so
# the main module never depends on gVisor). The peers are interleaved: each
# of the 6 counts runs every op on ptlab then gVisor (BenchmarkPeer), and
# BenchmarkPair alternates them round by round within one benchmark.
# Compare with benchstat (bench/README.md):
#   make peer > peer.txt; benchstat -col /impl -filter .name:Peer peer.txt
peer:
	cd bench && $(GO) test ./... && $(GO) test -c -o peer.test . && \
	for i in 1 2 3 4 5 6; do ./peer.test -test.run '^$$' -test.bench 'Peer|Pair|Floor' -test.count 1 -test.benchmem || exit 1; done; \
	rm -f peer.test
