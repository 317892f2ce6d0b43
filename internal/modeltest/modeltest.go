// Package modeltest is the TestMain of the packages that run the modelled
// kernel: after the tests it fails the package when any kernel met a model
// error (kernel.ModelErrors). Such errors are WARNed, not returned, so no
// single test would notice them.
package modeltest

import (
	"fmt"
	"os"
	"testing"
)

// Main runs the tests, then fails if modelErrors reports any. It takes the
// counter as a function so that package kernel's own tests can use it.
func Main(m *testing.M, modelErrors func() (uint64, []string)) {
	code := m.Run()
	if n, first := modelErrors(); n != 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d ptlab model error(s), first:\n", n)
		for _, s := range first {
			fmt.Fprintf(os.Stderr, "\t%s\n", s)
		}
		code = 1
	}
	os.Exit(code)
}
