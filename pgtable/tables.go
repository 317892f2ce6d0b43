package pgtable

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/physmem"
)

// Errors. They mirror what the kernel would do: -ENOMEM and -EINVAL are
// returned to callers; ErrUnsafe stands for a BUG_ON in the create path
// (pgattr_change_is_safe, pmd_bad) that would stop a real kernel.
var (
	ErrNoMem    = errors.New("pgtable: out of memory for a table page") // -ENOMEM
	ErrInvalid  = errors.New("pgtable: invalid request")                // -EINVAL
	ErrUnsafe   = errors.New("pgtable: unsafe live descriptor change")  // BUG_ON in the kernel
	ErrNotTable = errors.New("pgtable: not a table page")               // a walk reached memory that holds no table
)

const (
	tablesPerChunk = 64 // table pages per backing allocation
	chunkShift     = 6
	indexShift     = 15 // PFNs per index leaf: 32768 (a 128 MiB section at 4K)
)

// chunk backs tablesPerChunk table pages with one Go allocation.
type chunk struct {
	desc []uint64
	refs [tablesPerChunk]tableRef
}

// indexLeaf maps the PFNs of one index section to their table pages.
type indexLeaf [1 << indexShift]indexEntry

// indexEntry is one PFN's table page: its tableRef, and the address of its
// first descriptor, so that a walk resolves a table address with one load
// (the tableRef is for the colder paths: level, slot, free).
type indexEntry struct {
	ref  atomic.Pointer[tableRef]
	desc atomic.Pointer[uint64]
}

// tableRef is what the PFN index points to: the descriptors of one table
// page, so resolving a table address is two dependent loads.
type tableRef struct {
	desc  []uint64
	pa    uint64
	slot  int32
	level arm64.Level
	// sh is the table's shadow (shadow.go), allocated by the first Direct
	// walk through the table above; kept for the slot's next occupant.
	sh *shadowEntry
}

// Tables is one tree of translation tables (swapper_pg_dir and everything
// below it) whose table pages are allocated from a physmem.Memory.
//
// Finding the table page behind a descriptor's output address is O(1): a
// two-level index from PFN to a slot, and the slot to its descriptors. The
// index and the slot directory are published atomically, so CPUs running as
// goroutines may walk while another allocates.
type Tables struct {
	gen atomic.Uint64 // bumped when a table leaves the tree (walk cache validity)
	// sgen is the shadow generation (shadow.go): bumped whenever a table
	// page is released or the tree restored; unlike gen it never goes back.
	sgen atomic.Uint64
	wc   walkCache // for single-threaded doors only
	g    arm64.Geometry
	mem  *physmem.Memory
	epp  int // entries per table page
	root uint64
	// rootTbl is the root's descriptors; the root is never freed.
	rootTbl []uint64
	tr      *tracker // incremental census (Track), nil when off
	// rootLeaf is the index leaf of the root's section (index leaves are
	// never removed), where walkers start looking.
	rootLeaf *indexLeaf
	rootHi   uint64
	// rootSh is the root's shadow, where Direct walks from the root start.
	rootSh *shadowEntry
	// lean is the geometry of the lean Direct walks (lean.go).
	lean leanGeometry
	// shadowFree is what is left of the current shadow chunk (shadow.go).
	shadowFree []shadowEntry

	basePFN uint64
	index   []atomic.Pointer[indexLeaf] // PFN -> table

	// ptl is init_mm.page_table_lock for doors that do not model locks
	// themselves (Atomic); the cpu package's CPUs take the kernel's mutex.
	ptl       sync.Mutex
	mu        sync.Mutex // guards slot allocation and counts
	dir       atomic.Pointer[[]*chunk]
	nslots    int32
	freeSlots []int32
	counts    arm64.PerLevel[int] // table pages per level
}

