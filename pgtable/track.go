package pgtable

import (
	"fmt"
	"sync/atomic"

	"github.com/ptlab/ptlab/arm64"
)

// Incremental census. Once Track is called, every operation that changes a
// leaf or hooks or unhooks a table updates per-range counters, so Tracked
// returns what TakeCensus over that range would without walking it: the cost
// of a metrics sample no longer grows with the size of the tree. TakeCensus
// stays the oracle (TestPropertyTrackedCensus).
//
// The counters follow the tree as the operations leave it. Two CPUs racing
// on one descriptor (a modelled bug the checker looks for) may make them
// drift; they are meant for single-threaded runs and are atomic only so that
// goroutine CPUs stay free of data races.

// tracker holds the counters of the tracked ranges.
type tracker struct {
	ranges [][2]uint64 // sorted, disjoint [start, end); end 0 is the top of the address space
	counts []trackCounts
}

type trackCounts struct {
	leaf    [arm64.NumLevels][2]atomic.Int64
	invalid atomic.Int64
	tables  [arm64.NumLevels]atomic.Int64
}

// Track starts incremental accounting of the given disjoint VA ranges,
// sorted by start (empty ones allowed), from a census of each. It must be called while no other
// operation runs; calling it again replaces the ranges.
func (t *Tables) Track(d Door, ranges [][2]uint64) error {
	tr := &tracker{ranges: ranges, counts: make([]trackCounts, len(ranges))}
	for i, r := range ranges {
		if i > 0 && (r[0] < ranges[i-1][1] || ranges[i-1][1] == 0) {
			return fmt.Errorf("%w: tracked ranges overlap or are unsorted at [%#x, %#x)", ErrInvalid, r[0], r[1])
		}
		if r[0] == r[1] {
			continue // empty: nothing to count
		}
		c, err := t.TakeCensus(d, r[0], r[1])
		if err != nil {
			return err
		}
		tr.add(i, &c, 1)
	}
	t.tr = tr
	return nil
}

// Tracked returns the counters of tracked range i as a Census.
func (t *Tables) Tracked(i int) Census {
	var c Census
	k := &t.tr.counts[i]
	for l := arm64.MinLevel; l <= arm64.LastLevel; l++ {
		j := l - arm64.MinLevel
		leaf := c.Leaf.At(l)
		leaf[0], leaf[1] = uint64(k.leaf[j][0].Load()), uint64(k.leaf[j][1].Load())
		*c.Tables.At(l) = int(k.tables[j].Load())
	}
	c.Invalid = uint64(k.invalid.Load())
	return c
}

// IsTracking reports whether Track was called.
func (t *Tables) IsTracking() bool { return t.tr != nil }

func (tr *tracker) add(i int, c *Census, sign int64) {
	k := &tr.counts[i]
	for l := arm64.MinLevel; l <= arm64.LastLevel; l++ {
		j := l - arm64.MinLevel
		leaf := c.Leaf.Get(l)
		k.leaf[j][0].Add(sign * int64(leaf[0]))
		k.leaf[j][1].Add(sign * int64(leaf[1]))
		k.tables[j].Add(sign * int64(c.Tables.Get(l)))
	}
	k.invalid.Add(sign * int64(c.Invalid))
}

// overlap is the length of [s, e) ∩ range i (e and the range end may be 0,
// the top of the address space).
func (tr *tracker) overlap(i int, s, e uint64) uint64 {
	r := tr.ranges[i]
	lo := max(s, r[0])
	hiA, hiB := e-1, r[1]-1 // last addresses; 0-1 wraps to the top
	hi := min(hiA, hiB)
	if hi < lo {
		return 0
	}
	return hi - lo + 1
}

// leaf accounts the level-l slot holding va changing from old to nv.
func (t *Tables) trackLeaf(va uint64, l arm64.Level, old, nv uint64) {
	tr := t.tr
	if old == nv {
		return
	}
	sz := t.g.Size(l)
	s := va &^ (sz - 1)
	j := l - arm64.MinLevel
	for i := range tr.ranges {
		ov := tr.overlap(i, s, s+sz)
		if ov == 0 {
			continue
		}
		k := &tr.counts[i]
		for _, x := range [2]struct {
			desc uint64
			sign int64
		}{{old, -1}, {nv, 1}} {
			switch {
			case arm64.DescValid(x.desc) && !t.g.IsTable(x.desc, l):
				k.leaf[j][x.desc>>52&1].Add(x.sign * int64(ov))
			case arm64.DescPresentInvalid(x.desc):
				k.invalid.Add(x.sign * int64(ov))
			}
		}
	}
}

