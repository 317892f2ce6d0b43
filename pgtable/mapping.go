package pgtable

import (
	"fmt"

	"github.com/ptlab/ptlab/arm64"
)

// Flags restrict the leaves __create_pgd_mapping may use (mmu.c).
type Flags uint8

const (
	NoBlockMappings Flags = 1 << 0 // NO_BLOCK_MAPPINGS: no PUD/PMD blocks
	NoContMappings  Flags = 1 << 1 // NO_CONT_MAPPINGS: no contiguous runs
	NoExecMappings  Flags = 1 << 2 // NO_EXEC_MAPPINGS: tables get PXNTable
	// BareTables: new tables are hooked up as early_fixmap_init's
	// __p?d_populate calls do (arch/arm64/mm/fixmap.c), with the table
	// type alone: no UXNTable or PXNTable, unlike every other kernel table.
	BareTables Flags = 1 << 3
)

// tableDesc is the descriptor a mapping with these flags hooks a new table
// page at pa up with.
func (f Flags) tableDesc(g *arm64.Geometry, pa uint64) uint64 {
	if f&BareTables != 0 {
		return g.MkTableBare(pa)
	}
	return g.MkTable(pa, f&NoExecMappings != 0)
}

// Map maps [va, va+size) to pa with prot (a page-form protection such as
// arm64.PageKernel) using the largest leaf the alignment of VA and PA allows
// at each level, as __create_pgd_mapping_locked does: PUD blocks (4K granule),
// contiguous PMD runs, PMD blocks, contiguous PTE runs, then PTEs. Existing
// tables are reused; rewriting a live leaf must pass pgattr_change_is_safe and
// a block may not replace a table (the kernel's BUG_ONs, here ErrUnsafe).
// Missing tables are allocated through the door (-ENOMEM stops the walk
// where it is, as in the kernel).
func (t *Tables) Map(d Door, va, pa, size, prot uint64, flags Flags) error {
	if size == t.lean.pageSize && (va|pa)&(size-1) == 0 {
		if dd, direct := d.(Direct); direct {
			// One aligned page through the plain Direct door: the page
			// table from the walk cache or the lean walk (lean.go), then
			// setLeaf's write, without the general path's set-up. If the
			// page table is not found so, the general path decides,
			// walking again as it does after its own walk.
			if tpa, tp, ok := t.pageTableDirect(dd.WalkCache, va); ok {
				return t.setPage(tpa, tp, va, pa, prot)
			}
		}
	}
	ps := t.g.PageSize()
	if (va^pa)&(ps-1) != 0 {
		return fmt.Errorf("%w: va %#x and pa %#x differ in page offset", ErrInvalid, va, pa)
	}
	end := (va + size + ps - 1) &^ (ps - 1)
	va &^= ps - 1
	pa &^= ps - 1
	if size == 0 || (end <= va && end != 0) {
		return fmt.Errorf("%w: bad range va %#x size %#x", ErrInvalid, va, size)
	}
	var m mapper
	m.w.init(t, d)
	m.t, m.g, m.d, m.delta, m.flags, m.cache = t, &t.g, d, pa-va, flags, cacheable(d)
	if end-va == ps {
		// One page: never part of a contiguous run.
		if m.cache {
			if tpa, tbl, _, ok := t.cached(va, arm64.LastLevel); ok {
				return m.setLeaf(tpa, tbl, arm64.LastLevel, va, prot)
			}
		}
		if m.w.direct {
			if m.cache {
				if tpa, tbl, _, ok := t.cachedViaShadow(va); ok {
					return m.setLeaf(tpa, tbl, arm64.LastLevel, va, prot)
				}
			}
			// Nobody observes the loads: walk to the page table and, if
			// it exists, write the entry there; otherwise (a table to
			// create, a block in the way) the general path below walks
			// again and decides.
			var c cursor
			ctpa, ctbl, err := t.walkToLevel(&m.w, va, &c, arm64.LastLevel-1, arm64.LastLevel-1)
			m.w.remember = false
			if err == nil && ctbl != nil {
				if m.cache {
					t.remember(va, arm64.LastLevel, ctpa, ctbl, c.bits|c.desc, nil)
				}
				return m.setLeaf(ctpa, ctbl, arm64.LastLevel, va, prot)
			}
		}
	}
	if m.cache && end-va == t.g.Size(arm64.LevelPMD) && (va|pa)&(end-va-1) == 0 && t.g.BlockAllowed(arm64.LevelPMD) && flags&NoBlockMappings == 0 {
		// One PMD block: never part of a contiguous PMD run.
		if tpa, tbl, _, ok := t.cached(va, arm64.LevelPMD); ok {
			return m.setLeaf(tpa, tbl, arm64.LevelPMD, va, prot)
		}
	}
	if m.cache {
		// Start from the deepest cached table that holds the whole range.
		for cl := arm64.LastLevel; cl > t.g.StartLevel; cl-- {
			sz := t.g.Size(cl - 1)
			if va^(end-1) >= sz {
				continue
			}
			if t.g.BlockAllowed(cl-1) && flags&NoBlockMappings == 0 && (va|end|pa)&(sz-1) == 0 {
				// The range is one whole block at level cl-1: that level
				// decides (init_pmd's pmd_set_huge, mmu.c; a table in the
				// way is refused), not a table below it that happens to
				// be cached.
				continue
			}
			if ctpa, ctbl, bits, ok := t.cached(va, cl); ok {
				m.bits, m.sh = bits, t.cachedShadow(cl)
				return m.mapLevel(ctpa, ctbl, cl, va, end, prot)
			}
		}
	}
	m.sh = t.rootSh
	return m.mapLevel(t.root, t.rootTbl, t.g.StartLevel, va, end, prot)
}

