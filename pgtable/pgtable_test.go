package pgtable

import (
	"errors"
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/physmem"
)

const (
	ramBase uint64 = 0x40000000
	linBase uint64 = 0xffff000000000000 // PAGE_OFFSET, 4K/48
)

var d = Direct{WalkCache: true}

// fataler is what newTables needs of a test: *testing.T and *rapid.T.
type fataler interface {
	Helper()
	Fatal(args ...any)
}

// newTables is an empty tree of geometry g over ram bytes of memory at
// ramBase (its memory is the tree's mem).
func newTables(t fataler, g arm64.Geometry, ram uint64) *Tables {
	t.Helper()
	mem, err := physmem.New(g.PageShift, []physmem.Region{{Base: ramBase, Size: ram}})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := New(g, mem)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// leafAt returns level and CONT of the leaf mapping va, failing if unmapped.
func leafAt(t testing.TB, tb *Tables, va uint64) (arm64.Level, bool) {
	t.Helper()
	_, e, ok := tb.Translate(d, va)
	if !ok {
		t.Fatalf("va %#x not mapped", va)
	}
	return e.Level, arm64.DescCont(e.Desc)
}

var linearProt = arm64.Tagged(arm64.PageKernel)

// A block-mapped linear map uses the largest leaf VA and PA alignment allow
// (__create_pgd_mapping on a BBML2_NOABORT system).
func TestMapLargestLeaf(t *testing.T) {
	tb := newTables(t, arm64.Geometry4K48, 4<<30)
	// 1G-aligned 1G, then 32M+2M+64K+4K pieces at an offset.
	if err := tb.Map(d, linBase, ramBase, 1<<30, linearProt, NoExecMappings); err != nil {
		t.Fatal(err)
	}
	if l, c := leafAt(t, tb, linBase+12345); l != 1 || c {
		t.Errorf("PUD block expected, got level %d cont %v", l, c)
	}
	off := uint64(1<<30 + 32<<20 + 2<<20 + 64<<10 + 4<<10) // exactly one of each size below 1G
	va, pa := linBase+(1<<30), uint64(ramBase+(1<<30))
	if err := tb.Map(d, va, pa, off-(1<<30), linearProt, NoExecMappings); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		at   uint64
		lvl  arm64.Level
		cont bool
	}{
		{0, 2, true}, {31 << 20, 2, true}, {32 << 20, 2, false},
		{34 << 20, 3, true}, {34<<20 + 60<<10, 3, true}, {34<<20 + 64<<10, 3, false},
	}
	for _, w := range want {
		if l, c := leafAt(t, tb, va+w.at); l != w.lvl || c != w.cont {
			t.Errorf("+%#x: level %d cont %v, want %d %v", w.at, l, c, w.lvl, w.cont)
		}
	}
	// Linear-map tables carry PXNTable (NO_EXEC_MAPPINGS).
	e, _ := tb.Lookup(d, va)
	if !e.TablePXN || !e.TableUXN {
		t.Errorf("table attributes PXN=%v UXN=%v", e.TablePXN, e.TableUXN)
	}
	// Translation: VA - PAGE_OFFSET + PHYS_OFFSET.
	for _, x := range []uint64{0, 4096, 1<<30 + 5, off - 1} {
		got, _, ok := tb.Translate(d, linBase+x)
		if !ok || got != ramBase+x {
			t.Errorf("translate +%#x = %#x %v", x, got, ok)
		}
	}
	if _, _, ok := tb.Translate(d, linBase+off); ok {
		t.Error("beyond the mapping must not translate")
	}
}

