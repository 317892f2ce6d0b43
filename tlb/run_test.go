package tlb

import (
	"slices"
	"testing"

	"github.com/ptlab/ptlab/pgtable"
	"pgregory.net/rapid"
)

// lruOrder lists c's slots per set from least to most recently used (empty
// ways left out): what decides every later victim, whatever the stamps'
// values.
func lruOrder(c *cache) []int {
	var out []int
	if c.link != nil {
		h := int32(len(c.keys))
		for s := c.link[h].prev; s != h; s = c.link[s].prev {
			out = append(out, int(s))
		}
		return out
	}
	for base := 0; base < len(c.keys); base += c.ways {
		var set []int
		for s := base; s < base+c.ways; s++ {
			if c.keys[s] != 0 {
				set = append(set, s)
			}
		}
		if c.lru != nil {
			// Most recent first in the nibbles: list the ways from the last.
			x, set0 := c.lru[base/c.ways], set
			set = nil
			for i := c.ways - 1; i >= 0; i-- {
				if w := base + int(x>>(4*i)&15); slices.Contains(set0, w) {
					set = append(set, w)
				}
			}
		} else {
			slices.SortFunc(set, func(a, b int) int { return int64Cmp(c.stamp[a], c.stamp[b]) })
		}
		out = append(append(out, set...), -1)
	}
	return out
}

func int64Cmp(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func sameCache(a, b *cache) bool {
	return slices.Equal(a.keys, b.keys) && slices.Equal(a.mask, b.mask) && slices.Equal(lruOrder(a), lruOrder(b)) &&
		a.gen == b.gen
}

// Sim.rest counts the lines of a run that stay inside the remembered L1
// entry at once; it must leave every count and every structure's contents
// and LRU order as accessing the lines one by one does — over PTEs,
// contiguous PTEs and blocks, runs starting and ending off line and page
// boundaries, cut by the window's end, with other accesses in between.
func TestRunLinesAtOnce(t *testing.T) {
	shapes := []*pgtable.Tables{tables(t, 64*mib, ptes), tables(t, 64*mib, pgtable.NoBlockMappings), tables(t, 64*mib, 0)}
	rapid.Check(t, func(rt *rapid.T) {
		m := models[rapid.IntRange(0, len(models)-1).Draw(rt, "model")]
		pt := shapes[rapid.IntRange(0, len(shapes)-1).Draw(rt, "shape")]
		k := Kind(rapid.IntRange(0, 1).Draw(rt, "kind"))
		a, b := New(m, pt), New(m, pt)
		sa := &Sim{T: a}
		var ma, mb, oa, ob lastHit
		for i := rapid.IntRange(1, 30).Draw(rt, "runs"); i > 0; i-- {
			// Another stream's access in between.
			if rapid.Bool().Draw(rt, "other") {
				va := linBase + rapid.Uint64Range(0, 64*mib-1).Draw(rt, "otherVA")
				ok := Kind(rapid.IntRange(0, 1).Draw(rt, "otherKind"))
				a.access(va, ok, &oa)
				b.access(va, ok, &ob)
			}
			// A range [start, end) within the mapping, off line boundaries.
			start := linBase + rapid.Uint64Range(0, 48*mib).Draw(rt, "start")
			end := start + rapid.Uint64Range(line, 16*mib).Draw(rt, "size")
			if rapid.Bool().Draw(rt, "endJustPastPage") {
				// end-line then lies in the page before end-1's.
				if e := end&^(4*kib-1) + rapid.Uint64Range(1, line-1).Draw(rt, "past"); e >= start+line {
					end = e
				}
			}
			pos := start + rapid.Uint64Range(0, end-start-line).Draw(rt, "pos")
			if rapid.Bool().Draw(rt, "nearEnd") {
				pos = end - line - min(end-line-start, rapid.Uint64Range(0, 8*line).Draw(rt, "beforeEnd"))
			} else if rapid.Bool().Draw(rt, "nearPageEnd") {
				// A few lines before a page boundary: runs that end just
				// past it or just before it.
				if p := pos&^(4*kib-1) + 4*kib - rapid.Uint64Range(1, 4*line).Draw(rt, "back"); p >= start && p <= end-line {
					pos = p
				}
			}
			left := rapid.IntRange(0, 4000).Draw(rt, "left")
			if rapid.Bool().Draw(rt, "short") {
				left = rapid.IntRange(0, 8).Draw(rt, "shortLeft")
			}
			maxRun := rapid.IntRange(0, 5000).Draw(rt, "max")
			st := &Stream{Kind: k, pos: pos, end: end, left: left}
			got := sa.rest(st, &ma, maxRun)
			run := min(left, maxRun)
			for j := 0; j < run; j++ {
				if pos += line; pos >= end {
					pos = end - line
				}
				b.access(pos, k, &mb)
			}
			if got != run || st.pos != pos || st.left != left-run {
				rt.Fatalf("rest ran %d to %#x (%d left), want %d to %#x (%d left)", got, st.pos, st.left, run, pos, left-run)
			}
			if a.C != b.C {
				rt.Fatalf("counts %+v, line by line %+v", a.C, b.C)
			}
			for kk := range a.l1 {
				if !sameCache(a.l1[kk], b.l1[kk]) {
					rt.Fatalf("L1 %v differs from line by line", Kind(kk))
				}
			}
			if !sameCache(a.l2, b.l2) {
				rt.Fatalf("L2 differs from line by line")
			}
			for w := range a.walk {
				if !sameCache(a.walk[w], b.walk[w]) {
					rt.Fatalf("walk cache %d differs from line by line", w)
				}
			}
		}
	})
}
