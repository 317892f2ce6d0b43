package kernel

import (
	"errors"
	"fmt"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
)

// SplitKernelLeafMapping is split_kernel_leaf_mapping (mmu.c): make start and
// end leaf boundaries so a permission change can cover [start, end) exactly.
// It does nothing (and succeeds) when live splitting is not possible — no
// BBML2_NOABORT, or a linear map forced to PTEs — or for KFENCE addresses;
// the permission change itself then detects a block in the way. Otherwise,
// under pgtable_split_lock, it splits at start and at end (for a single page
// only at the less aligned of the two).
func (k *Kernel) SplitKernelLeafMapping(c CPU, start, end uint64) error {
	if !k.splitLeafMappingPossible() || k.isKFENCEAddress(start) {
		return nil
	}
	ps := k.G.PageSize()
	if start&(ps-1) != 0 || end&(ps-1) != 0 {
		return fmt.Errorf("split_kernel_leaf_mapping(%#x, %#x): unaligned: %w", start, end, ErrInvalid)
	}
	k.lockSplit(c)
	defer k.unlockSplit(c)
	if end-start == ps {
		// Split only where the boundary is less aligned (lower lowest set bit).
		at := start
		if end&-end < start&-start {
			at = end
		}
		return k.splitAt(c, at)
	}
	if err := k.splitAt(c, start); err != nil {
		return err
	}
	return k.splitAt(c, end)
}

func (k *Kernel) splitAt(c CPU, addr uint64) error {
	err := k.PT.SplitAt(c, addr, &k.Stats.Split)
	if errors.Is(err, pgtable.ErrNoMem) {
		return fmt.Errorf("split at %#x: %w: %w", addr, ErrNoMem, err)
	}
	return err
}

