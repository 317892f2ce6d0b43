package physmem

import (
	"math/bits"
	"unsafe"
)

// pageMeta is the model's struct page: the state of one page frame.
//
// Only the first page of a block (pgHead) carries state; the other pages of a
// block have flags == 0, like tail pages of a buddy block in the kernel. A
// block is free (pgBuddy, PageBuddy with the order in page_private), allocated
// by Alloc, or taken by Reserve (pgReserved).
type pageMeta struct {
	next, prev uint64 // free-list links (pfns, nilPfn at the ends); listed free heads only
	flags      uint8
	order      uint8 // block order, heads only (buddy_order / compound order)
	owner      Owner // heads of allocated or reserved blocks only
}

const pageMetaSize = uint64(unsafe.Sizeof(pageMeta{}))

// Page flags.
const (
	pgHead     uint8 = 1 << iota // first page of a block
	pgBuddy                      // free block (PageBuddy)
	pgBoot                       // free block still in its boot position in the list
	pgTail                       // free block in the tail part of its list
	pgReserved                   // block taken by Reserve rather than Alloc
	pgPrivate                    // a page of this block has a private value
)

const nilPfn = ^uint64(0)

// section holds the metadata of the pages of one memory section
// (2^SECTION_SIZE_BITS bytes, the unit of SPARSEMEM's mem_section). It is
// allocated the first time any of its pages is touched (sparse_init allocates
// the memmap for present sections; the model defers that to first use so that
// untouched RAM costs nothing).
type section struct {
	base    uint64     // first pfn
	pages   []pageMeta // one per page frame of the section, holes included
	private []uint64   // page_private slots, allocated on first SetPrivate

	// Check's cache (check.go). The section is cut into frames of
	// 2^frameShift pages, which no block crosses; dirty marks the frames
	// changed since Check last verified them (bit f: frame f), frames holds
	// what each verified frame adds to the totals, sum their sum (valid
	// when dirty is 0), carved the boot-carving blocks inside the section.
	dirty  uint64
	frames []blockTotals
	sum    blockTotals
	carved [MaxOrderLimit + 1]uint64
}

// The section table is a two-level radix tree over section numbers: 2^13
// sections per chunk (1 TiB of 4K-page RAM), chunks allocated on demand.
const (
	chunkShift = 13
	chunkSize  = 1 << chunkShift
	chunkMask  = chunkSize - 1
)

type sectionChunk [chunkSize]*section

// sectionOf returns the section holding pfn, or nil if it was never touched
// (or pfn is beyond the physical address space) (__pfn_to_section).
func (m *Memory) sectionOf(pfn uint64) *section {
	sn := pfn >> m.secPageShift
	ci := sn >> chunkShift
	if ci >= uint64(len(m.root)) {
		return nil
	}
	c := m.root[ci]
	if c == nil {
		return nil
	}
	return c[sn&chunkMask]
}

func (m *Memory) sectionByNumber(sn uint64) *section {
	return m.root[sn>>chunkShift][sn&chunkMask]
}

// pageAt returns the metadata of pfn, whose section must exist.
func (m *Memory) pageAt(pfn uint64) *pageMeta {
	s := m.sectionOf(pfn)
	return &s.pages[pfn-s.base]
}

// materialise returns the section holding pfn, creating it on first touch.
// A new section starts in its boot state: every block that
// __free_pages_memory carved out of the RAM inside the section is a free
// block still in its boot position. This is exact because blocks never cross
// a section (a section is aligned to and larger than a MaxOrder block) and a
// block leaves its boot position only after its section was materialised.
func (m *Memory) materialise(pfn uint64) *section {
	sn := pfn >> m.secPageShift
	c := m.root[sn>>chunkShift]
	if c == nil {
		c = new(sectionChunk)
		m.root[sn>>chunkShift] = c
	}
	if s := c[sn&chunkMask]; s != nil {
		return s
	}
	s := &section{base: sn << m.secPageShift, pages: make([]pageMeta, 1<<m.secPageShift)}
	m.forEachBootBlock(s, func(pfn uint64, order int) {
		pm := &s.pages[pfn-s.base]
		pm.flags = pgHead | pgBuddy | pgBoot
		pm.order = uint8(order)
		s.carved[order]++
	})
	s.dirty = uint64(1)<<(1<<(m.secPageShift-m.frameShift)) - 1 // all frames; with 64 the shift gives 0 and wraps to all ones
	c[sn&chunkMask] = s
	m.touched = append(m.touched, sn)
	return s
}

