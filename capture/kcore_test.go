package capture

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"pgregory.net/rapid"
)

func mustKcore(t testing.TB, fk *fakeKernel) *Kcore {
	t.Helper()
	k, err := NewKcore(fk.core())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// mustMachine opens the fake kernel's kcore and detects its machine from
// its kallsyms, as ptlab capture does.
func mustMachine(t testing.TB, fk *fakeKernel) (*Kcore, *Machine) {
	t.Helper()
	k := mustKcore(t, fk)
	syms, err := ReadKallsyms(strings.NewReader(fk.kallsyms()), KernelSymbols)
	if err != nil {
		t.Fatal(err)
	}
	m, err := DetectMachine(k, syms, MachineHints{})
	if err != nil {
		t.Fatal(err)
	}
	return k, m
}

func TestKcoreSegmentsNotesAndReads(t *testing.T) {
	fk, err := newFakeKernel(12, 48, 48)
	if err != nil {
		t.Fatal(err)
	}
	if err := fk.mapLeaf(0xffff000000200000, 0x40000000, 2, arm64.PageKernel); err != nil {
		t.Fatal(err)
	}
	k := mustKcore(t, fk)

	if len(k.Segments) != 3 {
		t.Fatalf("segments: %+v", k.Segments)
	}
	for i := 1; i < len(k.Segments); i++ {
		if k.Segments[i].VAddr <= k.Segments[i-1].VAddr {
			t.Errorf("segments not sorted by VAddr: %+v", k.Segments)
		}
	}
	var names []string
	for _, n := range k.Notes {
		names = append(names, n.Name)
	}
	if got := strings.Join(names, ","); got != "CORE,VMCOREINFO" {
		t.Errorf("notes %q", got)
	}
	if k.VMCoreInfo == nil {
		t.Fatal("no VMCOREINFO")
	}
	if v, ok, err := k.VMCoreInfo.Number("PAGE_BUDDY_MAPCOUNT_VALUE"); err != nil || !ok || int64(v) != -268435456 {
		t.Errorf("negative NUMBER: %d %v %v", int64(v), ok, err)
	}
	if v, ok, err := k.VMCoreInfo.Symbol("swapper_pg_dir"); err != nil || !ok || v != fk.swapperVA {
		t.Errorf("SYMBOL(swapper_pg_dir) = %#x %v %v, want %#x", v, ok, err, fk.swapperVA)
	}
	if k.VMCoreInfo.OSRelease() != "6.12.0-test" {
		t.Errorf("OSRELEASE %q", k.VMCoreInfo.OSRelease())
	}

	want := fk.page(fk.swapperPA())
	got := make([]byte, len(want))
	if err := k.ReadVA(fk.swapperVA, got); err != nil || !bytes.Equal(got, want) {
		t.Errorf("ReadVA(swapper_pg_dir): %v, equal %v", err, bytes.Equal(got, want))
	}
	clear(got)
	if err := k.ReadPA(fk.swapperPA(), got); err != nil || !bytes.Equal(got, want) {
		t.Errorf("ReadPA(swapper_pg_dir): %v, equal %v", err, bytes.Equal(got, want))
	}
	clear(got)
	if err := k.ReadVA(fk.linearVA(fk.swapperPA()), got); err != nil || !bytes.Equal(got, want) {
		t.Errorf("ReadVA(linear alias of swapper_pg_dir): %v", err)
	}
	if binary.LittleEndian.Uint64(want) == 0 && binary.LittleEndian.Uint64(want[8*256:]) == 0 {
		t.Errorf("swapper_pg_dir holds no entry for the linear map")
	}

	// Unmapped and straddling reads.
	linEnd := fk.linearVA(fk.ramStart + fk.ramSize)
	for _, va := range []uint64{0x1000, linEnd - 4, linEnd, fk.layout.VmallocEnd - 4, fk.layout.VmallocStart - 8} {
		if err := k.ReadVA(va, make([]byte, 8)); !errors.Is(err, ErrNotMapped) {
			t.Errorf("ReadVA(%#x) = %v, want ErrNotMapped", va, err)
		}
	}
	for _, pa := range []uint64{0, fk.ramStart + fk.ramSize, fk.ramStart - 4} {
		if err := k.ReadPA(pa, make([]byte, 8)); !errors.Is(err, ErrNotMapped) {
			t.Errorf("ReadPA(%#x) = %v, want ErrNotMapped", pa, err)
		}
	}
	// The image overlaps the vmalloc segment: a read crossing its end is
	// served by vmalloc (zeros here); inside it, by the image.
	if err := k.ReadVA(fk.kimageVA+fk.kimageSize-4, make([]byte, 8)); err != nil {
		t.Errorf("read across the image end: %v", err)
	}
	// Vmalloc space reads as zeros, like kcore's unmapped vmalloc pages.
	z := []byte{1, 2, 3}
	if err := k.ReadVA(0xffff800080001000, z); err != nil || !bytes.Equal(z, []byte{0, 0, 0}) {
		t.Errorf("vmalloc read %v %v", z, err)
	}
}

func TestNewKcoreRejects(t *testing.T) {
	fk, err := newFakeKernel(12, 48, 48)
	if err != nil {
		t.Fatal(err)
	}
	good := fk.core()
	hdr := good.chunks[0].data
	mutate := func(f func(b []byte)) *sparseCore {
		c := *good
		c.chunks = append([]chunk(nil), good.chunks...)
		b := append([]byte(nil), hdr...)
		f(b)
		c.chunks[0] = chunk{0, b}
		return &c
	}
	cases := map[string]*sparseCore{
		"not ELF":   mutate(func(b []byte) { b[0] = 0 }),
		"ELF32":     mutate(func(b []byte) { b[4] = 1 }),
		"ET_EXEC":   mutate(func(b []byte) { b[16] = 2 }),
		"bad note":  mutate(func(b []byte) { binary.LittleEndian.PutUint32(b[64+56*4:], 1<<20) }), // namesz of the first note
		"huge note": mutate(func(b []byte) { binary.LittleEndian.PutUint64(b[64+32:], 1<<30) }),   // PT_NOTE filesz
		"wrapping segment": mutate(func(b []byte) { // first PT_LOAD's filesz wraps its vaddr
			binary.LittleEndian.PutUint64(b[64+56+32:], ^uint64(0)-1<<40)
		}),
		"bad vmcoreinfo": coreWithNotes([]Note{{Name: "VMCOREINFO", Desc: []byte("PAGESIZE=4096\nno equals sign\n")}}),
	}
	for name, c := range cases {
		if _, err := NewKcore(c); !errors.Is(err, ErrKcore) && !errors.Is(err, ErrVMCoreInfo) {
			t.Errorf("%s: err = %v, want ErrKcore or ErrVMCoreInfo", name, err)
		}
	}
}

func coreWithNotes(notes []Note) *sparseCore {
	return coreFile([]*fakeSeg{{Segment{VAddr: 0xffff000000000000, PAddr: 0, Size: 1 << 20, Offset: 1 << 20}, nil}}, notes, binary.LittleEndian, 4)
}

func TestParseNotesPadding(t *testing.T) {
	// Names and descriptors of lengths 1..9 exercise every 4-byte padding.
	var notes []Note
	for i := 1; i < 10; i++ {
		notes = append(notes, Note{Name: strings.Repeat("N", i), Type: uint32(i), Desc: bytes.Repeat([]byte{byte(i)}, i)})
	}
	k, err := NewKcore(coreWithNotes(notes))
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Notes) != len(notes) {
		t.Fatalf("%d notes, want %d", len(k.Notes), len(notes))
	}
	for i, n := range k.Notes {
		if n.Name != notes[i].Name || n.Type != notes[i].Type || !bytes.Equal(n.Desc, notes[i].Desc) {
			t.Errorf("note %d = %+v, want %+v", i, n, notes[i])
		}
	}
	if k.VMCoreInfo != nil {
		t.Errorf("VMCOREINFO without the note")
	}
}

