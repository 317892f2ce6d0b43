package pgtable_test

import (
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
)

// Benchmarks of ptlab alone. The side-by-side comparison with gVisor's page
// tables lives in the separate module under bench/.

const (
	benchRAMBase uint64 = 0x40000000         // QEMU virt
	benchLinear  uint64 = 0xffff000000000000 // PAGE_OFFSET with 4K pages, 48-bit VA
	benchVmalloc uint64 = 0xffff800080000000 // VMALLOC_START with 4K pages, 48-bit VA
	benchPage    uint64 = 4 << 10
	benchPMD     uint64 = 2 << 20
	benchPUD     uint64 = 1 << 30
)

var benchDoor = pgtable.Direct{WalkCache: true}

func benchTables(b *testing.B, ram uint64) *pgtable.Tables {
	b.Helper()
	mem, err := physmem.New(arm64.PageShift4K, []physmem.Region{{Base: benchRAMBase, Size: ram}})
	if err != nil {
		b.Fatal(err)
	}
	t, err := pgtable.New(arm64.Geometry4K48, mem)
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// bootLinearMap builds the linear map of all RAM with the largest leaves, as
// map_mem does without rodata=full: with RAM 1 GiB aligned, PUD blocks only.
func bootLinearMap(b *testing.B, ram uint64) *pgtable.Tables {
	b.Helper()
	t := benchTables(b, ram)
	if err := t.Map(benchDoor, benchLinear, benchRAMBase, ram, arm64.Tagged(arm64.PageKernel), 0); err != nil {
		b.Fatal(err)
	}
	// 512 GiB per PUD table; no PMD or PTE tables at all.
	if got, want := t.TablePages(arm64.LevelPUD), int((ram+512*benchPUD-1)/(512*benchPUD)); got != want || t.TablePages(arm64.LevelPMD) != 0 || t.TablePages(arm64.LevelPTE) != 0 {
		b.Fatalf("linear map of %d GiB: %d PUD, %d PMD, %d PTE tables, want %d PUD tables and no others",
			ram>>30, got, t.TablePages(arm64.LevelPMD), t.TablePages(arm64.LevelPTE), want)
	}
	return t
}

var ramSizes = []struct {
	name string
	ram  uint64
}{{"16GiB", 16 << 30}, {"1TiB", 1 << 40}}

// BenchmarkRAMIndependence shows that splitting one 2M area of a PUD-block
// linear map down to PTEs, and mapping one 4K page, cost the same whatever
// the RAM size: each runs at 16 GiB and at 1 TiB of simulated RAM (1024 PUD
// blocks), and the parent logs the 1TiB/16GiB ratio of ns/op.
//
// Split2M: SplitRangeToPTEs on a 2M area in the middle of RAM, inside a PUD
// block (allocates a PMD and a PTE table, writes 1024 descriptors). The block
// is restored outside the timer by FoldTable at level 2 then level 1 and
// FreeTable of both table pages, so every iteration splits a real PUD block.
//
// Map4K: one Map call per 4K page in the vmalloc area, mapping pages from the
// middle of RAM, into PTE tables that exist with empty entries (512 pages per
// round, unmapped outside the timer between rounds).
func BenchmarkRAMIndependence(b *testing.B) {
	ops := []struct {
		name  string
		bench func(b *testing.B, ram uint64)
	}{{"Split2M", benchSplit2M}, {"Map4K", benchRAMMap4K}}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			var nsop [2]float64
			for i, s := range ramSizes {
				b.Run(s.name, func(b *testing.B) {
					op.bench(b, s.ram)
					nsop[i] = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				})
			}
			if nsop[0] > 0 && nsop[1] > 0 {
				b.Logf("%s: %.0f ns/op at %s, %.0f ns/op at %s, ratio 1TiB/16GiB = %.2f",
					op.name, nsop[0], ramSizes[0].name, nsop[1], ramSizes[1].name, nsop[1]/nsop[0])
			}
		})
	}
}

