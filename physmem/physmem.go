// Package physmem models the DRAM of an arm64 machine as the Linux kernel's
// page allocator sees it: memblock-style RAM regions, one zone with a buddy
// allocator of orders 0..MaxOrder, a per-page owner tag and a per-page private
// slot, and the fragmentation figures of /proc/buddyinfo.
//
// It is the bottom layer of ptlab: translation-table pages (package pgtable)
// and vmalloc/execmem pages (package kernel) are allocated here, so page-table
// memory is accounted like the kernel's.
//
// # Cost model
//
// Page metadata (the model's struct page) lives in sparse sections of
// 2^SECTION_SIZE_BITS bytes (arm64: 128 MiB with 4K/16K pages, 512 MiB with
// 64K pages) that are allocated on first touch. RAM that was never touched is
// "pristine": it is still split exactly as memblock_free_all handed it to the
// buddy allocator at boot (maximal naturally aligned blocks of order <=
// MaxOrder, see __free_pages_memory), and those blocks are counted in FreeArea
// without being materialised. New is therefore O(regions), memory grows with
// the touched sections, and Alloc/Free cost O(MaxOrder) once a section exists.
//
// # Free-list order
//
// The kernel's free lists are modelled exactly for one zone and one
// migratetype: at boot every block is added to the tail of its list in address
// order (__free_pages_core uses FPI_TO_TAIL), allocation takes the head
// (__rmqueue_smallest), expand and break_down_buddy_pages add the split-off
// halves at the head, and __free_one_page adds the merged block at the head
// unless buddy_merge_likely says the next-higher buddy is free, in which case
// it goes to the tail. Each list is therefore "head part ++ boot part ++ tail
// part"; the boot part is kept implicitly (in address order) until touched.
//
// Not modelled: per-CPU page lists (pcp), migratetypes and pageblocks, zones
// (there is one zone spanning all RAM), page shuffling, guard pages
// (debug_pagealloc), memory hotplug.
//
// A Memory is safe for concurrent use; one mutex plays the zone lock.
package physmem

