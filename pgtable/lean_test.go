package pgtable

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/physmem"
	"pgregory.net/rapid"
)

// leanServed counts, over a run of TestPropertyLean, the one-page maps the
// lean walk served and those it handed to the general path, so that the
// property cannot pass with either side never taken.
var leanServed, leanFellBack int

// TestPropertyLean checks that the lean entry of the plain Direct door
// (Translate, and the one-page Map and Protect through Direct{}) and the
// one-page paths through Direct{WalkCache: true} follow the general walk
// rule. Two trees in two identical memories receive the same random
// operations — map (pages, ranges and blocks, with protections that may be
// refused), unmap, protect, split, fold, unhook and free of PTE and PMD
// tables (their pages reused soon: little RAM), snapshot and restore, and
// optionally the incremental census — tree A through Direct{} (lean
// Translate and Map; the general walker with table shadows elsewhere),
// tree B through Atomic{}, which never reads a shadow nor takes a lean
// path (tree A's door is drawn per step: Direct{} or Direct{WalkCache:
// true}). After every step the two trees must hold the same table pages and
// descriptors, every operation must have returned the same error, and
// Translate through Direct{} must equal Translate through Atomic{} on the
// same tree (A), whose shadows are by then stale in every way the
// operations make them so. The geometry is drawn too: 3, 4 and 5 levels,
// 4K, 16K and 64K granules, LPA2 output addresses.
func TestPropertyLean(t *testing.T) {
	leanServed, leanFellBack = 0, 0
	rapid.Check(t, checkLean)
	t.Logf("lean one-page maps: %d served, %d handed on", leanServed, leanFellBack)
	if leanServed == 0 || leanFellBack == 0 {
		t.Fatalf("lean one-page maps: %d served, %d handed on; want both", leanServed, leanFellBack)
	}
}

