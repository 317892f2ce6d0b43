package pgtable

import (
	"sync/atomic"

	"github.com/ptlab/ptlab/arm64"
)

// Door is the one path by which table code touches shared state. pa is the
// physical address of the descriptor (table page address + 8*index) and p the
// Go location that holds it. Implementations decide what a touch costs: Direct
// is a plain memory access, Atomic makes concurrent CPUs (goroutines) safe, and
// the cpu package's doors add scheduling points and checks.
type Door interface {
	// Load reads the descriptor at pa.
	Load(pa uint64, p *uint64) uint64
	// Store writes v to the descriptor at pa.
	Store(pa uint64, p *uint64, v uint64)
	// TableAlloc is called before a table page for level l is allocated; a
	// non-nil error makes the allocation fail as if memory were exhausted.
	TableAlloc(l arm64.Level) error
	// TableFree is called before the table page at pa is returned to physmem.
	TableFree(pa uint64, l arm64.Level)
	// PageTableLock and PageTableUnlock take and release init_mm's
	// page_table_lock, which serialises installing a newly allocated table
	// in an empty slot (__pte_alloc_kernel, __pmd_alloc, __pud_alloc in
	// mm/memory.c). t identifies the tree for doors without a lock of their own.
	PageTableLock(t *Tables)
	PageTableUnlock(t *Tables)
}

// Direct is the door of a plain single-threaded run: no hook, no cost; the
// table code reads and writes descriptors directly, without calling it.
//
// WalkCache, set at construction, lets operations through this door use and
// fill the tree's software walk cache (walkcache.go), which skips the upper
// levels of walks near the previous one. Only a door used by one goroutine
// at a time, whose loads need not each be seen, may set it; a door that
// embeds Direct inherits the setting of its embedded value.
type Direct struct{ WalkCache bool }

func (Direct) Load(_ uint64, p *uint64) uint64     { return *p }
func (Direct) Store(_ uint64, p *uint64, v uint64) { *p = v }
func (Direct) TableAlloc(arm64.Level) error        { return nil }
func (Direct) TableFree(uint64, arm64.Level)       {}

// A single-threaded run has nobody to race with: no lock is needed.
func (Direct) PageTableLock(*Tables)   {}
func (Direct) PageTableUnlock(*Tables) {}

// Atomic accesses descriptors with single-copy-atomic 64-bit loads and stores,
// as the hardware and READ_ONCE/WRITE_ONCE do, so CPUs running as goroutines
// race only where the modelled kernel races.
type Atomic struct{}

func (Atomic) Load(_ uint64, p *uint64) uint64     { return atomic.LoadUint64(p) }
func (Atomic) Store(_ uint64, p *uint64, v uint64) { atomic.StoreUint64(p, v) }
func (Atomic) TableAlloc(arm64.Level) error        { return nil }
func (Atomic) TableFree(uint64, arm64.Level)       {}

// Goroutine CPUs share the tree's own page_table_lock.
func (Atomic) PageTableLock(t *Tables)   { t.ptl.Lock() }
func (Atomic) PageTableUnlock(t *Tables) { t.ptl.Unlock() }