// mapper holds what stays fixed during one Map call, so the per-level
// recursion passes only what changes.
type mapper struct {
	w     walker
	t     *Tables
	g     *arm64.Geometry
	d     Door
	delta uint64 // pa - va: output addresses advance with input addresses
	flags Flags
	cache bool   // single-threaded door: use and fill the walk cache
	bits  uint64 // table descriptor bits above the current table
	// sh is the shadow of the table the first mapLevel call starts at, when
	// known; that call consumes it.
	sh *shadowEntry
}

func (m *mapper) mapLevel(tpa uint64, tbl []uint64, l arm64.Level, va, end, prot uint64) error {
	g := m.g
	sh := m.sh
	m.sh = nil // recursive calls start at tables whose shadow is unknown
	// Descend without recursion while [va, end) lies inside one entry that
	// cannot become a block (nor a contiguous run, which needs 16 entries):
	// the common case of mapping a few pages. Tables that exist are followed
	// with the walk rule (descend); the loop below creates missing ones.
	stop := l
	for stop < arm64.LastLevel {
		sz := g.Size(stop)
		if (va^(end-1)) >= sz || (g.BlockAllowed(stop) && m.flags&NoBlockMappings == 0 && (va|end|(va+m.delta))&(sz-1) == 0) {
			break
		}
		stop++
	}
	// read: the entry at level l for va, already loaded by descend (so a
	// door sees each descriptor load of the walk once).
	read, readOK := uint64(0), false
	if stop > l {
		var c cursor
		c.tpa, c.tbl, c.l, c.bits, c.sh = tpa, tbl, l, m.bits, sh
		m.w.remember = m.cache
		ctpa, ctbl, err := m.w.descend(&c, va, stop-1)
		m.w.remember = false
		if err != nil {
			return err
		}
		tpa, tbl, l, read, readOK = c.tpa, c.tbl, c.l, c.desc, true
		if ctbl != nil { // the level-stop table exists
			readOK = false
			c.bits |= c.desc
			tpa, tbl, l = ctpa, ctbl, stop
			if m.cache {
				m.t.remember(va, l, tpa, tbl, c.bits, c.csh)
			}
		}
		m.bits = c.bits
	}
	for l < stop {
		idx := g.Index(va, l)
		old := read
		if !readOK {
			old = m.w.load(tpa, tbl, idx)
		}
		readOK = false
		var err error
		if tpa, tbl, err = m.ensureTable(tpa, tbl, idx, l, old, va); err != nil {
			return err
		}
		if m.cache {
			desc := old
			if desc == 0 {
				desc = m.flags.tableDesc(g, tpa)
			}
			m.bits |= desc
			var sh *shadowEntry
			if m.w.direct {
				sh = m.t.shadowOf(tpa, l+1)
			}
			m.t.remember(va, l+1, tpa, tbl, m.bits, sh)
		}
		l++
	}
	if l == arm64.LastLevel {
		if end-va == g.PageSize() {
			// One page: never part of a contiguous run.
			return m.setLeaf(tpa, tbl, l, va, prot)
		}
		return m.mapPTEs(tpa, tbl, va, end, prot)
	}
	contN := g.ContEntries(l)
	sz := g.Size(l)
	block := g.BlockAllowed(l) && m.flags&NoBlockMappings == 0
	for {
		// alloc_init_cont_pmd / alloc_init_cont_pte: a suitably aligned
		// contiguous chunk gets PTE_CONT on every entry.
		chunkEnd, p := end, prot
		if contN > 0 {
			cs := g.ContSize(l)
			chunkEnd = (va | (cs - 1)) + 1
			if chunkEnd-1 >= end-1 {
				chunkEnd = end
			}
			if (va|chunkEnd|(va+m.delta))&(cs-1) == 0 && m.flags&NoContMappings == 0 {
				p |= arm64.PTECont
			}
		}
		for {
			next := (va | (sz - 1)) + 1 // boundary
			if next-1 >= chunkEnd-1 {
				next = chunkEnd
			}
			idx := g.Index(va, l)
			old := m.w.load(tpa, tbl, idx)
			pa := va + m.delta
			if block && (va|next|pa)&(sz-1) == 0 {
				// init_pte / pmd_set_huge / pud_set_huge
				nv := g.MkLeaf(pa, p, l)
				if g.IsTable(old, l) {
					return fmt.Errorf("%w: %s at %#x (va %#x) is a table, cannot become a leaf", ErrUnsafe, g.Name(l), descPA(tpa, idx), va)
				}
				// An empty or identical old entry is trivially safe.
				if old != 0 && old != nv && !g.PgattrChangeIsSafe(old, nv) {
					return fmt.Errorf("%w: %s at %#x (va %#x): %#016x -> %#016x", ErrUnsafe, g.Name(l), descPA(tpa, idx), va, old, nv)
				}
				m.w.store(tpa, tbl, idx, nv)
				if m.t.tr != nil {
					m.t.trackLeaf(va, l, old, nv)
				}
			} else {
				ctpa, ctbl, err := m.ensureTable(tpa, tbl, idx, l, old, va)
				if err != nil {
					return err
				}
				if err := m.mapLevel(ctpa, ctbl, l+1, va, next, p); err != nil {
					return err
				}
			}
			if next == chunkEnd {
				break
			}
			va = next
		}
		if chunkEnd == end {
			return nil
		}
		va = chunkEnd
	}
}

