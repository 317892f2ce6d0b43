package arm64

import (
	"errors"
	"testing"

	"pgregory.net/rapid"
)

// Values from the kernel headers' definitions (PROT_NORMAL, PAGE_KERNEL_* in
// arch/arm64/include/asm/pgtable-prot.h over the bit positions of
// pgtable-hwdef.h), computed by hand, not from this package's expressions.
func TestProtValues(t *testing.T) {
	cases := []struct {
		name string
		got  uint64
		want uint64
	}{
		{"PAGE_KERNEL", PageKernel, 0x0068000000000703},
		{"PAGE_KERNEL_RO", PageKernelRO, 0x0060000000000783},
		{"PAGE_KERNEL_ROX", PageKernelROX, 0x0040000000000783},
		{"PAGE_KERNEL_EXEC", PageKernelExec, 0x0048000000000703},
		{"PAGE_KERNEL_EXEC_CONT", PageKernelExecCont, 0x0058000000000703},
		{"PROT_SECT_NORMAL", ProtSectNormal, 0x0068000000000701},
		{"pgprot_tagged(PAGE_KERNEL)", Tagged(PageKernel), 0x0068000000000707},
		{"PROT_DEVICE_nGnRE", ProtDeviceNGnRE, 0x0068000000000713},
		{"KPTI PAGE_KERNEL", Features{NG: true}.Prot(PageKernel), 0x0068000000000f03},
		{"LPA2 PAGE_KERNEL", Features{LPA2: true}.Prot(PageKernel), 0x0068000000000403},
		{"tagged block", Geometry4K48.MkLeaf(0, Tagged(PageKernel), LevelPMD), 0x0068000000000705},
		{"BRK #0x100", uint64(TrapInsn), 0xd4202000},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s = %#016x, want %#016x", c.name, c.got, c.want)
		}
	}
}

func TestGeometry(t *testing.T) {
	cases := []struct {
		shift            uint
		va               int
		lpa2             bool
		levels           int
		ptrsPerPGD       int
		pmdSize, pudSize uint64
		contPTE, contPMD uint64
		pudBlock         bool
		names            string
	}{
		{12, 48, false, 4, 512, 2 << 20, 1 << 30, 64 << 10, 32 << 20, true, "PGD PUD PMD PTE"},
		{12, 39, false, 3, 512, 2 << 20, 1 << 30, 64 << 10, 32 << 20, true, "PGD PMD PTE"},
		{12, 52, true, 5, 16, 2 << 20, 1 << 30, 64 << 10, 32 << 20, true, "PGD P4D PUD PMD PTE"},
		{14, 48, false, 4, 2, 32 << 20, 64 << 30, 2 << 20, 1 << 30, false, "PGD PUD PMD PTE"},
		{14, 47, false, 3, 2048, 32 << 20, 64 << 30, 2 << 20, 1 << 30, false, "PGD PMD PTE"},
		{16, 48, false, 3, 64, 512 << 20, 4 << 40, 2 << 20, 16 << 30, false, "PGD PMD PTE"},
		{16, 52, false, 3, 1024, 512 << 20, 4 << 40, 2 << 20, 16 << 30, false, "PGD PMD PTE"},
		{16, 42, false, 2, 8192, 512 << 20, 4 << 40, 2 << 20, 16 << 30, false, "PGD PTE"},
	}
	for _, c := range cases {
		g, err := NewGeometry(c.shift, c.va, c.lpa2)
		if err != nil {
			t.Fatalf("%d/%d: %v", c.shift, c.va, err)
		}
		if g.Levels != c.levels {
			t.Errorf("%v: levels %d want %d", g, g.Levels, c.levels)
		}
		if n := g.Entries(g.StartLevel); n != c.ptrsPerPGD {
			t.Errorf("%v: PTRS_PER_PGD %d want %d", g, n, c.ptrsPerPGD)
		}
		if g.Size(LevelPMD) != c.pmdSize || g.Size(LevelPUD) != c.pudSize {
			t.Errorf("%v: PMD %#x PUD %#x", g, g.Size(LevelPMD), g.Size(LevelPUD))
		}
		if g.ContSize(LevelPTE) != c.contPTE || g.ContSize(LevelPMD) != c.contPMD {
			t.Errorf("%v: CONT_PTE_SIZE %#x CONT_PMD_SIZE %#x", g, g.ContSize(LevelPTE), g.ContSize(LevelPMD))
		}
		if g.BlockAllowed(LevelPUD) != c.pudBlock {
			t.Errorf("%v: PUD blocks %v", g, g.BlockAllowed(LevelPUD))
		}
		names := ""
		for l := g.StartLevel; l <= LastLevel; l++ {
			if names != "" {
				names += " "
			}
			names += g.Name(l)
		}
		if names != c.names {
			t.Errorf("%v: level names %q want %q", g, names, c.names)
		}
		// The top level's entries times their size cover exactly the VA size.
		if uint64(g.Entries(g.StartLevel))*g.Size(g.StartLevel) != 1<<uint(c.va) {
			t.Errorf("%v: top level does not cover %d bits", g, c.va)
		}
	}
	for _, bad := range []struct {
		shift uint
		va    int
		lpa2  bool
	}{{13, 48, false}, {12, 52, false}, {16, 52, true}, {12, 60, true}} {
		if _, err := NewGeometry(bad.shift, bad.va, bad.lpa2); !errors.Is(err, ErrGeometry) {
			t.Errorf("NewGeometry(%d,%d,%v) err %v", bad.shift, bad.va, bad.lpa2, err)
		}
	}
}