func TestMapForcePTE(t *testing.T) {
	tb := newTables(t, arm64.Geometry4K48, 2<<30)
	if err := tb.Map(d, linBase, ramBase, 2<<30, linearProt, NoBlockMappings|NoContMappings|NoExecMappings); err != nil {
		t.Fatal(err)
	}
	// PGD + 1 PUD + 2 PMD tables + 1024 PTE tables.
	if got := [4]int{tb.TablePages(0), tb.TablePages(arm64.LevelPUD), tb.TablePages(arm64.LevelPMD), tb.TablePages(arm64.LevelPTE)}; got != [4]int{1, 1, 2, 1024} {
		t.Errorf("table pages per level %v", got)
	}
	if n := tb.Memory().OwnedPages(physmem.OwnerPageTable); n != 1028 {
		t.Errorf("physmem page-table pages %d", n)
	}
	if l, c := leafAt(t, tb, linBase+(1<<30)); l != 3 || c {
		t.Errorf("level %d cont %v", l, c)
	}
}

func TestMapRefusesUnsafeChange(t *testing.T) {
	tb := newTables(t, arm64.Geometry4K48, 1<<30)
	if err := tb.Map(d, linBase, ramBase, 2<<20, linearProt, 0); err != nil {
		t.Fatal(err)
	}
	// Same VA to another PA: BUG_ON(!pgattr_change_is_safe) in the kernel.
	err := tb.Map(d, linBase, ramBase+(2<<20), 2<<20, linearProt, 0)
	if !errors.Is(err, ErrUnsafe) {
		t.Fatalf("remap to other PA: %v", err)
	}
	// Same PA read-only is a safe live change.
	if err := tb.Map(d, linBase, ramBase, 2<<20, arm64.PageKernelRO, 0); err != nil {
		t.Fatal(err)
	}
	if err := tb.Map(d, linBase+1, ramBase, 4096, linearProt, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("page offset mismatch: %v", err)
	}
}

// split_kernel_leaf_mapping on one 4K page inside a PUD block splits exactly
// the straddling leaves at both ends: PUD -> contPMD; the PMD holding the page
// -> contPTE; the contPTE run holding the page -> PTEs. Neighbouring runs keep
// their CONT bits.
func TestSplitAtOnePage(t *testing.T) {
	tb := newTables(t, arm64.Geometry4K48, 2<<30)
	if err := tb.Map(d, linBase, ramBase, 1<<30, linearProt, NoExecMappings); err != nil {
		t.Fatal(err)
	}
	page := uint64(linBase + 100<<20 + 5<<12) // inside a 2M, inside a 64K run
	var st SplitStats
	for _, a := range []uint64{page, page + 4096} {
		if err := tb.SplitAt(d, a, &st); err != nil {
			t.Fatal(err)
		}
	}
	// One of each: PUD block, contPMD run, PMD block, contPTE run.
	var want SplitStats
	*want.Blocks.At(arm64.LevelPUD), *want.Blocks.At(arm64.LevelPMD) = 1, 1
	*want.ContRun.At(arm64.LevelPMD), *want.ContRun.At(arm64.LevelPTE) = 1, 1
	if st != want {
		t.Errorf("split stats %+v", st)
	}
	check := func(va uint64, lvl arm64.Level, cont bool) {
		t.Helper()
		if l, c := leafAt(t, tb, va); l != lvl || c != cont {
			t.Errorf("%#x: level %d cont %v, want %d %v", va, l, c, lvl, cont)
		}
	}
	check(page, 3, false)
	check(page-4096, 3, false)  // same 64K run
	check(page+64<<10, 3, true) // next run untouched
	check(linBase, 2, true)     // first contPMD run keeps CONT
	check(linBase+(1<<30)-1, 2, true)
	if tb.TablePages(arm64.LevelPMD) != 1 || tb.TablePages(arm64.LevelPTE) != 1 {
		t.Errorf("tables: PMD %d PTE %d", tb.TablePages(arm64.LevelPMD), tb.TablePages(arm64.LevelPTE))
	}
	// The contPMD run holding the page (96M..128M) lost CONT, its PMD at
	// 100M became a table.
	check(linBase+98<<20, 2, false)
	for _, x := range []uint64{0, page - linBase, 1<<30 - 4096} {
		if pa, _, _ := tb.Translate(d, linBase+x); pa != ramBase+x {
			t.Errorf("translation changed at +%#x: %#x", x, pa)
		}
	}
}

