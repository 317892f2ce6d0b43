package cpu

import (
	"sync"
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
)

// Two real CPUs (goroutines) map a page each into the same empty vmalloc
// region at once, so both find the same slots empty and allocate a table
// for them. Under init_mm.page_table_lock only one table per slot is
// installed; the loser frees its page (__pte_alloc_kernel). Both pages stay
// mapped and the page-table page count grows by exactly the tables needed.
// Run under -race by `make test`.
func TestRealConcurrentPopulate(t *testing.T) {
	k, m := bootMachine(t, "bbml2-server", "ampere1", 2, Real)
	g := k.G
	rounds := 100
	if testing.Short() {
		rounds = 30
	}
	// 1 GiB-aligned windows at the top of the vmalloc area, far from
	// anything boot mapped: each round needs a new PMD and PTE table (and
	// a PUD table whenever the window starts a new level-0 entry).
	top := (k.Layout.VmallocEnd &^ (g.Size(arm64.LevelPUD) - 1)) - g.Size(arm64.LevelPUD)
	pa := k.Mem.Regions()[0].Base
	for r := range rounds {
		base := top - uint64(r)*g.Size(arm64.LevelPUD)
		before := k.Mem.OwnedPages(physmem.OwnerPageTable)
		want := uint64(2)
		if e, err := k.PT.Lookup(pgtable.Atomic{}, base); err != nil || e.Level < 1 {
			want = 3
		}
		start := make(chan struct{})
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for _, c := range m.CPUs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				off := uint64(c.ID()) * g.PageSize()
				errs[c.ID()] = k.PT.Map(c, base+off, pa+off, g.PageSize(), arm64.PageKernel, pgtable.NoBlockMappings)
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d cpu%d: %v", r, i, err)
			}
			off := uint64(i) * g.PageSize()
			if got, _, ok := k.PT.Translate(pgtable.Atomic{}, base+off); !ok || got != pa+off {
				t.Fatalf("round %d: cpu%d's page at %#x lost (pa %#x ok=%v)", r, i, base+off, got, ok)
			}
		}
		if got := k.Mem.OwnedPages(physmem.OwnerPageTable) - before; got != want {
			t.Fatalf("round %d: %d new page-table pages, want %d (one table per empty slot)", r, got, want)
		}
	}
	if h := k.PageTableLock.Holder(); h != -1 {
		t.Fatalf("page_table_lock still held by CPU%d", h)
	}
}