import (
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Owner says who holds a page (the model's page_owner / page type).
type Owner uint8

// Page owners.
const (
	OwnerFree        Owner = iota // on the buddy free lists
	OwnerKernelImage              // kernel text/data (memblock_reserve of the image)
	OwnerPageTable                // translation-table page (pagetable_alloc)
	OwnerVmalloc                  // backing page of a vmalloc area
	OwnerExecmem                  // backing page of an execmem allocation
	OwnerReserved                 // firmware, NOMAP, other memblock reservations
	NumOwners                     // number of owners
)

var ownerNames = [NumOwners]string{
	OwnerFree:        "free",
	OwnerKernelImage: "kernel-image",
	OwnerPageTable:   "page-table",
	OwnerVmalloc:     "vmalloc",
	OwnerExecmem:     "execmem",
	OwnerReserved:    "reserved",
}

// String returns the owner's name as used in reports ("page-table", ...).
func (o Owner) String() string {
	if o < NumOwners {
		return ownerNames[o]
	}
	return fmt.Sprintf("owner(%d)", uint8(o))
}

// MaxOrder is MAX_PAGE_ORDER with 4K pages: the largest buddy block is
// 2^MaxOrder pages (ARCH_FORCE_MAX_ORDER=10), what New uses.
const MaxOrder = 10

// MaxOrderLimit is the largest MAX_PAGE_ORDER of any arm64 granule (64K).
const MaxOrderLimit = 13

// MaxOrderFor is arm64's ARCH_FORCE_MAX_ORDER default for a granule
// (arch/arm64/Kconfig): 13 with 64K pages, 11 with 16K, 10 with 4K, so that
// a PMD-sized block (512M, 32M, 2M... 4M with 4K) is one buddy block.
func MaxOrderFor(pageShift uint) int {
	switch pageShift {
	case 16:
		return 13
	case 14:
		return 11
	}
	return 10
}

// Errors. Every error returned by this package wraps one of them.
var (
	ErrNoMem        = errors.New("physmem: out of memory")                   // -ENOMEM
	ErrInvalid      = errors.New("physmem: invalid argument")                // -EINVAL
	ErrNotAllocated = errors.New("physmem: not an allocated block")          // bad free (double free, wrong order, ...)
	ErrBusy         = errors.New("physmem: page not free")                   // reserve of an in-use page (-EBUSY)
	errCorrupt      = errors.New("physmem: internal inconsistency detected") // returned by Check
)

// Region is a range of RAM in bytes (a memblock.memory region). Base and Size
// must be multiples of the page size.
type Region struct{ Base, Size uint64 }

// End returns the first byte after the region.
func (r Region) End() uint64 { return r.Base + r.Size }

// maxPhysBits is the largest arm64 physical address size (52-bit PA with
// FEAT_LPA/LPA2); RAM must lie below 1<<maxPhysBits.
const maxPhysBits = 52

// pfnRange is a region in page frame numbers, [start, end).
type pfnRange struct{ start, end uint64 }

// blockList is one doubly linked free list threaded through pageMeta.next/prev.
type blockList struct {
	first, last uint64 // pfns, nilPfn when empty
	n           uint64
}

// bootRun is n consecutive blocks of one order starting at pfn, as carved at
// boot by __free_pages_memory.
type bootRun struct{ pfn, n uint64 }

// freeArea is zone->free_area[order] for the single modelled migratetype.
// The kernel's list is head ++ boot ++ tail: head holds blocks added at the
// head since boot, boot the blocks memblock_free_all added (in address order,
// never taken yet), tail the blocks added at the tail since boot.
type freeArea struct {
	head, tail blockList
	nrBoot     uint64    // boot blocks still free and in their boot position
	runs       []bootRun // all boot blocks of this order, address order
	run        int       // cursor into runs: everything before it has left the boot part
	runIdx     uint64
}

func (fa *freeArea) nrFree() uint64 { return fa.head.n + fa.tail.n + fa.nrBoot }

// Memory is the simulated DRAM: RAM regions, the buddy allocator and the page
// metadata. Create it with New.
type Memory struct {
	pageShift    uint
	secPageShift uint // log2(pages per section)
	frameShift   uint // log2(pages per frame of Check's cache), see check.go
	regions      []Region
	rs           []pfnRange
	totalPages   uint64

	mu       sync.Mutex
	root     []*sectionChunk // sparse section table, see section.go
	jr       *journal        // undo log since the last Snapshot, see snapshot.go
	touched  []uint64        // section numbers in materialisation order
	maxOrder int             // MAX_PAGE_ORDER of this memory
	area     [MaxOrderLimit + 1]freeArea
	bootInit [MaxOrderLimit + 1]uint64 // boot blocks per order at New
	nrFree   uint64                    // free pages
	owned    [NumOwners]uint64         // pages per owner (owned[OwnerFree] unused)
	secs     []uint64                  // Check's scratch: touched sections, sorted
}

// sectionSizeBits returns arm64's SECTION_SIZE_BITS for the granule
// (arch/arm64/include/asm/sparsemem.h: 29 for 64K pages, else 27).
func sectionSizeBits(pageShift uint) uint {
	if pageShift == 16 {
		return 29
	}
	return 27
}

// New builds DRAM from regions, given in any order. Regions must be non-empty,
// page aligned, below 2^52 and must not overlap; regions that touch are merged
// into one, as memblock_add does (memblock_merge_regions). pageShift is 12, 14
// or 16 (4K, 16K or 64K granule).
//
// All RAM starts free, split into the maximal naturally aligned blocks of
// order <= MaxOrder, in address order at the tail of each free list: this is
// memblock_free_all -> __free_pages_memory -> __free_pages_core(FPI_TO_TAIL)
// with nothing reserved. Cost is O(regions * MaxOrder); no page metadata is
// allocated.
func New(pageShift uint, regions []Region) (*Memory, error) {
	return NewMaxOrder(pageShift, regions, MaxOrder)
}

// NewMaxOrder is New with the largest buddy order given: MaxOrderFor of the
// granule to model the kernel's MAX_PAGE_ORDER, at most MaxOrderLimit (and
// no more than a section holds).
func NewMaxOrder(pageShift uint, regions []Region, maxOrder int) (*Memory, error) {
	if maxOrder < 0 || maxOrder > MaxOrderLimit || (pageShift >= 12 && uint(maxOrder) > sectionSizeBits(pageShift)-pageShift) {
		return nil, fmt.Errorf("max order %d: %w", maxOrder, ErrInvalid)
	}
	if pageShift != 12 && pageShift != 14 && pageShift != 16 {
		return nil, fmt.Errorf("page shift %d (want 12, 14 or 16): %w", pageShift, ErrInvalid)
	}
	if len(regions) == 0 {
		return nil, fmt.Errorf("no RAM regions: %w", ErrInvalid)
	}
	pageSize := uint64(1) << pageShift
	sorted := slices.Clone(regions)
	slices.SortFunc(sorted, func(a, b Region) int {
		switch {
		case a.Base < b.Base:
			return -1
		case a.Base > b.Base:
			return 1
		}
		return 0
	})
	var merged []Region
	for _, r := range sorted {
		switch {
		case r.Size == 0:
			return nil, fmt.Errorf("region %#x: empty: %w", r.Base, ErrInvalid)
		case r.Base%pageSize != 0 || r.Size%pageSize != 0:
			return nil, fmt.Errorf("region %#x size %#x: not aligned to page size %#x: %w", r.Base, r.Size, pageSize, ErrInvalid)
		case r.End() < r.Base || r.End() > 1<<maxPhysBits:
			return nil, fmt.Errorf("region %#x size %#x: beyond the %d-bit physical address space: %w", r.Base, r.Size, maxPhysBits, ErrInvalid)
		}
		if n := len(merged); n > 0 {
			prev := &merged[n-1]
			if r.Base < prev.End() {
				return nil, fmt.Errorf("region %#x-%#x overlaps region %#x-%#x: %w", r.Base, r.End(), prev.Base, prev.End(), ErrInvalid)
			}
			if r.Base == prev.End() {
				prev.Size += r.Size
				continue
			}
		}
		merged = append(merged, r)
	}

	m := &Memory{
		maxOrder:     maxOrder,
		pageShift:    pageShift,
		secPageShift: sectionSizeBits(pageShift) - pageShift,
		regions:      merged,
		rs:           make([]pfnRange, len(merged)),
	}
	// A frame holds at least a MaxOrder block, and a section at most 64
	// frames (one dirty bit each).
	m.frameShift = max(uint(maxOrder), m.secPageShift-6)
	for o := range m.area {
		m.area[o].head = blockList{first: nilPfn, last: nilPfn}
		m.area[o].tail = blockList{first: nilPfn, last: nilPfn}
	}
	nsec := uint64(1) << (maxPhysBits - sectionSizeBits(pageShift))
	m.root = make([]*sectionChunk, (nsec+chunkSize-1)/chunkSize)
	for i, r := range merged {
		pr := pfnRange{r.Base >> pageShift, r.End() >> pageShift}
		m.rs[i] = pr
		m.totalPages += pr.end - pr.start
		carve(pr.start, pr.end, m.maxOrder, func(pfn, n uint64, order int) {
			fa := &m.area[order]
			fa.runs = append(fa.runs, bootRun{pfn, n})
			fa.nrBoot += n
			m.bootInit[order] += n
		})
	}
	m.nrFree = m.totalPages
	return m, nil
}

// PageShift returns log2 of the page size (PAGE_SHIFT).
func (m *Memory) PageShift() uint { return m.pageShift }

// PageSize returns the page size in bytes (PAGE_SIZE).
func (m *Memory) PageSize() uint64 { return 1 << m.pageShift }

// Regions returns a sorted copy of the RAM regions, adjacent ones merged
// (for_each_mem_region over memblock.memory).
func (m *Memory) Regions() []Region { return slices.Clone(m.regions) }

// Contains reports whether pa lies inside RAM (memblock_is_memory).
func (m *Memory) Contains(pa uint64) bool { return m.regionIndex(pa>>m.pageShift) >= 0 }

// regionIndex returns the index of the region holding pfn, or -1
// (memblock_search).
func (m *Memory) regionIndex(pfn uint64) int {
	i := m.firstRegionEndingAfter(pfn)
	if i < len(m.rs) && m.rs[i].start <= pfn {
		return i
	}
	return -1
}

// TotalPages returns the number of RAM pages (totalram_pages before any
// reservation).
func (m *Memory) TotalPages() uint64 { return m.totalPages }

// FreePages returns the number of free pages (NR_FREE_PAGES). O(1).
func (m *Memory) FreePages() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nrFree
}

// OwnedPages returns the number of pages held by owner o, like the vmstat
// counters the kernel keeps per page type (NR_PAGETABLE, NR_VMALLOC, ...);
// OwnedPages(OwnerFree) equals FreePages. O(1).
func (m *Memory) OwnedPages(o Owner) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case o == OwnerFree:
		return m.nrFree
	case o < NumOwners:
		return m.owned[o]
	}
	return 0
}

