package workload

import (
	"testing"

	"github.com/ptlab/ptlab/internal/modeltest"
	"github.com/ptlab/ptlab/kernel"
)

// TestMain fails the package when a kernel met a model error.
func TestMain(m *testing.M) { modeltest.Main(m, kernel.ModelErrors) }
