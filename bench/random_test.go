package bench

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"gvisor.dev/gvisor/pkg/hostarch"
)

// Random-order and uncached variants. ptlab keeps a one-entry-per-level walk
// cache for single-threaded doors, which address-order runs hit 511 times in
// 512; gVisor walks from the root every time. Visiting the same units in a
// fixed pseudo-random order defeats the cache at the last level (8 PTE
// tables share one PMD table), and the uncached door defeats it entirely.

// pagePerm and blockPerm are fixed permutations of the units of a round.
var (
	pagePerm  = perm(nPages)
	blockPerm = perm(nBlocks)
)

func perm(n int) []uint64 {
	r := rand.New(rand.NewPCG(1, 2))
	p := make([]uint64, n)
	for i, j := range r.Perm(n) {
		p[i] = uint64(j)
	}
	return p
}

// unit returns the i-th unit of a round in order (nil: address order).
func unit(order []uint64, i uint64) uint64 {
	if order == nil {
		return i
	}
	return order[i]
}

func init() {
	peerOps = append(peerOps,
		peerOp{name: "Map4KRand", round: nPages, zeroAlloc: true,
			ptlab: ptMap4KOrder(pagePerm, cached), gvisor: gvMap4KOrder(pagePerm)},
		peerOp{name: "Remap4KRand", round: nPages, zeroAlloc: true,
			ptlab: ptRemap4KOrder(pagePerm, cached), gvisor: gvRemap4KOrder(pagePerm)},
		peerOp{name: "Map2MRand", round: nBlocks, zeroAlloc: true,
			ptlab: ptMap2MOrder(blockPerm), gvisor: gvMap2MOrder(blockPerm)},
		peerOp{name: "LookupRand", round: nPages, zeroAlloc: true,
			ptlab: ptLookupOrder(pagePerm, cached), gvisor: gvLookupOrder(pagePerm)},
		// LookupUncached: random order through a door without the walk
		// cache (every walk from the root, as gVisor's).
		peerOp{name: "LookupUncached", round: nPages, zeroAlloc: true,
			ptlab: ptLookupOrder(pagePerm, uncached), gvisor: gvLookupOrder(pagePerm)},
		peerOp{name: "Map4KUncached", round: nPages, zeroAlloc: true,
			ptlab: ptMap4KOrder(pagePerm, uncached), gvisor: gvMap4KOrder(pagePerm)},
		// ProtectPage: one protect call per 4K page (ptlab Protect; gVisor
		// Map with new MapOpts), in address order and in random order.
		peerOp{name: "ProtectPage", round: nPages, zeroAlloc: true,
			ptlab: ptProtectPageOrder(nil), gvisor: gvProtectPageOrder(nil)},
		peerOp{name: "ProtectPageRand", round: nPages, zeroAlloc: true,
			ptlab: ptProtectPageOrder(pagePerm), gvisor: gvProtectPageOrder(pagePerm)},
		peerOp{name: "UnmapPageRand", round: nPages,
			ptlab: ptUnmapPageOrder(pagePerm), gvisor: gvUnmapPageOrder(pagePerm)},
	)
}

// ---- ptlab ----

func ptMapPagesOrder(t *pgtable.Tables, d pgtable.Door, order []uint64, n int) error {
	for i := range uint64(n) {
		u := unit(order, i) * pageSize
		if err := t.Map(d, ptVA+u, ptPA+u, pageSize, arm64.PageKernel, flags4K); err != nil {
			return err
		}
	}
	return nil
}

func ptMap4KOrder(order []uint64, d pgtable.Door) func(testing.TB) peerCase {
	return func(tb testing.TB) peerCase {
		t := newPtlab(tb)
		ptMust(tb, ptMapPages(t, nPages))
		unmap := func() { ptMust(tb, t.Unmap(door, ptVA, ptVA+nPages*pageSize)) }
		unmap()
		return peerCase{
			op:    func(n int) error { return ptMapPagesOrder(t, d, order, n) },
			reset: unmap,
			check: func() error { return ptCheck(t, nPages, pageSize, true, 3, false) },
		}
	}
}

func ptRemap4KOrder(order []uint64, d pgtable.Door) func(testing.TB) peerCase {
	return func(tb testing.TB) peerCase {
		t := newPtlab(tb)
		ptMust(tb, ptMapPages(t, nPages))
		return peerCase{
			op:    func(n int) error { return ptMapPagesOrder(t, d, order, n) },
			check: func() error { return ptCheck(t, nPages, pageSize, true, 3, false) },
		}
	}
}