// FreeArea returns the number of free blocks per order, the figures of
// /proc/buddyinfo (zone->free_area[order].nr_free). Exact, O(MaxOrder).
func (m *Memory) FreeArea() [MaxOrderLimit + 1]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out [MaxOrderLimit + 1]uint64
	for o := range m.area {
		out[o] = m.area[o].nrFree()
	}
	return out
}

// LargestFreeOrder returns the highest order with a free block, or -1 when no
// page is free: the largest allocation that can succeed without reclaim or
// compaction (the free_area scan of __rmqueue_smallest, from the top).
func (m *Memory) LargestFreeOrder() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	for o := m.maxOrder; o >= 0; o-- {
		if m.area[o].nrFree() > 0 {
			return o
		}
	}
	return -1
}

// Owner returns the owner of the page holding pa: OwnerFree for free pages
// (and for addresses outside RAM; use Contains to tell them apart). It finds
// the head of the block holding the page, as page_owner lookups and
// take_page_off_buddy do: O(1) for the head page, O(MaxOrder) otherwise.
func (m *Memory) Owner(pa uint64) Owner {
	m.mu.Lock()
	defer m.mu.Unlock()
	pfn := pa >> m.pageShift
	if m.sectionOf(pfn) == nil {
		return OwnerFree // outside RAM or never touched
	}
	_, _, pm, ok := m.findBlock(pfn)
	if !ok || pm.flags&pgBuddy != 0 {
		return OwnerFree
	}
	return pm.owner
}

