package physmem

import (
	"fmt"
	"math/bits"
	"slices"
)

// blockTotals is what the blocks of some pages add up to.
type blockTotals struct {
	listed [MaxOrderLimit + 1]uint64 // free blocks on the head/tail lists
	boot   [MaxOrderLimit + 1]uint64 // free blocks still in their boot position
	free   uint64
	owned  [NumOwners]uint64
}

func (t *blockTotals) add(o *blockTotals) {
	for i := range t.listed {
		t.listed[i] += o.listed[i]
		t.boot[i] += o.boot[i]
	}
	t.free += o.free
	for i := range t.owned {
		t.owned[i] += o.owned[i]
	}
}

// checkTotals accumulates what Check finds in the materialised sections.
type checkTotals struct {
	blockTotals
	carved [MaxOrderLimit + 1]uint64 // boot-carving blocks inside materialised sections
}

// Check verifies the allocator's internal consistency and returns an error
// wrapping errCorrupt describing the first violation:
//   - every RAM page belongs to exactly one naturally aligned block inside
//     one region, and pages outside RAM belong to none;
//   - free blocks carry no owner and no private value; the free lists are
//     well linked, hold exactly the free blocks not in their boot position,
//     with the right order; the per-order counts match (FreeArea is exact);
//   - no two free buddies of the same order are left unmerged
//     (__free_one_page's post-condition);
//   - free + owned pages == total pages, and the O(1) counters agree with
//     the blocks.
//
// It is the model's CONFIG_DEBUG_VM: the kernel checks the same properties
// piecemeal (VM_BUG_ON_PAGE in __free_one_page, check_new_pages,
// free_pages_prepare).
//
// Check is incremental, and its result is a full walk's (checkFull, which
// the tests compare it with): the page checks look inside one frame of a
// section at a time (2^frameShift pages, at least a MaxOrder block, so no
// block or buddy pair crosses one), every change to a page marks its frame
// (save, savePrivate, Restore), and Check walks the marked frames only,
// keeping what each verified frame adds to the totals; a frame that fails
// stays marked. The first failing frame in address order is the full walk's
// first failure, as every unmarked frame passed. So the cost is the pages
// changed since the last Check, plus the free lists and the touched
// sections; pristine sections are accounted from the boot carving.
func (m *Memory) Check() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var t checkTotals
	m.secs = append(m.secs[:0], m.touched...)
	slices.Sort(m.secs)
	for _, sn := range m.secs {
		s := m.sectionByNumber(sn)
		if err := m.verifySection(s); err != nil {
			return err
		}
		t.add(&s.sum)
		for o := range t.carved {
			t.carved[o] += s.carved[o]
		}
	}
	return m.checkCounts(&t)
}

// verifySection checks the marked frames of s and brings s.sum up to date.
func (m *Memory) verifySection(s *section) error {
	if s.dirty == 0 {
		return nil
	}
	if s.frames == nil {
		s.frames = make([]blockTotals, 1<<(m.secPageShift-m.frameShift))
	}
	for s.dirty != 0 {
		f := uint(bits.TrailingZeros64(s.dirty))
		var ft blockTotals
		lo := s.base + uint64(f)<<m.frameShift
		if err := m.checkPages(s, lo, lo+1<<m.frameShift, &ft); err != nil {
			return err
		}
		s.frames[f] = ft
		s.dirty &^= 1 << f
	}
	s.sum = blockTotals{}
	for i := range s.frames {
		s.sum.add(&s.frames[i])
	}
	return nil
}

// checkFull is Check walking every page of every touched section, without
// the cache: the reference the tests hold Check to.
func (m *Memory) checkFull() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var t checkTotals
	secs := slices.Clone(m.touched)
	slices.Sort(secs)
	for _, sn := range secs {
		s := m.sectionByNumber(sn)
		m.forEachBootBlock(s, func(_ uint64, order int) { t.carved[order]++ })
		if err := m.checkPages(s, s.base, s.base+uint64(len(s.pages)), &t.blockTotals); err != nil {
			return err
		}
	}
	return m.checkCounts(&t)
}

