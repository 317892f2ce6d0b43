package tlb

import (
	"testing"

	"github.com/ptlab/ptlab/pgtable"
)

// The ordering the shapes imply, on every model: the same 32 MiB of text
// (sixteen 2M ROX-cache chunks) fetched by the same code stream takes fewer
// walks and fewer walk cycles when each chunk is one PMD block than when it
// is 8,192 4K pages (more than any model's L2 TLB holds).
func TestBlockTextFewerWalksEveryModel(t *testing.T) {
	blocks := tables(t, 32*mib, pgtable.NoContMappings) // PMD blocks, no contPMD
	pages := tables(t, 32*mib, ptes)
	for _, m := range Models() {
		run := func(pt *pgtable.Tables) Counts {
			st := &Stream{Kind: Instr, Pattern: Code, Rate: 1, RunLines: 8}
			return Measure(m, pt, st, []Range{{Start: linBase, Size: 32 * mib, Weight: 1}}, 7, 20000, 100000)
		}
		b, p := run(blocks), run(pages)
		t.Logf("%s: walks %d (2M) vs %d (4K), cycles %.0f vs %.0f", m.Key, b.L2Misses, p.L2Misses, b.Cycles, p.Cycles)
		if b.L2Misses >= p.L2Misses || b.Cycles >= p.Cycles || b.L1Misses > p.L1Misses {
			t.Errorf("%s: 2M-mapped text: %d walks, %.0f cycles, %d L1 misses; 4K-mapped: %d, %.0f, %d — blocks must cost less",
				m.Key, b.L2Misses, b.Cycles, b.L1Misses, p.L2Misses, p.Cycles, p.L1Misses)
		}
	}
}
