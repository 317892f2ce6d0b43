package bench

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
	"gvisor.dev/gvisor/pkg/cpuid"
	"gvisor.dev/gvisor/pkg/hostarch"
	gv "gvisor.dev/gvisor/pkg/ring0/pagetables"
)

// The peers build the same radix shape: 4 levels of 512-entry tables, 4K
// pages, 2M blocks at the third level. ptlab maps arm64 TTBR1 addresses (the
// vmalloc area); gVisor, built for amd64 here, maps user-half addresses as its
// own tests do. Both get the same offsets within 1 GiB-aligned windows, so
// every round touches the same number of tables on each side.
const (
	pageSize  = 4 << 10
	blockSize = 2 << 20
	nPages    = 4096 // 4K pages per round: 16 MiB, 8 PTE tables under one PMD table
	// 2M blocks per round: half a PMD table. Clearing a whole table's worth
	// of blocks makes gVisor free the table, so the next round would map
	// into a fresh one; with half, both peers keep their PMD table.
	nBlocks = 256

	ramBase = 0x40000000 // QEMU virt
	ramSize = 64 << 30

	ptVA = 0xffff800080000000 // VMALLOC_START with 4K pages and 48-bit VA
	ptPA = ramBase + 1<<30
	gvVA = 0x400000000000 // x86-64 user half, 4-level
	gvPA = ptPA

	flags4K = pgtable.NoBlockMappings | pgtable.NoContMappings // force page entries
)

var (
	door   = pgtable.Direct{WalkCache: true}
	gvRW   = gv.MapOpts{AccessType: hostarch.ReadWrite, Global: true}
	gvRO   = gv.MapOpts{AccessType: hostarch.Read, Global: true}
	gvNone = gv.MapOpts{} // Map without access clears the entries and keeps the tables

	// Sinks keep lookups from being optimised away.
	sinkPA uint64
	sinkOK bool
	sinkGV uintptr
)

func TestMain(m *testing.M) {
	cpuid.Initialize() // gVisor's InitArch reads the host feature set
	gv.DisableLA57()   // 4 levels on both sides, whatever the host CPU
	os.Exit(m.Run())
}

// peerCase is one operation on one peer, with its state built.
type peerCase struct {
	op    func(n int) error // the measured work on units 0..n-1 (n <= the op's round)
	reset func()            // restores the starting state between rounds; nil if none is needed
	check func() error      // verifies the state after op(round) from the starting state
}

// peerOp is one operation measured on both peers.
type peerOp struct {
	name  string
	round int // units per round: 4K pages, or 2M blocks for Map2M
	// zeroAlloc marks ops on existing tables for which ptlab must not
	// allocate (the goal); TestPeerOps enforces it.
	zeroAlloc     bool
	ptlab, gvisor func(testing.TB) peerCase
}

// peerOps are the benchmarked operations. The unit of ns/op and allocs/op is
// one 4K page, except Map2M whose unit is one 2M block.
var peerOps = []peerOp{
	// Map4K: one call per 4K page into tables that exist with empty entries
	// (the state after ptlab's Unmap, and after gVisor's Map with no access).
	{name: "Map4K", round: nPages, zeroAlloc: true, ptlab: ptMap4K, gvisor: gvMap4K},
	// Map4KFresh: one call per 4K page into an empty tree built outside the
	// timer each round, so the 8 PTE tables, the PMD and the PUD table are
	// allocated inside the measured operation.
	{name: "Map4KFresh", round: nPages, ptlab: ptMap4KFresh, gvisor: gvMap4KFresh},
	// Remap4K: one call per 4K page over an identical live mapping.
	{name: "Remap4K", round: nPages, zeroAlloc: true, ptlab: ptRemap4K, gvisor: gvRemap4K},
	// Map2M: one call per 2M block into an existing PMD table with empty
	// entries (ptlab: Unmap; gVisor: Map with no access, outside the timer).
	{name: "Map2M", round: nBlocks, zeroAlloc: true, ptlab: ptMap2M, gvisor: gvMap2M},
	// Lookup: translate one VA in a mapped 4K page.
	{name: "Lookup", round: nPages, zeroAlloc: true, ptlab: ptLookup, gvisor: gvLookup},
	// Protect: one call over the range, read-write to read-only and back on
	// alternate rounds (ptlab Protect; gVisor has no protect call and changes
	// permissions by mapping the range again with new MapOpts).
	{name: "Protect", round: nPages, zeroAlloc: true, ptlab: ptProtect, gvisor: gvProtect},
	// Unmap: one call over the whole mapped range. ptlab keeps the table
	// pages (vunmap_range); gVisor frees every table that becomes empty (8
	// PTE tables, the PMD and the PUD table). The range is mapped again
	// outside the timer.
	{name: "Unmap", round: nPages, ptlab: ptUnmap, gvisor: gvUnmap},
	// UnmapPage: one call per 4K page, same states as Unmap.
	{name: "UnmapPage", round: nPages, ptlab: ptUnmapPage, gvisor: gvUnmapPage},
}

