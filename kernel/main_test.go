package kernel

import (
	"fmt"
	"os"
	"testing"
)

// TestMain fails the package when any test's kernel met a model error
// (modelError): such errors are WARNed, not returned, so no single test
// would notice them.
func TestMain(m *testing.M) {
	code := m.Run()
	if n, first := ModelErrors(); n != 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d model error(s), first:\n", n)
		for _, s := range first {
			fmt.Fprintf(os.Stderr, "\t%s\n", s)
		}
		code = 1
	}
	os.Exit(code)
}
