package physmem

import "fmt"

// checkRange validates a page-aligned byte range inside one RAM region and
// returns it as pfns.
func (m *Memory) checkRange(op string, base, size uint64) (start, end uint64, err error) {
	pageMask := m.PageSize() - 1
	switch {
	case size == 0:
		return 0, 0, fmt.Errorf("%s %#x size 0: empty range: %w", op, base, ErrInvalid)
	case base&pageMask != 0 || size&pageMask != 0:
		return 0, 0, fmt.Errorf("%s %#x size %#x: not page aligned: %w", op, base, size, ErrInvalid)
	case base+size < base:
		return 0, 0, fmt.Errorf("%s %#x size %#x: range wraps: %w", op, base, size, ErrInvalid)
	}
	start, end = base>>m.pageShift, (base+size)>>m.pageShift
	ri := m.regionIndex(start)
	if ri < 0 || m.rs[ri].end < end {
		return 0, 0, fmt.Errorf("%s %#x-%#x: not inside one RAM region: %w", op, base, base+size, ErrInvalid)
	}
	return start, end, nil
}

// Reserve takes the page-aligned byte range [base, base+size) out of the free
// pool and gives it to owner, like memblock_reserve of the kernel image,
// firmware tables or a crash kernel. It works at any time: each naturally
// aligned chunk of the range is taken off the buddy lists the way
// take_page_off_buddy does it, breaking the free block that holds it down
// with break_down_buddy_pages (the other halves go to the head of their
// lists). Reserving before any allocation yields the same free blocks the
// kernel gets by carving RAM around memblock.reserved at boot, though the
// blocks split off sit at the head of their lists rather than in address
// order at the tail.
//
// ErrBusy, with nothing changed, if any page of the range is not free;
// ErrInvalid for an unaligned or empty range, a range not inside one RAM
// region, or owner OwnerFree. Cost is proportional to the range.
func (m *Memory) Reserve(base, size uint64, owner Owner) error {
	start, end, err := m.checkRange("reserve", base, size)
	if err != nil {
		return err
	}
	if !validOwner(owner) {
		return fmt.Errorf("reserve %#x-%#x: owner %v cannot hold pages: %w", base, base+size, owner, ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// First pass: every block overlapping the range must be free, so that a
	// refusal changes nothing.
	for p := start; p < end; {
		head, order, pm, ok := m.findBlock(p)
		if !ok {
			return fmt.Errorf("reserve %#x-%#x: page %#x: %w", base, base+size, p<<m.pageShift, errCorrupt)
		}
		if pm != nil && pm.flags&pgBuddy == 0 {
			what := "allocated"
			if pm.flags&pgReserved != 0 {
				what = "reserved"
			}
			return fmt.Errorf("reserve %#x-%#x: page %#x is in the %s order-%d block at %#x (%v): %w",
				base, base+size, max(p, head)<<m.pageShift, what, order, head<<m.pageShift, pm.owner, ErrBusy)
		}
		p = head + 1<<order
	}
	carve(start, end, m.maxOrder, func(pfn, n uint64, order int) {
		for i := uint64(0); i < n; i++ {
			m.takeOffBuddy(pfn+i<<order, order, owner)
		}
	})
	m.nrFree -= end - start
	m.owned[owner] += end - start
	return nil
}

// takeOffBuddy removes the free naturally aligned chunk (pfn, order) from the
// buddy lists and makes it a reserved block of owner (take_page_off_buddy
// generalised from one page to an aligned chunk, break_down_buddy_pages).
// Every page of the chunk must be free.
func (m *Memory) takeOffBuddy(pfn uint64, order int, owner Owner) {
	s := m.materialise(pfn)
	head, k, pm, _ := m.findBlock(pfn)
	if k < order {
		// The chunk spans several free blocks; the buddy allocator never
		// leaves them unmerged, but take them one half at a time anyway.
		m.takeOffBuddy(pfn, order-1, owner)
		m.takeOffBuddy(pfn+1<<(order-1), order-1, owner)
		return
	}
	m.delFromFreeList(head, pm)
	// break_down_buddy_pages: halve until the chunk is reached, giving the
	// half that does not hold it back to the head of the free list.
	for k > order {
		k--
		half := uint64(1) << k
		if pfn >= head+half {
			m.addToFreeList(head, &s.pages[head-s.base], k, false)
			head += half
		} else {
			m.addToFreeList(head+half, &s.pages[head+half-s.base], k, false)
		}
	}
	pm = m.saved(pfn)
	pm.flags = pgHead | pgReserved
	pm.order = uint8(order)
	pm.owner = owner
}

// Unreserve gives the page-aligned byte range [base, base+size), which must be
// entirely reserved by Reserve (possibly by several calls, possibly only part
// of a reservation), back to the buddy allocator, like free_reserved_area
// when free_initmem releases the kernel's init sections. Reserved blocks
// straddling the range edges are split; the rest keeps its owner. The pages
// are freed as maximal aligned blocks in address order, which leaves the
// buddy allocator in the same state as freeing them page by page.
//
// ErrNotAllocated, with nothing changed, if any page of the range is not
// reserved; ErrInvalid for an unaligned or empty range or one not inside one
// RAM region. Cost is proportional to the range.
func (m *Memory) Unreserve(base, size uint64) error {
	start, end, err := m.checkRange("unreserve", base, size)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := start; p < end; {
		head, order, pm, ok := m.findBlock(p)
		if !ok {
			return fmt.Errorf("unreserve %#x-%#x: page %#x: %w", base, base+size, p<<m.pageShift, errCorrupt)
		}
		if pm == nil || pm.flags&pgReserved == 0 {
			what := "free"
			if pm != nil && pm.flags&pgBuddy == 0 {
				what = "allocated (" + pm.owner.String() + ")"
			}
			return fmt.Errorf("unreserve %#x-%#x: page %#x is in the %s order-%d block at %#x, not reserved: %w",
				base, base+size, max(p, head)<<m.pageShift, what, order, head<<m.pageShift, ErrNotAllocated)
		}
		p = head + 1<<order
	}
	for p := start; p < end; {
		s := m.sectionOf(p)
		head, order, pm, _ := m.findBlock(p)
		// Split a reserved block reaching outside [p, end) into halves
		// until the one holding p fits; the halves keep the owner.
		for head < p || head+1<<order > end {
			order--
			half := uint64(1) << order
			hpm := m.saved(head + half)
			m.save(head)
			hpm.flags = pm.flags
			hpm.order = uint8(order)
			hpm.owner = pm.owner
			pm.order = uint8(order)
			if p >= head+half {
				head += half
				pm = hpm
			}
		}
		n := uint64(1) << order
		m.owned[pm.owner] -= n
		m.nrFree += n
		m.clearPrivate(s, head, order, pm)
		m.saved(head).flags = pgHead
		m.freeOnePage(s, head, order)
		p = head + n
	}
	return nil
}
