package pgtable

import (
	"fmt"

	"github.com/ptlab/ptlab/arm64"
)

// FoldTable collapses the table under the level-l entry that covers va into
// one block at level l, when the table's entries allow it: every entry a
// valid leaf, output addresses contiguous from a block-aligned start, and
// identical attributes ignoring PTE_CONT (the checks of the RFC's
// __try_collapse_pmd, generalised to any level with blocks). Hierarchical
// PXNTable/UXNTable of the folded table are carried into the block so the
// translation and its permissions do not change.
//
// The block is written with one store (legal live only with BBML2_NOABORT;
// policy is the caller's). The unhooked table page is returned, not freed:
// the caller frees it with FreeTable after invalidating walk caches and
// synchronising with lockless walkers. ok=false means nothing changed.
func (t *Tables) FoldTable(d Door, va uint64, l arm64.Level) (freed uint64, ok bool, err error) {
	return t.foldTable(d, va, l, true)
}

// FoldTableAnyAttr is FoldTable without the attribute check: the table folds
// when its entries are valid leaves mapping contiguous output addresses from
// a block-aligned start, whatever their attributes, and the block takes the
// first entry's. No kernel does this; it is the checker's FoldIgnoresAttributes
// mutant (a collapse that changes permissions of part of the region).
func (t *Tables) FoldTableAnyAttr(d Door, va uint64, l arm64.Level) (freed uint64, ok bool, err error) {
	return t.foldTable(d, va, l, false)
}

func (t *Tables) foldTable(d Door, va uint64, l arm64.Level, checkAttrs bool) (freed uint64, ok bool, err error) {
	g := &t.g
	if l >= arm64.LastLevel || !g.BlockAllowed(l) {
		return 0, false, fmt.Errorf("%w: no blocks at %s", ErrInvalid, g.Name(l))
	}
	e, found, err := t.lookupAt(d, va, l)
	if err != nil || !found {
		return 0, false, err
	}
	if !g.IsTable(e.Desc, l) {
		return 0, false, nil
	}
	cpa := g.OutputAddress(e.Desc)
	ctbl, okTbl := t.lookup(cpa)
	if !okTbl {
		return 0, false, fmt.Errorf("%w: %#x under %s at %#x", ErrNotTable, cpa, g.Name(l), e.DescPA)
	}
	prot, base, okRun := t.uniformRun(d, cpa, ctbl, 0, g.Entries(l+1), l+1, checkAttrs)
	if !okRun || base&(g.Size(l)-1) != 0 {
		return 0, false, nil
	}
	if e.Desc&arm64.TablePXN != 0 {
		prot |= arm64.PTEPXN
	}
	if e.Desc&arm64.TableUXN != 0 {
		prot |= arm64.PTEUXN
	}
	tbl, _ := t.tableOf(e.DescPA)
	if t.tr != nil {
		if err := t.trackSubtree(cpa, l+1, e.VA, -1); err != nil {
			return 0, false, err
		}
		t.trackLeaf(e.VA, l, 0, g.MkLeaf(base, prot, l))
	}
	d.Store(e.DescPA, &tbl[t.indexOf(e.DescPA)], g.MkLeaf(base, prot, l))
	t.invalidateWalks()
	return cpa, true, nil
}

// FoldCont sets PTE_CONT on the aligned run of CONT_PTES (level 3) or
// CONT_PMDS (level 2) entries around va when they are valid leaves mapping
// contiguous output addresses from a run-aligned start with identical
// attributes. Entries are rewritten one by one; ok=false means nothing changed.
func (t *Tables) FoldCont(d Door, va uint64, l arm64.Level) (ok bool, err error) {
	g := &t.g
	n := g.ContEntries(l)
	if n == 0 || (l < arm64.LastLevel && !g.BlockAllowed(l)) {
		return false, fmt.Errorf("%w: no contiguous runs at %s", ErrInvalid, g.Name(l))
	}
	e, found, err := t.lookupAt(d, va, l)
	if err != nil || !found || !g.IsLeaf(e.Desc, l) {
		return false, err
	}
	tpa := e.DescPA &^ (g.PageSize() - 1)
	tbl, _ := t.lookup(tpa)
	first := t.indexOf(e.DescPA) &^ (n - 1)
	_, base, okRun := t.uniformRun(d, tpa, tbl, first, n, l, true)
	if !okRun || base&(g.ContSize(l)-1) != 0 {
		return false, nil
	}
	for i := first; i < first+n; i++ {
		dpa := descPA(tpa, i)
		v := d.Load(dpa, &tbl[i])
		if v&arm64.PTECont == 0 {
			d.Store(dpa, &tbl[i], v|arm64.PTECont)
			if t.tr != nil {
				t.trackLeaf(e.VA+uint64(i-t.indexOf(e.DescPA))*g.Size(l), l, v, v|arm64.PTECont)
			}
		}
	}
	return true, nil
}