func TestSplitAtNoMemLeavesTablesValid(t *testing.T) {
	tb := newTables(t, arm64.Geometry4K48, 1<<30)
	if err := tb.Map(d, linBase, ramBase, 1<<30, linearProt, NoExecMappings); err != nil {
		t.Fatal(err)
	}
	fail := failingDoor{after: 1} // the PUD split gets its table, the PMD split does not
	err := tb.SplitAt(&fail, linBase+5<<12, nil)
	if !errors.Is(err, ErrNoMem) {
		t.Fatalf("want ErrNoMem, got %v", err)
	}
	for _, x := range []uint64{0, 5 << 12, 1<<30 - 1} {
		if pa, _, ok := tb.Translate(d, linBase+x); !ok || pa != ramBase+x {
			t.Errorf("+%#x: %#x %v", x, pa, ok)
		}
	}
	if l, _ := leafAt(t, tb, linBase); l != 2 {
		t.Errorf("PUD split should have happened, level %d", l)
	}
}

type failingDoor struct {
	Direct
	after int
}

func (f *failingDoor) TableAlloc(arm64.Level) error {
	if f.after == 0 {
		return errors.New("injected")
	}
	f.after--
	return nil
}

func TestProtectPartialBlock(t *testing.T) {
	tb := newTables(t, arm64.Geometry4K48, 1<<30)
	if err := tb.Map(d, linBase, ramBase, 4<<20, linearProt, NoExecMappings); err != nil {
		t.Fatal(err)
	}
	err := tb.Protect(d, linBase, linBase+4096, arm64.PTERdonly, arm64.PTEWrite)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("partial block: %v", err)
	}
	if err := tb.Protect(d, linBase, linBase+2<<20, arm64.PTERdonly, arm64.PTEWrite); err != nil {
		t.Fatal(err)
	}
	_, e, _ := tb.Translate(d, linBase)
	if e.Desc&arm64.PTERdonly == 0 || e.Desc&arm64.PTEWrite != 0 {
		t.Errorf("block not read-only: %#x", e.Desc)
	}
}

func TestFoldRestoresBlock(t *testing.T) {
	tb := newTables(t, arm64.Geometry4K48, 1<<30)
	if err := tb.Map(d, linBase, ramBase, 2<<20, linearProt, NoExecMappings); err != nil {
		t.Fatal(err)
	}
	before, _ := tb.Lookup(d, linBase)
	e, _ := tb.Lookup(d, linBase)
	if err := tb.SplitBlock(d, e, false); err != nil {
		t.Fatal(err)
	}
	// Make one page RO: the fold must refuse.
	if err := tb.Protect(d, linBase+4096, linBase+8192, arm64.PTERdonly, arm64.PTEWrite); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := tb.FoldTable(d, linBase, arm64.LevelPMD); ok || err != nil {
		t.Fatalf("fold of mixed attributes: ok=%v err=%v", ok, err)
	}
	if err := tb.Protect(d, linBase+4096, linBase+8192, arm64.PTEWrite, arm64.PTERdonly); err != nil {
		t.Fatal(err)
	}
	freed, ok, err := tb.FoldTable(d, linBase, arm64.LevelPMD)
	if !ok || err != nil {
		t.Fatalf("fold: ok=%v err=%v", ok, err)
	}
	after, _ := tb.Lookup(d, linBase)
	if after.Desc != before.Desc {
		t.Errorf("fold∘split: %#x != %#x", after.Desc, before.Desc)
	}
	if err := tb.FreeTable(d, freed); err != nil {
		t.Fatal(err)
	}
	if tb.TablePages(arm64.LevelPTE) != 0 {
		t.Errorf("PTE tables left: %d", tb.TablePages(arm64.LevelPTE))
	}
}

