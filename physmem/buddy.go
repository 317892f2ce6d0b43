package physmem

import "fmt"

// pushFront adds the block at pfn to the front of l (list_add).
func (m *Memory) pushFront(l *blockList, pfn uint64, pm *pageMeta) {
	pm.prev = nilPfn
	pm.next = l.first
	if l.first == nilPfn {
		l.last = pfn
	} else {
		m.saved(l.first).prev = pfn
	}
	l.first = pfn
	l.n++
}

// pushBack adds the block at pfn to the back of l (list_add_tail).
func (m *Memory) pushBack(l *blockList, pfn uint64, pm *pageMeta) {
	pm.next = nilPfn
	pm.prev = l.last
	if l.last == nilPfn {
		l.first = pfn
	} else {
		m.saved(l.last).next = pfn
	}
	l.last = pfn
	l.n++
}

// unlink removes the block at pfn from l (list_del).
func (m *Memory) unlink(l *blockList, pfn uint64, pm *pageMeta) {
	if pm.prev == nilPfn {
		l.first = pm.next
	} else {
		m.saved(pm.prev).next = pm.next
	}
	if pm.next == nilPfn {
		l.last = pm.prev
	} else {
		m.saved(pm.next).prev = pm.prev
	}
	pm.next, pm.prev = nilPfn, nilPfn
	l.n--
}

// addToFreeList makes the block at pfn a free block of the given order and
// puts it at the head or the tail of its free list (__add_to_free_list +
// set_buddy_order).
func (m *Memory) addToFreeList(pfn uint64, pm *pageMeta, order int, tail bool) {
	m.save(pfn)
	pm.order = uint8(order)
	pm.owner = OwnerFree
	fa := &m.area[order]
	if tail {
		pm.flags = pgHead | pgBuddy | pgTail
		m.pushBack(&fa.tail, pfn, pm)
		return
	}
	pm.flags = pgHead | pgBuddy
	m.pushFront(&fa.head, pfn, pm)
}

// delFromFreeList takes the free block at pfn off its free list and leaves
// its head with no flags (del_page_from_free_list: list_del,
// __ClearPageBuddy, set_page_private(0)). A block in its boot position just
// leaves the boot part; the boot cursor skips it later.
func (m *Memory) delFromFreeList(pfn uint64, pm *pageMeta) {
	m.save(pfn)
	fa := &m.area[pm.order]
	switch {
	case pm.flags&pgBoot != 0:
		fa.nrBoot--
	case pm.flags&pgTail != 0:
		m.unlink(&fa.tail, pfn, pm)
	default:
		m.unlink(&fa.head, pfn, pm)
	}
	pm.flags = 0
}

// takeFirst removes and returns the first block of free_area[order]'s list
// (get_page_from_free_area + del_page_from_free_list): the head part first,
// then the boot part in address order, then the tail part. The area must not
// be empty.
func (m *Memory) takeFirst(order int) (uint64, *pageMeta) {
	fa := &m.area[order]
	if fa.head.n > 0 {
		pfn := fa.head.first
		pm := m.pageAt(pfn)
		m.delFromFreeList(pfn, pm)
		return pfn, pm
	}
	if fa.nrBoot > 0 {
		for {
			r := fa.runs[fa.run]
			if fa.runIdx == r.n {
				fa.run++
				fa.runIdx = 0
				continue
			}
			pfn := r.pfn + fa.runIdx<<order
			fa.runIdx++
			s := m.materialise(pfn)
			pm := &s.pages[pfn-s.base]
			if pm.flags&pgBoot == 0 {
				continue // left the boot part earlier (Reserve)
			}
			m.delFromFreeList(pfn, pm)
			return pfn, pm
		}
	}
	pfn := fa.tail.first
	pm := m.pageAt(pfn)
	m.delFromFreeList(pfn, pm)
	return pfn, pm
}

