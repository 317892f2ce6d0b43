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
	tbl, _ := t.lookup(t.root)
	err := t.census(d, t.root, tbl, t.g.StartLevel, start, end, &c)
	return c, err
}

func (t *Tables) census(d Door, tpa uint64, tbl []uint64, l arm64.Level, va, end uint64, c *Census) error {
	g := &t.g
	// A level-l table covers one entry of the level above; it belongs to
	// the range holding its first address (the root's is -(1 << VABits)).
	if l == g.StartLevel {
		if base := ^uint64(0) << uint(g.VABits); va <= base && (base < end || end == 0) {
			*c.Tables.At(l)++
		}
	} else if va&(g.Size(l-1)-1) == 0 {
		*c.Tables.At(l)++
	}
	if l == arm64.LastLevel {
		ps := g.PageSize()
		idx := g.Index(va, l)
		n := int((end-va-1)/ps) + 1
		if n > len(tbl)-idx {
			n = len(tbl) - idx
		}
		for i := idx; i < idx+n; i++ {
			e := d.Load(tpa+uint64(i)*8, &tbl[i])
			switch {
			case arm64.DescValid(e):
				c.Leaf.At(l)[e>>52&1] += ps
			case arm64.DescPresentInvalid(e):
				c.Invalid += ps
			}
		}
		return nil
	}
	for {
		next := t.boundary(va, end, l)
		idx := g.Index(va, l)
		dpa := tpa + uint64(idx)*8
		desc := d.Load(dpa, &tbl[idx])
		switch {
		case g.IsTable(desc, l):
			cpa := g.OutputAddress(desc)
			ctbl, ok := t.lookup(cpa)
			if !ok {
				return fmt.Errorf("%w: %#x under %s at %#x", ErrNotTable, cpa, g.Name(l), dpa)
			}
			if err := t.census(d, cpa, ctbl, l+1, va, next, c); err != nil {
				return err
			}
		case arm64.DescValid(desc):
			c.Leaf.At(l)[desc>>52&1] += next - va
		case arm64.DescPresentInvalid(desc):
			c.Invalid += next - va
		}
		if next == end {
			return nil
		}
		va = next
	}
}
