package pgtable

import (
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/physmem"
	"pgregory.net/rapid"
)

// TestPropertyShadow runs random sequences of the operations that change
// which table page sits behind a descriptor — map (allocating tables),
// unmap, unhook and free of PTE and PMD tables (their pages reused by the
// next allocations, often in another slot), snapshot and restore — through
// the Direct door with and without the walk cache (both use the table
// shadows), and after every step compares what Direct walks see with the
// Atomic door's, which resolves every table through the PFN index and never
// reads a shadow.
func TestPropertyShadow(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		g := arm64.Geometry4K48
		// Little RAM, so that freed table pages come back soon.
		tb := newTables(rt, g, 64<<20)
		mem := tb.mem
		const (
			base   = 0xffff800080000000 // VMALLOC_START
			window = 4 << 30            // four PMD tables' worth
			paBase = 0x1_0000_0000
		)
		doors := []Door{Direct{}, Direct{WalkCache: true}}
		door := func() Door { return doors[rapid.IntRange(0, 1).Draw(rt, "door")] }
		pageVA := func(label string) uint64 {
			return base + rapid.Uint64Range(0, window/4096-1).Draw(rt, label)*4096
		}
		rangeOf := func() (uint64, uint64) {
			va := pageVA("va")
			n := rapid.Uint64Range(1, 1100).Draw(rt, "pages")
			return va, min(va+n*4096, base+window)
		}
		verify := func(step string) {
			for i := 0; i < 16; i++ {
				va := pageVA("probe")
				if i >= 8 {
					// Neighbours of the first probes: walks that share tables.
					va = base + (va-base)&^(2<<20-1) + uint64(i)*4096
				}
				want, we, wok := tb.Translate(Atomic{}, va)
				wl, werr := tb.Lookup(Atomic{}, va)
				for _, dd := range doors {
					got, ge, gok := tb.Translate(dd, va)
					if got != want || ge != we || gok != wok {
						rt.Fatalf("%s: %T%+v translates %#x to %#x %+v ok=%v; the index says %#x %+v ok=%v", step, dd, dd, va, got, ge, gok, want, we, wok)
					}
					gl, gerr := tb.Lookup(dd, va)
					if gl != wl || (gerr == nil) != (werr == nil) {
						rt.Fatalf("%s: %T%+v looks %#x up as %+v (%v); the index says %+v (%v)", step, dd, dd, va, gl, gerr, wl, werr)
					}
				}
			}
		}
		var snapT *Snapshot
		var snapM *physmem.Snapshot
		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			switch rapid.IntRange(0, 5).Draw(rt, "op") {
			case 0, 1: // map pages, allocating the tables missing
				start, end := rangeOf()
				if err := tb.Map(door(), start, start-base+paBase, end-start, arm64.PageKernel, NoBlockMappings|NoContMappings); err != nil {
					rt.Fatal(err)
				}
				verify("map")
			case 2: // unmap pages; the tables stay
				start, end := rangeOf()
				if err := tb.Unmap(door(), start, end); err != nil {
					rt.Fatal(err)
				}
				verify("unmap")
			case 3: // unhook and free a PTE table (PMD level) or a PMD table (PUD level)
				l := arm64.Level(rapid.IntRange(int(arm64.LevelPUD), int(arm64.LevelPMD)).Draw(rt, "level"))
				dd := door()
				pa, ok, err := tb.UnhookTable(dd, pageVA("unhook"), l)
				if err != nil {
					rt.Fatal(err)
				}
				if ok {
					// A PMD table's PTE tables go with it (free_empty_tables).
					if l == arm64.LevelPUD {
						tbl, _ := tb.lookup(pa)
						for _, desc := range tbl {
							if g.IsTable(desc, arm64.LevelPMD) {
								if err := tb.FreeTable(dd, g.OutputAddress(desc)); err != nil {
									rt.Fatal(err)
								}
							}
						}
					}
					if err := tb.FreeTable(dd, pa); err != nil {
						rt.Fatal(err)
					}
				}
				verify("free")
			case 4: // snapshot
				snapT, snapM = tb.Snapshot(), mem.Snapshot()
			case 5: // restore the last snapshot
				if snapT == nil {
					continue
				}
				if err := mem.Restore(snapM); err != nil {
					rt.Fatal(err)
				}
				if err := tb.Restore(snapT); err != nil {
					rt.Fatal(err)
				}
				verify("restore")
			}
		}
		if err := mem.Check(); err != nil {
			rt.Fatal(err)
		}
	})
}