func TestUnmap(t *testing.T) {
	tb := newTables(t, arm64.Geometry4K48, 1<<30)
	va := uint64(0xffff800080000000)
	if err := tb.Map(d, va, ramBase, 4<<20, arm64.PageKernel, 0); err != nil {
		t.Fatal(err)
	}
	if err := tb.Unmap(d, va, va+4096); !errors.Is(err, ErrInvalid) {
		t.Fatalf("partial block unmap: %v", err)
	}
	if _, _, ok := tb.Translate(d, va); !ok {
		t.Fatal("refused unmap changed the tables")
	}
	if err := tb.Unmap(d, va, va+4<<20); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := tb.Translate(d, va+(3<<20)); ok {
		t.Error("still mapped")
	}
}

func TestGranules(t *testing.T) {
	for _, g := range []arm64.Geometry{arm64.Geometry16K48, arm64.Geometry64K48, arm64.Geometry4K52} {
		ram := uint64(16 << 30)
		tb := newTables(t, g, ram)
		lay := arm64.KernelLayout(g, 0)
		if err := tb.Map(d, lay.PageOffset, ramBase, ram, linearProt, NoExecMappings); err != nil {
			t.Fatalf("%v: %v", g, err)
		}
		for _, x := range []uint64{0, g.PageSize() * 3, ram - 1} {
			pa, _, ok := tb.Translate(d, lay.PageOffset+x)
			if !ok || pa != ramBase+x {
				t.Errorf("%v: +%#x -> %#x %v", g, x, pa, ok)
			}
		}
		page := lay.PageOffset + 7*g.PageSize() + g.Size(arm64.LevelPMD)
		if err := tb.SplitAt(d, page, nil); err != nil {
			t.Fatal(err)
		}
		if err := tb.SplitAt(d, page+g.PageSize(), nil); err != nil {
			t.Fatal(err)
		}
		if l, c := leafAt(t, tb, page); l != 3 || c {
			t.Errorf("%v: split page level %d cont %v", g, l, c)
		}
	}
}

// TakeCensus agrees with a leaf-by-leaf Visit and with the table counters.
func TestCensus(t *testing.T) {
	tb := newTables(t, arm64.Geometry4K48, 4<<30)
	if err := tb.Map(d, linBase, ramBase, 1<<30+32<<20+2<<20+64<<10+12<<10, linearProt, NoExecMappings); err != nil {
		t.Fatal(err)
	}
	if err := tb.Map(d, linBase+2<<30, ramBase+2<<30, 8<<20, linearProt, NoBlockMappings|NoContMappings|NoExecMappings); err != nil {
		t.Fatal(err)
	}
	last := linBase + 2<<30 + 4096
	if err := tb.Protect(d, last, last+4096, arm64.PTEPresentInvalid, arm64.PTEValid); err != nil {
		t.Fatal(err)
	}
	c, err := tb.TakeCensus(d, linBase, linBase+1<<40)
	if err != nil {
		t.Fatal(err)
	}
	var want Census
	_ = tb.Visit(d, linBase, linBase+1<<40, func(e Entry) error {
		sz := tb.g.Size(e.Level)
		switch {
		case arm64.DescValid(e.Desc):
			want.Leaf.At(e.Level)[e.Desc>>52&1] += sz
		case arm64.DescPresentInvalid(e.Desc):
			want.Invalid += sz
		}
		return nil
	})
	if c.Leaf != want.Leaf || c.Invalid != want.Invalid || c.Invalid != 4096 {
		t.Errorf("census %+v, visit %+v", c, want)
	}
	for l := arm64.Level(0); l <= 3; l++ {
		if c.Tables.Get(l) != tb.TablePages(l) {
			t.Errorf("level %d: census %d tables, tree %d", l, c.Tables.Get(l), tb.TablePages(l))
		}
	}
}
