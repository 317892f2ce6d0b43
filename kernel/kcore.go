package kernel

import "fmt"

// VreadIter models /proc/kcore reading vmalloc memory (vread_iter →
// vmap_ram_vread_iter / aligned_vread_iter, mm/vmalloc.c): with only the
// vmap node's busy lock held — no table lock, not patch_lock — each page of
// [addr, addr+size) is found with vmalloc_to_page, a lockless walk of
// init_mm's tables, and copied out. It returns the page contents read.
func (k *Kernel) VreadIter(c CPU, addr, size uint64) ([]uint64, error) {
	c.Lock(k.VmapLock)
	defer c.Unlock(k.VmapLock)
	ps := k.G.PageSize()
	var out []uint64
	for p := addr &^ (ps - 1); p < addr+size; p += ps {
		pa, err := k.VmallocToPage(c, p)
		if err != nil {
			return out, fmt.Errorf("vread_iter(%#x): %w", p, err)
		}
		out = append(out, k.Mem.Private(pa))
	}
	return out, nil
}