// checkCounts checks the free lists and the counters against the totals of
// the touched sections.
func (m *Memory) checkCounts(t *checkTotals) error {
	for o := 0; o <= m.maxOrder; o++ {
		fa := &m.area[o]
		if t.carved[o] > m.bootInit[o] {
			return fmt.Errorf("order %d: %d boot blocks in touched sections but only %d at boot: %w",
				o, t.carved[o], m.bootInit[o], errCorrupt)
		}
		pristine := m.bootInit[o] - t.carved[o]
		if fa.nrBoot != pristine+t.boot[o] {
			return fmt.Errorf("order %d: boot count %d, want %d pristine + %d touched: %w",
				o, fa.nrBoot, pristine, t.boot[o], errCorrupt)
		}
		t.free += pristine << o
		if fa.run > len(fa.runs) || (fa.run < len(fa.runs) && fa.runIdx > fa.runs[fa.run].n) {
			return fmt.Errorf("order %d: boot cursor %d/%d out of range: %w", o, fa.run, fa.runIdx, errCorrupt)
		}
		if err := m.checkList(o, &fa.head, false); err != nil {
			return err
		}
		if err := m.checkList(o, &fa.tail, true); err != nil {
			return err
		}
		if got := fa.head.n + fa.tail.n; got != t.listed[o] {
			return fmt.Errorf("order %d: %d blocks on the free lists, %d listed free blocks in memory: %w",
				o, got, t.listed[o], errCorrupt)
		}
	}
	if t.free != m.nrFree {
		return fmt.Errorf("free pages: counter %d, blocks %d: %w", m.nrFree, t.free, errCorrupt)
	}
	sum := t.free
	for o := OwnerFree + 1; o < NumOwners; o++ {
		if t.owned[o] != m.owned[o] {
			return fmt.Errorf("%v pages: counter %d, blocks %d: %w", o, m.owned[o], t.owned[o], errCorrupt)
		}
		sum += t.owned[o]
	}
	if sum != m.totalPages {
		return fmt.Errorf("free %d + owned %d pages != total %d: %w", t.free, sum-t.free, m.totalPages, errCorrupt)
	}
	return nil
}

// checkPages walks the pages [lo, hi) of s, which start and end at frame
// boundaries: holes carry no state, and the RAM in between is a sequence of
// blocks.
func (m *Memory) checkPages(s *section, lo, hi uint64, t *blockTotals) error {
	next := lo // first page not yet checked
	for _, r := range m.rs[m.firstRegionEndingAfter(lo):] {
		if r.start >= hi {
			break
		}
		rlo, rhi := max(lo, r.start), min(hi, r.end)
		if err := m.checkHole(s, next, rlo); err != nil {
			return err
		}
		for p := rlo; p < rhi; {
			n, err := m.checkBlock(s, p, rhi, t)
			if err != nil {
				return err
			}
			p += n
		}
		next = rhi
	}
	return m.checkHole(s, next, hi)
}

// checkHole verifies that pages [from, to) of s, which are not RAM, carry no
// state.
func (m *Memory) checkHole(s *section, from, to uint64) error {
	for p := from; p < to; p++ {
		if s.pages[p-s.base].flags != 0 {
			return fmt.Errorf("page %#x outside RAM has flags %#x: %w", p<<m.pageShift, s.pages[p-s.base].flags, errCorrupt)
		}
	}
	return nil
}

