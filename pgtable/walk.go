package pgtable

import (
	"github.com/ptlab/ptlab/arm64"
)

// Entry is one descriptor found by a walk.
type Entry struct {
	VA     uint64      // first VA the descriptor covers
	Level  arm64.Level // lookup level
	Desc   uint64      // the descriptor value
	DescPA uint64      // physical address of the descriptor
	// TablePXN/TableUXN accumulate the PXNTable/UXNTable bits of the table
	// descriptors above, which restrict the leaf (hierarchical permissions).
	TablePXN, TableUXN bool
}

// Size is the VA span of the entry.
func (e Entry) Size(g arm64.Geometry) uint64 { return g.Size(e.Level) }

// PA is the physical address va translates to through this leaf.
func (e Entry) PA(g arm64.Geometry, va uint64) uint64 {
	return g.OutputAddress(e.Desc) + (va & (g.Size(e.Level) - 1))
}

// boundary is the end of the level-l entry holding va, clamped to end; the
// comparison handles the wrap at the top of the address space.
func (t *Tables) boundary(va, end uint64, l arm64.Level) uint64 {
	next := (va | (t.g.Size(l) - 1)) + 1
	if next-1 < end-1 {
		return next
	}
	return end
}

// Lookup walks to the entry that maps va: a leaf, an empty slot, or (for a
// corrupt tree) a table that points nowhere, in which case it returns
// ErrNotTable. It models the hardware walk and the kernel's pXd_offset chain.
func (t *Tables) Lookup(d Door, va uint64) (Entry, error) {
	g := &t.g
	tpa, tbl := t.root, t.rootTbl
	var tableBits uint64 // PXNTable/UXNTable accumulated from the tables above
	l := g.StartLevel
	w := t.walker(d)
	cache := cacheable(d)
	if cache {
		if cl, ctpa, ctbl, bits, ok := t.deepest(va); ok {
			tpa, tbl, tableBits, l = ctpa, ctbl, bits, cl
		}
	}
	for ; ; l++ {
		idx, desc, ctpa, ctbl, err := w.step(tpa, tbl, l, va)
		if ctbl == nil {
			if err != nil {
				tableBits |= desc
			}
			return Entry{VA: va &^ (g.Size(l) - 1), Level: l, Desc: desc, DescPA: descPA(tpa, idx),
				TablePXN: tableBits&arm64.TablePXN != 0, TableUXN: tableBits&arm64.TableUXN != 0}, err
		}
		tableBits |= desc
		tpa, tbl = ctpa, ctbl
		if cache {
			t.rememberAt(va, l+1, tpa, tbl, tableBits)
		}
	}
}

// Translate returns the physical address va maps to and the leaf that maps
// it, or ok=false when va is not mapped by a valid leaf.
func (t *Tables) Translate(d Door, va uint64) (pa uint64, leaf Entry, ok bool) {
	if cacheable(d) {
		// The page-table level straight from the walk cache.
		if tpa, tbl, bits, hit := t.cached(va, arm64.LastLevel); hit {
			g := &t.g
			idx := g.Index(va, arm64.LastLevel)
			var desc uint64
			if _, direct := d.(Direct); direct {
				desc = tbl[idx]
			} else {
				desc = d.Load(descPA(tpa, idx), &tbl[idx])
			}
			e := Entry{VA: va &^ (g.PageSize() - 1), Level: arm64.LastLevel, Desc: desc, DescPA: descPA(tpa, idx),
				TablePXN: bits&arm64.TablePXN != 0, TableUXN: bits&arm64.TableUXN != 0}
			if !arm64.DescValid(desc) {
				return 0, e, false
			}
			return g.OutputAddress(desc) + va&(g.PageSize()-1), e, true
		}
	}
	e, err := t.Lookup(d, va)
	if err != nil || !arm64.DescValid(e.Desc) || t.g.IsTable(e.Desc, e.Level) {
		return 0, e, false
	}
	if e.Level < arm64.LastLevel && !t.g.BlockAllowed(e.Level) {
		return 0, e, false
	}
	g := &t.g // not e.PA(t.g, va): that copies the Geometry on every call
	return g.OutputAddress(e.Desc) + va&(g.Size(e.Level)-1), e, true
}

// Visit calls fn for every leaf or empty slot reached in [start, end), in
// address order, without descending into leaves — the traversal of the
// generic page walkers (walk_page_range and ptdump's walker). Each Entry's VA
// is the first address of the slot, which may lie below start.
func (t *Tables) Visit(d Door, start, end uint64, fn func(Entry) error) error {
	return walkRoot(t, d, &visitor{op: opVisit, visit: visitVisitor{fn: fn}}, start, end)
}
