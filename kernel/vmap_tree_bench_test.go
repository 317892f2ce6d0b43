package kernel

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// vmapSpace is the free-space interface both allocators offer.
type vmapSpace interface {
	alloc(size, align, vstart, vend uint64) (uint64, bool)
	release(s, e uint64)
}

// BenchmarkVmapAllocFree: one vmalloc-sized allocation and the free of a
// random live area, with n areas live in a fragmented space, for the
// augmented tree and the old linear allocator: the tree's cost grows with
// log n, the old one's with n.
func BenchmarkVmapAllocFree(b *testing.B) {
	const base, end = 0xffff800080000000, 0xffff800080000000 + 1<<40
	for _, n := range []int{1000, 10000, 100000} {
		for _, impl := range []string{"tree", "linear"} {
			b.Run(fmt.Sprintf("%s/live=%d", impl, n), func(b *testing.B) {
				var v vmapSpace = newVmapTree(base, end)
				if impl == "linear" {
					v = &linearFree{free: []vaSpan{{base, end}}}
				}
				rng := rand.New(rand.NewPCG(1, uint64(n)))
				size := func() uint64 { return uint64(1+rng.IntN(16)) << 12 }
				type area struct{ a, sz uint64 }
				live := make([]area, 0, 2*n)
				for len(live) < 2*n {
					sz := size()
					a, _ := v.alloc(sz, 4096, base, end)
					live = append(live, area{a, sz})
				}
				for i := 0; i < n; i++ { // free every other: holes everywhere
					j := rng.IntN(len(live))
					v.release(live[j].a, live[j].a+live[j].sz)
					live[j] = live[len(live)-1]
					live = live[:len(live)-1]
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					sz := size()
					a, ok := v.alloc(sz, 4096, base, end)
					if !ok {
						b.Fatal("no space")
					}
					j := rng.IntN(len(live))
					v.release(live[j].a, live[j].a+live[j].sz)
					live[j] = area{a, sz}
				}
			})
		}
	}
}
