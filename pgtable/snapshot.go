package pgtable

import (
	"fmt"
	"reflect"
	"slices"

	"github.com/ptlab/ptlab/arm64"
)

// Snapshot is the state of a tree at one moment: which table pages it has
// (their slots, levels and descriptors) and its bookkeeping. A checker
// restores it before every schedule instead of building the tree again
// (with physmem's Snapshot, which restores the pages' owners). Model-only.
type Snapshot struct {
	t         *Tables
	gen       uint64
	wc        walkCache
	root      uint64
	nslots    int32
	freeSlots []int32
	counts    any // the counts field, whatever its type
	tables    []tableSnap
}

type tableSnap struct {
	slot  int32
	pa    uint64
	level arm64.Level
	desc  []uint64
}

// inUse calls fn for every allocated table page (t.mu held).
func (t *Tables) inUse(fn func(r *tableRef)) {
	free := make(map[int32]bool, len(t.freeSlots))
	for _, s := range t.freeSlots {
		free[s] = true
	}
	dir := *t.dir.Load()
	for s := int32(0); s < t.nslots; s++ {
		if !free[s] {
			fn(&dir[s>>chunkShift].refs[s&(tablesPerChunk-1)])
		}
	}
}

// Snapshot copies the tree's table pages and bookkeeping. No other
// goroutine may use t meanwhile.
func (t *Tables) Snapshot() *Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &Snapshot{t: t, gen: t.gen.Load(), wc: t.wc, root: t.root, nslots: t.nslots,
		freeSlots: slices.Clone(t.freeSlots), counts: t.counts}
	t.inUse(func(r *tableRef) {
		s.tables = append(s.tables, tableSnap{slot: r.slot, pa: r.pa, level: r.level, desc: slices.Clone(r.desc)})
	})
	return s
}

// Restore returns t to snapshot s: tables allocated since leave the index,
// the snapshot's tables get their descriptors back. The table pages' memory
// is physmem's to restore. Cost: the tables in use, a copy of each
// snapshot table's descriptors.
func (t *Tables) Restore(s *Snapshot) error {
	if s.t != t {
		return fmt.Errorf("%w: restore of another tree's snapshot", ErrInvalid)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inUse(func(r *tableRef) { t.setRef(r.pa, nil) })
	dir := *t.dir.Load()
	for _, ts := range s.tables {
		c := dir[ts.slot>>chunkShift]
		i := int(ts.slot & (tablesPerChunk - 1))
		r := &c.refs[i]
		r.desc = c.desc[i*t.epp : (i+1)*t.epp : (i+1)*t.epp]
		r.pa, r.slot, r.level = ts.pa, ts.slot, ts.level
		copy(r.desc, ts.desc)
		t.setRef(ts.pa, r)
	}
	t.nslots = s.nslots
	t.freeSlots = append(t.freeSlots[:0], s.freeSlots...)
	reflect.ValueOf(&t.counts).Elem().Set(reflect.ValueOf(s.counts))
	t.root = s.root
	t.wc = s.wc
	t.gen.Store(s.gen)
	// Tables allocated since the snapshot left their slots: shadow
	// entries filled meanwhile may name them.
	t.invalidateShadows()
	return nil
}

// Diff describes how t's tables differ from o's: the set of table pages by
// address, their levels and descriptors, the counts per level; "" when
// equal. Model-only, for tests of Restore.
func (t *Tables) Diff(o *Tables) string {
	collect := func(t *Tables) map[uint64]tableSnap {
		t.mu.Lock()
		defer t.mu.Unlock()
		m := map[uint64]tableSnap{}
		t.inUse(func(r *tableRef) { m[r.pa] = tableSnap{level: r.level, desc: r.desc} })
		return m
	}
	a, b := collect(t), collect(o)
	if t.root != o.root {
		return fmt.Sprintf("root %#x vs %#x", t.root, o.root)
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d table pages vs %d", len(a), len(b))
	}
	for pa, x := range a {
		y, ok := b[pa]
		switch {
		case !ok:
			return fmt.Sprintf("table %#x only in one tree", pa)
		case x.level != y.level:
			return fmt.Sprintf("table %#x: level %d vs %d", pa, x.level, y.level)
		case !slices.Equal(x.desc, y.desc):
			i := 0
			for x.desc[i] == y.desc[i] {
				i++
			}
			return fmt.Sprintf("table %#x entry %d: %#x vs %#x", pa, i, x.desc[i], y.desc[i])
		}
		if r := t.refOf(pa); r == nil || &r.desc[0] != &x.desc[0] {
			return fmt.Sprintf("table %#x: not in the index", pa)
		}
	}
	if !reflect.DeepEqual(t.counts, o.counts) {
		return fmt.Sprintf("counts %v vs %v", t.counts, o.counts)
	}
	return ""
}