// updateRangeProt is update_range_prot: split so the range is leaf aligned
// (a failure is WARNed and returned without walking), then rewrite every
// descriptor in the range as (old &^ clear) | set.
func (k *Kernel) updateRangeProt(c CPU, start, size, set, clear uint64) error {
	if err := k.SplitKernelLeafMapping(c, start, start+size); err != nil {
		k.warnOnce("split", "split_kernel_leaf_mapping failed: %v", err)
		return err
	}
	err := k.PT.Protect(c, start, start+size, set, clear)
	if errors.Is(err, pgtable.ErrInvalid) {
		k.warnOnce("leafsize", "pageattr: change of [%#x, %#x) covers part of a block", start, start+size)
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err == nil {
		k.Stats.PageUpdates.Add(size >> k.G.PageShift)
	}
	return err
}

// changeMemoryCommonRange is __change_memory_common: update the range, then
// flush it from the TLBs — always, even after a failure — except when the
// request only makes present-invalid entries valid again (no stale entry can
// exist for an invalid one).
func (k *Kernel) changeMemoryCommonRange(c CPU, start, size, set, clear uint64) error {
	k.Stats.SetMemoryCalls.Add(1)
	err := k.updateRangeProt(c, start, size, set, clear)
	if k.V.PresentInvalid && set == k.Feat.PresentValidKernel() && clear == arm64.PTEPresentInvalid {
		return err
	}
	k.FlushTLBKernelRange(c, start, start+size)
	return err
}

// changeMemoryCommon is change_memory_common, the vmalloc-only entry point of
// set_memory_ro/rw/x/nx: the range must lie in exactly one vmalloc area that
// is not VM_ALLOW_HUGE_VMAP; under rodata_full, set_memory_ro/rw also update
// the linear alias of every page, one page at a time; lazily freed aliases
// are purged; then the vmalloc range itself is changed.
func (k *Kernel) changeMemoryCommon(c CPU, addr uint64, numpages int, set, clear uint64) error {
	ps := k.G.PageSize()
	start := addr
	if start&(ps-1) != 0 {
		k.warnOnce("unaligned", "change_memory_common: unaligned address %#x", addr)
		start &^= ps - 1
	}
	if numpages < 0 {
		return fmt.Errorf("change_memory_common(%#x, %d): %w", addr, numpages, ErrInvalid)
	}
	size := uint64(numpages) * ps
	end := start + size
	area := k.FindVMArea(addr)
	if area == nil || end > area.Addr+area.Size || area.Flags&VMAlloc == 0 {
		return fmt.Errorf("change_memory_common(%#x, %d): not in one vmalloc area: %w", addr, numpages, ErrInvalid)
	}
	// Mainline refuses VM_ALLOW_HUGE_VMAP areas so that only page mappings
	// change; RFC patch 2 allows them when BBML2_NOABORT makes splitting
	// the vmalloc mapping safe.
	if area.Flags&VMAllowHugeVmap != 0 && !(k.Cfg.Policy.HugeVmapPerms && k.splitCapable()) {
		return fmt.Errorf("change_memory_common(%#x, %d): VM_ALLOW_HUGE_VMAP area: %w", addr, numpages, ErrInvalid)
	}
	if numpages == 0 {
		return nil
	}
	if k.RodataFull && (set == arm64.PTERdonly || clear == arm64.PTERdonly) && !area.noAliasUpdates {
		first := int((start - area.Addr) / ps)
		if first+numpages > area.NrPages {
			// The kernel accepts a range reaching into the guard page and
			// then reads area->pages[] past nr_pages. The model refuses.
			k.warnOnce("oob", "change_memory_common(%#x, %d): would read area->pages[%d] of %d (out of bounds)", addr, numpages, first+numpages-1, area.NrPages)
			return fmt.Errorf("change_memory_common(%#x, %d): range covers the guard page, area->pages[%d] is out of bounds: %w", addr, numpages, first+numpages-1, ErrInvalid)
		}
		if err := k.aliasUpdate(c, area, first, numpages, set, clear); err != nil {
			return err
		}
		// RFC patch 6/6: after making a huge-vmap area read-only, try to
		// fold the linear alias of its first page back into a PMD block.
		if k.Cfg.Policy.Collapse == CollapseRFCv1 && set == arm64.PTERdonly && area.Flags&VMAllowHugeVmap != 0 {
			k.tryCollapseKernelPMD(c, k.Lin(area.PagePA(0)))
		}
	}
	k.VmUnmapAliases(c)
	return k.changeMemoryCommonRange(c, start, size, set, clear)
}

// aliasUpdate applies a set_memory_ro/rw change to the linear alias of
// area->pages[first .. first+n). Mainline does it one 4K page at a time; with
// the page-order policies a backing page of 1<<page_order small pages that
// the request covers whole is changed with one call, so a whole-chunk change
// leaves a block-mapped alias unsplit.
func (k *Kernel) aliasUpdate(c CPU, a *VMArea, first, n int, set, clear uint64) error {
	ps := k.G.PageSize()
	step := 1 << a.PageOrder
	byOrder := k.Cfg.Policy.Alias != AliasPerPage && k.Cfg.Policy.Alias != ""
	for i := first; i < first+n; {
		if byOrder && step > 1 && i%step == 0 && i+step <= first+n {
			if err := k.changeMemoryCommonRange(c, k.Lin(a.PagePA(i)), ps*uint64(step), set, clear); err != nil {
				return err
			}
			i += step
			continue
		}
		if err := k.changeMemoryCommonRange(c, k.Lin(a.PagePA(i)), ps, set, clear); err != nil {
			return err
		}
		i++
	}
	return nil
}

// SetMemoryRO is set_memory_ro.
func (k *Kernel) SetMemoryRO(c CPU, addr uint64, numpages int) error {
	return k.changeMemoryCommon(c, addr, numpages, arm64.PTERdonly, arm64.PTEWrite)
}

// SetMemoryRW is set_memory_rw.
func (k *Kernel) SetMemoryRW(c CPU, addr uint64, numpages int) error {
	return k.changeMemoryCommon(c, addr, numpages, arm64.PTEWrite, arm64.PTERdonly)
}

// SetMemoryNX is set_memory_nx.
func (k *Kernel) SetMemoryNX(c CPU, addr uint64, numpages int) error {
	return k.changeMemoryCommon(c, addr, numpages, arm64.PTEPXN, k.Feat.MaybeGP())
}

// SetMemoryX is set_memory_x.
func (k *Kernel) SetMemoryX(c CPU, addr uint64, numpages int) error {
	return k.changeMemoryCommon(c, addr, numpages, k.Feat.MaybeGP(), arm64.PTEPXN)
}

// SetMemoryROX is set_memory_rox (include/linux/set_memory.h): read-only,
// then executable.
//
// Under the general collapse policy it then folds what the change left
// uniform, as x86's set_memory_rox does with CPA_COLLAPSE.
func (k *Kernel) SetMemoryROX(c CPU, addr uint64, numpages int) error {
	if err := k.SetMemoryRO(c, addr, numpages); err != nil {
		return err
	}
	if err := k.SetMemoryX(c, addr, numpages); err != nil {
		return err
	}
	if k.Cfg.Policy.Collapse == CollapseGeneral {
		if a := k.FindVMArea(addr); a != nil {
			k.collapseArea(c, a, addr&^(k.G.PageSize()-1), numpages)
		}
	}
	return nil
}

// SetMemoryValid is set_memory_valid: any kernel address; making pages
// present-invalid flushes them, making them valid again does not.
func (k *Kernel) SetMemoryValid(c CPU, addr uint64, numpages int, enable bool) error {
	pv, pi := k.presentBits()
	size := uint64(numpages) * k.G.PageSize()
	if enable {
		return k.changeMemoryCommonRange(c, addr, size, pv, pi)
	}
	return k.changeMemoryCommonRange(c, addr, size, pi, pv)
}

// SetDirectMapInvalidNoflush is set_direct_map_invalid_noflush: make the
// linear alias of the page at pa present-invalid, without TLB maintenance.
func (k *Kernel) SetDirectMapInvalidNoflush(c CPU, pa uint64) error {
	if !k.CanSetDirectMap() {
		return nil
	}
	pv, pi := k.presentBits()
	return k.updateRangeProt(c, k.Lin(pa), k.G.PageSize(), pi, pv)
}

// SetDirectMapDefaultNoflush is set_direct_map_default_noflush: valid and
// writable again, without TLB maintenance.
func (k *Kernel) SetDirectMapDefaultNoflush(c CPU, pa uint64) error {
	if !k.CanSetDirectMap() {
		return nil
	}
	return k.updateRangeProt(c, k.Lin(pa), k.G.PageSize(),
		k.presentValidBits()|arm64.PTEWrite, k.presentInvalidBits()|arm64.PTERdonly)
}

// SetDirectMapValidNoflush is set_direct_map_valid_noflush: set_memory_valid
// on nr linear-map pages, which — despite the name — flushes when making
// them invalid. Making them valid does not restore write permission.
func (k *Kernel) SetDirectMapValidNoflush(c CPU, pa uint64, nr int, valid bool) error {
	if !k.CanSetDirectMap() {
		return nil
	}
	return k.SetMemoryValid(c, k.Lin(pa), nr, valid)
}

// presentBits are the bits set_memory_valid sets and clears: since the
// present-invalid change (PTE_PRESENT_VALID_KERNEL; in 6.18.24 stable and
// 7.x) an invalid kernel entry keeps bit 11 set (PTE_PRESENT_INVALID);
// before, only PTE_VALID was cleared.
func (k *Kernel) presentBits() (valid, invalid uint64) {
	if k.V.PresentInvalid {
		return k.Feat.PresentValidKernel(), arm64.PTEPresentInvalid
	}
	return arm64.PTEValid, 0
}

func (k *Kernel) presentValidBits() uint64   { v, _ := k.presentBits(); return v }
func (k *Kernel) presentInvalidBits() uint64 { _, i := k.presentBits(); return i }
