package kernel

import (
	"testing"

	"pgregory.net/rapid"
)

// TestPurgeTracedProperty: with TracedPurges, a freed area's VA is reused
// only after a PurgeTraced whose span covers it; the model's own purge point
// vm_unmap_aliases releases nothing; a purge releases exactly the queued
// areas inside its span.
func TestPurgeTracedProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		k := boot(t, "qemu-virt", nil)
		k.VM.TracedPurges = true
		c := &PlainCPU{}
		type span struct{ s, e uint64 }
		var live []*VMArea
		var lazy []span // freed, not yet purged by a traced purge
		ps := k.G.PageSize()
		for i := rapid.IntRange(1, 60).Draw(rt, "ops"); i > 0; i-- {
			switch rapid.IntRange(0, 3).Draw(rt, "op") {
			case 0:
				a, err := k.Vmalloc(c, uint64(rapid.IntRange(1, 8).Draw(rt, "pages"))*ps)
				if err != nil {
					rt.Fatal(err)
				}
				for _, l := range lazy {
					if a.Addr < l.e && l.s < a.Addr+a.Size {
						rt.Fatalf("area %#x-%#x reuses VA %#x-%#x queued for a purge", a.Addr, a.Addr+a.Size, l.s, l.e)
					}
				}
				live = append(live, a)
			case 1:
				if len(live) == 0 {
					continue
				}
				j := rapid.IntRange(0, len(live)-1).Draw(rt, "victim")
				a := live[j]
				live = append(live[:j], live[j+1:]...)
				if err := k.Vfree(c, a.Addr); err != nil {
					rt.Fatal(err)
				}
				lazy = append(lazy, span{a.Addr, a.Addr + a.Size})
			case 2:
				k.VmUnmapAliases(c)
			case 3:
				if len(lazy) == 0 {
					continue
				}
				// A span from one queued area's start to another's end.
				lo := lazy[rapid.IntRange(0, len(lazy)-1).Draw(rt, "lo")].s
				hi := lazy[rapid.IntRange(0, len(lazy)-1).Draw(rt, "hi")].e
				want := 0
				var keep []span
				for _, l := range lazy {
					if lo <= l.s && l.e <= hi {
						want++
					} else {
						keep = append(keep, l)
					}
				}
				if got := k.PurgeTraced(c, lo, hi); got != want {
					rt.Fatalf("PurgeTraced(%#x, %#x) released %d areas, want %d", lo, hi, got, want)
				}
				lazy = keep
			}
			if got := k.LazyAreas(); got != len(lazy) {
				rt.Fatalf("%d areas queued, want %d", got, len(lazy))
			}
		}
	})
}
