package physmem

import (
	"fmt"
	"testing"
)

// The goal: Alloc/Free cost O(MaxOrder) and allocate nothing, independent of
// the RAM size (compare the 16GiB and 1TiB rows), and New costs
// O(regions). Run:
//
//	go test ./physmem/ -run '^$' -bench . -benchmem

var benchSizes = []struct {
	name string
	size uint64
}{{"16GiB", 16 * GiB}, {"1TiB", 1 * TiB}}

// BenchmarkAllocFree allocates and frees one block per iteration.
func BenchmarkAllocFree(b *testing.B) {
	for _, order := range []int{0, 9} {
		for _, sz := range benchSizes {
			b.Run(fmt.Sprintf("order=%d/ram=%s", order, sz.name), func(b *testing.B) {
				m := mustNew(b, 12, Region{0x40000000, sz.size})
				mustFree(b, m, mustAlloc(b, m, order, OwnerVmalloc), order)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					pa, err := m.Alloc(order, OwnerVmalloc)
					if err != nil {
						b.Fatal(err)
					}
					if err := m.Free(pa, order); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkChurn keeps 4096 blocks of orders 0..2 allocated and replaces the
// oldest one per iteration by a block of the next order, so frees and
// allocations split and merge on fragmented lists (page-table and vmalloc
// churn).
func BenchmarkChurn(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run("ram="+sz.name, func(b *testing.B) {
			m := mustNew(b, 12, Region{0x40000000, sz.size})
			const n = 4096
			ring := make([]uint64, n)
			orders := make([]int, n)
			for i := range ring {
				orders[i] = i % 3
				ring[i] = mustAlloc(b, m, orders[i], OwnerPageTable)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % n
				if err := m.Free(ring[j], orders[j]); err != nil {
					b.Fatal(err)
				}
				orders[j] = (orders[j] + 1) % 3
				pa, err := m.Alloc(orders[j], OwnerPageTable)
				if err != nil {
					b.Fatal(err)
				}
				ring[j] = pa
			}
		})
	}
}

// BenchmarkNew builds the allocator; it must not depend on the RAM size.
func BenchmarkNew(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run("ram="+sz.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := New(12, []Region{{0x40000000, sz.size}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReserve2MiB reserves and unreserves a 2 MiB range in untouched
// RAM after the first iteration (cost proportional to the range).
func BenchmarkReserve2MiB(b *testing.B) {
	m := mustNew(b, 12, Region{0x40000000, 16 * GiB})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := m.Reserve(0x40200000, 2*MiB, OwnerKernelImage); err != nil {
			b.Fatal(err)
		}
		if err := m.Unreserve(0x40200000, 2*MiB); err != nil {
			b.Fatal(err)
		}
	}
}
