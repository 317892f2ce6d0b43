package cpu

import (
	"sync"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/kernel"
)

// TLB capacities. They bound the model's memory, not its staleness: scenarios
// touch far fewer translations, so nothing is evicted that a TLBI should
// have removed. When full, the oldest entry goes.
const (
	LeafCap = 64
	WalkCap = 32
)

// Entry is a cached leaf translation: VA..VA+Size maps to PA..PA+Size with
// the leaf descriptor's attributes (a contiguous run is one entry of the
// run's size, as a TLB may hold it).
type Entry struct {
	VA, Size, PA uint64
	Desc         uint64      // the leaf descriptor as walked
	Level        arm64.Level // level of the leaf
	Write, Exec  bool        // effective permissions (AP[2], PXN and PXNTable)
}

// Covers reports whether va lies in the entry.
func (e *Entry) Covers(va uint64) bool { return va-e.VA < e.Size }

// Overlaps reports whether [start, end) meets the entry.
func (e *Entry) Overlaps(start, end uint64) bool { return start < e.VA+e.Size && e.VA < end }

// Translate is the PA the entry gives va.
func (e *Entry) Translate(va uint64) uint64 { return e.PA + (va - e.VA) }

// WalkEntry is a walk-cache entry: the level-Level table descriptor covering
// [VA, VA+Size) points to the next-level table at Table. PXN accumulates the
// PXNTable bits at and above it.
type WalkEntry struct {
	VA, Size uint64
	Level    arm64.Level
	Table    uint64
	PXN      bool
}

// TLB is one CPU's TLB: leaf entries and walk-cache entries. The owning CPU
// fills and looks up; any CPU invalidates (broadcast TLBIs), so it is guarded
// by a mutex for CPUs running as goroutines.
type TLB struct {
	mu     sync.Mutex
	leaves [LeafCap]Entry
	nLeaf  int
	walks  [WalkCap]WalkEntry
	nWalk  int

	Fills, WalkFills, Evictions, Invalidated uint64
}

// Lookup returns the first leaf entry covering va and whether another
// entry of a different size covers it too (a TLB conflict on a CPU without
// BBML2_NOABORT).
func (t *TLB) Lookup(va uint64) (e Entry, hit, conflict bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := 0; i < t.nLeaf; i++ {
		x := &t.leaves[i]
		if !x.Covers(va) {
			continue
		}
		if !hit {
			e, hit = *x, true
		} else if x.Size != e.Size {
			conflict = true
		}
	}
	return e, hit, conflict
}

// fill caches a leaf entry. An entry of the same VA and size is replaced.
// Without BBML2_NOABORT an overlapping entry of a different size is a TLB
// conflict: the entry is not added and the other one is returned.
func (t *TLB) fill(e Entry, bbml2 bool) (Entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.Fills++
	for i := 0; i < t.nLeaf; i++ {
		x := &t.leaves[i]
		if x.VA == e.VA && x.Size == e.Size {
			*x = e
			return Entry{}, false
		}
		if !bbml2 && x.Overlaps(e.VA, e.VA+e.Size) {
			return *x, true
		}
	}
	if t.nLeaf == LeafCap {
		copy(t.leaves[:], t.leaves[1:])
		t.nLeaf--
		t.Evictions++
	}
	t.leaves[t.nLeaf] = e
	t.nLeaf++
	return Entry{}, false
}

// walkLookup returns the deepest walk-cache entry covering va: the walker
// may start below it without reading the levels above.
func (t *TLB) walkLookup(va uint64) (WalkEntry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var best WalkEntry
	found := false
	for i := 0; i < t.nWalk; i++ {
		w := &t.walks[i]
		if va-w.VA < w.Size && (!found || w.Level > best.Level) {
			best, found = *w, true
		}
	}
	return best, found
}

func (t *TLB) addWalk(w WalkEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.WalkFills++
	for i := 0; i < t.nWalk; i++ {
		if x := &t.walks[i]; x.VA == w.VA && x.Level == w.Level {
			*x = w
			return
		}
	}
	if t.nWalk == WalkCap {
		copy(t.walks[:], t.walks[1:])
		t.nWalk--
		t.Evictions++
	}
	t.walks[t.nWalk] = w
	t.nWalk++
}

// Invalidate applies one TLBI: VAALE1IS and RVAALE1IS remove the leaf
// entries that translate any VA of the range (not the walk cache: they are
// last-level operations); VAAE1IS removes leaf and walk-cache entries for
// the range; VMALLE1IS removes everything.
func (t *TLB) Invalidate(g *arm64.Geometry, op kernel.TLBIOp) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if op.Kind == kernel.TLBIVMALLE1IS {
		t.Invalidated += uint64(t.nLeaf + t.nWalk)
		t.nLeaf, t.nWalk = 0, 0
		return
	}
	start, end := op.Start, op.End
	if end <= start {
		end = start + g.PageSize()
	}
	n := 0
	for i := 0; i < t.nLeaf; i++ {
		if t.leaves[i].Overlaps(start, end) {
			t.Invalidated++
			continue
		}
		t.leaves[n] = t.leaves[i]
		n++
	}
	t.nLeaf = n
	if op.Kind != kernel.TLBIVAAE1IS {
		return
	}
	n = 0
	for i := 0; i < t.nWalk; i++ {
		w := &t.walks[i]
		if start < w.VA+w.Size && w.VA < end {
			t.Invalidated++
			continue
		}
		t.walks[n] = t.walks[i]
		n++
	}
	t.nWalk = n
}

// Leaves calls fn for every leaf entry (under the TLB's lock: fn must not
// call back into the TLB).
func (t *TLB) Leaves(fn func(e *Entry)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := 0; i < t.nLeaf; i++ {
		fn(&t.leaves[i])
	}
}

// Walks calls fn for every walk-cache entry.
func (t *TLB) Walks(fn func(w *WalkEntry)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := 0; i < t.nWalk; i++ {
		fn(&t.walks[i])
	}
}

// Len is the number of leaf and walk-cache entries.
func (t *TLB) Len() (leaves, walks int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nLeaf, t.nWalk
}
