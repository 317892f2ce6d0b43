package pgtable

import (
	"fmt"
	"unsafe"

	"github.com/ptlab/ptlab/arm64"
)

// The lean entry of the plain Direct door (Direct{} without the walk
// cache). Translate (walk.go) and the one-page Map and Protect
// (pageTableDirect) start with the walk rule of descendShadow from the
// root — index, load, table test, shadow-entry test (shadowEntry.valid),
// move — in a loop that holds two pointers (the shadow entry that led to
// the current table, and the level's record, leanLevel) and the values
// read, all in registers, and makes no call: no walker, cursor or door.
// (The loop is written out in both: a shared step function, inlined, made
// Go keep the loop's values on the stack.) At the first table descriptor
// whose shadow entry cannot serve it (stale, or never filled) the walk goes
// on from that table with the general walker (descend: translateFrom,
// pageTableFrom), which resolves the table through the PFN index and
// refills the entry. They end as the general paths end (Translate's
// translated, Map's setLeaf, Protect's protectVisitor.ptes).
// TestPropertyLean and TestLeanStaleShadowSamePA hold the lean paths to the
// general ones.

// leanGeometry is what the lean walks need beside the root: a shadow entry
// standing for the descriptor above the root, and one record per level
// from the first lookup level down.
type leanGeometry struct {
	pageSize uint64
	root     shadowEntry
	lv       [arm64.LastLevel - arm64.MinLevel + 1]leanLevel
}

// leanLevel is one level of a lean walk: the index shift and mask of the
// level, and the descriptor type that means a table there (PMD_TYPE_TABLE;
// at the last level a value no masked type equals, so a page descriptor
// ends the walk as Geometry.IsTable has it).
type leanLevel struct {
	shift     uint8
	level     arm64.Level
	mask      uint64
	tableType uint64
}

// next is the record of the level below (never called at the last level).
func (lv *leanLevel) next() *leanLevel {
	return (*leanLevel)(unsafe.Add(unsafe.Pointer(lv), unsafe.Sizeof(leanLevel{})))
}

func (t *Tables) initLean() {
	g := &t.g
	t.lean.pageSize = g.PageSize()
	t.lean.root = shadowEntry{pa: t.root, tbl: &t.rootTbl[0], sh: t.rootSh}
	for l := g.StartLevel; l <= arm64.LastLevel; l++ {
		lv := &t.lean.lv[l-g.StartLevel]
		lv.shift, lv.level, lv.mask, lv.tableType = uint8(g.Shift(l)), l, uint64(g.Entries(l)-1), arm64.PMDTypeTable
		if l == arm64.LastLevel {
			lv.tableType = ^uint64(0)
		}
	}
}

// translateFrom is the lean Translate's fallback: the general walk from the
// level-l table cur leads to (table bits above), as Translate's.
//
//go:noinline
func (t *Tables) translateFrom(va uint64, cur *shadowEntry, l arm64.Level, bits uint64, leaf *Entry) (pa uint64, ok bool) {
	var w walker
	w.init(t, Direct{})
	var c cursor
	c.tpa, c.tbl, c.l, c.bits, c.sh = cur.pa, unsafe.Slice(cur.tbl, t.epp), l, bits, cur.sh
	_, _, err := w.descend(&c, va, arm64.LastLevel)
	return t.translated(&c, va, err, leaf)
}

// translated is Translate's end: leaf from where the walk c stopped (with
// err), and the address va translates to when that is a valid leaf.
func (t *Tables) translated(c *cursor, va uint64, err error, leaf *Entry) (pa uint64, ok bool) {
	g := &t.g // not leaf.PA(t.g, va): that copies the Geometry on every call
	c.entry(g, va, err, leaf)
	if err != nil || !arm64.DescValid(c.desc) || g.IsTable(c.desc, c.l) {
		return 0, false
	}
	if c.l < arm64.LastLevel && !g.BlockAllowed(c.l) {
		return 0, false
	}
	return g.OutputAddress(c.desc) + va&(g.Size(c.l)-1), true
}

