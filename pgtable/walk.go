package pgtable

import (
	"unsafe"

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
func (t *Tables) Lookup(d Door, va uint64) (e Entry, err error) {
	var w walker
	w.init(t, d)
	var c cursor
	err = t.walkTo(&w, va, &c)
	c.entry(&t.g, va, err, &e)
	return e, err
}

// entry fills e with the entry c stands at for va, reached with err.
func (c *cursor) entry(g *arm64.Geometry, va uint64, err error, e *Entry) {
	bits := c.bits
	if err != nil {
		bits |= c.desc // the table descriptor that points nowhere
	}
	e.VA, e.Level, e.Desc, e.DescPA = va&^(g.Size(c.l)-1), c.l, c.desc, descPA(c.tpa, c.idx)
	e.TablePXN, e.TableUXN = bits&arm64.TablePXN != 0, bits&arm64.TableUXN != 0
}

// walkTo is Lookup's walk: it leaves c at the entry that maps va, starting
// from the deepest cached table when w's door may use the walk cache (and
// filling it on the way down). Fields are set one by one: struct literals
// cost a temporary and a copy.
func (t *Tables) walkTo(w *walker, va uint64, c *cursor) error {
	_, _, err := t.walkToLevel(w, va, c, arm64.LastLevel, arm64.LastLevel)
	return err
}

// walkToLevel is walkTo stopping at a level-stop table descriptor (descend):
// ctbl is then the table behind it. A walk that starts in a cached table
// below stop stands there at return, with ctbl nil. Cached tables below
// level top are not looked for (the caller has looked already).
func (t *Tables) walkToLevel(w *walker, va uint64, c *cursor, stop, top arm64.Level) (ctpa uint64, ctbl []uint64, err error) {
	c.tpa, c.tbl, c.l, c.bits, c.sh = t.root, t.rootTbl, t.g.StartLevel, 0, t.rootSh
	if cacheable(w.d) {
		w.remember = true
		t.deepest(va, c, top) // moves c to the deepest cached table
	}
	return w.descend(c, va, stop)
}

// Translate returns the physical address va maps to and the leaf that maps
// it, or ok=false when va is not mapped by a valid leaf.
func (t *Tables) Translate(d Door, va uint64) (pa uint64, leaf Entry, ok bool) {
	// Results are filled field by field and returned bare: an Entry
	// returned by a call is stored field by field and copied on with wide
	// loads (a store-forwarding stall per call). So the two fast paths
	// are written out here rather than called.
	cache := cacheable(d)
	if cache {
		// The page-table level straight from the walk cache.
		_, direct := d.(Direct)
		tpa, tbl, bits, hit := t.cached(va, arm64.LastLevel)
		if !hit && direct {
			tpa, tbl, bits, hit = t.cachedViaShadow(va)
		}
		if hit {
			g := &t.g
			idx := g.Index(va, arm64.LastLevel)
			var desc uint64
			if direct {
				desc = tbl[idx]
			} else {
				desc = d.Load(descPA(tpa, idx), &tbl[idx])
			}
			leaf.VA, leaf.Level, leaf.Desc, leaf.DescPA = va&^(g.PageSize()-1), arm64.LastLevel, desc, descPA(tpa, idx)
			leaf.TablePXN, leaf.TableUXN = bits&arm64.TablePXN != 0, bits&arm64.TableUXN != 0
			if ok = arm64.DescValid(desc); ok {
				pa = g.OutputAddress(desc) + va&(g.PageSize()-1)
			}
			return
		}
	}
	if _, direct := d.(Direct); direct && !cache {
		// The plain Direct door: the lean walk (lean.go).
		cur, lv := &t.lean.root, &t.lean.lv[0]
		sgen := t.sgen.Load()
		var bits, desc, idx uint64
		for {
			idx = va >> (lv.shift & 63) & lv.mask
			desc = *(*uint64)(unsafe.Add(unsafe.Pointer(cur.tbl), idx*8))
			if desc&arm64.PTETypeMask != lv.tableType {
				break // not a table descriptor (Geometry.IsTable)
			}
			sh := cur.sh
			if sh == nil {
				pa, ok = t.translateFrom(va, cur, lv.level, bits, &leaf)
				return
			}
			se := sh.at(int(idx))
			if se.desc != desc || se.gen != sgen { // shadowEntry.valid
				pa, ok = t.translateFrom(va, cur, lv.level, bits, &leaf)
				return
			}
			bits |= desc
			cur, lv = se, lv.next()
		}
		// The entry that maps va: translated and cursor.entry on values
		// held in registers.
		l := lv.level
		off := va & (1<<(lv.shift&63) - 1)
		leaf.VA, leaf.Level, leaf.Desc, leaf.DescPA = va-off, l, desc, cur.pa+idx*8
		leaf.TablePXN, leaf.TableUXN = bits&arm64.TablePXN != 0, bits&arm64.TableUXN != 0
		if arm64.DescValid(desc) && (l == arm64.LastLevel || t.g.BlockAllowed(l)) {
			pa, ok = t.g.OutputAddress(desc)+off, true
		}
		return
	}
	// Lookup's walk without its Entry copied out and back.
	var w walker
	w.init(t, d)
	var c cursor
	c.tpa, c.tbl, c.l, c.bits, c.sh = t.root, t.rootTbl, t.g.StartLevel, 0, t.rootSh
	if cache { // walkTo, with the page-table level known to miss
		w.remember = true
		t.deepest(va, &c, arm64.LastLevel-1)
	}
	_, _, err := w.descend(&c, va, arm64.LastLevel)
	pa, ok = t.translated(&c, va, err, &leaf)
	return
}

// Visit calls fn for every leaf or empty slot reached in [start, end), in
// address order, without descending into leaves — the traversal of the
// generic page walkers (walk_page_range and ptdump's walker). Each Entry's VA
// is the first address of the slot, which may lie below start.
func (t *Tables) Visit(d Door, start, end uint64, fn func(Entry) error) error {
	return walkRoot(t, d, &visitor{op: opVisit, visit: visitVisitor{fn: fn}}, start, end)
}