func checkLean(rt *rapid.T) {
	geoms := []arm64.Geometry{arm64.Geometry4K48, arm64.Geometry4K52, arm64.Geometry16K48,
		arm64.Geometry64K48, arm64.MustGeometry(arm64.PageShift4K, 39, false)}
	g := geoms[rapid.IntRange(0, len(geoms)-1).Draw(rt, "geometry")]
	ps := g.PageSize()
	pmd := g.Size(arm64.LevelPMD)
	// Two entries of the level above the PMD tables (two PMD tables, or
	// two root entries where that level is the root), in the upper half;
	// operations land in eight hot spots of two PMD entries each, so
	// they share tables.
	window := 2 * g.Size(arm64.LevelPUD)
	base := ^uint64(0)<<g.VABits + window
	const paBase = 0x1_0000_0000
	ram := max(64<<20, 512*ps) // little: freed table pages come back soon
	newTree := func() (*Tables, *physmem.Memory) {
		tb := newTables(rt, g, ram)
		return tb, tb.mem
	}
	a, memA := newTree()
	b, memB := newTree()
	// Tree A's door, drawn per step: Direct{} (the lean walks) or
	// Direct{WalkCache: true} (the one-page paths through the walk cache).
	directs := []Door{Direct{}, Direct{WalkCache: true}}
	lean, general := directs[0], Door(Atomic{})
	pageVA := func(label string) uint64 {
		spot := base + rapid.Uint64Range(0, 7).Draw(rt, label+"spot")*(window/8)&^(pmd-1)
		return spot + rapid.Uint64Range(0, 2*pmd/ps-1).Draw(rt, label)*ps
	}
	// same runs op on both trees and requires the same outcome.
	same := func(step string, op func(tb *Tables, d Door) error) {
		ea, eb := op(a, lean), op(b, general)
		if fmt.Sprint(ea) != fmt.Sprint(eb) {
			rt.Fatalf("%s: Direct{} gives %v, Atomic{} %v", step, ea, eb)
		}
	}
	verify := func(step string) {
		if diff := a.Diff(b); diff != "" {
			rt.Fatalf("%s: the trees differ: %s", step, diff)
		}
		// Probes through Direct{} refill the stale shadow entries they
		// meet; a step without probes leaves them for the next operation.
		probes := 0
		if rapid.Bool().Draw(rt, "probe") {
			probes = rapid.IntRange(1, 24).Draw(rt, "probes")
		}
		for i := 0; i < probes; i++ {
			va := pageVA("probe")
			if i >= 12 { // neighbours of earlier probes: walks sharing tables
				va = base + (va-base)&^(pmd-1) + uint64(i)*ps
			}
			va += rapid.Uint64Range(0, ps-1).Draw(rt, "offset")
			want, we, wok := a.Translate(general, va)
			for _, dd := range directs {
				got, ge, gok := a.Translate(dd, va)
				if got != want || ge != we || gok != wok {
					rt.Fatalf("%s: Translate through %+v of %#x gives %#x %+v ok=%v; the general walk %#x %+v ok=%v", step, dd, va, got, ge, gok, want, we, wok)
				}
			}
			if bpa, be, bok := b.Translate(general, va); bpa != want || be != we || bok != wok {
				rt.Fatalf("%s: %#x translates to %#x %+v in A and %#x %+v in B", step, va, want, we, bpa, be)
			}
		}
		if a.IsTracking() {
			if ca, cb := a.Tracked(0), b.Tracked(0); !reflect.DeepEqual(ca, cb) {
				rt.Fatalf("%s: tracked census %+v in A, %+v in B", step, ca, cb)
			}
		}
	}
	prots := []uint64{arm64.PageKernel, arm64.PageKernelRO, arm64.PageKernelExec, arm64.PageKernelROX}
	var snapA, snapB *Snapshot
	var smA, smB *physmem.Snapshot
	steps := rapid.IntRange(1, 50).Draw(rt, "steps")
	for i := 0; i < steps; i++ {
		lean = directs[rapid.IntRange(0, 2).Draw(rt, "door")/2] // Direct{} 2 times in 3
		switch rapid.IntRange(0, 14).Draw(rt, "op") {
		case 0, 1, 2, 3: // one page: the lean Map
			va := pageVA("va")
			pa := paBase + va - base
			if rapid.Bool().Draw(rt, "otherpa") {
				pa = paBase + rapid.Uint64Range(0, 1<<20).Draw(rt, "pfn")*ps
			}
			prot := prots[rapid.IntRange(0, len(prots)-1).Draw(rt, "prot")]
			const flags = NoBlockMappings | NoContMappings
			var errA error
			if rapid.Bool().Draw(rt, "bymap") {
				errA = a.Map(lean, va, pa, ps, prot, flags)
			} else {
				// Map's dispatch by hand, to count which side served.
				if tpa, tp, ok := a.pageTableDirect(lean == directs[1], va); ok {
					leanServed++
					errA = a.setPage(tpa, tp, va, pa, prot)
				} else {
					leanFellBack++
					errA = a.Map(lean, va, pa, ps, prot, flags) // served by the general path
				}
			}
			if errB := b.Map(general, va, pa, ps, prot, flags); fmt.Sprint(errA) != fmt.Sprint(errB) {
				rt.Fatalf("map page %#x -> %#x: Direct{} gives %v, Atomic{} %v", va, pa, errA, errB)
			}
			verify("map page")
		case 4: // a range of pages, possibly with contiguous runs
			va := pageVA("va")
			end := min(va+rapid.Uint64Range(1, 600).Draw(rt, "pages")*ps, base+window)
			flags := Flags(rapid.IntRange(0, 3).Draw(rt, "flags")) | NoBlockMappings
			same("map range", func(tb *Tables, d Door) error {
				return tb.Map(d, va, paBase+va-base, end-va, arm64.PageKernel, flags)
			})
			verify("map range")
		case 5: // a PMD block where the slot is free (else the refusal must match)
			va := base + (pageVA("va")-base)&^(pmd-1)
			same("map block", func(tb *Tables, d Door) error {
				return tb.Map(d, va, paBase+va-base, pmd, arm64.PageKernel, 0)
			})
			verify("map block")
		case 6: // unmap
			va := pageVA("va")
			end := min(va+rapid.Uint64Range(1, 600).Draw(rt, "pages")*ps, base+window)
			same("unmap", func(tb *Tables, d Door) error { return tb.Unmap(d, va, end) })
			verify("unmap")
		case 7: // protect after splitting at the edges
			va := pageVA("va")
			end := min(va+rapid.Uint64Range(1, 600).Draw(rt, "pages")*ps, base+window)
			same("protect", func(tb *Tables, d Door) error {
				if err := tb.SplitAt(d, va, nil); err != nil {
					return err
				}
				if err := tb.SplitAt(d, end, nil); err != nil {
					return err
				}
				return tb.Protect(d, va, end, arm64.PTERdonly, arm64.PTEWrite)
			})
			verify("protect")
		case 8: // fold a PTE or PMD table into a block, freeing it
			va := pageVA("va")
			l := arm64.Level(rapid.IntRange(int(max(arm64.LevelPUD, g.StartLevel)), int(arm64.LevelPMD)).Draw(rt, "level"))
			same("fold", func(tb *Tables, d Door) error {
				freed, ok, err := tb.FoldTableAnyAttr(d, va, l)
				if err != nil || !ok {
					return err
				}
				return tb.FreeTable(d, freed)
			})
			verify("fold")
		case 9: // unhook and free a PTE table or a PMD table with its PTE tables
			l := arm64.Level(rapid.IntRange(int(max(arm64.LevelPUD, g.StartLevel)), int(arm64.LevelPMD)).Draw(rt, "level"))
			va := pageVA("va")
			same("free", func(tb *Tables, d Door) error {
				pa, ok, err := tb.UnhookTable(d, va, l)
				if err != nil || !ok {
					return err
				}
				if l < arm64.LevelPMD {
					tbl, _ := tb.lookup(pa)
					for _, desc := range tbl {
						if g.IsTable(desc, arm64.LevelPMD) {
							if err := tb.FreeTable(d, g.OutputAddress(desc)); err != nil {
								return err
							}
						}
					}
				}
				return tb.FreeTable(d, pa)
			})
			verify("free")
		case 10: // snapshot, or restore the last one
			if snapA == nil || rapid.Bool().Draw(rt, "snapshot") {
				snapA, smA, snapB, smB = a.Snapshot(), memA.Snapshot(), b.Snapshot(), memB.Snapshot()
				continue
			}
			for _, r := range []error{memA.Restore(smA), a.Restore(snapA), memB.Restore(smB), b.Restore(snapB)} {
				if r != nil {
					rt.Fatal(r)
				}
			}
			verify("restore")
		case 14: // protect one page: the one-page Protect
			va := pageVA("va")
			// Read-only or writable; invalid (present, set_memory_valid's
			// way) or valid again: the census sees the latter.
			changes := [][2]uint64{{arm64.PTERdonly, arm64.PTEWrite}, {arm64.PTEWrite, arm64.PTERdonly},
				{arm64.PTEPresentInvalid, arm64.PTEValid}, {arm64.PTEValid, arm64.PTEPresentInvalid}}
			c := changes[rapid.IntRange(0, len(changes)-1).Draw(rt, "change")]
			set, clear := c[0], c[1]
			same("protect page", func(tb *Tables, d Door) error { return tb.Protect(d, va, va+ps, set, clear) })
			verify("protect page")
		case 12: // split at an address (blocks and contiguous runs around it)
			va := pageVA("va")
			same("split", func(tb *Tables, d Door) error { return tb.SplitAt(d, va, nil) })
			verify("split")
		case 13: // a corrupt tree, as a checker mutant may leave one: a block
			// descriptor in an empty slot of a level without blocks
			// (above the PUD with 4K, above the PMD otherwise)
			va := pageVA("va")
			e, err := a.Lookup(general, va)
			if err != nil || e.Desc != 0 || e.Level >= arm64.LastLevel || g.BlockAllowed(e.Level) {
				continue
			}
			for _, tb := range []*Tables{a, b} {
				tbl, _ := tb.tableOf(e.DescPA)
				tbl[tb.indexOf(e.DescPA)] = g.MkLeaf(paBase, arm64.PageKernel, e.Level)
			}
			verify("bad block")
		case 11: // start the incremental census (setPage's trackLeaf)
			if a.IsTracking() {
				continue
			}
			r := [][2]uint64{{base, base + window}}
			same("track", func(tb *Tables, d Door) error { return tb.Track(d, r) })
			verify("track")
		}
	}
	for _, m := range []*physmem.Memory{memA, memB} {
		if err := m.Check(); err != nil {
			rt.Fatal(err)
		}
	}
}

