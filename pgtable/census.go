package pgtable

import (
	"fmt"

	"github.com/ptlab/ptlab/arm64"
)

// Census counts what maps a VA range: bytes by leaf level and contiguous
// hint, bytes in present-invalid leaves, and table pages by level.
type Census struct {
	Leaf    arm64.PerLevel[[2]uint64] // per level, [cont]: bytes mapped by valid leaves
	Invalid uint64                    // bytes in present-invalid leaves
	Tables  arm64.PerLevel[int]       // table pages reachable from the range, per level
}

// Add accumulates o into c.
func (c *Census) Add(o Census) {
	for l := arm64.MinLevel; l <= arm64.LastLevel; l++ {
		leaf, ol := c.Leaf.At(l), o.Leaf.Get(l)
		leaf[0] += ol[0]
		leaf[1] += ol[1]
		*c.Tables.At(l) += o.Tables.Get(l)
	}
	c.Invalid += o.Invalid
}

// Sub removes o from c (for a sub-range counted separately).
func (c *Census) Sub(o Census) {
	for l := arm64.MinLevel; l <= arm64.LastLevel; l++ {
		leaf, ol := c.Leaf.At(l), o.Leaf.Get(l)
		leaf[0] -= ol[0]
		leaf[1] -= ol[1]
		*c.Tables.At(l) -= o.Tables.Get(l)
	}
	c.Invalid -= o.Invalid
}

// TakeCensus counts the leaves and tables serving [start, end). A table is
// counted in the range that holds its first address. Cost is one pass over
// the descriptors in the range, with no callback per entry.
func (t *Tables) TakeCensus(d Door, start, end uint64) (Census, error) {
	var c Census
	if start >= end && end != 0 {
		return c, fmt.Errorf("%w: empty range [%#x, %#x)", ErrInvalid, start, end)
	}
	err := walkRoot(t, d, &visitor{op: opCensus, census: censusVisitor{g: &t.g, c: &c}}, start, end)
	return c, err
}
