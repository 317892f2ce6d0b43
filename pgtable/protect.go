package pgtable

import (
	"fmt"

	"github.com/ptlab/ptlab/arm64"
)

// Protect rewrites every descriptor mapping [start, end) as
// (old &^ clear) | set. It is the lockless kernel page walk that
// update_range_prot runs with pageattr_ops: empty upper-level slots are
// skipped; a PUD or PMD leaf must be covered whole, otherwise the walk stops
// with ErrInvalid (the WARN_ON_ONCE in pageattr_pud_entry/pageattr_pmd_entry)
// leaving what it already changed; every PTE slot of a present PTE table in
// the range is rewritten, empty ones included. Contiguous runs are not
// checked: keeping them whole is the caller's duty, as in the kernel.
func (t *Tables) Protect(d Door, start, end, set, clear uint64) error {
	if start >= end && end != 0 {
		return fmt.Errorf("%w: empty range [%#x, %#x)", ErrInvalid, start, end)
	}
	tbl, _ := t.lookup(t.root)
	return t.protectLevel(d, t.root, tbl, t.g.StartLevel, start, end, set, clear)
}

func (t *Tables) protectLevel(d Door, tpa uint64, tbl []uint64, l arm64.Level, va, end, set, clear uint64) error {
	g := &t.g
	for {
		next := t.boundary(va, end, l)
		idx := g.Index(va, l)
		dpa := tpa + uint64(idx)*8
		desc := d.Load(dpa, &tbl[idx])
		switch {
		case l == arm64.LastLevel:
			d.Store(dpa, &tbl[idx], desc&^clear|set)
		case desc == 0:
		case g.IsTable(desc, l):
			cpa := g.OutputAddress(desc)
			ctbl, ok := t.lookup(cpa)
			if !ok {
				return fmt.Errorf("%w: %#x under %s at %#x", ErrNotTable, cpa, g.Name(l), dpa)
			}
			if err := t.protectLevel(d, cpa, ctbl, l+1, va, next, set, clear); err != nil {
				return err
			}
		case g.IsLeaf(desc, l):
			if next-va != g.Size(l) {
				return fmt.Errorf("%w: [%#x, %#x) covers part of the %s leaf at %#x", ErrInvalid, va, next, g.Name(l), va&^(g.Size(l)-1))
			}
			d.Store(dpa, &tbl[idx], desc&^clear|set)
		}
		if next == end {
			return nil
		}
		va = next
	}
}