func benchSplit2M(b *testing.B, ram uint64) {
	t := bootLinearMap(b, ram)
	// A 2M area inside a PUD block in the middle of RAM, not at its start.
	a := benchLinear + ram/2 + 5*benchPMD
	before, err := t.Lookup(benchDoor, a)
	if err != nil || before.Level != 1 {
		b.Fatalf("va %#x: level %d, err %v; want a PUD block", a, before.Level, err)
	}
	restore := func() {
		for _, l := range []arm64.Level{2, 1} {
			freed, ok, err := t.FoldTable(benchDoor, a, l)
			if err != nil || !ok {
				b.Fatalf("fold at level %d: ok=%v err=%v", l, ok, err)
			}
			if err := t.FreeTable(benchDoor, freed); err != nil {
				b.Fatal(err)
			}
		}
	}
	var st pgtable.SplitStats
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := t.SplitRangeToPTEs(benchDoor, a, a+benchPMD, &st); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if i == 0 {
			e, err := t.Lookup(benchDoor, a+benchPage)
			if err != nil || e.Level != arm64.LastLevel || arm64.DescCont(e.Desc) {
				b.Fatalf("after split: level %d desc %#016x err %v; want a non-contiguous PTE", e.Level, e.Desc, err)
			}
			if st.Blocks.Get(arm64.LevelPUD) != 1 || st.Blocks.Get(arm64.LevelPMD) != 1 || st.Total() != 2 {
				b.Fatalf("split stats %+v, want one PUD and one PMD block split", st)
			}
		}
		restore()
		b.StartTimer()
	}
	b.StopTimer()
	if after, err := t.Lookup(benchDoor, a); err != nil || after != before {
		b.Fatalf("restored entry %+v (err %v), want %+v", after, err, before)
	}
}

func benchRAMMap4K(b *testing.B, ram uint64) {
	t := bootLinearMap(b, ram)
	const round = 512
	pa := benchRAMBase + ram/2
	mapPages := func(n int) {
		for i := range uint64(n) {
			if err := t.Map(benchDoor, benchVmalloc+i*benchPage, pa+i*benchPage, benchPage, arm64.PageKernel, pgtable.NoBlockMappings|pgtable.NoContMappings); err != nil {
				b.Fatal(err)
			}
		}
	}
	unmap := func() {
		if err := t.Unmap(benchDoor, benchVmalloc, benchVmalloc+round*benchPage); err != nil {
			b.Fatal(err)
		}
	}
	mapPages(round) // allocate the vmalloc tables once, as a warm kernel has them
	unmap()
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(round, b.N-done)
		mapPages(n)
		done += n
		if done < b.N {
			b.StopTimer()
			unmap()
			b.StartTimer()
		}
	}
}

// BenchmarkMapLinear maps a 2 GiB linear map with one Map call and reports
// ns per 4K page mapped:
//
//   - pte: page-granular (NO_BLOCK_MAPPINGS | NO_CONT_MAPPINGS, as with
//     rodata=full): 524288 PTEs in 1024 PTE tables, into a fresh tree built
//     with the timer stopped, so table allocation is measured;
//   - contpte: NO_BLOCK_MAPPINGS only (contiguous PTEs), fresh tree as above;
//   - block: no flags, two PUD blocks per call, into an existing PUD table:
//     each round maps 256 windows of 2 GiB in one PUD table and unmaps them
//     with the timer stopped (a fresh tree per 1 µs call would make the
//     benchmark spend minutes building trees).
func BenchmarkMapLinear(b *testing.B) {
	const size = 2 << 30
	prot := arm64.Tagged(arm64.PageKernel)
	for _, c := range []struct {
		name  string
		flags pgtable.Flags
	}{{"pte", pgtable.NoBlockMappings | pgtable.NoContMappings}, {"contpte", pgtable.NoBlockMappings}} {
		b.Run(c.name, func(b *testing.B) {
			var t *pgtable.Tables
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				t = benchTables(b, 4<<30)
				b.StartTimer()
				if err := t.Map(benchDoor, benchLinear, benchRAMBase, size, prot, c.flags); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(size/benchPage), "ns/page")
			_, leaf, ok := t.Translate(benchDoor, benchLinear+size-1)
			if !ok || leaf.Level != arm64.LastLevel || arm64.DescCont(leaf.Desc) != (c.flags&pgtable.NoContMappings == 0) {
				b.Fatalf("last page maps through level %d desc %#016x ok=%v, want a PTE", leaf.Level, leaf.Desc, ok)
			}
		})
	}
	b.Run("block", func(b *testing.B) {
		const windows = 256 // 256 x 2 GiB = half of one PUD table's 512 GiB
		t := benchTables(b, 4<<30)
		unmap := func() {
			if err := t.Unmap(benchDoor, benchLinear, benchLinear+windows*size); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		for done := 0; done < b.N; {
			n := min(windows, b.N-done)
			for w := range uint64(n) {
				if err := t.Map(benchDoor, benchLinear+w*size, benchRAMBase, size, prot, 0); err != nil {
					b.Fatal(err)
				}
			}
			done += n
			b.StopTimer()
			_, leaf, ok := t.Translate(benchDoor, benchLinear+uint64(n)*size-1)
			if !ok || leaf.Level != 1 {
				b.Fatalf("last page maps through level %d desc %#016x ok=%v, want a PUD block", leaf.Level, leaf.Desc, ok)
			}
			unmap()
			b.StartTimer()
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(size/benchPage), "ns/page")
	})
}