// uniformRun checks n entries from index first of a level-l table: all valid
// leaves, contiguous output addresses and (when checkAttrs) equal attributes
// ignoring CONT. It returns the first entry's attributes (without CONT) and
// its output address.
func (t *Tables) uniformRun(d Door, tpa uint64, tbl []uint64, first, n int, l arm64.Level, checkAttrs bool) (prot, base uint64, ok bool) {
	g := &t.g
	step := g.Size(l)
	attr := g.AttrMask() &^ arm64.PTECont
	for i := first; i < first+n; i++ {
		v := d.Load(descPA(tpa, i), &tbl[i])
		if !arm64.DescValid(v) || g.IsTable(v, l) {
			return 0, 0, false
		}
		if i == first {
			prot, base = v&attr, g.OutputAddress(v)
			continue
		}
		if (checkAttrs && v&attr != prot) || g.OutputAddress(v) != base+uint64(i-first)*step {
			return 0, 0, false
		}
	}
	return prot, base, true
}

// lookupAt returns the entry at exactly level l for va; found=false when the
// walk ends above l (a leaf or an empty slot in the way).
func (t *Tables) lookupAt(d Door, va uint64, l arm64.Level) (e Entry, found bool, err error) {
	tpa, tbl, sh := t.root, t.rootTbl, t.rootSh
	var w walker
	w.init(t, d)
	for cl := t.g.StartLevel; ; cl++ {
		idx, desc, ctpa, ctbl, csh, err := w.step(tpa, tbl, sh, cl, va)
		switch {
		case cl == l:
			return Entry{VA: va &^ (t.g.Size(cl) - 1), Level: cl, Desc: desc, DescPA: descPA(tpa, idx)}, true, nil
		case err != nil:
			return Entry{}, false, err
		case ctbl == nil:
			return Entry{}, false, nil
		}
		tpa, tbl, sh = ctpa, ctbl, csh
	}
}

// UnhookTable clears the level-l entry for va when it points to a table and
// returns that table page, for the caller to free after invalidating walk
// caches (the first half of pmd_free_pte_page / pud_free_pmd_page). The
// table's own entries are left as they are. ok=false means there was no table.
func (t *Tables) UnhookTable(d Door, va uint64, l arm64.Level) (tablePA uint64, ok bool, err error) {
	if l >= arm64.LastLevel {
		return 0, false, fmt.Errorf("%w: no tables below %s", ErrInvalid, t.g.Name(l))
	}
	e, found, err := t.lookupAt(d, va, l)
	if err != nil || !found || !t.g.IsTable(e.Desc, l) {
		return 0, false, err
	}
	tbl, _ := t.tableOf(e.DescPA)
	if t.tr != nil {
		if err := t.trackSubtree(t.g.OutputAddress(e.Desc), l+1, e.VA, -1); err != nil {
			return 0, false, err
		}
	}
	d.Store(e.DescPA, &tbl[t.indexOf(e.DescPA)], 0)
	t.invalidateWalks()
	return t.g.OutputAddress(e.Desc), true, nil
}

// TableEmpty reports whether every entry of the table page at pa is zero.
func (t *Tables) TableEmpty(d Door, pa uint64) (bool, error) {
	tbl, ok := t.lookup(pa)
	if !ok {
		return false, fmt.Errorf("%w: %#x", ErrNotTable, pa)
	}
	for i := range tbl {
		if d.Load(descPA(pa, i), &tbl[i]) != 0 {
			return false, nil
		}
	}
	return true, nil
}

// TableAt reports whether the level-l entry for va points to a table (so
// a fold has something to work on).
func (t *Tables) TableAt(d Door, va uint64, l arm64.Level) (bool, error) {
	e, found, err := t.lookupAt(d, va, l)
	if err != nil || !found {
		return false, err
	}
	return t.g.IsTable(e.Desc, l), nil
}
