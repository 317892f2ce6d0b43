package kernel_test

import (
	"errors"
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/physmem"
)

// populateUnderPressure boots a 1 GiB BBML2 machine under preset, takes every
// free page but keep of them, one per 2 MiB of the linear map (so that each
// page's alias sits in its own block), and asks the ROX cache for 64 KiB of
// text. It returns the error and the free pages whose linear alias is left
// read-only afterwards.
func populateUnderPressure(t *testing.T, preset string, keep int) (error, []uint64) {
	t.Helper()
	const base, ram = 0x80000000, 1 << 30
	k := bootPreset(t, "bbml2-server", preset, func(c *kernel.Config) {
		c.RAM = []kernel.RAMRegion{{Base: base, Size: ram}}
	})
	c := &kernel.PlainCPU{}
	var taken []uint64
	for {
		pa, err := k.Mem.Alloc(0, physmem.OwnerReserved)
		if err != nil {
			break
		}
		taken = append(taken, pa)
	}
	for _, pa := range taken {
		if keep > 0 && pa&(2<<20-1) == 0 {
			if err := k.Mem.Free(pa, 0); err != nil {
				t.Fatal(err)
			}
			keep--
		}
	}
	_, err := k.ExecmemAllocRW(c, kernel.ExecmemModuleText, 64<<10)
	var ro []uint64
	for pa := uint64(base); pa < base+ram; pa += 4096 {
		if k.Mem.Owner(pa) != physmem.OwnerFree {
			continue
		}
		if _, e, ok := k.PT.Translate(c, k.Lin(pa)); ok && e.Desc&arm64.PTERdonly != 0 {
			ro = append(ro, pa)
		}
	}
	return err, ro
}

// TestPopulateFailureFreesReadOnlyAlias: when set_memory_rox fails while
// the ROX cache populates a chunk (here -ENOMEM from a split of the linear
// alias, with the chunk on small pages because no 2 MiB page is left),
// execmem_cache_populate_alloc (mm/execmem.c) jumps to err_free_mem and
// vfree()s the area. The area has no VM_FLUSH_RESET_PERMS, so the pages
// whose alias set_memory_ro had already made read-only go back to the page
// allocator read-only in the linear map: their next owner faults on its
// first write. Memory is squeezed by steps until the failure lands between
// the first and the last page.
func TestPopulateFailureFreesReadOnlyAlias(t *testing.T) {
	found := false
	for keep := 10; keep < 64 && !found; keep++ {
		err, ro := populateUnderPressure(t, "rox-cache", keep)
		if err == nil {
			break // enough memory: nothing fails
		}
		if errors.Is(err, kernel.ErrNoMem) && len(ro) > 0 {
			t.Logf("%d free pages left: %d pages freed with a read-only linear alias (%v)", keep, len(ro), err)
			found = true
		}
	}
	if !found {
		t.Error("no memory level made set_memory_rox fail part-way through a chunk")
	}
}
