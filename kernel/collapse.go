package kernel

import (
	"github.com/ptlab/ptlab/arm64"
)

// CollapseStats counts folds of split mappings back into larger leaves.
type CollapseStats struct {
	PMDLinear  uint64 `json:"pmd_linear"`  // PTE tables folded into PMD blocks, linear map
	PMDVmalloc uint64 `json:"pmd_vmalloc"` // ... in the vmalloc range
	ContPTE    uint64 `json:"cont_pte"`    // runs of PTEs given PTE_CONT
	ContPMD    uint64 `json:"cont_pmd"`    // runs of PMD blocks given PTE_CONT
	PUD        uint64 `json:"pud"`         // PMD tables folded into PUD blocks
	Refused    uint64 `json:"refused"`     // attempts the checks turned down
	Warned     uint64 `json:"warned"`      // attempts refused with a WARN (unaligned address)
}

// Total is the number of folds of any kind.
func (s *CollapseStats) Total() uint64 {
	return s.PMDLinear + s.PMDVmalloc + s.ContPTE + s.ContPMD + s.PUD
}

// freeFoldedTable releases a table page unhooked by a fold (or by
// pmd_free_pte_page): invalidate the
// walk caches for the region (__flush_tlb_kernel_pgtable), wait for a
// running ptdump walk by taking init_mm's mmap lock for reading when the
// arm64_ptdump_lock_key static key is on, then free the page.
func (k *Kernel) freeFoldedTable(c CPU, va, tablePA uint64) error {
	if k.Mutations.FreeTableBeforeFlush {
		err := k.PT.FreeTable(c, tablePA)
		k.flushTLBKernelPgtable(c, va)
		return err
	}
	k.flushTLBKernelPgtable(c, va)
	k.shared(sharedPtdumpKey)
	if k.ptdumping.Load() != 0 {
		c.DownRead(k.InitMM)
		c.UpRead(k.InitMM)
	}
	return k.PT.FreeTable(c, tablePA)
}

// tryCollapseKernelPMD is RFC patch 6/6 as posted (try_collapse_kernel_pmd
// and __try_collapse_pmd): addr must be PMD aligned (else WARN and return);
// under pgtable_split_lock, if the PMD holding addr points to a PTE table
// whose 512 entries are valid, map consecutive PFNs from a PMD-aligned one
// and carry the same attributes ignoring PTE_CONT, write the PMD block, flush
// the table walk, synchronise with ptdump and free the PTE table. Nothing
// stops another CPU from rewriting those PTEs concurrently without the lock.
func (k *Kernel) tryCollapseKernelPMD(c CPU, addr uint64) {
	pmd := k.G.Size(arm64.LevelPMD)
	if addr&(pmd-1) != 0 {
		k.warnOnce("collapse-align", "try_collapse_kernel_pmd(%#x): address not PMD aligned", addr)
		k.warnMu.Lock()
		k.Stats.Collapse.Warned++
		k.warnMu.Unlock()
		return
	}
	k.lockSplit(c)
	defer k.unlockSplit(c)
	if isTable, err := k.PT.TableAt(c, addr, arm64.LevelPMD); err != nil || !isTable {
		k.modelError("try_collapse_kernel_pmd", err)
		return // pmd_table() is false: nothing to collapse
	}
	freed, ok, err := k.foldTable(c, addr, arm64.LevelPMD)
	if err != nil {
		k.modelError("try_collapse_kernel_pmd", err)
		return
	}
	if !ok {
		k.Stats.Collapse.Refused++
		return
	}
	if err := k.freeFoldedTable(c, addr, freed); err != nil {
		k.modelError("try_collapse_kernel_pmd: free", err)
		return
	}
	k.Stats.Collapse.PMDLinear++
}

