package pgtable

import (
	"sync"
	"testing"

	"github.com/ptlab/ptlab/arm64"
)

// Several CPUs mapping pages into one empty region at the same time all need
// the same PUD, PMD and PTE tables. Each must end up using the one table that
// was installed (the populate re-checks the slot under page_table_lock), so
// every page is mapped and no table page leaks. Without the re-check one
// CPU's table overwrites another's: a mapping is lost and a table leaks.
func TestConcurrentPopulate(t *testing.T) {
	const cpus = 4
	rounds := 200 // one fresh level-0 slot per round (256 in the upper half)
	if testing.Short() {
		rounds = 60
	}
	g := arm64.Geometry4K48
	tb := newTables(t, g, 256<<20)
	var door Atomic
	free := tb.Memory().FreePages()
	for r := range rounds {
		base := uint64(0xffff800000000000) + uint64(r)*g.Size(g.PGD())
		start := make(chan struct{})
		errs := make([]error, cpus)
		var wg sync.WaitGroup
		for c := range cpus {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				va := base + uint64(c)*g.PageSize()
				errs[c] = tb.Map(door, va, ramBase+uint64(c)*g.PageSize(), g.PageSize(), arm64.PageKernel, NoBlockMappings|NoContMappings)
			}()
		}
		close(start)
		wg.Wait()
		for c := range cpus {
			if errs[c] != nil {
				t.Fatalf("round %d cpu %d: %v", r, c, errs[c])
			}
			va := base + uint64(c)*g.PageSize()
			if pa, _, ok := tb.Translate(door, va); !ok || pa != ramBase+uint64(c)*g.PageSize() {
				t.Fatalf("round %d: cpu %d's page at %#x lost (pa %#x ok=%v)", r, c, va, pa, ok)
			}
		}
		// The tree gained exactly one PUD, one PMD and one PTE table.
		if got, want := tb.TotalTablePages(), 1+3*(r+1); got != want {
			t.Fatalf("round %d: %d table pages in the tree, want %d", r, got, want)
		}
		if got, want := tb.Memory().FreePages(), free-uint64(3*(r+1)); got != want {
			t.Fatalf("round %d: %d free pages, want %d (a table page leaked)", r, got, want)
		}
	}
}
