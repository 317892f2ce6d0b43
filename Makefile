# ptlab — build and test. `make test` is what CI runs (.ci/run).
GO ?= go
# Packages whose code runs concurrently (CPUs as goroutines, locks): they also
# run under the race detector.
RACE_PKGS = ./physmem/... ./pgtable/... ./cpu/... ./explore/...

.PHONY: build test vet race bench peer
build:
	$(GO) build -o ptlab ./cmd/ptlab

vet:
	$(GO) vet ./...

test: vet
	$(GO) test ./...
	$(GO) test -race -short $(RACE_PKGS)

bench:
	$(GO) test -run XXX -bench . -benchmem ./...

# Side-by-side benchmarks against gVisor's page tables (a separate module, so
# the main module never depends on gVisor). Compare with benchstat:
#   make peer > peer.txt; benchstat -col /impl peer.txt
peer:
	cd bench && $(GO) test ./... && $(GO) test -run '^$$' -bench Peer -count 6 .
