# ptlab — build and test. `make test` is what CI runs (.ci/run).
GO ?= go
# Packages whose code runs concurrently (CPUs as goroutines, locks): they also
# run under the race detector.
RACE_PKGS = ./physmem/... ./pgtable/...

.PHONY: build test vet race bench
build:
	$(GO) build -o ptlab ./cmd/ptlab

vet:
	$(GO) vet ./...

test: vet
	$(GO) test ./...
	$(GO) test -race -short $(RACE_PKGS)

bench:
	$(GO) test -run XXX -bench . -benchmem ./...
