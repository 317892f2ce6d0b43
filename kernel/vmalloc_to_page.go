package kernel

import (
	"fmt"

	"github.com/ptlab/ptlab/arm64"
)

// VmallocToPage is vmalloc_to_page (mm/vmalloc.c): the physical page behind
// a vmalloc or module address, found by walking init_mm's tables from the
// PGD down, stopping at a PUD or PMD leaf — without any lock. Callers own
// the area, which the kernel takes as enough to keep its tables in place;
// text patching (arm64 patch_map, behind aarch64_insn_copy and
// text_poke-style writes into ROX memory) uses it for module and execmem
// text.
func (k *Kernel) VmallocToPage(c CPU, addr uint64) (uint64, error) {
	e, err := k.PT.Lookup(c, addr)
	if err != nil {
		return 0, fmt.Errorf("vmalloc_to_page(%#x): %w", addr, err)
	}
	if !arm64.DescValid(e.Desc) || k.G.IsTable(e.Desc, e.Level) {
		return 0, fmt.Errorf("vmalloc_to_page(%#x): not mapped: %w", addr, ErrInvalid)
	}
	return k.G.OutputAddress(e.Desc) + (addr&(k.G.Size(e.Level)-1))&^(k.G.PageSize()-1), nil
}

// TextPoke models aarch64_insn_copy / __text_poke writing an object's code
// into read-only executable memory: under patch_lock, for each page,
// vmalloc_to_page finds the physical page, which is written through a
// temporary fixmap alias (the fixmap itself is not modelled: only the
// lockless walk and the content).
func (k *Kernel) TextPoke(c CPU, addr, size, object uint64) error {
	c.Lock(k.PatchLock)
	defer c.Unlock(k.PatchLock)
	ps := k.G.PageSize()
	for p := addr &^ (ps - 1); p < addr+size; p += ps {
		pa, err := k.VmallocToPage(c, p)
		if err != nil {
			return err
		}
		if err := k.Mem.SetPrivate(pa, object); err != nil {
			return fmt.Errorf("text_poke(%#x): %w", p, err)
		}
	}
	return nil
}
