package kernel

import (
	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
)

// Mutations injects known bugs into the model, one knob each, so the
// concurrency checker's mutant suite can prove it catches every one. The zero
// value is the faithful model; nothing but tests and `ptlab check` sets it.
type Mutations struct {
	// SkipTLBI drops the invalidation flush_tlb_kernel_range would issue
	// (so set_memory_* returns with stale TLB entries).
	SkipTLBI bool
	// SplitWithoutBBML2 makes the split paths trust BBML2_NOABORT on a system
	// that lacks it: live blocks are split without break-before-make.
	SplitWithoutBBML2 bool
	// FreeTableBeforeFlush frees a folded table page before the walk-cache
	// invalidation and the ptdump synchronisation.
	FreeTableBeforeFlush bool
	// FoldIgnoresAttributes lets a collapse fold entries whose attributes
	// differ (the fold takes the first entry's).
	FoldIgnoresAttributes bool
	// NoSplitLock drops pgtable_split_lock around splits and collapses.
	NoSplitLock bool
	// FoldWithoutPatchLock folds the vmalloc mapping of text without
	// patch_lock, racing with text patching's lockless vmalloc_to_page walk
	// (the flaw the checker found in the first version of ptlab's collapse).
	FoldWithoutPatchLock bool
	// FoldWithoutVmapLock folds the vmalloc mapping without the vmap node's
	// busy lock, racing with /proc/kcore's vread_iter.
	FoldWithoutVmapLock bool
	// FoldSkipsLastEntry: the collapse's attribute check looks at every
	// entry of the table but the last.
	FoldSkipsLastEntry bool
	// FreeWithoutRefill: the ROX cache's free does not refill the freed
	// range with traps (execmem_fill_trapping_insns).
	FreeWithoutRefill bool
	// CleanForgetsAlias: the cache clean vfrees a chunk without restoring
	// its linear alias (execmem_set_direct_map_valid).
	CleanForgetsAlias bool
	// PurgeWithoutFlush: the lazy vmap purge makes freed VA reusable without
	// flushing the TLBs over it.
	PurgeWithoutFlush bool
	// RepaintWithoutFlush: linear_map_split_to_ptes releases the secondaries
	// without its flush_tlb_kernel_range.
	RepaintWithoutFlush bool
	// ParkKeepsTLB: a secondary parks for the repaint without the local TLB
	// invalidation of __idmap_cpu_set_reserved_ttbr1 (read by the scenario
	// that models wait_linear_map_split_to_ptes).
	ParkKeepsTLB bool
}

// Any reports whether any bug is injected.
func (m Mutations) Any() bool { return m != Mutations{} }

// splitCapable is the BBML2_NOABORT system capability as the split paths
// (split_leaf_mapping_possible, force_pte_mapping, the huge-vmap permission
// gate of RFC patch 2) read it.
func (k *Kernel) splitCapable() bool { return k.BBML2 || k.Mutations.SplitWithoutBBML2 }

// lockSplit takes pgtable_split_lock (mutex_lock(&pgtable_split_lock)).
func (k *Kernel) lockSplit(c CPU) {
	if !k.Mutations.NoSplitLock {
		c.Lock(k.SplitLock)
	}
}

// unlockSplit releases pgtable_split_lock.
func (k *Kernel) unlockSplit(c CPU) {
	if !k.Mutations.NoSplitLock {
		c.Unlock(k.SplitLock)
	}
}

// foldTable folds the level-l table covering va (the collapse's check and
// block store); the FoldIgnoresAttributes mutant skips the attribute check.
func (k *Kernel) foldTable(c CPU, va uint64, l arm64.Level) (uint64, bool, error) {
	if k.Mutations.FoldIgnoresAttributes {
		return k.PT.FoldTableAnyAttr(c, va, l)
	}
	if k.Mutations.FoldSkipsLastEntry && !k.lastEntryOnlyDiffers(va, l) {
		return k.PT.FoldTableAnyAttr(c, va, l)
	}
	return k.PT.FoldTable(c, va, l)
}

// lockPatch takes patch_lock around a fold of a vmalloc mapping.
func (k *Kernel) lockPatch(c CPU) {
	if !k.Mutations.FoldWithoutPatchLock {
		c.Lock(k.PatchLock)
	}
}

// unlockPatch releases patch_lock.
func (k *Kernel) unlockPatch(c CPU) {
	if !k.Mutations.FoldWithoutPatchLock {
		c.Unlock(k.PatchLock)
	}
}

// lastEntryOnlyDiffers is the FoldSkipsLastEntry mutant's attribute check:
// it reports false (fold) when the permission bits of the level-l table's
// entries under va agree on all but possibly the last one, true otherwise
// (read without the door: the mutant's own bookkeeping, not kernel code).
func (k *Kernel) lastEntryOnlyDiffers(va uint64, l arm64.Level) bool {
	g := &k.G
	base := va &^ (g.Size(l) - 1)
	e, err := k.PT.Lookup(pgtable.Atomic{}, base)
	if err != nil || e.Level != l+1 {
		return true
	}
	tbl, err := k.PT.Table(e.DescPA &^ (g.PageSize() - 1))
	if err != nil {
		return true
	}
	const perm = arm64.PTERdonly | arm64.PTEPXN | arm64.PTEUXN
	first := tbl[0] & perm
	for i := 1; i < len(tbl)-1; i++ {
		if tbl[i]&perm != first {
			return true
		}
	}
	return false
}

// lockVmapBusy takes the vmap node's busy lock around a fold of a vmalloc
// mapping (ptlab's collapse policy, excluding vread_iter).
func (k *Kernel) lockVmapBusy(c CPU) {
	if !k.Mutations.FoldWithoutVmapLock {
		c.Lock(k.VmapLock)
	}
}

// unlockVmapBusy releases the vmap node's busy lock.
func (k *Kernel) unlockVmapBusy(c CPU) {
	if !k.Mutations.FoldWithoutVmapLock {
		c.Unlock(k.VmapLock)
	}
}
