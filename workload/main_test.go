package workload

import (
	"fmt"
	"os"
	"testing"

	"github.com/ptlab/ptlab/kernel"
)

// TestMain fails the package when a run met a model error (kernel's
// modelError WARNs, which no single test would notice).
func TestMain(m *testing.M) {
	code := m.Run()
	if n, first := kernel.ModelErrors(); n != 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d model error(s), first:\n", n)
		for _, s := range first {
			fmt.Fprintf(os.Stderr, "\t%s\n", s)
		}
		code = 1
	}
	os.Exit(code)
}