// New creates an empty tree: one zeroed top-level table page (the PGD).
func New(g arm64.Geometry, mem *physmem.Memory) (*Tables, error) {
	if mem.PageShift() != g.PageShift {
		return nil, fmt.Errorf("%w: memory has %d-bit pages, geometry %v", ErrInvalid, mem.PageShift(), g)
	}
	regs := mem.Regions()
	if len(regs) == 0 {
		return nil, fmt.Errorf("%w: no RAM", ErrInvalid)
	}
	lo := regs[0].Base >> g.PageShift
	hi := (regs[len(regs)-1].Base + regs[len(regs)-1].Size - 1) >> g.PageShift
	t := &Tables{
		g:       g,
		mem:     mem,
		epp:     g.EntriesPerPage(),
		basePFN: lo,
		index:   make([]atomic.Pointer[indexLeaf], (hi-lo)>>indexShift+1),
	}
	empty := []*chunk{}
	t.dir.Store(&empty)
	root, _, err := t.allocTable(Direct{}, g.StartLevel)
	if err != nil {
		return nil, err
	}
	t.root = root
	t.rootTbl, _ = t.lookup(root)
	t.rootHi = (root>>g.PageShift - t.basePFN) >> indexShift
	t.rootLeaf = t.index[t.rootHi].Load()
	r := t.refOf(root)
	r.sh = t.newShadow()
	t.rootSh = r.sh
	t.initLean()
	return t, nil
}

// Geometry is the translation geometry of the tree.
func (t *Tables) Geometry() arm64.Geometry { return t.g }

// Memory is the physical memory the table pages come from.
func (t *Tables) Memory() *physmem.Memory { return t.mem }

// Root is the physical address of the top-level table (swapper_pg_dir).
func (t *Tables) Root() uint64 { return t.root }

// refOf returns the table page at pa, or nil.
func (t *Tables) refOf(pa uint64) *tableRef {
	rel := pa>>t.g.PageShift - t.basePFN
	hi := rel >> indexShift
	if hi >= uint64(len(t.index)) {
		return nil
	}
	leaf := t.index[hi].Load()
	if leaf == nil {
		return nil
	}
	return leaf[rel&(1<<indexShift-1)].ref.Load()
}

// setRef publishes (r != nil) or withdraws the table page at pa. The
// descriptor address is published last and withdrawn first.
func (t *Tables) setRef(pa uint64, r *tableRef) {
	rel := pa>>t.g.PageShift - t.basePFN
	hi := rel >> indexShift
	leaf := t.index[hi].Load()
	if leaf == nil {
		// Two CPUs may allocate the section's first tables at once: the
		// first leaf installed is the one.
		t.index[hi].CompareAndSwap(nil, new(indexLeaf))
		leaf = t.index[hi].Load()
	}
	e := &leaf[rel&(1<<indexShift-1)]
	if r == nil {
		e.desc.Store(nil)
		e.ref.Store(nil)
		return
	}
	e.ref.Store(r)
	e.desc.Store(&r.desc[0])
}

// lookup returns the descriptors of the table page at pa.
func (t *Tables) lookup(pa uint64) ([]uint64, bool) {
	rel := pa>>t.g.PageShift - t.basePFN
	hi := rel >> indexShift
	if hi >= uint64(len(t.index)) {
		return nil, false
	}
	leaf := t.index[hi].Load()
	if leaf == nil {
		return nil, false
	}
	return t.tableAt(leaf, rel)
}

// tableAt returns the descriptors of the table page with index-relative
// PFN rel in leaf.
func (t *Tables) tableAt(leaf *indexLeaf, rel uint64) ([]uint64, bool) {
	p := leaf[rel&(1<<indexShift-1)].desc.Load()
	if p == nil {
		return nil, false
	}
	return unsafe.Slice(p, t.epp), true
}

// Table returns the descriptors of the table page at pa (it implements the
// ptdump walker's source). The slice aliases the live table: read it through
// a Door when other CPUs may be writing.
func (t *Tables) Table(pa uint64) ([]uint64, error) {
	tbl, ok := t.lookup(pa)
	if !ok {
		return nil, fmt.Errorf("%w: %#x", ErrNotTable, pa)
	}
	return tbl, nil
}

// LevelOf returns the level a table page was allocated for.
func (t *Tables) LevelOf(pa uint64) (arm64.Level, bool) {
	r := t.refOf(pa)
	if r == nil {
		return 0, false
	}
	return r.level, true
}

