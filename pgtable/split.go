package pgtable

import (
	"encoding/json"
	"fmt"

	"github.com/ptlab/ptlab/arm64"
)

// SplitBlock replaces the block leaf e (at a level above the last) with a
// table of next-level entries that map the same output addresses with the
// same attributes: split_pud (entries are blocks) and split_pmd (entries are
// pages). The entries get PTE_CONT when toCont; a present-invalid block gives
// present-invalid entries; the new table descriptor carries PXNTable iff the
// block had PXN. The table is filled before it is published, so walkers see
// either the block or the complete table. No TLB maintenance: that is the
// caller's business (BBML2_NOABORT lets the old entry linger).
func (t *Tables) SplitBlock(d Door, e Entry, toCont bool) error {
	g := t.g
	l := e.Level
	if l >= arm64.LastLevel || !g.IsLeaf(e.Desc, l) {
		return fmt.Errorf("%w: %s entry %#016x at %#x is not a block", ErrInvalid, g.Name(l), e.Desc, e.DescPA)
	}
	cpa, ctbl, err := t.allocTable(d, l+1)
	if err != nil {
		return fmt.Errorf("splitting %s at va %#x: %w", g.Name(l), e.VA, err)
	}
	var prot uint64
	if l+1 == arm64.LastLevel {
		prot = g.PageProt(e.Desc, l)
	} else {
		prot = e.Desc & g.AttrMask() // blocks stay blocks one level down
	}
	prot &^= arm64.PTECont
	if toCont {
		prot |= arm64.PTECont
	}
	oa := g.OutputAddress(e.Desc)
	step := g.Size(l + 1)
	for i := range ctbl {
		ctbl[i] = g.MkLeaf(oa+uint64(i)*step, prot, l+1)
	}
	if t.tr != nil {
		t.trackLeaf(e.VA, l, e.Desc, 0)
		if err := t.trackSubtree(cpa, l+1, e.VA, 1); err != nil {
			return err
		}
	}
	// dsb(ishst) in the kernel: the entries are visible before the table.
	tbl, _ := t.tableOf(e.DescPA)
	d.Store(e.DescPA, &tbl[t.indexOf(e.DescPA)], g.MkTable(cpa, e.Desc&arm64.PTEPXN != 0))
	return nil
}

// ClearContRun clears PTE_CONT on every entry of the aligned contiguous run
// that holds e, rewriting each entry in place (split_contpte, split_contpmd).
func (t *Tables) ClearContRun(d Door, e Entry) error {
	n := t.g.ContEntries(e.Level)
	if n == 0 {
		return fmt.Errorf("%w: no contiguous runs at %s", ErrInvalid, t.g.Name(e.Level))
	}
	tbl, ok := t.tableOf(e.DescPA)
	if !ok {
		return fmt.Errorf("%w: %#x", ErrNotTable, e.DescPA)
	}
	first := t.indexOf(e.DescPA) &^ (n - 1)
	base := e.DescPA &^ (t.g.PageSize() - 1)
	for i := first; i < first+n; i++ {
		dpa := descPA(base, i)
		v := d.Load(dpa, &tbl[i])
		d.Store(dpa, &tbl[i], v&^arm64.PTECont)
		if t.tr != nil {
			t.trackLeaf(e.VA+uint64(i-t.indexOf(e.DescPA))*t.g.Size(e.Level), e.Level, v, v&^arm64.PTECont)
		}
	}
	return nil
}

// tableOf returns the table page that holds the descriptor at dpa.
func (t *Tables) tableOf(dpa uint64) ([]uint64, bool) {
	return t.lookup(dpa &^ (t.g.PageSize() - 1))
}

func (t *Tables) indexOf(dpa uint64) int { return int(dpa&(t.g.PageSize()-1)) / 8 }

// SplitStats counts split operations by kind; any pointer may be nil.
type SplitStats struct {
	Blocks  arm64.PerLevel[int] // blocks split into tables, per level (PUD, PMD)
	ContRun arm64.PerLevel[int] // contiguous runs broken up, per level (PMD, PTE)
}

// splitStatsJSON is the JSON form of SplitStats: arrays indexed by level
// 0..3 (no level above 0 ever holds a leaf), as written before PerLevel.
type splitStatsJSON struct {
	Blocks  [4]int
	ContRun [4]int
}

