package pgtable

import (
	"unsafe"

	"github.com/ptlab/ptlab/arm64"
)

// The table shadow: beside a non-leaf table page, one shadowEntry per
// descriptor remembering the table page found behind it. A walk through the
// plain Direct door reads a descriptor and its shadow entry side by side
// (both addresses follow from the current table and va alone), so the next
// level's table is one load away, as a hardware walker or gVisor's table
// pointers have it; resolving the descriptor's output address through the
// PFN index (walker.table) costs one more dependent load per level.
//
// The shadow is a cache that validates itself, so no store path has to
// maintain it: an entry is used only while the descriptor still holds the
// value the entry was filled for and no table page has left the tree since
// (Tables.sgen, bumped whenever a table page is released and on Restore). A
// descriptor that changes (a table installed, split, folded, its attributes
// changed) fails the first test; a table page freed and its address
// reallocated to another slot with an identical descriptor fails the
// second. A failed test falls back to the index and refills the entry.
//
// Shadows exist only for tables walked through the Direct door itself (the
// door of single-threaded runs; no other door, not even one embedding
// Direct, reads or writes them), are given to a table on the first such
// walk through the table above (the root's with the tree), from chunks of
// shadowsPerChunk (the first allocated with the tree), and stay with the
// table slot for its next occupant. Only non-leaf tables get one: 40 bytes
// per descriptor, at one per 512 page tables on a PTE-mapped machine about
// 1% of the host memory of the tables.

// shadowEntry is what a Direct walk found behind one table descriptor.
type shadowEntry struct {
	desc uint64       // the table descriptor the entry was filled for
	gen  uint64       // Tables.sgen when filled
	pa   uint64       // the output address of desc: the table page's address
	tbl  *uint64      // the first descriptor of the table page behind desc
	sh   *shadowEntry // that table's shadow; nil for a last-level table
}

// shadowsPerChunk is how many shadows one allocation backs: a tree's first
// chunk comes with the tree (New), so the shadows of the first tables below
// the root cost no allocation where they are first walked.
const shadowsPerChunk = 4

// newShadow returns the first entry of a zeroed shadow for a table page,
// taken from the current chunk (a new one when it is used up).
func (t *Tables) newShadow() *shadowEntry {
	if len(t.shadowFree) < t.epp {
		t.shadowFree = make([]shadowEntry, shadowsPerChunk*t.epp)
	}
	sh := &t.shadowFree[0]
	t.shadowFree = t.shadowFree[t.epp:]
	return sh
}

// at is entry idx of the shadow that starts at sh (idx is a table index,
// below the table's entry count, by construction of Geometry.Index).
func (sh *shadowEntry) at(idx int) *shadowEntry {
	return (*shadowEntry)(unsafe.Add(unsafe.Pointer(sh), uintptr(idx)*unsafe.Sizeof(shadowEntry{})))
}

// valid returns entry idx of the shadow at sh if it was filled for desc in
// shadow generation sgen, else nil: the one test every use of a shadow
// entry makes.
func (sh *shadowEntry) valid(idx int, desc, sgen uint64) *shadowEntry {
	if se := sh.at(idx); se.desc == desc && se.gen == sgen {
		return se
	}
	return nil
}

// invalidateShadows makes every shadow entry filled so far stale.
func (t *Tables) invalidateShadows() { t.sgen.Add(1) }

// shadowOf returns the shadow of the level-l table page at pa, allocating
// it when l is above the last level (nil otherwise).
func (t *Tables) shadowOf(pa uint64, l arm64.Level) *shadowEntry {
	r := t.refOf(pa)
	if r == nil || l >= arm64.LastLevel {
		return nil
	}
	if r.sh == nil {
		r.sh = t.newShadow()
	}
	return r.sh
}

// fillShadow records in se that desc leads to the level-cl table page at
// ctpa (just resolved through the index) and returns that table's shadow,
// allocating it when the table is above the last level. Out of line: it
// runs once per table and generation.
//
//go:noinline
func (w *walker) fillShadow(se *shadowEntry, desc, ctpa uint64, cl arm64.Level) *shadowEntry {
	r := w.t.refOf(ctpa)
	if r == nil {
		return nil
	}
	sh := w.t.shadowOf(ctpa, cl)
	se.desc, se.gen, se.pa, se.tbl, se.sh = desc, w.t.sgen.Load(), ctpa, &r.desc[0], sh
	return sh
}