func TestIndex(t *testing.T) {
	g := Geometry4K48
	va := uint64(0xffff_0000_4020_3000)
	// bits 47:39, 38:30, 29:21, 20:12
	want := []int{int(va >> 39 & 511), int(va >> 30 & 511), int(va >> 21 & 511), int(va >> 12 & 511)}
	for l := Level(0); l <= 3; l++ {
		if got := g.Index(va, l); got != want[l] {
			t.Errorf("level %d index %d want %d", l, got, want[l])
		}
	}
}

// Layout values computed by hand from arch/arm64/include/asm/memory.h
// (_PAGE_OFFSET, _PAGE_END, MODULES_VSIZE, VMEMMAP_*), pgtable.h (VMALLOC_END)
// and fixmap.h.
func TestLayout(t *testing.T) {
	l := KernelLayout(Geometry4K48, 0)
	check := func(name string, got, want uint64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %#x want %#x", name, got, want)
		}
	}
	check("PAGE_OFFSET", l.PageOffset, 0xffff000000000000)
	check("PAGE_END", l.PageEnd, 0xffff800000000000)
	check("MODULES_END", l.ModulesEnd, 0xffff800080000000)
	check("VMALLOC_END", l.VmallocEnd, 0xfffffdffbf800000)
	check("VMEMMAP_START", l.VmemmapStart, 0xfffffdffc0000000)
	check("VMEMMAP_END", l.VmemmapEnd, 0xffffffffc0000000)
	check("PCI_IO_START", l.PCIIOStart, 0xffffffffc0800000)
	check("PCI_IO_END", l.PCIIOEnd, 0xffffffffc1800000)
	check("FIXADDR_TOP", l.FixaddrTop, 0xffffffffff800000)
	l16 := KernelLayout(Geometry16K48, 0)
	check("16K VMALLOC_END", l16.VmallocEnd, 0xffffff7fbf800000)
	l64 := KernelLayout(Geometry64K48, 0)
	check("64K VMEMMAP_START", l64.VmemmapStart, 0xffffffdfc0000000)
	// A VA_BITS=52 kernel running with 48-bit VA keeps the 48-bit vmemmap start.
	l52on48 := KernelLayout(Geometry4K48, 52)
	check("52-on-48 vmemmap start", l52on48.VmemmapStart, 0xfffffdffc0000000)
	check("52-on-48 VMALLOC_END", l52on48.VmallocEnd, 0xfffffdffbf800000)
	l52 := KernelLayout(Geometry4K52, 52)
	check("52 PAGE_OFFSET", l52.PageOffset, 0xfff0000000000000)
	check("52 PAGE_END", l52.PageEnd, 0xffff800000000000)
	if !l.IsLinear(0xffff000040000000) || l.IsLinear(0xffff800000000000) {
		t.Error("IsLinear")
	}
}

func TestOutputAddressRoundTrip(t *testing.T) {
	geoms := []Geometry{Geometry4K48, Geometry4K52, Geometry16K48, Geometry64K48, MustGeometry(16, 52, false)}
	rapid.Check(t, func(t *rapid.T) {
		g := geoms[rapid.IntRange(0, len(geoms)-1).Draw(t, "g")]
		maxPA := uint64(48)
		if g.LPA2 || g.PageShift == PageShift64K {
			maxPA = 52
		}
		pa := rapid.Uint64Range(0, 1<<maxPA-1).Draw(t, "pa") &^ (g.PageSize() - 1)
		attrs := rapid.Uint64().Draw(t, "attrs") & g.AttrMask()
		d := g.AddressBits(pa) | attrs
		if got := g.OutputAddress(d); got != pa {
			t.Fatalf("%v: OA(%#x) = %#x want %#x", g, d, got, pa)
		}
		if d&g.AttrMask() != attrs {
			t.Fatalf("%v: attributes changed", g)
		}
	})
}