// MarshalJSON keeps the level-indexed four-element arrays of earlier output.
func (s SplitStats) MarshalJSON() ([]byte, error) {
	var j splitStatsJSON
	for l := arm64.Level(0); l <= arm64.LastLevel; l++ {
		j.Blocks[l], j.ContRun[l] = s.Blocks.Get(l), s.ContRun.Get(l)
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *SplitStats) UnmarshalJSON(b []byte) error {
	var j splitStatsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = SplitStats{}
	for l := arm64.Level(0); l <= arm64.LastLevel; l++ {
		*s.Blocks.At(l), *s.ContRun.At(l) = j.Blocks[l], j.ContRun[l]
	}
	return nil
}

// Total is the number of split operations of any kind.
func (s *SplitStats) Total() int {
	n := 0
	for l := arm64.MinLevel; l <= arm64.LastLevel; l++ {
		n += s.Blocks.Get(l) + s.ContRun.Get(l)
	}
	return n
}

func (s *SplitStats) block(l arm64.Level) {
	if s != nil {
		*s.Blocks.At(l)++
	}
}

func (s *SplitStats) cont(l arm64.Level) {
	if s != nil {
		*s.ContRun.At(l)++
	}
}

// SplitAt makes addr a leaf boundary by splitting only the leaves that
// straddle it, in the order of split_kernel_leaf_mapping_locked:
//
//	levels down to PUD: stop if addr is aligned to the level or the slot is
//	  empty; a PUD block becomes contiguous PMD blocks (split_pud, to_cont);
//	stop if addr is CONT_PMD aligned or the PMD is empty; a contiguous PMD
//	  run loses CONT (split_contpmd); stop if addr is PMD aligned; a PMD block
//	  becomes contiguous PTEs (split_pmd, to_cont);
//	stop if addr is CONT_PTE aligned or the PTE is empty; a contiguous PTE run
//	  loses CONT (split_contpte).
//
// Table allocation may fail with ErrNoMem, leaving the tables valid (what was
// split so far stays split, translation unchanged).
func (t *Tables) SplitAt(d Door, addr uint64, st *SplitStats) error {
	g := t.g
	var e Entry
	var err error
	for l := g.StartLevel; l <= arm64.LevelPUD; l++ {
		if addr&(g.Size(l)-1) == 0 {
			return nil
		}
		if e, err = t.Lookup(d, addr); err != nil {
			return err
		}
		if e.Level == l {
			if !arm64.DescPresent(e.Desc) || !g.BlockAllowed(l) {
				return nil
			}
			if err := t.SplitBlock(d, e, true); err != nil {
				return err
			}
			st.block(l)
		}
	}
	if addr&(g.ContSize(arm64.LevelPMD)-1) == 0 {
		return nil
	}
	if e, err = t.Lookup(d, addr); err != nil {
		return err
	}
	if e.Level == arm64.LevelPMD {
		if !arm64.DescPresent(e.Desc) {
			return nil
		}
		if arm64.DescCont(e.Desc) {
			if err := t.ClearContRun(d, e); err != nil {
				return err
			}
			st.cont(arm64.LevelPMD)
			e.Desc &^= arm64.PTECont
		}
		if addr&(g.Size(arm64.LevelPMD)-1) == 0 {
			return nil
		}
		if err := t.SplitBlock(d, e, true); err != nil {
			return err
		}
		st.block(arm64.LevelPMD)
	}
	if addr&(g.ContSize(arm64.LevelPTE)-1) == 0 {
		return nil
	}
	if e, err = t.Lookup(d, addr); err != nil {
		return err
	}
	if e.Level == arm64.LastLevel && arm64.DescPresent(e.Desc) && arm64.DescCont(e.Desc) {
		if err := t.ClearContRun(d, e); err != nil {
			return err
		}
		st.cont(arm64.LastLevel)
	}
	return nil
}

// SplitRangeToPTEs splits every leaf in [start, end) down to non-contiguous
// page entries (range_split_to_ptes, used by linear_map_split_to_ptes and
// arch_kfence_init_pool): blocks become tables of non-contiguous entries and
// contiguous runs lose CONT.
func (t *Tables) SplitRangeToPTEs(d Door, start, end uint64, st *SplitStats) error {
	g := &t.g
	va := start
	for va < end || (end == 0 && va != 0) {
		e, err := t.Lookup(d, va)
		if err != nil {
			return err
		}
		next := e.VA + g.Size(e.Level)
		switch {
		case !arm64.DescPresent(e.Desc) || t.g.IsTable(e.Desc, e.Level):
		case e.Level < arm64.LastLevel:
			if !g.BlockAllowed(e.Level) {
				break
			}
			if arm64.DescCont(e.Desc) {
				if err := t.ClearContRun(d, e); err != nil {
					return err
				}
				st.cont(e.Level)
				e.Desc &^= arm64.PTECont
			}
			if err := t.SplitBlock(d, e, false); err != nil {
				return err
			}
			st.block(e.Level)
			continue // walk the new table
		case e.Level == arm64.LastLevel:
			// Finish this PTE table in place instead of walking from the
			// root for every page (the pte_entry loop of the kernel walk).
			tbl, _ := t.tableOf(e.DescPA)
			base := e.DescPA &^ (g.PageSize() - 1)
			tEnd := t.boundary(va, end, arm64.LastLevel-1)
			ps := g.PageSize()
			for i := t.indexOf(e.DescPA); ; i++ {
				dpa := descPA(base, i)
				v := d.Load(dpa, &tbl[i])
				if arm64.DescPresent(v) && arm64.DescCont(v) {
					if err := t.ClearContRun(d, Entry{VA: va, Level: arm64.LastLevel, Desc: v, DescPA: dpa}); err != nil {
						return err
					}
					st.cont(arm64.LastLevel)
				}
				va += ps
				if va == tEnd {
					break
				}
			}
			if va == end {
				return nil
			}
			continue
		}
		if next == 0 {
			return nil
		}
		va = next
	}
	return nil
}