// rounds runs op over b.N units in rounds of at most per units and calls
// reset with the timer stopped between rounds.
func rounds(b *testing.B, per int, c peerCase) {
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(per, b.N-done)
		if err := c.op(n); err != nil {
			b.Fatal(err)
		}
		done += n
		if done < b.N && c.reset != nil {
			b.StopTimer()
			c.reset()
			b.StartTimer()
		}
	}
}

// BenchmarkPeer measures each operation on ptlab and on gVisor in the same
// run: BenchmarkPeer/<op>/impl=ptlab and BenchmarkPeer/<op>/impl=gvisor.
// The key=value form lets `benchstat -col /impl` put the peers side by side.
func BenchmarkPeer(b *testing.B) {
	for _, o := range peerOps {
		b.Run(o.name, func(b *testing.B) {
			b.Run("impl=ptlab", func(b *testing.B) { rounds(b, o.round, o.ptlab(b)) })
			b.Run("impl=gvisor", func(b *testing.B) { rounds(b, o.round, o.gvisor(b)) })
		})
	}
}

// TestPeerOps runs one full round of every case on both peers, checks the
// resulting tables (so the benchmarks measure real work), and counts the heap
// allocations of a round (exactly, unlike allocs/op, which is rounded down
// per unit). ptlab must not allocate on the ops on existing tables.
func TestPeerOps(t *testing.T) {
	for _, o := range peerOps {
		for _, impl := range []struct {
			name string
			mk   func(testing.TB) peerCase
		}{{"ptlab", o.ptlab}, {"gvisor", o.gvisor}} {
			t.Run(o.name+"/"+impl.name, func(t *testing.T) {
				c := impl.mk(t)
				if err := c.op(o.round); err != nil {
					t.Fatal(err)
				}
				if err := c.check(); err != nil {
					t.Fatal(err)
				}
				// Allocations by the code under test recur every round; anything
				// else the runtime does meanwhile does not, so take the minimum.
				allocs := uint64(math.MaxUint64)
				for range 3 {
					if c.reset != nil {
						c.reset()
					}
					a, err := roundAllocs(c, o.round)
					if err != nil {
						t.Fatal(err)
					}
					allocs = min(allocs, a)
				}
				t.Logf("%s %s: %d allocations per round of %d units", o.name, impl.name, allocs, o.round)
				if impl.name == "ptlab" && o.zeroAlloc && allocs != 0 {
					t.Errorf("ptlab %s allocates %d times per round of %d units, want 0", o.name, allocs, o.round)
				}
				if err := c.check(); err != nil {
					t.Fatalf("after the measured round: %v", err)
				}
			})
		}
	}
}

// roundAllocs counts the heap allocations of one round of c.
func roundAllocs(c peerCase, n int) (uint64, error) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := c.op(n)
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs, err
}

// ---- ptlab ----