// trackSubtree adds (sign 1) or removes (-1) what the level-l table at tpa,
// hooked under the slot holding va, contributes: itself, the tables below
// it and their leaves. Descriptors are read with atomic loads and no door:
// the accounting is not an access of the modelled kernel.
func (t *Tables) trackSubtree(tpa uint64, l arm64.Level, va uint64, sign int64) error {
	tr := t.tr
	tbl, ok := t.lookup(tpa)
	if !ok {
		return fmt.Errorf("%w: %#x", ErrNotTable, tpa)
	}
	sz := t.g.Size(l - 1)
	s := va &^ (sz - 1)
	for i, r := range tr.ranges {
		if tr.overlap(i, s, s+sz) == 0 {
			continue
		}
		var c Census
		var w walker
		w.init(t, Atomic{})
		v := visitor{op: opCensus, census: censusVisitor{g: &t.g, c: &c}}
		lo, hi := max(s, r[0]), s+sz
		if r[1]-1 < hi-1 {
			hi = r[1]
		}
		if err := walkRange(&w, &v, tpa, tbl, nil, l, lo, hi, 0); err != nil {
			return err
		}
		tr.add(i, &c, sign)
	}
	return nil
}

// trackTable accounts a new empty level-l table hooked under the slot
// holding va (it counts in the range holding its first address).
func (t *Tables) trackTable(va uint64, l arm64.Level) {
	tr := t.tr
	s := va &^ (t.g.Size(l-1) - 1)
	for i := range tr.ranges {
		if tr.overlap(i, s, s+1) != 0 {
			tr.counts[i].tables[l-arm64.MinLevel].Add(1)
		}
	}
}

// Runs of PTE changes are counted locally and applied once when the run
// lies inside one tracked range: per-PTE atomics and range lookups would
// dominate the boot of a PTE-mapped machine.

const (
	trackNone  = -1 // the span overlaps no tracked range
	trackSplit = -2 // the span straddles a range boundary: count entry by entry
)

// spanRange returns the tracked range holding all of [s, e), trackNone or
// trackSplit.
func (tr *tracker) spanRange(s, e uint64) int {
	for i := range tr.ranges {
		switch ov := tr.overlap(i, s, e); {
		case ov == e-s:
			return i
		case ov != 0:
			return trackSplit
		}
	}
	return trackNone
}

// pteDelta is the change, in pages, of a run of PTEs.
type pteDelta struct {
	leaf    [2]int64 // valid, by PTE_CONT
	invalid int64    // present-invalid
}

func (p *pteDelta) change(old, nv uint64) {
	p.count(old, -1)
	p.count(nv, 1)
}

func (p *pteDelta) count(desc uint64, sign int64) {
	switch {
	case arm64.DescValid(desc):
		p.leaf[desc>>52&1] += sign
	case arm64.DescPresentInvalid(desc):
		p.invalid += sign
	}
}

// trackPTEs applies d to tracked range i.
func (t *Tables) trackPTEs(i int, d *pteDelta) {
	k := &t.tr.counts[i]
	ps := int64(t.g.PageSize())
	j := arm64.LastLevel - arm64.MinLevel
	for c := range d.leaf {
		if d.leaf[c] != 0 {
			k.leaf[j][c].Add(d.leaf[c] * ps)
		}
	}
	if d.invalid != 0 {
		k.invalid.Add(d.invalid * ps)
	}
}

// pteTracker counts the PTE changes of one run [va, end). Its zero value
// (tracking off, or no tracked range overlaps) counts nothing.
type pteTracker struct {
	t    *Tables
	span int // tracked range + 1; 0: none; trackSplit: entry by entry
	d    pteDelta
}

// ptes starts counting a run; call only when t.tr != nil.
func (t *Tables) ptes(va, end uint64) pteTracker {
	switch span := t.tr.spanRange(va, end); span {
	case trackNone:
		return pteTracker{}
	case trackSplit:
		return pteTracker{t: t, span: trackSplit}
	default:
		return pteTracker{t: t, span: span + 1}
	}
}

// change records the PTE for va changing from old to nv.
func (p *pteTracker) change(va, old, nv uint64) {
	switch {
	case p.span > 0:
		p.d.change(old, nv)
	case p.span == trackSplit:
		p.t.trackLeaf(va, arm64.LastLevel, old, nv)
	}
}

// done applies what change recorded.
func (p *pteTracker) done() {
	if p.span > 0 {
		p.t.trackPTEs(p.span-1, &p.d)
	}
}