// protectPageDirect is Protect of the one page at va (page-aligned) through
// the plain Direct door, without the incremental census: the page table
// from pageTableDirect, then protectVisitor.ptes's rewrite of the one entry
// (empty ones included, as pageattr_pte_entry does). ok=false when the page
// table is not found that way (the caller's range walk then decides).
func (t *Tables) protectPageDirect(cache bool, va, set, clear uint64) (ok bool) {
	_, tp, ok := t.pageTableDirect(cache, va)
	if ok {
		p := (*uint64)(unsafe.Add(unsafe.Pointer(tp), (int(va>>t.g.PageShift)&(t.epp-1))*8))
		*p = *p&^clear | set
	}
	return ok
}

// pageTableDirect finds the page table serving va for the one-page paths of
// the plain Direct door. With the walk cache it looks there (cached, then
// cachedViaShadow, which remembers what it finds), as the general one-page
// paths do first; without, it walks the lean way from the root (as their
// walkToLevel does). ok=false on a cache miss, or when the walk ends above
// the last level (an empty slot or a leaf).
func (t *Tables) pageTableDirect(cache bool, va uint64) (tpa uint64, tp *uint64, ok bool) {
	if cache {
		tpa, tbl, _, hit := t.cached(va, arm64.LastLevel)
		if !hit {
			tpa, tbl, _, hit = t.cachedViaShadow(va)
		}
		if !hit {
			return 0, nil, false
		}
		return tpa, &tbl[0], true
	}
	cur, lv := &t.lean.root, &t.lean.lv[0]
	sgen := t.sgen.Load()
	for lv.level < arm64.LastLevel {
		idx := va >> (lv.shift & 63) & lv.mask
		desc := *(*uint64)(unsafe.Add(unsafe.Pointer(cur.tbl), idx*8))
		if desc&arm64.PTETypeMask != lv.tableType {
			return 0, nil, false // a leaf or an empty slot above the page table
		}
		sh := cur.sh
		if sh == nil {
			return t.pageTableFrom(va, cur, lv.level)
		}
		se := sh.at(int(idx))
		if se.desc != desc || se.gen != sgen { // shadowEntry.valid
			return t.pageTableFrom(va, cur, lv.level)
		}
		cur, lv = se, lv.next()
	}
	return cur.pa, cur.tbl, true
}

// pageTableFrom is pageTableDirect's fallback where the shadow cannot
// serve: the general walk (descend) from the level-l table cur leads to,
// down to the page table.
//
//go:noinline
func (t *Tables) pageTableFrom(va uint64, cur *shadowEntry, l arm64.Level) (tpa uint64, tp *uint64, ok bool) {
	var w walker
	w.init(t, Direct{})
	var c cursor
	c.tpa, c.tbl, c.l, c.sh = cur.pa, unsafe.Slice(cur.tbl, t.epp), l, cur.sh
	ctpa, ctbl, err := w.descend(&c, va, arm64.LastLevel-1)
	if err != nil || ctbl == nil {
		return 0, nil, false // the general path walks again and reports
	}
	return ctpa, &ctbl[0], true
}

// setPage is setLeaf at the last level through Direct{}: the page entry for
// va in the page table at tpa (first descriptor tp) becomes a page at pa,
// with the create path's check (pgattr_change_is_safe).
func (t *Tables) setPage(tpa uint64, tp *uint64, va, pa, prot uint64) error {
	g := &t.g
	idx := int(va>>g.PageShift) & (t.epp - 1)
	p := (*uint64)(unsafe.Add(unsafe.Pointer(tp), idx*8))
	old := *p
	nv := g.AddressBits(pa) | prot&g.AttrMask() // MkLeaf at the last level
	if old != 0 && old != nv && !g.PgattrChangeIsSafe(old, nv) {
		return fmt.Errorf("%w: %s at %#x (va %#x): %#016x -> %#016x", ErrUnsafe, g.Name(arm64.LastLevel), descPA(tpa, idx), va, old, nv)
	}
	*p = nv
	if t.tr != nil {
		t.trackLeaf(va, arm64.LastLevel, old, nv)
	}
	return nil
}