// geometryCase is a kernel build (VA_BITS) on a CPU (vabits_actual) and what
// the hardware walk must look like, computed by hand from the architecture.
type geometryCase struct {
	pageShift          uint
	vaConfig, vaActual int
	levels             int
	rootEntries        int
	lpa2               bool
	rootOffset         uint64 // bytes from swapper_pg_dir to TTBR1's base
}

var geometryCases = []geometryCase{
	{12, 48, 48, 4, 512, false, 0},
	{12, 39, 39, 3, 512, false, 0},
	{12, 52, 52, 5, 16, true, 0},
	{12, 52, 48, 4, 512, false, 0}, // 5 levels folded to 4 (Debian 6.12 on cortex-a72)
	{14, 48, 48, 4, 2, false, 0},
	{14, 47, 47, 3, 2048, false, 0},
	{14, 52, 52, 4, 32, true, 0},
	{14, 52, 47, 3, 2048, false, 0}, // 4 levels folded to 3
	{16, 48, 48, 3, 64, false, 0},
	{16, 42, 42, 2, 8192, false, 0},
	{16, 52, 52, 3, 1024, false, 0},
	{16, 52, 48, 3, 64, false, (1024 - 64) * 8}, // TTBR1_BADDR_4852_OFFSET
}

func (c geometryCase) String() string {
	return fmt.Sprintf("%dK/VA_BITS=%d/vabits_actual=%d", 1<<(c.pageShift-10), c.vaConfig, c.vaActual)
}

