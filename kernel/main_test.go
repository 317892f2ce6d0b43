package kernel

import (
	"testing"

	"github.com/ptlab/ptlab/internal/modeltest"
)

// TestMain fails the package when any test's kernel met a model error.
func TestMain(m *testing.M) { modeltest.Main(m, ModelErrors) }