// setLeaf writes one leaf at level l (init_pte / pmd_set_huge for a single
// entry), with the create path's checks.
func (m *mapper) setLeaf(tpa uint64, tbl []uint64, l arm64.Level, va, prot uint64) error {
	g := m.g
	idx := g.Index(va, l)
	dpa := descPA(tpa, idx)
	old := m.w.load(tpa, tbl, idx)
	nv := g.MkLeaf(va+m.delta, prot, l)
	if g.IsTable(old, l) {
		return fmt.Errorf("%w: %s at %#x (va %#x) is a table, cannot become a leaf", ErrUnsafe, g.Name(l), dpa, va)
	}
	if old != 0 && old != nv && !g.PgattrChangeIsSafe(old, nv) {
		return fmt.Errorf("%w: %s at %#x (va %#x): %#016x -> %#016x", ErrUnsafe, g.Name(l), dpa, va, old, nv)
	}
	m.w.store(tpa, tbl, idx, nv)
	if m.t.tr != nil {
		m.t.trackLeaf(va, l, old, nv)
	}
	return nil
}

// mapPTEs fills the page entries of one PTE table for [va, end)
// (alloc_init_cont_pte + init_pte): aligned CONT_PTES chunks get PTE_CONT.
func (m *mapper) mapPTEs(tpa uint64, tbl []uint64, va, end, prot uint64) error {
	g := m.g
	ps := g.PageSize()
	cs := g.ContSize(arm64.LastLevel)
	prot &= g.AttrMask()
	pa := va + m.delta
	var tr pteTracker
	if m.t.tr != nil {
		tr = m.t.ptes(va, end)
	}
	for va != end {
		chunkEnd := (va | (cs - 1)) + 1
		if chunkEnd-1 >= end-1 {
			chunkEnd = end
		}
		p := prot
		if (va|chunkEnd|pa)&(cs-1) == 0 && m.flags&NoContMappings == 0 {
			p |= arm64.PTECont
		}
		idx := g.Index(va, arm64.LastLevel)
		n := int((chunkEnd - va) >> g.PageShift) // a shift: a 64-bit divide costs ~40 cycles
		for i := idx; i < idx+n; i++ {
			old := m.w.load(tpa, tbl, i)
			nv := g.AddressBits(pa) | p
			if old != 0 && old != nv && !g.PgattrChangeIsSafe(old, nv) {
				tr.done()
				return fmt.Errorf("%w: PTE at %#x (va %#x): %#016x -> %#016x", ErrUnsafe, descPA(tpa, i), va+uint64(i-idx)*ps, old, nv)
			}
			m.w.store(tpa, tbl, i, nv)
			if tr.span != 0 {
				tr.change(va+uint64(i-idx)*ps, old, nv)
			}
			pa += ps
		}
		va = chunkEnd
	}
	tr.done()
	return nil
}