// Alloc takes a free block of 2^order pages and gives it to owner; it returns
// the block's physical address, aligned to its size. It models
// __rmqueue_smallest: take the first block of the smallest order >= order
// that has one, then expand it, putting each upper half back at the head of
// the free list one order lower. The pages are then tagged with owner, as
// set_page_owner does. ErrNoMem when no block is large enough, ErrInvalid for
// an order outside 0..MaxOrder or owner OwnerFree.
//
// O(MaxOrder) and allocation-free once the block's section is materialised.
func (m *Memory) Alloc(order int, owner Owner) (pa uint64, err error) {
	if order < 0 || order > m.maxOrder {
		return 0, fmt.Errorf("alloc order %d: order out of range 0..%d: %w", order, m.maxOrder, ErrInvalid)
	}
	if !validOwner(owner) {
		return 0, fmt.Errorf("alloc order %d: owner %v cannot hold pages: %w", order, owner, ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for cur := order; cur <= m.maxOrder; cur++ {
		if m.area[cur].nrFree() == 0 {
			continue
		}
		pfn, pm := m.takeFirst(cur)
		m.expand(pfn, order, cur)
		pm.flags = pgHead
		pm.order = uint8(order)
		pm.owner = owner
		n := uint64(1) << order
		m.nrFree -= n
		m.owned[owner] += n
		return pfn << m.pageShift, nil
	}
	return 0, fmt.Errorf("alloc order %d (%d free pages, largest free order %d): %w",
		order, m.nrFree, m.largestFreeOrderLocked(), ErrNoMem)
}

func (m *Memory) largestFreeOrderLocked() int {
	for o := m.maxOrder; o >= 0; o-- {
		if m.area[o].nrFree() > 0 {
			return o
		}
	}
	return -1
}

// expand splits the block of order high at pfn down to order low, giving
// back the upper half at each step to the head of the free list of the
// halved order (expand in mm/page_alloc.c).
func (m *Memory) expand(pfn uint64, low, high int) {
	if high == low {
		return
	}
	s := m.sectionOf(pfn)
	for high > low {
		high--
		half := pfn + 1<<high
		m.addToFreeList(half, &s.pages[half-s.base], high, false)
	}
}

// Free gives back a block that Alloc returned, with the same order. It models
// __free_one_page: while the buddy (pfn ^ 2^order) is a free block of the
// same order, take it off its list and merge, up to MaxOrder; then put the
// merged block at the head of its list, or at the tail when
// buddy_merge_likely finds the next-higher buddy free. Private slots of the
// block are cleared (the kernel resets page->private on free).
//
// ErrInvalid for an unaligned address, an order out of range or an address
// outside RAM; ErrNotAllocated when pa is not the head of a block allocated
// with this order (double free, wrong order, a reserved range, a tail page).
func (m *Memory) Free(pa uint64, order int) error {
	if order < 0 || order > m.maxOrder {
		return fmt.Errorf("free %#x order %d: order out of range 0..%d: %w", pa, order, m.maxOrder, ErrInvalid)
	}
	if pa&(m.PageSize()<<order-1) != 0 {
		return fmt.Errorf("free %#x order %d: address not aligned to the block size %#x: %w",
			pa, order, m.PageSize()<<order, ErrInvalid)
	}
	pfn := pa >> m.pageShift
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sectionOf(pfn)
	var pm *pageMeta
	if s != nil {
		pm = &s.pages[pfn-s.base]
	}
	if pm == nil || pm.flags&(pgHead|pgBuddy|pgReserved) != pgHead || int(pm.order) != order {
		return m.badFree(pa, order, pm)
	}
	n := uint64(1) << order
	m.owned[pm.owner] -= n
	m.nrFree += n
	m.clearPrivate(s, pfn, order, pm)
	m.freeOnePage(s, pfn, order)
	return nil
}

// badFree explains why Free refused pa (the kernel's bad_page reasons).
func (m *Memory) badFree(pa uint64, order int, pm *pageMeta) error {
	if !m.Contains(pa) {
		return fmt.Errorf("free %#x order %d: not RAM: %w", pa, order, ErrInvalid)
	}
	switch {
	case pm == nil || pm.flags&pgBuddy != 0:
		return fmt.Errorf("free %#x order %d: page is free: %w", pa, order, ErrNotAllocated)
	case pm.flags&pgHead == 0:
		head, k, hpm, _ := m.findBlock(pa >> m.pageShift)
		state := "allocated"
		if hpm != nil && hpm.flags&pgBuddy != 0 {
			state = "free"
		}
		return fmt.Errorf("free %#x order %d: page is inside the %s order-%d block at %#x: %w",
			pa, order, state, k, head<<m.pageShift, ErrNotAllocated)
	case pm.flags&pgReserved != 0:
		return fmt.Errorf("free %#x order %d: page is reserved (%v), not allocated: %w", pa, order, pm.owner, ErrNotAllocated)
	}
	return fmt.Errorf("free %#x order %d: block was allocated with order %d: %w", pa, order, pm.order, ErrNotAllocated)
}

// clearPrivate zeroes the private slots of a block being freed, if any was
// set.
func (m *Memory) clearPrivate(s *section, pfn uint64, order int, pm *pageMeta) {
	if pm.flags&pgPrivate == 0 {
		return
	}
	i := pfn - s.base
	m.savePrivate(s, i, 1<<order)
	clear(s.private[i : i+1<<order])
	m.saved(pfn).flags &^= pgPrivate
}

// freeOnePage merges the block (pfn, order), whose head is not on any list,
// with its free buddies and lists the result (__free_one_page with
// fpi_flags == 0, one zone, one migratetype). The buddy of a block below
// MaxOrder lies in the same section, so the loop stays inside s.
func (m *Memory) freeOnePage(s *section, pfn uint64, order int) {
	idx := pfn - s.base
	for order < m.maxOrder {
		bidx := idx ^ 1<<order
		bpm := &s.pages[bidx]
		// page_is_buddy: PageBuddy and buddy_order == order. A buddy in a
		// hole has no flags and never matches.
		if bpm.flags&pgBuddy == 0 || int(bpm.order) != order {
			break
		}
		m.delFromFreeList(s.base+bidx, bpm)
		m.saved(s.base + idx).flags = 0
		idx &= bidx
		order++
	}
	tail := m.buddyMergeLikely(s, idx, order)
	m.addToFreeList(s.base+idx, &s.pages[idx], order, tail)
}

// buddyMergeLikely reports whether the block (idx, order) that could not
// merge should go to the tail of its list because the buddy of its parent
// is free, so that the block's own buddy may be freed and merge soon
// (buddy_merge_likely).
func (m *Memory) buddyMergeLikely(s *section, idx uint64, order int) bool {
	if order >= m.maxOrder-1 {
		return false
	}
	higher := idx &^ (1 << order)       // buddy_pfn & pfn
	hb := &s.pages[higher^1<<(order+1)] // its buddy at order+1
	return hb.flags&pgBuddy != 0 && int(hb.order) == order+1
}