// checkBlock verifies the block whose head must be at p, lying below end, and
// returns its size in pages. A block that passes the order and alignment
// checks ends within its frame, so end may be cut at a frame boundary.
func (m *Memory) checkBlock(s *section, p, end uint64, t *blockTotals) (uint64, error) {
	pa := p << m.pageShift
	pm := &s.pages[p-s.base]
	if pm.flags&pgHead == 0 {
		return 0, fmt.Errorf("page %#x: RAM page not covered by any block: %w", pa, errCorrupt)
	}
	order := int(pm.order)
	n := uint64(1) << order
	switch {
	case order > m.maxOrder:
		return 0, fmt.Errorf("block %#x: order %d: %w", pa, order, errCorrupt)
	case p&(n-1) != 0:
		return 0, fmt.Errorf("block %#x order %d: not naturally aligned: %w", pa, order, errCorrupt)
	case p+n > end:
		return 0, fmt.Errorf("block %#x order %d: reaches outside its RAM region: %w", pa, order, errCorrupt)
	}
	for q := p + 1; q < p+n; q++ {
		if f := s.pages[q-s.base].flags; f != 0 {
			return 0, fmt.Errorf("block %#x order %d: page %#x inside it has flags %#x: %w", pa, order, q<<m.pageShift, f, errCorrupt)
		}
	}
	var priv []uint64
	if s.private != nil {
		priv = s.private[p-s.base : p-s.base+n]
	}
	if pm.flags&pgBuddy != 0 {
		if pm.flags&^(pgHead|pgBuddy|pgBoot|pgTail) != 0 || pm.flags&(pgBoot|pgTail) == pgBoot|pgTail {
			return 0, fmt.Errorf("free block %#x order %d: flags %#x: %w", pa, order, pm.flags, errCorrupt)
		}
		if pm.owner != OwnerFree {
			return 0, fmt.Errorf("free block %#x order %d: owner %v: %w", pa, order, pm.owner, errCorrupt)
		}
		if slices.ContainsFunc(priv, func(v uint64) bool { return v != 0 }) {
			return 0, fmt.Errorf("free block %#x order %d: private value left set: %w", pa, order, errCorrupt)
		}
		if order < m.maxOrder {
			b := &s.pages[(p^n)-s.base]
			if b.flags&pgBuddy != 0 && int(b.order) == order {
				return 0, fmt.Errorf("free block %#x and its buddy %#x, both order %d, are not merged: %w",
					pa, (p^n)<<m.pageShift, order, errCorrupt)
			}
		}
		if pm.flags&pgBoot != 0 {
			t.boot[order]++
		} else {
			t.listed[order]++
		}
		t.free += n
		return n, nil
	}
	if pm.flags&^(pgHead|pgReserved|pgPrivate) != 0 || !validOwner(pm.owner) {
		return 0, fmt.Errorf("block %#x order %d: flags %#x owner %v: %w", pa, order, pm.flags, pm.owner, errCorrupt)
	}
	if pm.flags&pgPrivate == 0 && slices.ContainsFunc(priv, func(v uint64) bool { return v != 0 }) {
		return 0, fmt.Errorf("block %#x order %d: private value set but not recorded: %w", pa, order, errCorrupt)
	}
	t.owned[pm.owner] += n
	return n, nil
}

// checkList walks one free list of the given order.
func (m *Memory) checkList(order int, l *blockList, tail bool) error {
	want := pgHead | pgBuddy
	part := "head"
	if tail {
		want |= pgTail
		part = "tail"
	}
	prev := nilPfn
	var n uint64
	for p := l.first; p != nilPfn; {
		if n == l.n {
			return fmt.Errorf("order %d %s list: longer than its count %d (cycle?): %w", order, part, l.n, errCorrupt)
		}
		s := m.sectionOf(p)
		if s == nil {
			return fmt.Errorf("order %d %s list: block %#x in an untouched section: %w", order, part, p<<m.pageShift, errCorrupt)
		}
		pm := &s.pages[p-s.base]
		if pm.flags != want || int(pm.order) != order || pm.prev != prev {
			return fmt.Errorf("order %d %s list: block %#x has flags %#x order %d prev %#x: %w",
				order, part, p<<m.pageShift, pm.flags, pm.order, pm.prev, errCorrupt)
		}
		prev = p
		p = pm.next
		n++
	}
	if n != l.n || l.last != prev {
		return fmt.Errorf("order %d %s list: %d blocks, count %d, last %#x want %#x: %w",
			order, part, n, l.n, l.last, prev, errCorrupt)
	}
	return nil
}