// ensureTable returns the next-level table under entry idx, allocating and
// publishing a zeroed one if the slot is empty (the pXd_none branch of
// alloc_init_*), and refusing a leaf in the way (BUG_ON(pXd_bad)).
//
// An empty slot is populated as __pte_alloc_kernel / __pmd_alloc /
// __pud_alloc do (mm/memory.c): the page is allocated and zeroed outside
// the lock, then under init_mm.page_table_lock the slot is read again; if
// it is still empty the table is installed (the smp_wmb before
// pmd_populate_kernel orders the zeroing first: here the door's store
// publishes it), otherwise another CPU won the race and the page is freed
// (pte_free_kernel) and the winner's table used.
func (m *mapper) ensureTable(tpa uint64, tbl []uint64, idx int, l arm64.Level, old uint64, va uint64) (uint64, []uint64, error) {
	g := m.g
	if old == 0 {
		cpa, ctbl, won, err := m.populate(tpa, tbl, idx, l, va)
		if err != nil || won {
			return cpa, ctbl, err
		}
		old = cpa // another CPU's table descriptor
	}
	if !g.IsTable(old, l) {
		return 0, nil, fmt.Errorf("%w: %s at %#x (va %#x) is a leaf %#016x where a table is needed", ErrUnsafe, g.Name(l), descPA(tpa, idx), va, old)
	}
	cpa := g.OutputAddress(old)
	ctbl, ok := m.w.table(cpa)
	if !ok {
		return 0, nil, fmt.Errorf("%w: %#x under %s at %#x (va %#x)", ErrNotTable, cpa, g.Name(l), descPA(tpa, idx), va)
	}
	return cpa, ctbl, nil
}

// populate fills the empty level-l slot idx with a new table. won=false
// means another CPU installed one first: desc is then its descriptor.
func (m *mapper) populate(tpa uint64, tbl []uint64, idx int, l arm64.Level, va uint64) (desc uint64, ctbl []uint64, won bool, err error) {
	t, d := m.t, m.d
	dpa := descPA(tpa, idx)
	cpa, ctbl, err := t.allocTable(d, l+1)
	if err != nil {
		return 0, nil, false, fmt.Errorf("mapping va %#x: %w", va, err)
	}
	d.PageTableLock(t)
	if old := d.Load(dpa, &tbl[idx]); old != 0 {
		d.PageTableUnlock(t)
		// Never published, so no walk can hold it: no walk-cache
		// invalidation and no TLB maintenance.
		if err := t.freeUnpublished(d, cpa); err != nil {
			return 0, nil, false, err
		}
		return old, nil, false, nil
	}
	d.Store(dpa, &tbl[idx], m.flags.tableDesc(m.g, cpa))
	if t.tr != nil {
		t.trackTable(va, l+1)
	}
	d.PageTableUnlock(t)
	return cpa, ctbl, true, nil
}

// Unmap clears the leaves covering [start, end) as vunmap_range does: page
// entries one by one and blocks only when covered whole; a partially covered
// block is refused with ErrInvalid before anything changes. Table pages stay
// allocated, as they do for the kernel's vmalloc range.
func (t *Tables) Unmap(d Door, start, end uint64) error {
	if start >= end && end != 0 {
		return fmt.Errorf("%w: empty range [%#x, %#x)", ErrInvalid, start, end)
	}
	// A range served by one cached PTE table has no block in the way.
	oneTable := start^(end-1) < t.g.Size(arm64.LastLevel-1)
	top := arm64.LastLevel // the deepest cached level the first walk looks at
	var w walker
	w.init(t, d)
	if oneTable && cacheable(d) {
		top--
		ctpa, ctbl, _, ok := t.cached(start, arm64.LastLevel)
		if !ok && w.direct {
			ctpa, ctbl, _, ok = t.cachedViaShadow(start)
		}
		if ok {
			i, j := w.pteSpan(ctbl, start, end)
			return unmapVisitor{}.ptes(&w, ctpa, ctbl, i, j, start, 0)
		}
	}
	// Check first so a refusal leaves the tables as they were. A block
	// covered only in part holds start or end-1, so the two edges suffice.
	for va := start; ; va = end - 1 {
		var c cursor
		if _, _, err := t.walkToLevel(&w, va, &c, arm64.LastLevel, top); err != nil {
			return err
		}
		top = arm64.LastLevel
		if w.direct && oneTable && c.l == arm64.LastLevel {
			// The check walk reached the one PTE table of the range: with
			// nobody observing loads, clear there instead of walking again.
			i, j := w.pteSpan(c.tbl, start, end)
			return unmapVisitor{}.ptes(&w, c.tpa, c.tbl, i, j, start, 0)
		}
		sz := t.g.Size(c.l)
		first := va &^ (sz - 1)
		last := first + sz - 1
		if c.l < arm64.LastLevel && t.g.IsLeaf(c.desc, c.l) && (first < start || last > end-1) {
			return fmt.Errorf("%w: unmap [%#x, %#x) covers part of the %s block at %#x", ErrInvalid, start, end, t.g.Name(c.l), first)
		}
		if va == end-1 || last >= end-1 {
			break // this entry also holds end-1
		}
	}
	var v visitor
	v.op = opUnmap
	return walkCached(t, d, &v, start, end)
}