// allocTable takes an order-0 page from physmem for a table at level l and
// zeroes it, as __pgd_pgtable_alloc + init_clear_pgtable do. The page is
// private until the caller publishes it with a table descriptor.
func (t *Tables) allocTable(d Door, l arm64.Level) (uint64, []uint64, error) {
	if err := d.TableAlloc(l); err != nil {
		return 0, nil, fmt.Errorf("%w: level %d: %w", ErrNoMem, l, err)
	}
	pa, err := t.mem.Alloc(0, physmem.OwnerPageTable)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: level %d: %w", ErrNoMem, l, err)
	}
	t.mu.Lock()
	var slot int32
	if n := len(t.freeSlots); n > 0 {
		slot = t.freeSlots[n-1]
		t.freeSlots = t.freeSlots[:n-1]
	} else {
		slot = t.nslots
		t.nslots++
		if int(slot>>chunkShift) >= len(*t.dir.Load()) {
			t.growDir()
		}
	}
	c := (*t.dir.Load())[slot>>chunkShift]
	i := int(slot & (tablesPerChunk - 1))
	r := &c.refs[i]
	r.desc = c.desc[i*t.epp : (i+1)*t.epp : (i+1)*t.epp]
	r.pa, r.slot, r.level = pa, slot, l
	*t.counts.At(l)++
	t.mu.Unlock()
	// Cleared even when fresh from make: the write faults the page in once,
	// where a first touch by a walk's load maps the zero page and the
	// following store faults again (a third more boot time at 1 TiB).
	clear(r.desc)
	t.setRef(pa, r)
	return pa, r.desc, nil
}

// growDir appends a chunk to the directory (t.mu held). The backing array
// grows by doubling, so booting a machine with n table pages costs O(n),
// not O(n²/64) as a copy per chunk did. Within capacity the new element is
// written beyond the published length and then a longer header published:
// a reader of the old header never indexes it.
func (t *Tables) growDir() {
	old := *t.dir.Load()
	grown := old
	if len(old) == cap(old) {
		grown = make([]*chunk, len(old), max(2*len(old), 16))
		copy(grown, old)
	}
	grown = append(grown, &chunk{desc: make([]uint64, tablesPerChunk*t.epp)})
	t.dir.Store(&grown)
}

// FreeTable returns an unhooked table page to physmem (pte_free_kernel,
// pmd_free). The caller must already have removed every descriptor that points
// to it and invalidated the TLB walk caches (__flush_tlb_kernel_pgtable).
func (t *Tables) FreeTable(d Door, pa uint64) error {
	r := t.refOf(pa)
	if r == nil || pa == t.root {
		return fmt.Errorf("%w: free of %#x", ErrNotTable, pa)
	}
	d.TableFree(pa, r.level)
	t.invalidateWalks()
	return t.release(r)
}

// freeUnpublished returns a table page that was allocated but never
// installed (a lost populate race, pte_free_kernel in __pte_alloc_kernel):
// no walk can have cached it.
func (t *Tables) freeUnpublished(d Door, pa uint64) error {
	r := t.refOf(pa)
	if r == nil {
		return fmt.Errorf("%w: free of %#x", ErrNotTable, pa)
	}
	d.TableFree(pa, r.level)
	return t.release(r)
}

// release returns the page of r to physmem and its slot to the free list.
func (t *Tables) release(r *tableRef) error {
	pa, s, l := r.pa, r.slot, r.level
	t.setRef(pa, nil)
	// A shadow entry may hold this page's descriptors; the next table at pa
	// may live in another slot.
	t.invalidateShadows()
	t.mu.Lock()
	t.freeSlots = append(t.freeSlots, s)
	*t.counts.At(l)--
	t.mu.Unlock()
	return t.mem.Free(pa, 0)
}

// TablePages returns the number of table pages in use at a level.
func (t *Tables) TablePages(l arm64.Level) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts.Get(l)
}

// TotalTablePages is the number of table pages in use at all levels.
func (t *Tables) TotalTablePages() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for l := arm64.MinLevel; l <= arm64.LastLevel; l++ {
		n += t.counts.Get(l)
	}
	return n
}
