package pgtable

import (
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/physmem"
	"pgregory.net/rapid"
)

// countTables counts the table pages reachable from the root.
func countTables(t *rapid.T, tb *Tables, pa uint64, l arm64.Level) int {
	tbl, ok := tb.lookup(pa)
	if !ok {
		t.Fatalf("reachable %#x is not a table", pa)
	}
	n := 1
	for i := 0; i < tb.g.Entries(l); i++ {
		if l < arm64.LastLevel && tb.g.IsTable(tbl[i], l) {
			n += countTables(t, tb, tb.g.OutputAddress(tbl[i]), l+1)
		}
	}
	return n
}

type sample struct {
	va, pa uint64
	ro     bool
}

// TestPropertyTableOps runs random sequences of map, split, protect and fold
// on a 2 GiB linear map and checks after every step: translation of sampled
// addresses is unchanged by split and fold and changes by protect exactly as
// requested; fold∘split gives back the original block; every table page
// physmem counts as page table is reachable from the root (no leak).
func TestPropertyTableOps(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		g := arm64.Geometry4K48
		const ram = 2 << 30
		tb := newTables(rt, g, ram)
		mem := tb.mem
		flags := Flags(rapid.IntRange(0, 3).Draw(rt, "flags")) | NoExecMappings
		if err := tb.Map(d, linBase, ramBase, ram, linearProt, flags); err != nil {
			rt.Fatal(err)
		}
		pageVA := func(label string) uint64 {
			return linBase + rapid.Uint64Range(0, ram/4096-1).Draw(rt, label)*4096
		}
		var samples []sample
		for i := 0; i < 24; i++ {
			va := pageVA("sample")
			samples = append(samples, sample{va: va, pa: va - linBase + ramBase})
		}
		verify := func(step string) {
			// The walk cache (Direct) must agree with uncached walks (Atomic).
			for i := 0; i < 8; i++ {
				va := pageVA("cmp")
				pa1, e1, ok1 := tb.Translate(d, va)
				pa2, e2, ok2 := tb.Translate(Atomic{}, va)
				if pa1 != pa2 || ok1 != ok2 || e1 != e2 {
					rt.Fatalf("%s: cached walk of %#x gives %#x %+v, uncached %#x %+v", step, va, pa1, e1, pa2, e2)
				}
			}
			for _, s := range samples {
				pa, e, ok := tb.Translate(d, s.va)
				if !ok || pa != s.pa {
					rt.Fatalf("%s: %#x -> %#x ok=%v, want %#x", step, s.va, pa, ok, s.pa)
				}
				if ro := e.Desc&arm64.PTERdonly != 0; ro != s.ro {
					rt.Fatalf("%s: %#x read-only=%v want %v", step, s.va, ro, s.ro)
				}
			}
			reach := countTables(rt, tb, tb.Root(), g.StartLevel)
			if reach != tb.TotalTablePages() || uint64(reach) != mem.OwnedPages(physmem.OwnerPageTable) {
				rt.Fatalf("%s: reachable tables %d, counted %d, physmem %d", step, reach, tb.TotalTablePages(), mem.OwnedPages(physmem.OwnerPageTable))
			}
		}
		verify("map")
		steps := rapid.IntRange(1, 25).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			switch rapid.IntRange(0, 4).Draw(rt, "op") {
			case 0: // split around one boundary
				if err := tb.SplitAt(d, pageVA("split"), nil); err != nil {
					rt.Fatal(err)
				}
				verify("split")
			case 1: // set_memory_ro/rw-like: make the range leaf-aligned, then protect
				start := pageVA("start")
				n := rapid.Uint64Range(1, 2048).Draw(rt, "pages")
				end := min(start+n*4096, linBase+ram)
				ro := rapid.Bool().Draw(rt, "ro")
				for _, a := range []uint64{start, end} {
					if err := tb.SplitAt(d, a, nil); err != nil {
						rt.Fatal(err)
					}
				}
				// Contiguous runs inside the range may stay: permission
				// changes on whole runs are what the kernel does too.
				set, clr := arm64.PTERdonly, arm64.PTEWrite
				if !ro {
					set, clr = clr, set
				}
				if err := tb.Protect(d, start, end, set, clr); err != nil {
					rt.Fatalf("protect [%#x,%#x): %v", start, end, err)
				}
				for i := range samples {
					if samples[i].va >= start && samples[i].va < end {
						samples[i].ro = ro
					}
				}
				verify("protect")
			case 2: // fold PTE tables or PMD tables back into blocks
				l := arm64.Level(rapid.IntRange(1, 2).Draw(rt, "foldlevel"))
				freed, ok, err := tb.FoldTable(d, pageVA("fold"), l)
				if err != nil {
					rt.Fatal(err)
				}
				if ok {
					if err := tb.FreeTable(d, freed); err != nil {
						rt.Fatal(err)
					}
				}
				verify("fold")
			case 3: // fold a contiguous run
				l := arm64.Level(rapid.IntRange(2, 3).Draw(rt, "contlevel"))
				va := pageVA("cont")
				if _, err := tb.FoldCont(d, va, l); err != nil && l == 3 {
					// no PTE table there: FoldCont reports it, nothing changed
				}
				verify("foldcont")
			case 4: // fold∘split is the identity on a block
				va := pageVA("blk")
				e, err := tb.Lookup(d, va)
				if err != nil {
					rt.Fatal(err)
				}
				if e.Level == arm64.LastLevel || !g.IsLeaf(e.Desc, e.Level) {
					continue
				}
				if err := tb.SplitBlock(d, e, rapid.Bool().Draw(rt, "tocont")); err != nil {
					rt.Fatal(err)
				}
				freed, ok, err := tb.FoldTable(d, va, e.Level)
				if err != nil || !ok {
					rt.Fatalf("fold after split of %s at %#x: ok=%v err=%v", g.Name(e.Level), e.VA, ok, err)
				}
				if err := tb.FreeTable(d, freed); err != nil {
					rt.Fatal(err)
				}
				after, _ := tb.Lookup(d, va)
				if after.Desc != e.Desc&^arm64.PTECont {
					rt.Fatalf("fold∘split: %#016x -> %#016x", e.Desc, after.Desc)
				}
				verify("fold∘split")
			}
		}
		if err := mem.Check(); err != nil {
			rt.Fatal(err)
		}
	})
}