func TestDetectMachineGeometries(t *testing.T) {
	for _, c := range geometryCases {
		t.Run(c.String(), func(t *testing.T) {
			fk, err := newFakeKernel(c.pageShift, c.vaConfig, c.vaActual)
			if err != nil {
				t.Fatal(err)
			}
			_, m := mustMachine(t, fk)
			g := m.Geometry
			if g.PageShift != c.pageShift || g.VABits != c.vaActual || g.Levels != c.levels || g.LPA2 != c.lpa2 ||
				g.Entries(g.StartLevel) != c.rootEntries {
				t.Errorf("geometry %v (root entries %d), want %d levels, %d root entries, LPA2 %v",
					g, g.Entries(g.StartLevel), c.levels, c.rootEntries, c.lpa2)
			}
			if m.ConfigVABits != c.vaConfig {
				t.Errorf("ConfigVABits %d", m.ConfigVABits)
			}
			if m.SwapperPgDir != fk.swapperVA || m.SwapperPA != fk.swapperPA() || m.RootPA != fk.swapperPA()+c.rootOffset {
				t.Errorf("swapper %#x PA %#x root %#x; want %#x, %#x, %#x", m.SwapperPgDir, m.SwapperPA, m.RootPA,
					fk.swapperVA, fk.swapperPA(), fk.swapperPA()+c.rootOffset)
			}
			if m.PhysToVirt(fk.ramStart) != fk.linearVA(fk.ramStart) || m.VirtToPhys(fk.linearVA(fk.ramStart)) != fk.ramStart {
				t.Errorf("linear map: PhysToVirt(%#x) = %#x, want %#x", fk.ramStart, m.PhysToVirt(fk.ramStart), fk.linearVA(fk.ramStart))
			}
			if m.Layout.PageOffset != -(uint64(1) << uint(c.vaActual)) {
				t.Errorf("Layout.PageOffset %#x", m.Layout.PageOffset)
			}
		})
	}
}

// translate is a test-only hardware walk from TTBR1's base: it follows table
// descriptors from the start level and stops at the first leaf or invalid
// entry.
func translate(src *TableSource, g arm64.Geometry, root, va uint64) (pa uint64, level arm64.Level, ok bool, err error) {
	tpa := root
	for l := g.StartLevel; ; l++ {
		t, err := src.Table(tpa)
		if err != nil {
			return 0, l, false, err
		}
		i := g.Index(va, l)
		if i >= len(t) {
			return 0, l, false, fmt.Errorf("index %d beyond a %d-entry table at level %d", i, len(t), l)
		}
		d := t[i]
		if !arm64.DescValid(d) {
			return 0, l, false, nil
		}
		if !g.IsTable(d, l) {
			return g.OutputAddress(d) + va&(g.Size(l)-1), l, true, nil
		}
		tpa = g.OutputAddress(d)
	}
}