// Owners sets out[i] to Owner(pas[i]) for every i (out must be as long as
// pas), taking the zone lock once; a run of addresses inside one block
// costs one block lookup.
func (m *Memory) Owners(pas []uint64, out []Owner) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var lo, hi uint64 // pfns of the block found last, [lo, hi)
	var last Owner
	for i, pa := range pas {
		pfn := pa >> m.pageShift
		if pfn >= lo && pfn < hi {
			out[i] = last
			continue
		}
		head, order, pm, ok := m.findBlock(pfn)
		if !ok {
			out[i] = OwnerFree // outside RAM
			continue
		}
		last = OwnerFree
		if pm != nil && pm.flags&pgBuddy == 0 {
			last = pm.owner
		}
		lo, hi = head, head+1<<order
		out[i] = last
	}
}

// Private returns the private slot of the page holding pa (page_private):
// zero unless the owner stored something with SetPrivate since the page was
// allocated. O(1).
func (m *Memory) Private(pa uint64) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	pfn := pa >> m.pageShift
	s := m.sectionOf(pfn)
	if s == nil || s.private == nil {
		return 0
	}
	return s.private[pfn-s.base]
}

// SetPrivate stores v in the private slot of the page at pa (set_page_private).
// pa must be page aligned and the page allocated (by Alloc or Reserve); the
// slot is cleared when the page is freed. O(1) for the head page of a block,
// O(MaxOrder) for other pages.
func (m *Memory) SetPrivate(pa uint64, v uint64) error {
	if pa&(m.PageSize()-1) != 0 {
		return fmt.Errorf("set private at %#x: address not page aligned: %w", pa, ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	pfn := pa >> m.pageShift
	s := m.sectionOf(pfn)
	if s == nil {
		if !m.Contains(pa) {
			return fmt.Errorf("set private at %#x: not RAM: %w", pa, ErrInvalid)
		}
		return fmt.Errorf("set private at %#x: page is free: %w", pa, ErrNotAllocated)
	}
	head, _, pm, ok := m.findBlock(pfn)
	if !ok {
		return fmt.Errorf("set private at %#x: not RAM: %w", pa, ErrInvalid)
	}
	if pm.flags&pgBuddy != 0 {
		return fmt.Errorf("set private at %#x: page is free: %w", pa, ErrNotAllocated)
	}
	if s.private == nil {
		if v == 0 {
			return nil
		}
		m.allocPrivate(s)
	}
	m.savePrivate(s, pfn-s.base, 1)
	s.private[pfn-s.base] = v
	m.saved(head).flags |= pgPrivate
	return nil
}

// TouchedSections returns how many memory sections have page metadata (the
// model's SPARSEMEM memmap, allocated on first touch). It grows with the RAM
// that was touched, never with the RAM size. Model-only; no kernel
// counterpart.
func (m *Memory) TouchedSections() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.touched)
}

// MetadataBytes estimates the bytes of page metadata allocated so far (the
// model's memmap size). Model-only.
func (m *Memory) MetadataBytes() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n uint64
	for _, sn := range m.touched {
		s := m.sectionByNumber(sn)
		n += uint64(len(s.pages)) * pageMetaSize
		n += uint64(len(s.private)) * 8
	}
	return n
}

// validOwner reports whether o can hold pages (anything but OwnerFree).
func validOwner(o Owner) bool { return o != OwnerFree && o < NumOwners }

// MaxOrder is this memory's MAX_PAGE_ORDER.
func (m *Memory) MaxOrder() int { return m.maxOrder }
