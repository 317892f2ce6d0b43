package pgtable

import (
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"pgregory.net/rapid"
)

// The tracked counters equal a full census of each tracked range after any
// sequence of table operations: map (pages, blocks, contiguous runs), unmap,
// protect, split, fold, contiguous fold, unhook and free. Range boundaries
// fall inside blocks, so leaves straddling two ranges are counted in both
// by their overlap, as TakeCensus does.
func TestPropertyTrackedCensus(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		g := arm64.Geometry4K48
		const ram = 1 << 30
		tb := newTables(rt, g, ram)
		const span = 4 << 30 // VA window: four 1G slots
		cut1 := linBase + rapid.Uint64Range(1, span/4096-1).Draw(rt, "cut1")*4096
		cut2 := cut1 + rapid.Uint64Range(1, (linBase+span-cut1)/4096).Draw(rt, "cut2")*4096
		ranges := [][2]uint64{{linBase - 1<<30, cut1}, {cut1, cut2}, {cut2, 0}}
		pageVA := func(label string) uint64 {
			return linBase + rapid.Uint64Range(0, span/4096-1).Draw(rt, label)*4096
		}
		check := func(step string) {
			if !tb.IsTracking() {
				return
			}
			for i, r := range ranges {
				want, err := tb.TakeCensus(Atomic{}, r[0], r[1])
				if err != nil {
					rt.Fatal(err)
				}
				if got := tb.Tracked(i); got != want {
					rt.Fatalf("%s: range %d [%#x, %#x): tracked %+v, census %+v", step, i, r[0], r[1], got, want)
				}
			}
		}
		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		trackAt := rapid.IntRange(0, steps).Draw(rt, "trackAt")
		for s := 0; s < steps; s++ {
			if s == trackAt {
				if err := tb.Track(d, ranges); err != nil {
					rt.Fatal(err)
				}
				check("track")
			}
			va := pageVA("va")
			n := rapid.Uint64Range(1, 4096).Draw(rt, "pages")
			end := min(va+n*4096, linBase+span)
			switch op := rapid.IntRange(0, 8).Draw(rt, "op"); op {
			case 0, 1: // map: any leaves alignment allows, or pages only
				pa := ramBase + (va-linBase)%ram
				if end-va > ram-(pa-ramBase) {
					end = va + (ram - (pa - ramBase))
				}
				flags := Flags(0)
				if op == 1 {
					flags = NoBlockMappings
				}
				if rapid.Bool().Draw(rt, "invalid") {
					_ = tb.Map(d, va, pa, end-va, arm64.PageKernel&^arm64.PTEValid|arm64.PTEPresentInvalid, flags)
				} else {
					_ = tb.Map(d, va, pa, end-va, arm64.PageKernel, flags) // ErrUnsafe: nothing or part changed, counted either way
				}
			case 2:
				_ = tb.Unmap(d, va, end) // ErrInvalid over part of a block: nothing changed
			case 3:
				_ = tb.Protect(d, va, end, arm64.PTERdonly, arm64.PTEWrite)
			case 4:
				if err := tb.SplitAt(d, va, nil); err != nil {
					rt.Fatal(err)
				}
			case 5:
				if freed, ok, err := tb.FoldTable(d, va, arm64.Level(rapid.IntRange(1, 2).Draw(rt, "l"))); err == nil && ok {
					if err := tb.FreeTable(d, freed); err != nil {
						rt.Fatal(err)
					}
				}
			case 6:
				_, _ = tb.FoldCont(d, va, arm64.Level(rapid.IntRange(2, 3).Draw(rt, "cl")))
			case 7:
				if tpa, ok, err := tb.UnhookTable(d, va, arm64.Level(rapid.IntRange(0, 2).Draw(rt, "ul"))); err == nil && ok {
					if err := freeTree(tb, tpa); err != nil {
						rt.Fatal(err)
					}
				}
			case 8:
				if err := tb.SplitRangeToPTEs(d, va, end, nil); err != nil {
					rt.Fatal(err)
				}
			}
			check("step")
		}
	})
}

// freeTree frees an unhooked table page and every table below it.
func freeTree(tb *Tables, pa uint64) error {
	l, _ := tb.LevelOf(pa)
	tbl, _ := tb.lookup(pa)
	if l < arm64.LastLevel {
		for _, desc := range tbl {
			if tb.g.IsTable(desc, l) {
				if err := freeTree(tb, tb.g.OutputAddress(desc)); err != nil {
					return err
				}
			}
		}
	}
	return tb.FreeTable(d, pa)
}
