package pgtable

import (
	"unsafe"

	"github.com/ptlab/ptlab/arm64"
)

// walkCacher is implemented by Direct, and so by every door that embeds
// it: such a door uses the walk cache iff its Direct value was built with
// WalkCache set. Every other door (atomic CPUs, the interleaving explorer)
// sees each descriptor load of every walk.
type walkCacher interface{ walkCache() bool }

func (d Direct) walkCache() bool { return d.WalkCache }

// walkCache remembers, per level, the table that served the last walk of a
// region — what a CPU's walk cache holds — so that runs of operations on
// neighbouring addresses skip the upper levels. An entry is valid while the
// generation has not moved: every change that removes a table (fold,
// unhook, free) bumps it; changes that add tables cannot make an entry stale.
type walkCache struct {
	gen  uint64
	tag  [8]uint64 // by level+1: va >> Shift(level-1), plus 1 (0 = empty)
	tpa  [8]uint64
	tbl  [8][]uint64
	bits [8]uint64       // table descriptor bits accumulated above (PXNTable, UXNTable)
	sh   [8]*shadowEntry // the table's shadow, when a Direct walk knew it
}

func cacheable(d Door) bool {
	if dd, ok := d.(Direct); ok { // the common case, without an interface lookup
		return dd.WalkCache
	}
	return embedsCache(d)
}

//go:noinline
func embedsCache(d Door) bool {
	c, ok := d.(walkCacher)
	return ok && c.walkCache()
}

// invalidateWalks is called whenever a table disappears from the tree.
func (t *Tables) invalidateWalks() { t.gen.Add(1) }

// cached returns the level-l table serving va, if the cache holds it.
func (t *Tables) cached(va uint64, l arm64.Level) (uint64, []uint64, uint64, bool) {
	wc := &t.wc
	i := uint8(l+1) & 7
	if wc.tag[i] != va>>t.g.Shift(l-1)+1 || wc.gen != t.gen.Load() {
		return 0, nil, 0, false
	}
	return wc.tpa[i], wc.tbl[i], wc.bits[i], true
}

// cachedViaShadow is the Direct door's second try after cached(va,
// LastLevel) missed: the cached table one level up and the shadow entry of
// va's descriptor there (the step descend takes with a valid entry: the
// common miss of page-by-page work in random order, where the table above
// is shared). It remembers the page table it finds. (Callers test cached
// first themselves: that test inlines, this does not.)
func (t *Tables) cachedViaShadow(va uint64) (tpa uint64, tbl []uint64, bits uint64, ok bool) {
	wc := &t.wc
	g := &t.g
	const l = arm64.LastLevel
	i := uint8(l+1) & 7
	j := uint8(l) & 7 // the level above
	if wc.gen != t.gen.Load() || wc.sh[j] == nil || wc.tag[j] != va>>(g.Shift(l-2)&63)+1 {
		return 0, nil, 0, false
	}
	idx := g.Index(va, l-1)
	desc := wc.tbl[j][idx]
	se := wc.sh[j].valid(idx, desc, t.sgen.Load())
	if se == nil || !g.IsTable(desc, l-1) {
		return 0, nil, 0, false
	}
	tbl, bits = unsafe.Slice(se.tbl, t.epp), wc.bits[j]|desc
	wc.tag[i], wc.tpa[i], wc.tbl[i], wc.bits[i], wc.sh[i] = va>>(g.Shift(l-1)&63)+1, se.pa, tbl, bits, nil
	return se.pa, tbl, bits, true
}

// cachedShadow is the shadow of the level-l table cached returned.
func (t *Tables) cachedShadow(l arm64.Level) *shadowEntry { return t.wc.sh[uint8(l+1)&7] }

// remember records that the level-l table at tpa serves va.
func (t *Tables) remember(va uint64, l arm64.Level, tpa uint64, tbl []uint64, bits uint64, sh *shadowEntry) {
	wc := &t.wc
	if g := t.gen.Load(); wc.gen != g {
		*wc = walkCache{gen: g}
	}
	i := uint8(l+1) & 7
	wc.tag[i], wc.tpa[i], wc.tbl[i], wc.bits[i], wc.sh[i] = va>>t.g.Shift(l-1)+1, tpa, tbl, bits, sh
}

// deepest moves c to the deepest cached table serving va (levels below the
// root, from top up), checking the generation once; it also empties a stale
// cache, so that the walk that follows may fill it with rememberAt.
func (t *Tables) deepest(va uint64, c *cursor, top arm64.Level) (ok bool) {
	wc := &t.wc
	if g := t.gen.Load(); wc.gen != g {
		*wc = walkCache{gen: g}
		return false
	}
	for l := top; l > t.g.StartLevel; l-- {
		if i := uint8(l+1) & 7; wc.tag[i] == va>>t.g.Shift(l-1)+1 {
			c.tpa, c.tbl, c.l, c.bits, c.sh = wc.tpa[i], wc.tbl[i], l, wc.bits[i], wc.sh[i]
			return true
		}
	}
	return false
}

// deepestFor is deepest for the range [start, end) (start < end, or end 0):
// the deepest cached table that holds all of it.
func (t *Tables) deepestFor(start, end uint64, c *cursor) (ok bool) {
	wc := &t.wc
	if g := t.gen.Load(); wc.gen != g {
		*wc = walkCache{gen: g}
		return false
	}
	span := start ^ (end - 1)
	for l := arm64.LastLevel; l > t.g.StartLevel; l-- {
		s := t.g.Shift(l-1) & 63
		if span>>s != 0 {
			return false // wider than one entry above: no table from here up holds it
		}
		if i := uint8(l+1) & 7; wc.tag[i] == start>>s+1 {
			c.tpa, c.tbl, c.l, c.bits, c.sh = wc.tpa[i], wc.tbl[i], l, wc.bits[i], wc.sh[i]
			return true
		}
	}
	return false
}

// rememberAt is remember for a walk that began with deepest (the cache's
// generation is current). Out of line: inlined, its write barriers made
// the walk loops keep their state on the stack.
//
//go:noinline
func (t *Tables) rememberAt(va uint64, l arm64.Level, tpa uint64, tbl []uint64, bits uint64, sh *shadowEntry) {
	wc := &t.wc
	i := uint8(l+1) & 7
	wc.tag[i], wc.tpa[i], wc.tbl[i], wc.bits[i], wc.sh[i] = va>>t.g.Shift(l-1)+1, tpa, tbl, bits, sh
}