// TestLeanStaleShadowSamePA builds the case the shadow generation exists
// for: a page table freed and a new one allocated at the same address in
// another slot, so the descriptor above is the same value again while its
// shadow entry still names the old slot's descriptors. The first lean
// Translate, Map or Protect through Direct{} that meets the entry must find
// the new table (each is tried first on a tree of its own: the first to
// fall back refills the entry for the others).
func TestLeanStaleShadowSamePA(t *testing.T) {
	const (
		va1 = 0xffff800080000000 // two PMD entries of one PMD table
		va2 = va1 + 2<<20
		pa  = 0x1_0000_0000
		ps  = 4096
	)
	const flags = NoBlockMappings | NoContMappings
	// build returns the tree with the stale entry, or nil when this free
	// order does not put the new table at the old address in another slot.
	build := func(order [2]uint64) *Tables {
		tb := newTables(t, arm64.Geometry4K48, 64<<20)
		// va1+2 pages is mapped in the old page table only: a walk that
		// reads the old slot finds it.
		for _, va := range []uint64{va1, va1 + 2*ps, va2} {
			if err := tb.Map(Direct{}, va, pa, ps, arm64.PageKernel, flags); err != nil {
				t.Fatal(err)
			}
			tb.Translate(Direct{}, va) // fills the PMD table's shadow entry
		}
		e1, _ := tb.Lookup(Atomic{}, va1)
		old := tb.refOf(e1.DescPA &^ (ps - 1))
		oldPA, oldSlot := old.pa, old.slot
		for _, va := range order { // unhook and free both page tables
			tpa, ok, err := tb.UnhookTable(Atomic{}, va, arm64.LevelPMD)
			if err != nil || !ok {
				t.Fatal(ok, err)
			}
			if err := tb.FreeTable(Atomic{}, tpa); err != nil {
				t.Fatal(err)
			}
		}
		// A new page table for va1 through a door that never touches
		// shadows.
		if err := tb.Map(Atomic{}, va1, pa, ps, arm64.PageKernel, flags); err != nil {
			t.Fatal(err)
		}
		e1, _ = tb.Lookup(Atomic{}, va1)
		if r := tb.refOf(e1.DescPA &^ (ps - 1)); r.pa != oldPA || r.slot == oldSlot {
			return nil
		}
		return tb
	}
	// same requires the lean and the general Translate to agree at va.
	same := func(tb *Tables, va uint64, what string) {
		t.Helper()
		want, we, wok := tb.Translate(Atomic{}, va)
		if got, ge, gok := tb.Translate(Direct{}, va); got != want || ge != we || gok != wok {
			t.Errorf("%s: lean Translate of %#x gives %#x %+v ok=%v, the index %#x %+v ok=%v", what, va, got, ge, gok, want, we, wok)
		}
	}
	exercised := false
	for _, order := range [][2]uint64{{va1, va2}, {va2, va1}} {
		if build(order) == nil {
			continue
		}
		exercised = true
		// Translate first: the old slot still maps va1+2 pages.
		tb := build(order)
		same(tb, va1+2*ps, "translate first")
		// Map first: the page must land in the new table.
		tb = build(order)
		if err := tb.Map(Direct{}, va1+ps, pa+ps, ps, arm64.PageKernel, flags); err != nil {
			t.Fatal(err)
		}
		if got, _, ok := tb.Translate(Atomic{}, va1+ps); !ok || got != pa+ps {
			t.Errorf("map first: %#x translates to %#x ok=%v, want %#x", uint64(va1+ps), got, ok, uint64(pa+ps))
		}
		same(tb, va1+2*ps, "map first")
		// Protect first: the new table's entry must change.
		tb = build(order)
		if err := tb.Protect(Direct{}, va1, va1+ps, arm64.PTERdonly, arm64.PTEWrite); err != nil {
			t.Fatal(err)
		}
		if _, e, ok := tb.Translate(Atomic{}, va1); !ok || e.Desc&arm64.PTERdonly == 0 {
			t.Errorf("protect first: %#x maps %#x ok=%v, want read-only", uint64(va1), e.Desc, ok)
		}
		same(tb, va1+2*ps, "protect first")
	}
	if !exercised {
		t.Fatal("no free order put the new page table at the old address in another slot")
	}
}