// TestTableSourceWalksWhatTheKernelBuilt: for random leaves placed the way
// the kernel indexes its tables, a hardware walk from Machine.RootPA through
// TableSource finds each leaf's output address (including 52-bit ones) and
// nothing where nothing was mapped.
func TestTableSourceWalksWhatTheKernelBuilt(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		c := geometryCases[rapid.IntRange(0, len(geometryCases)-1).Draw(rt, "geometry")]
		fk, err := newFakeKernel(c.pageShift, c.vaConfig, c.vaActual)
		if err != nil {
			rt.Fatal(err)
		}
		fk.linearOffset = rapid.Bool().Draw(rt, "linearSegmentHasPAddr")
		if rapid.Bool().Draw(rt, "bigEndian") {
			fk.bo = binary.BigEndian
		}
		g := fk.hw
		paBits := 48
		if c.vaActual > 48 {
			paBits = 52
		}
		type leaf struct {
			va, pa uint64
			l      arm64.Level
		}
		var leaves []leaf
		n := rapid.IntRange(1, 12).Draw(rt, "n")
		for i := 0; i < n; i++ {
			levels := []arm64.Level{arm64.LastLevel}
			for l := g.StartLevel + 1; l < arm64.LastLevel; l++ {
				if g.BlockAllowed(l) {
					levels = append(levels, l)
				}
			}
			l := levels[rapid.IntRange(0, len(levels)-1).Draw(rt, "level")]
			size := g.Size(l)
			span := uint64(1) << uint(c.vaActual)
			va := -span + rapid.Uint64Range(0, span/size-1).Draw(rt, "vaSlot")*size
			pa := rapid.Uint64Range(0, (uint64(1)<<uint(paBits))/size-1).Draw(rt, "paSlot") * size
			if err := fk.mapLeaf(va, pa, l, arm64.PageKernel); err != nil {
				continue // overlaps an earlier leaf or its tables
			}
			leaves = append(leaves, leaf{va, pa, l})
		}
		k, err := NewKcore(fk.core())
		if err != nil {
			rt.Fatal(err)
		}
		m, err := DetectMachine(k, Symbols{}, MachineHints{})
		if err != nil {
			rt.Fatal(err)
		}
		src := NewTableSource(k, m)
		for _, lf := range leaves {
			off := rapid.Uint64Range(0, g.Size(lf.l)-1).Draw(rt, "offset") &^ 7
			pa, l, ok, err := translate(src, m.Geometry, m.RootPA, lf.va+off)
			if err != nil || !ok || pa != lf.pa+off || l != lf.l {
				rt.Fatalf("%v: va %#x: got pa %#x level %d ok %v err %v; want pa %#x level %d",
					c, lf.va+off, pa, l, ok, err, lf.pa+off, lf.l)
			}
		}
		// The lowest TTBR1 address is never mapped here unless drawn.
		probe := -(uint64(1) << uint(c.vaActual))
		if _, _, ok, err := translate(src, m.Geometry, m.RootPA, probe); err != nil {
			rt.Fatal(err)
		} else if ok {
			found := false
			for _, lf := range leaves {
				found = found || (probe >= lf.va && probe-lf.va < g.Size(lf.l))
			}
			if !found {
				rt.Fatalf("%v: %#x translates but was never mapped", c, probe)
			}
		}
	})
}

