// Package bench compares ptlab's translation tables (package pgtable) with a
// peer, gVisor's ring0 page tables (gvisor.dev/gvisor/pkg/ring0/pagetables),
// on the same operations in the same run: map 4K pages, map 2M blocks,
// translate, change protection, unmap.
//
// It is its own module so that the main module never depends on gVisor. The
// benchmarks are in peer_test.go; cmd/peerratio turns their output into the
// ptlab/gVisor ratio per operation. See README.md for the commands.
package bench
