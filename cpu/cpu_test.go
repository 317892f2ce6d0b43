package cpu

import (
	"errors"
	"sync"
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/pgtable"
	"pgregory.net/rapid"
)

// bootMachine boots a small machine of n CPUs of one model under mainline.
func bootMachine(t testing.TB, name, model string, n int, mode Mode) (*kernel.Kernel, *Machine) {
	t.Helper()
	cfg, err := kernel.Machine(name)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RAM = []kernel.RAMRegion{{Base: cfg.RAM[0].Base, Size: 128 << 20}}
	cfg.CPUs = []kernel.CPUGroup{{Model: model, Count: n}}
	cfg.Policy, _ = kernel.Preset("mainline")
	k, err := kernel.Boot(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k, NewMachine(k, n, mode)
}

// A linear-map address in the middle of RAM, away from the kernel image.
func linearVA(k *kernel.Kernel) uint64 {
	r := k.Mem.Regions()[0]
	return k.Lin(r.Base + r.Size - 8<<20)
}

func TestTLBInvalidateKinds(t *testing.T) {
	g := arm64.MustGeometry(arm64.PageShift4K, 48, false)
	const x, y, z = 0xffff000000400000, 0xffff000000800000, 0xffff000000c00000
	fill := func() *TLB {
		tl := &TLB{}
		tl.fill(Entry{VA: x, Size: 4 << 10, PA: 0x1000}, true)
		tl.fill(Entry{VA: y, Size: 2 << 20, PA: 0x200000}, true)
		tl.fill(Entry{VA: z, Size: 64 << 10, PA: 0x400000}, true)
		for l := arm64.Level(0); l <= 2; l++ {
			tl.addWalk(WalkEntry{VA: x &^ (g.Size(l) - 1), Size: g.Size(l), Level: l, Table: 0x9000 + uint64(l)<<12})
		}
		return tl
	}
	cases := []struct {
		op            kernel.TLBIOp
		leaves, walks int
	}{
		{kernel.TLBIOp{Kind: kernel.TLBIVAALE1IS, Start: x, End: x + 4<<10}, 2, 3},             // last level: walk cache stays
		{kernel.TLBIOp{Kind: kernel.TLBIRVAALE1IS, Start: y + 8<<10, End: y + 12<<10}, 2, 3},   // a page inside the block drops it
		{kernel.TLBIOp{Kind: kernel.TLBIRVAALE1IS, Start: z + 64<<10, End: z + 128<<10}, 3, 3}, // just past the run
		{kernel.TLBIOp{Kind: kernel.TLBIVAAE1IS, Start: x, End: x + 4<<10}, 2, 0},              // all levels for x
		{kernel.TLBIOp{Kind: kernel.TLBIVAAE1IS, Start: y, End: y + 4<<10}, 2, 1},              // y shares the level-0/1 walks
		{kernel.TLBIOp{Kind: kernel.TLBIVMALLE1IS}, 0, 0},
	}
	for i, tc := range cases {
		tl := fill()
		tl.Invalidate(&g, tc.op)
		if l, w := tl.Len(); l != tc.leaves || w != tc.walks {
			t.Errorf("case %d (%v): %d leaves, %d walks left; want %d, %d", i, tc.op.Kind, l, w, tc.leaves, tc.walks)
		}
	}
}

// The TLB against a reference: after any sequence of fills and
// invalidations, the entries are exactly those filled and not removed by a
// later matching invalidation (capacity permitting), and lookups find them.
func TestPropertyTLBMatchesReference(t *testing.T) {
	g := arm64.MustGeometry(arm64.PageShift4K, 48, false)
	const base = 0xffff000000000000
	sizes := []uint64{4 << 10, 64 << 10, 2 << 20}
	rapid.Check(t, func(rt *rapid.T) {
		tl := &TLB{}
		var ref []Entry
		for i, n := 0, rapid.IntRange(1, 60).Draw(rt, "ops"); i < n; i++ {
			if rapid.Bool().Draw(rt, "fill") {
				sz := sizes[rapid.IntRange(0, 2).Draw(rt, "size")]
				va := base + uint64(rapid.IntRange(0, 15).Draw(rt, "slot"))*(2<<20) + uint64(rapid.IntRange(0, 7).Draw(rt, "off"))*sz
				va &^= sz - 1
				e := Entry{VA: va, Size: sz, PA: va - base}
				_, conflict := tl.fill(e, true)
				if conflict {
					rt.Fatalf("conflict reported with BBML2")
				}
				replaced := false
				for j := range ref {
					if ref[j].VA == va && ref[j].Size == sz {
						replaced = true
					}
				}
				if !replaced {
					if len(ref) == LeafCap {
						ref = ref[1:]
					}
					ref = append(ref, e)
				}
			} else {
				start := base + uint64(rapid.IntRange(0, 32*512).Draw(rt, "page"))<<12
				end := start + uint64(rapid.IntRange(1, 600).Draw(rt, "pages"))<<12
				kind := kernel.TLBIKind(rapid.IntRange(0, 3).Draw(rt, "kind"))
				tl.Invalidate(&g, kernel.TLBIOp{Kind: kind, Start: start, End: end})
				var kept []Entry
				for _, e := range ref {
					if kind != kernel.TLBIVMALLE1IS && !e.Overlaps(start, end) {
						kept = append(kept, e)
					}
				}
				ref = kept
			}
			var got []Entry
			tl.Leaves(func(e *Entry) { got = append(got, *e) })
			if len(got) != len(ref) {
				rt.Fatalf("TLB holds %d entries, reference %d", len(got), len(ref))
			}
			for j := range got {
				if got[j] != ref[j] {
					rt.Fatalf("entry %d: %+v, reference %+v", j, got[j], ref[j])
				}
				if e, hit, _ := tl.Lookup(got[j].VA + got[j].Size - 1); !hit || !e.Covers(got[j].VA+got[j].Size-1) {
					rt.Fatalf("lookup misses entry %+v", got[j])
				}
			}
		}
	})
}

func TestAccessFaults(t *testing.T) {
	k, m := bootMachine(t, "bbml2-server", "ampere1", 1, Cooperative)
	c := m.CPUs[0]
	lin := linearVA(k)
	if pa, err := c.Access(Read, lin); err != nil || pa != k.PA(lin) {
		t.Fatalf("read of the linear map: %#x, %v; want %#x", pa, err, k.PA(lin))
	}
	if _, err := c.Access(Write, lin+8); err != nil {
		t.Errorf("write to the linear map: %v", err)
	}
	if _, err := c.Access(Exec, lin); !errors.Is(err, ErrPermission) {
		t.Errorf("exec from the linear map (PXN): %v", err)
	}
	// Text starts at _stext: the image header [_text, _stext) is mapped NX.
	if _, err := c.Access(Exec, k.Image.VA+k.Image.Stext); err != nil {
		t.Errorf("exec of kernel text: %v", err)
	}
	if _, err := c.Access(Exec, k.Image.VA); !errors.Is(err, ErrPermission) {
		t.Errorf("exec of the image header: %v", err)
	}
	if _, err := c.Access(Write, k.Image.VA+k.Image.Stext); !errors.Is(err, ErrPermission) {
		t.Errorf("write to kernel text: %v", err)
	}
	if _, err := c.Access(Read, k.Layout.VmallocEnd-1<<20); !errors.Is(err, ErrTranslation) {
		t.Errorf("read of an unmapped address: %v", err)
	}
	// The linear map is block mapped: one entry covers the whole block.
	e, hit, _ := c.TLB.Lookup(lin)
	if !hit || e.Size < k.G.Size(arm64.LevelPMD) {
		t.Errorf("linear map TLB entry %+v (hit %v)", e, hit)
	}
	if _, w := c.TLB.Len(); w == 0 {
		t.Error("the walk filled no walk-cache entry")
	}
}

// A TLB keeps a translation the tables no longer have until a TLBI
// removes it: the architecture's worst case.
func TestStaleUntilTLBI(t *testing.T) {
	k, m := bootMachine(t, "bbml2-server", "ampere1", 2, Cooperative)
	c0, c1 := m.CPUs[0], m.CPUs[1]
	lin := linearVA(k)
	if _, err := c1.Access(Write, lin); err != nil {
		t.Fatal(err)
	}
	// set_direct_map_invalid_noflush: split and invalidate, no TLBI.
	if err := k.SetDirectMapInvalidNoflush(c0, k.PA(lin)); err != nil {
		t.Fatal(err)
	}
	if _, err := c0.Access(Read, lin); !errors.Is(err, ErrTranslation) {
		t.Errorf("CPU0 (cold TLB) reads an invalid page: %v", err)
	}
	if _, err := c1.Access(Write, lin); err != nil {
		t.Errorf("CPU1's stale entry must still translate: %v", err)
	}
	k.FlushTLBKernelRange(c0, lin, lin+k.G.PageSize())
	if _, err := c1.Access(Write, lin); !errors.Is(err, ErrTranslation) {
		t.Errorf("after the broadcast TLBI: %v", err)
	}
}

// Without BBML2_NOABORT two overlapping entries of different sizes are a
// TLB conflict abort; with it they are tolerated.
func TestTLBConflictWithoutBBML2(t *testing.T) {
	for _, bbml2 := range []bool{false, true} {
		k, m := bootMachine(t, "n1-server", "neoverse-n1", 1, Cooperative)
		c := m.CPUs[0]
		c.BBML2 = bbml2
		lin := linearVA(k) + 64<<10 // page mapped: rodata=full without BBML2
		if _, err := c.Access(Read, lin); err != nil {
			t.Fatal(err)
		}
		if e, _, _ := c.TLB.Lookup(lin); e.Size != k.G.PageSize() {
			t.Fatalf("expected a page entry, got %#x bytes", e.Size)
		}
		// Fold the PTE table into a block without break-before-make, and
		// drop the walk cache (not the page entry) so the next walk sees it.
		block := lin &^ (k.G.Size(arm64.LevelPMD) - 1)
		tpa, ok, err := k.PT.FoldTable(pgtable.Atomic{}, block, arm64.LevelPMD)
		if err != nil || !ok {
			t.Fatalf("fold: %v %v", ok, err)
		}
		c.TLBI(kernel.TLBIOp{Kind: kernel.TLBIVAAE1IS, Start: block, End: block + k.G.PageSize()})
		_, err = c.Access(Read, block+k.G.Size(arm64.LevelPMD)/2)
		if bbml2 && err != nil {
			t.Errorf("BBML2_NOABORT: %v", err)
		}
		if !bbml2 && !errors.Is(err, ErrTLBConflict) {
			t.Errorf("no BBML2_NOABORT: want a TLB conflict, got %v", err)
		}
		_ = k.PT.FreeTable(pgtable.Atomic{}, tpa)
	}
}

// A walk cache entry keeps pointing to a table until TLBI VAAE1IS: a walk
// that starts from it after the table was freed reads freed memory.
func TestWalkCacheStaleTable(t *testing.T) {
	k, m := bootMachine(t, "n1-server", "neoverse-n1", 1, Cooperative)
	c := m.CPUs[0]
	lin := linearVA(k)
	if _, err := c.Access(Read, lin); err != nil {
		t.Fatal(err)
	}
	tpa, ok, err := k.PT.UnhookTable(pgtable.Atomic{}, lin, arm64.LevelPMD)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := k.PT.FreeTable(pgtable.Atomic{}, tpa); err != nil {
		t.Fatal(err)
	}
	other := lin + 4*k.G.PageSize()
	if _, err := c.Access(Read, other); !errors.Is(err, ErrStaleWalk) {
		t.Errorf("walk from a stale walk-cache entry: %v", err)
	}
	c.TLBI(kernel.TLBIOp{Kind: kernel.TLBIVAAE1IS, Start: lin, End: lin + k.G.PageSize()})
	if _, err := c.Access(Read, other); !errors.Is(err, ErrTranslation) {
		t.Errorf("after TLBI VAAE1IS the walk sees the empty PMD: %v", err)
	}
}

type recorder struct{ kinds []EventKind }

func (r *recorder) Before(_ *CPU, ev *Event) { r.kinds = append(r.kinds, ev.Kind) }
func (r *recorder) After(*CPU, *Event)       {}

// The path follows a software walk from the root and ends at sync calls.
func TestPathFollowsWalk(t *testing.T) {
	k, m := bootMachine(t, "n1-server", "neoverse-n1", 1, Cooperative)
	c := m.CPUs[0]
	rec := &recorder{}
	c.Hook = rec
	lin := linearVA(k)
	e, err := k.PT.Lookup(c, lin)
	if err != nil || e.Level != arm64.LastLevel {
		t.Fatal(e, err)
	}
	pte := e.DescPA &^ (k.G.PageSize() - 1)
	if l, ok := c.Path.Contains(pte); !ok || l != arm64.LastLevel {
		t.Errorf("path does not hold the PTE table: %v %v", l, ok)
	}
	if !c.Path.Chain(k.G.StartLevel, arm64.LastLevel) {
		t.Error("path not linked from the root")
	}
	va, ok := c.Path.VA(&k.G, arm64.LastLevel, k.G.Index(lin, arm64.LastLevel))
	if !ok || va != lin&^(k.G.PageSize()-1) {
		t.Errorf("path VA %#x, want %#x", va, lin)
	}
	for _, kd := range rec.kinds {
		if kd != EvLoad {
			t.Errorf("unexpected event %v", kd)
		}
	}
	c.Lock(k.SplitLock)
	c.Unlock(k.SplitLock)
	if _, ok := c.Path.Contains(pte); ok {
		t.Error("a lock call ends the walk")
	}
}

// Cooperative enabledness: a held lock, a writer, readers, a walk in flight.
func TestEnabled(t *testing.T) {
	k, m := bootMachine(t, "bbml2-server", "ampere1", 2, Cooperative)
	c0, c1 := m.CPUs[0], m.CPUs[1]
	lock := &Event{Kind: EvLock, Mutex: k.SplitLock}
	if !c0.Enabled(lock) {
		t.Error("free mutex")
	}
	k.SplitLock.TryAcquire(1)
	if c0.Enabled(lock) {
		t.Error("held mutex")
	}
	k.SplitLock.Release()
	rd, wr := &Event{Kind: EvDownRead, Sem: k.InitMM}, &Event{Kind: EvDownWrite, Sem: k.InitMM}
	k.InitMM.TryDownRead()
	if !c0.Enabled(rd) || c0.Enabled(wr) {
		t.Error("with a reader: readers go, writers wait")
	}
	k.InitMM.ReleaseRead()
	k.InitMM.TryDownWrite(1)
	if c0.Enabled(rd) || c0.Enabled(wr) {
		t.Error("with a writer nobody goes")
	}
	k.InitMM.ReleaseWrite()
	tlbi := &Event{Kind: EvTLBI}
	c1.walking.Store(true)
	if c0.Enabled(tlbi) {
		t.Error("a TLBI waits for another CPU's walk")
	}
	c1.walking.Store(false)
	if !c0.Enabled(tlbi) {
		t.Error("no walk in flight")
	}
}

// Real mode: CPUs as goroutines accessing, changing permissions and
// invalidating at once (run under -race).
func TestRealModeConcurrent(t *testing.T) {
	k, m := bootMachine(t, "bbml2-server", "ampere1", 4, Real)
	lin := linearVA(k)
	var wg sync.WaitGroup
	for _, c := range m.CPUs {
		wg.Add(1)
		go func(c *CPU) {
			defer wg.Done()
			page := lin + uint64(c.ID())*k.G.PageSize()
			for i := 0; i < 50; i++ {
				_, _ = c.Access(Write, page)
				if err := k.SetDirectMapInvalidNoflush(c, k.PA(page)); err != nil {
					t.Error(err)
					return
				}
				k.FlushTLBKernelRange(c, page, page+k.G.PageSize())
				if _, err := c.Access(Read, page); !errors.Is(err, ErrTranslation) {
					t.Errorf("cpu%d: invalid page still readable: %v", c.ID(), err)
					return
				}
				if err := k.SetDirectMapDefaultNoflush(c, k.PA(page)); err != nil {
					t.Error(err)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	if _, err := m.CPUs[0].Access(Write, lin); err != nil {
		t.Error(err)
	}
}

func BenchmarkAccessTLBHit(b *testing.B) {
	k, m := bootMachine(b, "bbml2-server", "ampere1", 1, Cooperative)
	c := m.CPUs[0]
	lin := linearVA(k)
	_, _ = c.Access(Read, lin)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, _ = c.Access(Read, lin)
	}
}

func BenchmarkAccessWalk(b *testing.B) {
	k, m := bootMachine(b, "n1-server", "neoverse-n1", 1, Cooperative)
	c := m.CPUs[0]
	lin := linearVA(k)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.TLB.Invalidate(&k.G, kernel.TLBIOp{Kind: kernel.TLBIVAALE1IS, Start: lin, End: lin + 4096})
		_, _ = c.Access(Read, lin)
	}
}