// forEachBootBlock calls fn for every block the boot carving puts inside s,
// in address order.
func (m *Memory) forEachBootBlock(s *section, fn func(pfn uint64, order int)) {
	lo, hi := s.base, s.base+uint64(len(s.pages))
	for _, r := range m.rs[m.firstRegionEndingAfter(lo):] {
		if r.start >= hi {
			break
		}
		carve(max(lo, r.start), min(hi, r.end), m.maxOrder, func(pfn, n uint64, order int) {
			for i := uint64(0); i < n; i++ {
				fn(pfn+i<<order, order)
			}
		})
	}
}

// firstRegionEndingAfter returns the index of the first region with end > pfn.
func (m *Memory) firstRegionEndingAfter(pfn uint64) int {
	lo, hi := 0, len(m.rs)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if m.rs[mid].end > pfn {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// carve splits the pfn range [start, end) into maximal naturally aligned
// blocks of order <= MaxOrder, in address order, like __free_pages_memory:
// each block takes the order of the lowest set bit of its start (capped at
// MaxOrder), lowered until it fits. Runs of MaxOrder blocks are reported once
// with their count n; other blocks with n == 1.
//
// The carving is canonical (a block is in it iff it lies in the range and its
// parent does not, or it has order MaxOrder), so carving a range piecewise at
// MaxOrder-aligned cut points gives the same blocks.
func carve(start, end uint64, maxOrder int, emit func(pfn, n uint64, order int)) {
	for start < end {
		order := maxOrder
		if start != 0 {
			order = min(maxOrder, bits.TrailingZeros64(start))
		}
		for start+1<<order > end {
			order--
		}
		if order == maxOrder {
			n := (end - start) >> maxOrder
			emit(start, n, order)
			start += n << maxOrder
			continue
		}
		emit(start, 1, order)
		start += 1 << order
	}
}

// canonicalBlock returns the block of the boot carving of region r that holds
// pfn: the largest naturally aligned block of order <= MaxOrder around pfn
// that lies inside r.
func canonicalBlock(r pfnRange, pfn uint64, maxOrder int) (head uint64, order int) {
	for order = maxOrder; order > 0; order-- {
		head = pfn &^ (1<<order - 1)
		if head >= r.start && head+1<<order <= r.end {
			return head, order
		}
	}
	return pfn, 0
}

// findBlock returns the block holding pfn: its head pfn, order and, if the
// section is materialised, the head's metadata (nil for a pristine boot
// block). ok is false if pfn is not RAM. Like take_page_off_buddy it tries
// each order's candidate head from order 0 up; the first head whose order
// covers pfn is the block, because blocks partition RAM.
func (m *Memory) findBlock(pfn uint64) (head uint64, order int, pm *pageMeta, ok bool) {
	s := m.sectionOf(pfn)
	if s == nil {
		ri := m.regionIndex(pfn)
		if ri < 0 {
			return 0, 0, nil, false
		}
		head, order = canonicalBlock(m.rs[ri], pfn, m.maxOrder)
		return head, order, nil, true
	}
	idx := pfn - s.base
	for o := 0; o <= m.maxOrder; o++ {
		hi := idx &^ (1<<o - 1)
		pm := &s.pages[hi]
		if pm.flags&pgHead != 0 && int(pm.order) >= o {
			return s.base + hi, int(pm.order), pm, true
		}
	}
	return 0, 0, nil, false
}