// collapseRegion is ptlab's general collapse of the naturally aligned region
// of 1<<order pages at va (a backing page of a vmalloc area, through its
// vmalloc mapping or its linear alias): a PTE table becomes a PMD block when
// the region is PMD sized, otherwise PTE runs become contiguous where they
// can; then runs of PMD blocks become contiguous and a PMD table a PUD block
// (4K only) where the neighbourhood allows. It is never attempted where the
// backing page is smaller than the leaf it would create. It runs under
// pgtable_split_lock; the caller guarantees that no other CPU changes
// permissions inside the region (the ROX cache's per-cache mutex).
func (k *Kernel) collapseRegion(c CPU, va uint64, order int, linear bool) {
	g := &k.G
	size := g.PageSize() << order
	if va&(size-1) != 0 {
		return
	}
	k.lockSplit(c)
	defer k.unlockSplit(c)
	st := &k.Stats.Collapse
	if size >= g.Size(arm64.LevelPMD) {
		for r := va; r < va+size; r += g.Size(arm64.LevelPMD) {
			if isTable, err := k.PT.TableAt(c, r, arm64.LevelPMD); err != nil || !isTable {
				k.modelError("collapse", err)
				continue // already a block (or unmapped): nothing to fold
			}
			// The vmalloc mapping is walked without a table lock by text
			// patching (vmalloc_to_page under patch_lock) and by /proc/kcore
			// (vread_iter: vmalloc_to_page under the vmap node's busy lock):
			// the fold's store happens under both, so once they are released
			// no such walk can still be inside the old table; the TLBI, the
			// ptdump sync and the free then run without them (no sleeping
			// under a spinlock).
			if !linear {
				k.lockPatch(c)
				k.lockVmapBusy(c)
			}
			freed, ok, err := k.foldTable(c, r, arm64.LevelPMD)
			if !linear {
				k.unlockVmapBusy(c)
				k.unlockPatch(c)
			}
			switch {
			case err != nil:
				k.modelError("collapse: PMD fold", err)
				return
			case ok:
				if err := k.freeFoldedTable(c, r, freed); err != nil {
					k.modelError("collapse: free of a folded PTE table", err)
					return
				}
				if linear {
					st.PMDLinear++
				} else {
					st.PMDVmalloc++
				}
			default:
				st.Refused++
				k.foldContPTEs(c, r, r+g.Size(arm64.LevelPMD))
			}
		}
		// Larger neighbourhoods: only if the region is big enough to back them.
		if cs := g.ContSize(arm64.LevelPMD); size >= cs {
			ok, err := k.PT.FoldCont(c, va&^(cs-1), arm64.LevelPMD)
			k.modelError("collapse: contiguous PMDs", err)
			if ok {
				st.ContPMD++
			}
		}
		if g.BlockAllowed(arm64.LevelPUD) && size >= g.Size(arm64.LevelPUD) {
			freed, ok, err := k.foldTable(c, va&^(g.Size(arm64.LevelPUD)-1), arm64.LevelPUD)
			k.modelError("collapse: PUD fold", err)
			if ok {
				if err := k.freeFoldedTable(c, va, freed); err != nil {
					k.modelError("collapse: free of a folded PMD table", err)
				} else {
					st.PUD++
				}
			}
		}
		return
	}
	if size >= g.ContSize(arm64.LastLevel) {
		k.foldContPTEs(c, va, va+size)
	}
}

func (k *Kernel) foldContPTEs(c CPU, start, end uint64) {
	cs := k.G.ContSize(arm64.LastLevel)
	for r := start; r < end; r += cs {
		ok, err := k.PT.FoldCont(c, r, arm64.LastLevel)
		k.modelError("collapse: contiguous PTEs", err)
		if ok {
			k.Stats.Collapse.ContPTE++
		}
	}
}

// collapseArea runs the general collapse over every backing page of a that
// [start, start+numpages) covers, for the vmalloc mapping and — under
// rodata_full, unless the alias is left alone — the linear alias.
func (k *Kernel) collapseArea(c CPU, a *VMArea, start uint64, numpages int) {
	if a.PageOrder == 0 {
		return
	}
	step := 1 << a.PageOrder
	first := int((start - a.Addr) >> k.G.PageShift)
	for i := first &^ (step - 1); i < first+numpages && i < a.NrPages; i += step {
		k.collapseRegion(c, a.Addr+uint64(i)<<k.G.PageShift, a.PageOrder, false)
		if k.RodataFull && !a.noAliasUpdates {
			k.collapseRegion(c, k.Lin(a.PagePA(i)), a.PageOrder, true)
		}
	}
}

// collapseLinear folds the linear map around a released backing page (after
// the ROX cache gives a chunk back and its alias is writable again).
func (k *Kernel) collapseLinear(c CPU, pa uint64, order int) {
	k.collapseRegion(c, k.Lin(pa), order, true)
}