func ptMap2MOrder(order []uint64) func(testing.TB) peerCase {
	return func(tb testing.TB) peerCase {
		t := newPtlab(tb)
		mapBlocks := func(n int) error {
			for i := range uint64(n) {
				u := unit(order, i) * blockSize
				if err := t.Map(door, ptVA+u, ptPA+u, blockSize, arm64.PageKernel, 0); err != nil {
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
}

func ptLookupOrder(order []uint64, d pgtable.Door) func(testing.TB) peerCase {
	return func(tb testing.TB) peerCase {
		t := newPtlab(tb)
		ptMust(tb, ptMapPages(t, nPages))
		return peerCase{
			op: func(n int) error {
				for i := range uint64(n) {
					pa, _, ok := t.Translate(d, ptVA+unit(order, i)*pageSize)
					sinkPA += pa
					sinkOK = sinkOK != ok
				}
				return nil
			},
			check: func() error { return ptCheck(t, nPages, pageSize, true, 3, false) },
		}
	}
}

func ptProtectPageOrder(order []uint64) func(testing.TB) peerCase {
	return func(tb testing.TB) peerCase {
		t := newPtlab(tb)
		ptMust(tb, ptMapPages(t, nPages))
		ro := false
		return peerCase{
			op: func(n int) error {
				ro = !ro
				set, clr := arm64.PTEWrite, arm64.PTERdonly
				if ro {
					set, clr = clr, set
				}
				for i := range uint64(n) {
					va := ptVA + unit(order, i)*pageSize
					if err := t.Protect(door, va, va+pageSize, set, clr); err != nil {
						return err
					}
				}
				return nil
			},
			check: func() error { return ptCheck(t, nPages, pageSize, true, 3, ro) },
		}
	}
}

func ptUnmapPageOrder(order []uint64) func(testing.TB) peerCase {
	return func(tb testing.TB) peerCase {
		t := newPtlab(tb)
		ptMust(tb, ptMapPages(t, nPages))
		return peerCase{
			op: func(n int) error {
				for i := range uint64(n) {
					va := ptVA + unit(order, i)*pageSize
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
}

// ---- gVisor ----

func (g *gvTables) mapPagesOrder(order []uint64, n int) {
	for i := range uint64(n) {
		u := uintptr(unit(order, i)) * pageSize
		g.pt.Map(hostarch.Addr(gvVA+u), pageSize, gvRW, gvPA+u)
	}
}

func gvMap4KOrder(order []uint64) func(testing.TB) peerCase {
	return func(testing.TB) peerCase {
		g := newGvisor()
		g.mapPages(nPages)
		clear := func() { g.pt.Map(gvVA, nPages*pageSize, gvNone, gvPA) }
		clear()
		return peerCase{
			op:    func(n int) error { g.mapPagesOrder(order, n); return nil },
			reset: clear,
			check: func() error { return g.check(nPages, pageSize, true, false) },
		}
	}
}

func gvRemap4KOrder(order []uint64) func(testing.TB) peerCase {
	return func(testing.TB) peerCase {
		g := newGvisor()
		g.mapPages(nPages)
		return peerCase{
			op:    func(n int) error { g.mapPagesOrder(order, n); return nil },
			check: func() error { return g.check(nPages, pageSize, true, false) },
		}
	}
}

func gvMap2MOrder(order []uint64) func(testing.TB) peerCase {
	return func(testing.TB) peerCase {
		g := newGvisor()
		mapBlocks := func(n int) error {
			for i := range uint64(n) {
				u := uintptr(unit(order, i)) * blockSize
				g.pt.Map(hostarch.Addr(gvVA+u), blockSize, gvRW, gvPA+u)
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
}

func gvLookupOrder(order []uint64) func(testing.TB) peerCase {
	return func(testing.TB) peerCase {
		g := newGvisor()
		g.mapPages(nPages)
		return peerCase{
			op: func(n int) error {
				for i := range uint64(n) {
					_, pa, size, _ := g.pt.Lookup(hostarch.Addr(gvVA+uintptr(unit(order, i))*pageSize), false)
					sinkGV += pa + size
				}
				return nil
			},
			check: func() error { return g.check(nPages, pageSize, true, false) },
		}
	}
}

func gvProtectPageOrder(order []uint64) func(testing.TB) peerCase {
	return func(testing.TB) peerCase {
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
				for i := range uint64(n) {
					u := uintptr(unit(order, i)) * pageSize
					g.pt.Map(hostarch.Addr(gvVA+u), pageSize, opts, gvPA+u)
				}
				return nil
			},
			check: func() error { return g.check(nPages, pageSize, true, ro) },
		}
	}
}

func gvUnmapPageOrder(order []uint64) func(testing.TB) peerCase {
	return func(testing.TB) peerCase {
		g := newGvisor()
		g.mapPages(nPages)
		return peerCase{
			op: func(n int) error {
				for i := range uint64(n) {
					g.pt.Unmap(hostarch.Addr(gvVA+uintptr(unit(order, i))*pageSize), pageSize)
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
}

// ---- the floor ----

// floorTables is the least a 4-level radix walk can be in Go: 512-entry
// tables in one slice, each descriptor holding the next table's index,
// the walk unrolled, no checks beyond the slice bounds.
type floorTables struct{ t [][512]uint64 }

func newFloor() *floorTables {
	f := &floorTables{t: make([][512]uint64, 4, 4+nPages/512)}
	va := uint64(ptVA)
	// Root -> PUD table 1 -> PMD table 2 -> PTE tables 3, 4, ...
	f.t[0][va>>39&511] = 1<<12 | 3
	f.t[1][va>>30&511] = 2<<12 | 3
	for i := uint64(0); i < nPages; i++ {
		v := va + i*pageSize
		pmd := &f.t[2][v>>21&511]
		if *pmd == 0 {
			f.t = append(f.t, [512]uint64{})
			*pmd = uint64(len(f.t)-1)<<12 | 3
		}
		f.t[*pmd>>12][v>>12&511] = (ptPA+i*pageSize)&^0xfff | 3
	}
	return f
}

// translate is the unrolled walk: four dependent loads.
func (f *floorTables) translate(va uint64) (uint64, bool) {
	d := f.t[0][va>>39&511]
	d = f.t[d>>12&0xfffffff][va>>30&511]
	d = f.t[d>>12&0xfffffff][va>>21&511]
	d = f.t[d>>12&0xfffffff][va>>12&511]
	return d&^0xfff | va&0xfff, d&1 != 0
}

// BenchmarkFloor is the minimal unrolled 4-level walk over the same pages in
// the same random order as LookupRand: the floor for an uncached Lookup.
// Lookup4Level is the floor alone; Pair alternates it round by round with
// ptlab's LookupUncached (as BenchmarkPair does with the peers) and reports
// both and their ratio (ptlab/floor, the goal being <= 3).
func BenchmarkFloor(b *testing.B) {
	f := newFloor()
	for i := range uint64(nPages) {
		if pa, ok := f.translate(ptVA + i*pageSize); !ok || pa != ptPA+i*pageSize {
			b.Fatalf("floor: va %#x -> %#x %v", ptVA+i*pageSize, pa, ok)
		}
	}
	floor := func(n int) {
		for j := range n {
			pa, ok := f.translate(ptVA + pagePerm[j]*pageSize)
			sinkPA += pa
			sinkOK = sinkOK != ok
		}
	}
	b.Run("Lookup4Level", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; {
			for j := 0; j < nPages && i < b.N; j, i = j+1, i+1 {
				pa, ok := f.translate(ptVA + pagePerm[j]*pageSize)
				sinkPA += pa
				sinkOK = sinkOK != ok
			}
		}
	})
	b.Run("Pair", func(b *testing.B) {
		pt := ptLookupOrder(pagePerm, uncached)(b)
		var tPt, tFl time.Duration
		b.ReportAllocs()
		b.ResetTimer()
		for done, round := 0, 0; done < b.N; round++ {
			n := min(nPages, b.N-done)
			for k := range 2 {
				t0 := time.Now()
				if (round+k)%2 == 0 {
					if err := pt.op(n); err != nil {
						b.Fatal(err)
					}
					tPt += time.Since(t0)
				} else {
					floor(n)
					tFl += time.Since(t0)
				}
			}
			done += n
		}
		b.ReportMetric(float64(tPt.Nanoseconds())/float64(b.N), "ptlab-ns/op")
		b.ReportMetric(float64(tFl.Nanoseconds())/float64(b.N), "floor-ns/op")
		b.ReportMetric(float64(tPt)/float64(tFl), "ptlab/floor")
	})
}