func TestDetectMachineFallbacksAndErrors(t *testing.T) {
	build := func(t *testing.T, va int, omit []string, extra string) (*fakeKernel, *Kcore) {
		fk, err := newFakeKernel(12, va, va)
		if err != nil {
			t.Fatal(err)
		}
		fk.omitVMCORE, fk.extraVMCORE = omit, extra
		return fk, mustKcore(t, fk)
	}
	t.Run("kimage_voffset from the text segment", func(t *testing.T) {
		fk, k := build(t, 48, []string{"NUMBER(kimage_voffset)"}, "")
		m, err := DetectMachine(k, nil, MachineHints{})
		if err != nil || m.SwapperPA != fk.swapperPA() || m.KimageVoffset != fk.kimageVA-fk.kimagePA {
			t.Fatalf("%v %+v", err, m)
		}
	})
	t.Run("48-bit without T1SZ", func(t *testing.T) {
		_, k := build(t, 48, []string{"NUMBER(TCR_EL1_T1SZ)"}, "")
		m, err := DetectMachine(k, nil, MachineHints{})
		if err != nil || m.Geometry.VABits != 48 {
			t.Fatalf("%v %+v", err, m)
		}
	})
	t.Run("52-bit without T1SZ", func(t *testing.T) {
		_, k := build(t, 52, []string{"NUMBER(TCR_EL1_T1SZ)"}, "")
		if _, err := DetectMachine(k, nil, MachineHints{}); !errors.Is(err, ErrMachine) {
			t.Fatalf("err %v, want ErrMachine", err)
		}
	})
	t.Run("vabits_actual variable", func(t *testing.T) {
		fk, k := build(t, 52, []string{"NUMBER(TCR_EL1_T1SZ)"}, "")
		// Put the variable in the image, past swapper_pg_dir.
		va := fk.swapperVA + 2*fk.pageSize()
		fk.store(va-fk.kimageVA+fk.kimagePA, 52)
		k = mustKcore(t, fk)
		m, err := DetectMachine(k, Symbols{"vabits_actual": va}, MachineHints{})
		if err != nil || m.Geometry.VABits != 52 || !m.Geometry.LPA2 {
			t.Fatalf("%v %+v", err, m)
		}
	})
	t.Run("no PAGESIZE uses the hint", func(t *testing.T) {
		_, k := build(t, 48, []string{"PAGESIZE"}, "")
		if _, err := DetectMachine(k, nil, MachineHints{}); !errors.Is(err, ErrMachine) {
			t.Fatalf("err %v, want ErrMachine", err)
		}
		m, err := DetectMachine(k, nil, MachineHints{PageSize: 4096})
		if err != nil || m.Geometry.PageShift != 12 {
			t.Fatalf("%v", err)
		}
	})
	t.Run("kallsyms disagrees", func(t *testing.T) {
		fk, k := build(t, 48, nil, "")
		if _, err := DetectMachine(k, Symbols{"swapper_pg_dir": fk.swapperVA + 4096}, MachineHints{}); !errors.Is(err, ErrMachine) {
			t.Fatalf("err %v, want ErrMachine", err)
		}
	})
	t.Run("no swapper_pg_dir", func(t *testing.T) {
		_, k := build(t, 48, []string{"SYMBOL(swapper_pg_dir)"}, "")
		if _, err := DetectMachine(k, nil, MachineHints{}); !errors.Is(err, ErrNoSymbol) {
			t.Fatalf("err %v, want ErrNoSymbol", err)
		}
	})
	t.Run("swapper_pg_dir from kallsyms only", func(t *testing.T) {
		fk, k := build(t, 48, []string{"SYMBOL(swapper_pg_dir)"}, "")
		m, err := DetectMachine(k, Symbols{"swapper_pg_dir": fk.swapperVA}, MachineHints{})
		if err != nil || m.SwapperPgDir != fk.swapperVA {
			t.Fatalf("%v", err)
		}
	})
	t.Run("no PHYS_OFFSET", func(t *testing.T) {
		_, k := build(t, 48, []string{"NUMBER(PHYS_OFFSET)"}, "")
		if _, err := DetectMachine(k, nil, MachineHints{}); !errors.Is(err, ErrMachine) {
			t.Fatalf("err %v, want ErrMachine", err)
		}
	})
	t.Run("bad T1SZ", func(t *testing.T) {
		_, k := build(t, 48, []string{"NUMBER(TCR_EL1_T1SZ)"}, "NUMBER(TCR_EL1_T1SZ)=0x2\n")
		if _, err := DetectMachine(k, nil, MachineHints{}); !errors.Is(err, ErrMachine) {
			t.Fatalf("err %v, want ErrMachine", err)
		}
	})
	t.Run("unparsable number", func(t *testing.T) {
		_, k := build(t, 48, []string{"NUMBER(PHYS_OFFSET)"}, "NUMBER(PHYS_OFFSET)=0xzz\n")
		if _, err := DetectMachine(k, nil, MachineHints{}); !errors.Is(err, ErrVMCoreInfo) {
			t.Fatalf("err %v, want ErrVMCoreInfo", err)
		}
	})
	t.Run("x86 kcore", func(t *testing.T) {
		_, k := build(t, 48, nil, "")
		k.Machine = elf.EM_X86_64
		if _, err := DetectMachine(k, nil, MachineHints{}); !errors.Is(err, ErrMachine) {
			t.Fatalf("err %v, want ErrMachine", err)
		}
	})
	t.Run("8K page size", func(t *testing.T) {
		_, k := build(t, 48, []string{"PAGESIZE"}, "PAGESIZE=8192\n")
		if _, err := DetectMachine(k, nil, MachineHints{}); !errors.Is(err, ErrMachine) {
			t.Fatalf("err %v, want ErrMachine for an 8K page", err)
		}
	})
}
