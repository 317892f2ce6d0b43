package pgtable

import (
	"fmt"

	"github.com/ptlab/ptlab/arm64"
)

// FoldTableAnyAttr is FoldTable without the attribute check: the table folds
// when its entries are valid leaves mapping contiguous output addresses from
// a block-aligned start, whatever their attributes, and the block takes the
// first entry's. No kernel does this; it is the checker's FoldIgnoresAttributes
// mutant (a collapse that changes permissions of part of the region).
func (t *Tables) FoldTableAnyAttr(d Door, va uint64, l arm64.Level) (freed uint64, ok bool, err error) {
	g := t.g
	if l >= arm64.LastLevel || !g.BlockAllowed(l) {
		return 0, false, fmt.Errorf("%w: no blocks at %s", ErrInvalid, g.Name(l))
	}
	e, found, err := t.lookupAt(d, va, l)
	if err != nil || !found || !g.IsTable(e.Desc, l) {
		return 0, false, err
	}
	cpa := g.OutputAddress(e.Desc)
	ctbl, okTbl := t.lookup(cpa)
	if !okTbl {
		return 0, false, fmt.Errorf("%w: %#x under %s at %#x", ErrNotTable, cpa, g.Name(l), e.DescPA)
	}
	var prot, base uint64
	step := g.Size(l + 1)
	attr := g.AttrMask() &^ arm64.PTECont
	for i := 0; i < g.Entries(l+1); i++ {
		v := d.Load(cpa+uint64(i)*8, &ctbl[i])
		if !arm64.DescValid(v) || g.IsTable(v, l+1) {
			return 0, false, nil
		}
		if i == 0 {
			prot, base = v&attr, g.OutputAddress(v)
		} else if g.OutputAddress(v) != base+uint64(i)*step {
			return 0, false, nil
		}
	}
	if base&(g.Size(l)-1) != 0 {
		return 0, false, nil
	}
	if e.Desc&arm64.TablePXN != 0 {
		prot |= arm64.PTEPXN
	}
	if e.Desc&arm64.TableUXN != 0 {
		prot |= arm64.PTEUXN
	}
	tbl, _ := t.tableOf(e.DescPA)
	d.Store(e.DescPA, &tbl[t.indexOf(e.DescPA)], g.MkLeaf(base, prot, l))
	t.invalidateWalks()
	return cpa, true, nil
}