func TestLPA2Bits(t *testing.T) {
	// OA[51:50] live in bits 9:8 under LPA2.
	pa := uint64(3)<<50 | 0x40000000
	if d := Geometry4K52.AddressBits(pa); d != 0x300|0x40000000 {
		t.Errorf("LPA2 encoding %#x", d)
	}
	// OA[51:48] live in bits 15:12 with 64K.
	if d := Geometry64K48.AddressBits(uint64(0xf)<<48 | 0x10000); d != 0xf000|0x10000 {
		t.Errorf("64K encoding %#x", d)
	}
}

func TestPredicates(t *testing.T) {
	g := Geometry4K48
	pte := g.MkLeaf(0x40000000, PageKernel, LevelPTE)
	blk := g.MkLeaf(0x40000000, PageKernel, LevelPMD)
	tbl := g.MkTable(0x41000000, true)
	if !g.IsLeaf(pte, LevelPTE) || g.IsTable(pte, LevelPTE) {
		t.Error("PTE")
	}
	if !g.IsLeaf(blk, LevelPMD) || !g.IsSect(blk, LevelPMD) || g.IsTable(blk, LevelPMD) {
		t.Error("block")
	}
	if g.IsLeaf(tbl, LevelPMD) || !g.IsTable(tbl, LevelPMD) || tbl&TablePXN == 0 || tbl&TableUXN == 0 {
		t.Error("table")
	}
	inv := blk&^PTEValid | PTEPresentInvalid
	if !DescPresentInvalid(inv) || !g.IsLeaf(inv, LevelPMD) || g.IsSect(inv, LevelPMD) {
		t.Error("present-invalid block is a leaf but not a sect")
	}
	// split_pmd of a present-invalid block gives present-invalid pages.
	if p := g.PageProt(inv, LevelPMD); p&PTEValid != 0 || p&PTEPresentInvalid == 0 || p&2 == 0 {
		t.Errorf("PageProt of invalid block %#x", p)
	}
	if p := g.PageProt(blk, LevelPMD); p != PageKernel {
		t.Errorf("PageProt(block) = %#x", p)
	}
}

func TestPgattrChangeIsSafe(t *testing.T) {
	g := Geometry4K48
	pa := uint64(0x40000000)
	rw := g.MkLeaf(pa, PageKernel, LevelPTE)
	cases := []struct {
		name     string
		old, new uint64
		safe     bool
	}{
		{"create", 0, rw, true},
		{"remove", rw, 0, true},
		{"RW->RO", rw, g.MkLeaf(pa, PageKernelRO, LevelPTE), true},
		{"RW->ROX", rw, g.MkLeaf(pa, PageKernelROX, LevelPTE), true},
		{"tag change normal", rw, g.MkLeaf(pa, Tagged(PageKernel), LevelPTE), true},
		{"to device", rw, g.MkLeaf(pa, ProtDeviceNGnRE, LevelPTE), false},
		{"other pa", rw, g.MkLeaf(pa+4096, PageKernel, LevelPTE), false},
		{"cont", rw, rw | PTECont, false},
		{"ng->global", rw | PTENG, rw, false},
		{"global->ng", rw, rw | PTENG, true},
		{"uxn", rw, rw &^ PTEUXN, false},
	}
	for _, c := range cases {
		if got := g.PgattrChangeIsSafe(c.old, c.new); got != c.safe {
			t.Errorf("%s: safe=%v want %v", c.name, got, c.safe)
		}
	}
}

func TestBBML2(t *testing.T) {
	cases := []struct {
		m    MIDR
		want bool
	}{
		{MIDRNeoverseN1, false},
		{MIDRCortexA72, false},
		{MIDRNeoverseV3, true},
		{MakeMIDR(ImpArm, PartNeoverseV3, 3, 0), false}, // only variant 0 is listed
		{MIDRCortexX4, true},
		{MakeMIDR(ImpArm, PartCortexX4, 3, 15), false}, // r3p15: variant 3 is not listed
		{MIDRAmpere1, true},
		{MIDRAmpere1A, true},
		{MIDROlympus, true},
		{MakeMIDR(ImpNVIDIA, 0x004, 0, 0), false}, // Carmel
	}
	for _, c := range cases {
		if got := c.m.SupportsBBML2NoAbort(); got != c.want {
			t.Errorf("%v: %v want %v", c.m, got, c.want)
		}
	}
	if !SystemSupportsBBML2NoAbort([]MIDR{MIDRAmpere1, MIDRAmpere1}) || SystemSupportsBBML2NoAbort([]MIDR{MIDRAmpere1, MIDRNeoverseN1}) {
		t.Error("system cap must need every early CPU")
	}
	if m := MakeMIDR(ImpArm, PartNeoverseN1, 4, 1); uint32(m) != 0x414fd0c1 {
		t.Errorf("Neoverse N1 r4p1 MIDR %#x want 0x414fd0c1", uint32(m))
	}
}
