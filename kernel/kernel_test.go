package kernel

import (
	"errors"
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
)

func boot(t testing.TB, name string, edit func(*Config)) *Kernel {
	t.Helper()
	cfg, err := Machine(name)
	if err != nil {
		t.Fatal(err)
	}
	// The shape tests below are written against linux-mm's rules (the
	// lazy split, a block-mapped alias); version_test.go covers the others.
	cfg.Kernel = "linux-mm"
	if edit != nil {
		edit(&cfg)
	}
	k, err := Boot(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// leafBytes sums the bytes mapped at each (level, cont) in [start, end).
func leafBytes(t testing.TB, k *Kernel, start, end uint64) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	err := k.PT.Visit(pgtable.Direct{}, start, end, func(e pgtable.Entry) error {
		if !arm64.DescValid(e.Desc) {
			return nil
		}
		name := k.G.Name(e.Level)
		if arm64.DescCont(e.Desc) {
			name = "cont" + name
		}
		out[name] += k.G.Size(e.Level)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func linearLeaves(t testing.TB, k *Kernel) map[string]uint64 {
	return leafBytes(t, k, k.Layout.PageOffset, k.Layout.PageEnd)
}

// map_mem + force_pte_mapping: the three shapes of the linear map.
func TestBootLinearMapModes(t *testing.T) {
	// rodata=on without BBML2_NOABORT: page granular, kernel alias in blocks.
	k := boot(t, "n1-server", nil)
	lin := linearLeaves(t, k)
	ram := uint64(16 << 30)
	// The alias [_text, __init_begin) is mapped with flags 0 on linux-mm:
	// PMD blocks and, at its unaligned end, a contiguous run.
	if lin["PTE"] != ram-k.Image.InitStart || lin["PMD"]+lin["contPTE"] != k.Image.InitStart || lin["PUD"] != 0 {
		t.Errorf("no-BBML2 rodata=on: %v", lin)
	}
	if k.LinearMapRequiresBBML2 {
		t.Error("PTE-mapped linear map does not require BBML2")
	}
	// BBML2_NOABORT on every CPU: blocks, contiguous runs, no splits.
	k = boot(t, "bbml2-server", nil)
	lin = linearLeaves(t, k)
	if lin["PUD"] != 15<<30 || lin["PTE"] != 0 || k.Stats.Split.Total() != 0 {
		t.Errorf("BBML2: %v splits %+v", lin, k.Stats.Split)
	}
	if !k.LinearMapRequiresBBML2 {
		t.Error("block-mapped rodata=on linear map requires BBML2")
	}
	// Boot CPU with BBML2, a secondary without: repainted to PTEs, alias kept.
	k = boot(t, "mixed-server", nil)
	lin = linearLeaves(t, k)
	if lin["PTE"] != ram-k.Image.InitStart || lin["contPMD"] != 0 || lin["PMD"]+lin["contPTE"] != k.Image.InitStart {
		t.Errorf("mode 3: %v", lin)
	}
	if k.TLB.Count[TLBIVMALLE1IS] == 0 {
		t.Error("linear_map_split_to_ptes must flush the whole linear range")
	}
	// rodata=noalias without BBML2: blocks allowed, nothing will be split.
	k = boot(t, "n1-server", func(c *Config) { c.Rodata = RodataNoAlias })
	if lin = linearLeaves(t, k); lin["PUD"] == 0 || k.CanSetDirectMap() {
		t.Errorf("noalias: %v can_set_direct_map=%v", lin, k.CanSetDirectMap())
	}
	// debug_pagealloc forces PTEs even with BBML2.
	k = boot(t, "bbml2-server", func(c *Config) { c.DebugPagealloc = true })
	if lin = linearLeaves(t, k); lin["PUD"] != 0 || lin["PMD"]+lin["contPTE"] != k.Image.InitStart {
		t.Errorf("debug_pagealloc: %v", lin)
	}
	// An early KFENCE pool is taken top-down from memblock and page mapped
	// inside a block-mapped linear map; kfence_init_pool then protects the
	// first two pages and every object's guard page, so only the 255 object
	// pages stay mapped.
	k = boot(t, "bbml2-server", func(c *Config) { c.KFENCE = KFENCEEarly })
	if lin = linearLeaves(t, k); lin["PTE"] != 255*4096 {
		t.Errorf("KFENCE early: %v", lin)
	}
	if end := k.Mem.Regions()[0].End(); k.kfencePool != [2]uint64{end - k.kfencePoolSize(), end} {
		t.Errorf("KFENCE early pool at %#x, want the top of RAM %#x", k.kfencePool, end)
	}
}

// The page-table memory difference between a PTE-mapped and a block-mapped
// 256 GiB linear map is one PTE page per 2 MiB: 131072 pages = 512 MiB
// ("about 500 MB more free memory" in the BBML2 series), plus the PMD tables
// a PUD-mapped map does not need.
func TestBoot256GiBPageTableMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("boots two 256 GiB machines")
	}
	big := func(c *Config) { c.RAM = []RAMRegion{{0x80000000, 256 << 30}} }
	pte := boot(t, "n1-server", big)
	blk := boot(t, "bbml2-server", big)
	ptePTE := pte.PT.TablePages(arm64.LevelPTE)
	blkPTE := blk.PT.TablePages(arm64.LevelPTE)
	// PTE tables: one per 2 MiB of RAM outside the block-mapped kernel alias.
	wantPTE := int((256<<30 - pte.Image.InitStart) >> 21)
	// Both also have the one PTE table of the kernel image's data segment.
	if ptePTE-blkPTE != wantPTE {
		t.Errorf("PTE tables: PTE-mapped %d, block-mapped %d, want %d", ptePTE, blkPTE, wantPTE)
	}
	diff := (pte.PT.TotalTablePages() - blk.PT.TotalTablePages()) * 4096
	if diff < 512<<20 || diff > 512<<20+1<<20 {
		t.Errorf("page-table memory difference %d MiB", diff>>20)
	}
	if got := blk.Mem.FreePages() - pte.Mem.FreePages(); got != uint64(pte.PT.TotalTablePages()-blk.PT.TotalTablePages()) {
		t.Errorf("MemFree difference %d pages", got)
	}
	t.Logf("PTE-mapped %d table pages, block-mapped %d: %d MiB more free memory", pte.PT.TotalTablePages(), blk.PT.TotalTablePages(), diff>>20)
}

// set_memory_ro of one page of a vmalloc area on a BBML2 system with a
// block-mapped linear map: change_memory_common updates the page's linear
// alias under rodata_full; split_kernel_leaf_mapping splits exactly the leaves
// straddling the page (PUD -> contPMD, the contPMD run loses CONT, PMD ->
// contPTE, the contPTE run loses CONT), then one PTE changes and one page is
// flushed from the alias, and the vmalloc page is flushed.
func TestSetMemoryROOnePageBBML2(t *testing.T) {
	k := boot(t, "bbml2-server", nil)
	c := &PlainCPU{}
	a, err := k.Vmalloc(c, 4096)
	if err != nil {
		t.Fatal(err)
	}
	alias := k.Lin(a.PagePA(0))
	if _, e, _ := k.PT.Translate(c, alias); e.Level == arm64.LastLevel {
		t.Skipf("alias %#x already PTE mapped", alias)
	}
	k.TLB.Record = true
	before := k.Stats.Split
	if err := k.SetMemoryRO(c, a.Addr, 1); err != nil {
		t.Fatal(err)
	}
	d := k.Stats.Split
	for l := arm64.MinLevel; l <= arm64.LastLevel; l++ {
		*d.Blocks.At(l) -= before.Blocks.Get(l)
		*d.ContRun.At(l) -= before.ContRun.Get(l)
	}
	_, e, _ := k.PT.Translate(c, alias)
	if e.Level != arm64.LastLevel || arm64.DescCont(e.Desc) || e.Desc&arm64.PTERdonly == 0 {
		t.Fatalf("alias leaf %s %#x", k.G.Name(e.Level), e.Desc)
	}
	// Which splits happen depends on the alias's alignment; all are around it.
	if d.Total() == 0 || d.Total() > 4 {
		t.Errorf("splits %+v", d)
	}
	// Neighbouring contPTE runs keep CONT when the page is inside a 2M block.
	next := (alias | (64<<10 - 1)) + 1
	if next&(2<<20-1) != 0 {
		if _, e, _ := k.PT.Translate(c, next); !arm64.DescCont(e.Desc) {
			t.Errorf("next run at %#x lost CONT", next)
		}
	}
	var flushedAlias, flushedVM bool
	for _, op := range k.TLB.Ops {
		if op.Start == alias && op.End == alias+4096 {
			flushedAlias = true
		}
		if op.Start == a.Addr && op.End == a.Addr+4096 {
			flushedVM = true
		}
	}
	if !flushedAlias || !flushedVM {
		t.Errorf("TLB ops %+v", k.TLB.Ops)
	}
	// A second page of the same 2M only splits the contPTE run it is in.
	before = k.Stats.Split
	b, _ := k.Vmalloc(c, 4096)
	if err := k.SetMemoryRO(c, b.Addr, 1); err != nil {
		t.Fatal(err)
	}
	if k.Stats.Split.Total()-before.Total() > 4 {
		t.Errorf("second page splits %+v", k.Stats.Split)
	}
}

// change_memory_common's -EINVAL cases.
func TestSetMemoryEINVAL(t *testing.T) {
	k := boot(t, "bbml2-server", nil)
	c := &PlainCPU{}
	huge, err := k.VmallocHuge(c, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.SetMemoryRO(c, huge.Addr, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("VM_ALLOW_HUGE_VMAP area: %v", err)
	}
	if err := k.SetMemoryRO(c, k.Layout.PageOffset, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("linear map address: %v", err)
	}
	a, _ := k.Vmalloc(c, 3*4096)
	if err := k.SetMemoryRO(c, a.Addr, 5); !errors.Is(err, ErrInvalid) {
		t.Errorf("past the area (guard page included): %v", err)
	}
	// The area check admits the guard page, but under rodata_full the alias
	// loop would read area->pages[3] of 3: the model refuses and warns.
	if err := k.SetMemoryRO(c, a.Addr, 4); !errors.Is(err, ErrInvalid) {
		t.Errorf("range covering the guard page: %v", err)
	}
	// With rodata=noalias there is no alias loop: the kernel accepts it.
	kn := boot(t, "bbml2-server", func(c *Config) { c.Rodata = RodataNoAlias })
	an, _ := kn.Vmalloc(c, 3*4096)
	if err := kn.SetMemoryRO(c, an.Addr, 4); err != nil {
		t.Errorf("noalias, range ending at the guard page: %v", err)
	}
	if err := k.SetMemoryRO(c, a.Addr, 0); err != nil {
		t.Errorf("numpages 0: %v", err)
	}
	// Without BBML2 and with a block-mapped linear map (rodata=noalias),
	// set_memory_valid on one page inside a block cannot split: -EINVAL, and
	// __change_memory_common still flushes.
	k = boot(t, "n1-server", func(c *Config) { c.Rodata = RodataNoAlias })
	k.TLB.Record = true
	lin := k.Layout.PageOffset + 1<<30 + 4096
	if err := k.SetMemoryValid(c, lin, 1, false); !errors.Is(err, ErrInvalid) {
		t.Errorf("partial block: %v", err)
	}
	if len(k.TLB.Ops) != 1 {
		t.Errorf("flush after failure: %+v", k.TLB.Ops)
	}
	if len(k.Stats.Warnings) == 0 {
		t.Error("the kernel WARNs")
	}
}

// A split that cannot allocate its PTE table fails with -ENOMEM and leaves
// the tables valid: set_memory_valid on a page inside a PUD block gets the
// one free page for the PUD split and fails the PMD split; every address
// still translates to the same place and the page keeps its permissions.
func TestSplitENOMEMLeavesTablesValid(t *testing.T) {
	k := boot(t, "bbml2-server", func(c *Config) { c.RAM = []RAMRegion{{0x80000000, 2 << 30}} })
	c := &PlainCPU{}
	lin := k.Layout.PageOffset + 1<<30 + 5*4096 // second GiB: one PUD block
	if _, e, _ := k.PT.Translate(c, lin); e.Level != 1 {
		t.Fatalf("expected a PUD block, level %d", e.Level)
	}
	for k.Mem.FreePages() > 1 {
		if _, err := k.Mem.Alloc(0, physmem.OwnerReserved); err != nil {
			t.Fatal(err)
		}
	}
	err := k.SetMemoryValid(c, lin, 1, false)
	if !errors.Is(err, ErrNoMem) {
		t.Fatalf("want -ENOMEM, got %v", err)
	}
	if k.Stats.Split.Blocks.Get(arm64.LevelPUD) != 1 || k.Stats.Split.Blocks.Get(arm64.LevelPMD) != 0 {
		t.Errorf("PUD split must have happened, PMD split not: %+v", k.Stats.Split)
	}
	for off := uint64(0); off < 2<<30; off += 4096 * 97 {
		pa, _, ok := k.PT.Translate(c, k.Layout.PageOffset+off)
		if !ok || pa != k.PhysOffset+off {
			t.Fatalf("+%#x: %#x %v", off, pa, ok)
		}
	}
	if _, e, ok := k.PT.Translate(c, lin); !ok || !arm64.DescValid(e.Desc) {
		t.Error("the page must still be valid after the failed split")
	}
}

// vfree of a VM_FLUSH_RESET_PERMS area (vm_reset_perms) makes the linear
// alias valid and writable again after set_memory_ro made it read-only.
func TestVfreeRestoresLinearAlias(t *testing.T) {
	for _, m := range []string{"n1-server", "bbml2-server"} {
		k := boot(t, m, nil)
		c := &PlainCPU{}
		a, err := k.VmallocNodeRange(c, VmallocRequest{Size: 5 * 4096, Flags: VMFlushResetPerms, Caller: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if err := k.SetMemoryRO(c, a.Addr, 5); err != nil {
			t.Fatal(err)
		}
		pas := []uint64{a.PagePA(0), a.PagePA(4)}
		for _, pa := range pas {
			if _, e, _ := k.PT.Translate(c, k.Lin(pa)); e.Desc&arm64.PTERdonly == 0 {
				t.Fatalf("%s: alias of %#x not read-only", m, pa)
			}
		}
		if err := k.Vfree(c, a.Addr); err != nil {
			t.Fatal(err)
		}
		for _, pa := range pas {
			_, e, ok := k.PT.Translate(c, k.Lin(pa))
			if !ok || e.Desc&arm64.PTERdonly != 0 || e.Desc&arm64.PTEWrite == 0 {
				t.Errorf("%s: alias of %#x after vfree: %#x", m, pa, e.Desc)
			}
		}
		if _, _, ok := k.PT.Translate(c, a.Addr); ok {
			t.Errorf("%s: area still mapped", m)
		}
	}
}

// __vmalloc_node_range with VM_ALLOW_HUGE_VMAP: PMD blocks when PMD-sized
// pages are available; small pages when physmem cannot supply them.
func TestVmallocHugeAndFallback(t *testing.T) {
	k := boot(t, "bbml2-server", func(c *Config) { c.RAM = []RAMRegion{{0x80000000, 1 << 30}} })
	c := &PlainCPU{}
	a, err := k.VmallocHuge(c, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	if a.PageOrder != 9 || a.Addr&(2<<20-1) != 0 {
		t.Fatalf("huge area order %d at %#x", a.PageOrder, a.Addr)
	}
	if _, e, _ := k.PT.Translate(c, a.Addr+3<<20); e.Level != 2 {
		t.Errorf("not PMD mapped: level %d", e.Level)
	}
	small, _ := k.VmallocHuge(c, 128<<10)
	if small.PageOrder != 4 {
		t.Errorf("128K huge area: order %d, want CONT_PTE order 4", small.PageOrder)
	}
	if _, e, _ := k.PT.Translate(c, small.Addr); !arm64.DescCont(e.Desc) {
		t.Errorf("128K huge area not contPTE mapped")
	}
	// Fragment memory: one reserved page in every free 2 MiB block.
	for pa := uint64(0x80000000); pa < 0x80000000+1<<30; pa += 2 << 20 {
		_ = k.Mem.Reserve(pa+4096, 4096, physmem.OwnerReserved)
	}
	if k.Mem.LargestFreeOrder() >= 9 {
		t.Fatalf("fragmentation failed: largest free order %d", k.Mem.LargestFreeOrder())
	}
	fb, err := k.VmallocHuge(c, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	if fb.PageOrder != 0 || k.VM.HugeFallbacks == 0 {
		t.Errorf("fallback: order %d fallbacks %d", fb.PageOrder, k.VM.HugeFallbacks)
	}
	if err := k.Vfree(c, a.Addr); err != nil {
		t.Fatal(err)
	}
}

// flush_tlb_kernel_range's choice of instruction.
func TestFlushTLBKernelRange(t *testing.T) {
	k := boot(t, "n1-server", nil)
	c := &PlainCPU{}
	va := k.Layout.VmallocStart
	k.TLB.Reset()
	k.FlushTLBKernelRange(c, va, va+511*4096)
	k.FlushTLBKernelRange(c, va, va+512*4096) // MAX_DVM_OPS pages: everything
	if k.TLB.Count[TLBIVAALE1IS] != 1 || k.TLB.Insns[TLBIVAALE1IS] != 511 || k.TLB.Count[TLBIVMALLE1IS] != 1 {
		t.Errorf("no range ops: %+v %+v", k.TLB.Count, k.TLB.Insns)
	}
	k.Cfg.TLBIRange = true
	cases := []struct{ pages, insns uint64 }{{1, 1}, {2, 1}, {3, 2}, {64, 1}, {65, 2}, {512, 1}, {2048, 1}, {2049, 2}}
	for _, cs := range cases {
		k.TLB.Reset()
		k.FlushTLBKernelRange(c, va, va+cs.pages*4096)
		if k.TLB.Insns[TLBIRVAALE1IS] != cs.insns {
			t.Errorf("%d pages: %d range instructions, want %d", cs.pages, k.TLB.Insns[TLBIRVAALE1IS], cs.insns)
		}
	}
	k.TLB.Reset()
	k.FlushTLBKernelRange(c, va, va+(maxTLBIRangePages+1)*4096)
	if k.TLB.Count[TLBIVMALLE1IS] != 1 {
		t.Error("more than MAX_TLBI_RANGE_PAGES flushes everything")
	}
}
