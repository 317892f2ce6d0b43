package kernel

import (
	"github.com/ptlab/ptlab/arm64"
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
