package tlb

import (
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
)

// The memory of the last L1 entry hit (lastHit) must never change what an
// access does: a TLB using it and one probing every access end in the same
// state, also when the tables change under the TLB without an invalidation
// (a larger entry then enters the L1 next to a remembered smaller one, and a
// look-up would find the larger one first).
func TestLastHitSameAsLookup(t *testing.T) {
	ptes4K := tables(t, 8*mib, ptes)
	blocks := tables(t, 8*mib, 0)
	for _, m := range models {
		a, b := New(m, ptes4K), New(m, ptes4K)
		var memo [3]lastHit // a's, one per stream
		x := uint64(1)
		next := func() uint64 { x = x*6364136223846793005 + 1442695040888963407; return x >> 11 }
		for i := 0; i < 200000; i++ {
			if i%5000 == 0 {
				// Swap the tables without invalidating anything.
				pt := ptes4K
				if i/5000%2 == 1 {
					pt = blocks
				}
				a.pt, b.pt = pt, pt
				a.TablesChanged()
				b.TablesChanged()
			}
			st := int(next() % 3)
			k := Data
			if st == 2 {
				k = Instr
			}
			// Streams mostly stay near their last address.
			va := linBase + (next()%(8*mib))&^63
			if next()%4 != 0 {
				va = memo[st].lo + next()%max(memo[st].span, 4096)&^63
				if va < linBase || va >= linBase+8*mib {
					va = linBase
				}
			}
			a.access(va, k, &memo[st])
			b.access(va, k, &lastHit{})
			if a.C != b.C {
				t.Fatalf("%s step %d: counts %+v, without the memory %+v", m.Key, i, a.C, b.C)
			}
		}
		for k := range a.l1 {
			ca, cb := a.l1[k], b.l1[k]
			if !sameCache(ca, cb) {
				t.Errorf("%s: L1 %v differs from the one without the memory", m.Key, Kind(k))
			}
		}
	}
}

// The walk shadow's generation wraps at 2^20 windows: the shadow is then
// cleared, or an entry filled 2^20 windows earlier would pass for current
// and the walk would read a table that is no longer there.
func TestShadowGenerationWrap(t *testing.T) {
	a := tables(t, 4*mib, ptes)
	b := tables(t, 4*mib, ptes)
	if err := b.Unmap(pgtable.Direct{}, linBase, linBase+4*mib); err != nil {
		t.Fatal(err)
	}
	n1, _ := LookupModel("n1")
	tb := New(n1, a)
	tb.TablesChanged() // generation 1
	if e, err := tb.leaf(linBase); err != nil || e.Level != arm64.LastLevel {
		t.Fatalf("leaf in a: %+v, %v", e, err)
	}
	tb.shadowGen = 1<<20 - 1
	tb.pt = b // unmapped: no leaf
	tb.TablesChanged()
	if tb.shadowGen != 1 {
		t.Fatalf("generation after the wrap: %d", tb.shadowGen)
	}
	if e, err := tb.leaf(linBase); err == nil && arm64.DescValid(e.Desc) {
		t.Fatalf("after the wrap the shadow still served table a: %+v", e)
	}
}