func newPtlab(tb testing.TB) *pgtable.Tables {
	tb.Helper()
	mem, err := physmem.New(arm64.PageShift4K, []physmem.Region{{Base: ramBase, Size: ramSize}})
	if err != nil {
		tb.Fatal(err)
	}
	t, err := pgtable.New(arm64.Geometry4K48, mem)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func ptMapPages(t *pgtable.Tables, n int) error {
	for i := range uint64(n) {
		if err := t.Map(door, ptVA+i*pageSize, ptPA+i*pageSize, pageSize, arm64.PageKernel, flags4K); err != nil {
			return err
		}
	}
	return nil
}

func ptMust(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// ptCheck verifies that the n units of size sz at ptVA map to ptPA with the
// given leaf level and writability, or are unmapped when !mapped.
func ptCheck(t *pgtable.Tables, n int, sz uint64, mapped bool, level arm64.Level, ro bool) error {
	for i := range uint64(n) {
		va := ptVA + i*sz + sz/2
		pa, leaf, ok := t.Translate(door, va)
		if !mapped {
			if ok {
				return fmt.Errorf("ptlab: va %#x still maps %#x", va, pa)
			}
			continue
		}
		if !ok || pa != ptPA+i*sz+sz/2 || leaf.Level != level {
			return fmt.Errorf("ptlab: va %#x -> %#x level %d ok=%v, want %#x level %d", va, pa, leaf.Level, ok, ptPA+i*sz+sz/2, level)
		}
		if gotRO := leaf.Desc&arm64.PTERdonly != 0 && leaf.Desc&arm64.PTEWrite == 0; gotRO != ro {
			return fmt.Errorf("ptlab: va %#x desc %#016x read-only=%v, want %v", va, leaf.Desc, gotRO, ro)
		}
	}
	return nil
}

func ptMap4K(tb testing.TB) peerCase {
	t := newPtlab(tb)
	ptMust(tb, ptMapPages(t, nPages))
	unmap := func() { ptMust(tb, t.Unmap(door, ptVA, ptVA+nPages*pageSize)) }
	unmap()
	return peerCase{
		op:    func(n int) error { return ptMapPages(t, n) },
		reset: unmap,
		check: func() error { return ptCheck(t, nPages, pageSize, true, 3, false) },
	}
}

func ptMap4KFresh(tb testing.TB) peerCase {
	t := newPtlab(tb)
	return peerCase{
		op:    func(n int) error { return ptMapPages(t, n) },
		reset: func() { t = newPtlab(tb) },
		check: func() error { return ptCheck(t, nPages, pageSize, true, 3, false) },
	}
}

func ptRemap4K(tb testing.TB) peerCase {
	t := newPtlab(tb)
	ptMust(tb, ptMapPages(t, nPages))
	return peerCase{
		op:    func(n int) error { return ptMapPages(t, n) },
		check: func() error { return ptCheck(t, nPages, pageSize, true, 3, false) },
	}
}

func ptMap2M(tb testing.TB) peerCase {
	t := newPtlab(tb)
	mapBlocks := func(n int) error {
		for i := range uint64(n) {
			if err := t.Map(door, ptVA+i*blockSize, ptPA+i*blockSize, blockSize, arm64.PageKernel, 0); err != nil {
				return err
			}
		}
		return nil
	}
	ptMust(tb, mapBlocks(nBlocks))
	unmap := func() { ptMust(tb, t.Unmap(door, ptVA, ptVA+nBlocks*blockSize)) }
	unmap()
	return peerCase{
		op:    mapBlocks,
		reset: unmap,
		check: func() error { return ptCheck(t, nBlocks, blockSize, true, 2, false) },
	}
}

func ptLookup(tb testing.TB) peerCase {
	t := newPtlab(tb)
	ptMust(tb, ptMapPages(t, nPages))
	return peerCase{
		op: func(n int) error {
			for i := range uint64(n) {
				pa, _, ok := t.Translate(door, ptVA+i*pageSize)
				sinkPA += pa
				sinkOK = sinkOK != ok
			}
			return nil
		},
		check: func() error { return ptCheck(t, nPages, pageSize, true, 3, false) },
	}
}

func ptProtect(tb testing.TB) peerCase {
	t := newPtlab(tb)
	ptMust(tb, ptMapPages(t, nPages))
	ro := false
	return peerCase{
		op: func(n int) error {
			ro = !ro
			if ro {
				return t.Protect(door, ptVA, ptVA+uint64(n)*pageSize, arm64.PTERdonly, arm64.PTEWrite)
			}
			return t.Protect(door, ptVA, ptVA+uint64(n)*pageSize, arm64.PTEWrite, arm64.PTERdonly)
		},
		check: func() error { return ptCheck(t, nPages, pageSize, true, 3, ro) },
	}
}

func ptUnmap(tb testing.TB) peerCase {
	t := newPtlab(tb)
	ptMust(tb, ptMapPages(t, nPages))
	return peerCase{
		op:    func(n int) error { return t.Unmap(door, ptVA, ptVA+uint64(n)*pageSize) },
		reset: func() { ptMust(tb, t.Map(door, ptVA, ptPA, nPages*pageSize, arm64.PageKernel, flags4K)) },
		check: func() error { return ptCheck(t, nPages, pageSize, false, 3, false) },
	}
}

func ptUnmapPage(tb testing.TB) peerCase {
	t := newPtlab(tb)
	ptMust(tb, ptMapPages(t, nPages))
	return peerCase{
		op: func(n int) error {
			for i := range uint64(n) {
				va := ptVA + i*pageSize
				if err := t.Unmap(door, va, va+pageSize); err != nil {
					return err
				}
			}
			return nil
		},
		reset: func() { ptMust(tb, t.Map(door, ptVA, ptPA, nPages*pageSize, arm64.PageKernel, flags4K)) },
		check: func() error { return ptCheck(t, nPages, pageSize, false, 3, false) },
	}
}

// ---- gVisor ----

type gvTables struct {
	alloc *gv.RuntimeAllocator
	pt    *gv.PageTables
}

func newGvisor() *gvTables {
	a := gv.NewRuntimeAllocator()
	return &gvTables{alloc: a, pt: gv.New(a)}
}

func (g *gvTables) mapPages(n int) {
	for i := range uintptr(n) {
		g.pt.Map(hostarch.Addr(gvVA+i*pageSize), pageSize, gvRW, gvPA+i*pageSize)
	}
}

// check verifies that the n units of size sz at gvVA map to gvPA with size
// sz and the given writability, or are unmapped when !mapped.
func (g *gvTables) check(n int, sz uintptr, mapped, ro bool) error {
	for i := range uintptr(n) {
		va := gvVA + i*sz
		_, pa, size, opts := g.pt.Lookup(hostarch.Addr(va), false)
		if !mapped {
			if size != 0 {
				return fmt.Errorf("gvisor: va %#x still maps %#x", va, pa)
			}
			continue
		}
		if pa != gvPA+i*sz || size != sz {
			return fmt.Errorf("gvisor: va %#x -> %#x size %#x, want %#x size %#x", va, pa, size, gvPA+i*sz, sz)
		}
		if opts.AccessType.Write == ro || !opts.AccessType.Read {
			return fmt.Errorf("gvisor: va %#x access %v, want read-only=%v", va, opts.AccessType, ro)
		}
	}
	return nil
}

func gvMap4K(testing.TB) peerCase {
	g := newGvisor()
	g.mapPages(nPages)
	clear := func() { g.pt.Map(gvVA, nPages*pageSize, gvNone, gvPA) }
	clear()
	return peerCase{
		op:    func(n int) error { g.mapPages(n); return nil },
		reset: clear,
		check: func() error { return g.check(nPages, pageSize, true, false) },
	}
}

func gvMap4KFresh(testing.TB) peerCase {
	g := newGvisor()
	return peerCase{
		op:    func(n int) error { g.mapPages(n); return nil },
		reset: func() { g = newGvisor() },
		check: func() error { return g.check(nPages, pageSize, true, false) },
	}
}

func gvRemap4K(testing.TB) peerCase {
	g := newGvisor()
	g.mapPages(nPages)
	return peerCase{
		op:    func(n int) error { g.mapPages(n); return nil },
		check: func() error { return g.check(nPages, pageSize, true, false) },
	}
}

func gvMap2M(testing.TB) peerCase {
	g := newGvisor()
	mapBlocks := func(n int) error {
		for i := range uintptr(n) {
			g.pt.Map(hostarch.Addr(gvVA+i*blockSize), blockSize, gvRW, gvPA+i*blockSize)
		}
		return nil
	}
	mapBlocks(nBlocks)
	clear := func() { g.pt.Map(gvVA, nBlocks*blockSize, gvNone, gvPA) }
	clear()
	return peerCase{
		op:    mapBlocks,
		reset: clear,
		check: func() error { return g.check(nBlocks, blockSize, true, false) },
	}
}

func gvLookup(testing.TB) peerCase {
	g := newGvisor()
	g.mapPages(nPages)
	return peerCase{
		op: func(n int) error {
			for i := range uintptr(n) {
				_, pa, size, _ := g.pt.Lookup(hostarch.Addr(gvVA+i*pageSize), false)
				sinkGV += pa + size
			}
			return nil
		},
		check: func() error { return g.check(nPages, pageSize, true, false) },
	}
}

func gvProtect(testing.TB) peerCase {
	g := newGvisor()
	g.mapPages(nPages)
	ro := false
	return peerCase{
		op: func(n int) error {
			ro = !ro
			opts := gvRW
			if ro {
				opts = gvRO
			}
			g.pt.Map(gvVA, uintptr(n)*pageSize, opts, gvPA)
			return nil
		},
		check: func() error { return g.check(nPages, pageSize, true, ro) },
	}
}

func gvUnmap(testing.TB) peerCase {
	g := newGvisor()
	g.mapPages(nPages)
	return peerCase{
		op: func(n int) error { g.pt.Unmap(gvVA, uintptr(n)*pageSize); return nil },
		reset: func() {
			g.alloc.Recycle()  // make the freed tables reusable, as gVisor's users do after a flush
			g.mapPages(nPages) // page by page: a range Map would use 2M super pages
		},
		check: func() error { return g.check(nPages, pageSize, false, false) },
	}
}

func gvUnmapPage(testing.TB) peerCase {
	g := newGvisor()
	g.mapPages(nPages)
	return peerCase{
		op: func(n int) error {
			for i := range uintptr(n) {
				g.pt.Unmap(hostarch.Addr(gvVA+i*pageSize), pageSize)
			}
			return nil
		},
		reset: func() {
			g.alloc.Recycle()
			g.mapPages(nPages)
		},
		check: func() error { return g.check(nPages, pageSize, false, false) },
	}
}
