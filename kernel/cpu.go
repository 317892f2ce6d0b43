package kernel

import (
	"sync"
	"sync/atomic"

	"github.com/ptlab/ptlab/pgtable"
)

// CPU is what kernel code runs on: the one door to shared state. Descriptor
// loads and stores, table-page allocation and free (pgtable.Door), lock
// acquire and release, and TLB invalidation broadcasts all go through it, so
// a simulated CPU (package cpu) can keep a TLB, and the explorer can switch
// CPUs at every touch.
type CPU interface {
	pgtable.Door
	// ID is smp_processor_id().
	ID() int
	// Lock acquires m (mutex_lock); Unlock releases it.
	Lock(m *Mutex)
	Unlock(m *Mutex)
	// DownRead/UpRead and DownWrite/UpWrite take and release an rwsem
	// (init_mm's mmap lock, which ptdump holds for writing).
	DownRead(s *RWSem)
	UpRead(s *RWSem)
	DownWrite(s *RWSem)
	UpWrite(s *RWSem)
	// TLBI broadcasts a TLB invalidation (with the DSB that completes it).
	TLBI(op TLBIOp)
}

// Mutex is a kernel mutex (pgtable_split_lock, the execmem cache mutex, ...).
// Holder is the ID of the CPU holding it, or -1; CPU implementations that
// schedule cooperatively use it instead of the embedded sync.Mutex.
type Mutex struct {
	Name   string
	mu     sync.Mutex
	holder atomic.Int32
}

// NewMutex returns an unlocked mutex.
func NewMutex(name string) *Mutex {
	m := &Mutex{Name: name}
	m.holder.Store(-1)
	return m
}

// Holder returns the ID of the holding CPU, or -1.
func (m *Mutex) Holder() int { return int(m.holder.Load()) }

// TryAcquire takes the mutex for cpu if it is free (for cooperative schedulers).
func (m *Mutex) TryAcquire(cpu int) bool { return m.holder.CompareAndSwap(-1, int32(cpu)) }

// Release frees a mutex taken with TryAcquire.
func (m *Mutex) Release() { m.holder.Store(-1) }

// BlockingLock and BlockingUnlock are Lock/Unlock for CPUs that run as
// goroutines.
func (m *Mutex) BlockingLock(cpu int) {
	m.mu.Lock()
	m.holder.Store(int32(cpu))
}

func (m *Mutex) BlockingUnlock() {
	m.holder.Store(-1)
	m.mu.Unlock()
}

// RWSem is a reader-writer semaphore. Readers and Writer describe its state
// for cooperative schedulers; the embedded sync.RWMutex serves CPUs that run
// as goroutines.
type RWSem struct {
	Name    string
	rw      sync.RWMutex
	readers atomic.Int32
	writer  atomic.Int32 // CPU ID + 1, 0 when free
}

// NewRWSem returns a free rwsem.
func NewRWSem(name string) *RWSem { return &RWSem{Name: name} }

// Readers is the number of readers holding s.
func (s *RWSem) Readers() int { return int(s.readers.Load()) }

// Writer is the ID of the CPU holding s for writing, or -1.
func (s *RWSem) Writer() int { return int(s.writer.Load()) - 1 }

// TryDownRead takes s for reading if no writer holds it.
func (s *RWSem) TryDownRead() bool {
	if s.writer.Load() != 0 {
		return false
	}
	s.readers.Add(1)
	return true
}

// TryDownWrite takes s for writing if it is free.
func (s *RWSem) TryDownWrite(cpu int) bool {
	if s.readers.Load() != 0 {
		return false
	}
	return s.writer.CompareAndSwap(0, int32(cpu)+1)
}

// ReleaseRead and ReleaseWrite undo the Try forms.
func (s *RWSem) ReleaseRead()  { s.readers.Add(-1) }
func (s *RWSem) ReleaseWrite() { s.writer.Store(0) }

// BlockingDownRead and friends are the rwsem operations for goroutine CPUs.
func (s *RWSem) BlockingDownRead() {
	s.rw.RLock()
	s.readers.Add(1)
}
func (s *RWSem) BlockingUpRead() {
	s.readers.Add(-1)
	s.rw.RUnlock()
}
func (s *RWSem) BlockingDownWrite(cpu int) {
	s.rw.Lock()
	s.writer.Store(int32(cpu) + 1)
}
func (s *RWSem) BlockingUpWrite() {
	s.writer.Store(0)
	s.rw.Unlock()
}

// PlainCPU is a CPU for single-threaded runs (boot, `ptlab sim`): plain
// descriptor accesses, blocking mutexes, TLBIs with no TLB to invalidate.
type PlainCPU struct {
	pgtable.Direct
	N int
}

// NewPlainCPU returns PlainCPU n with the tables' walk cache on: for runs
// where it is the only CPU touching the tables.
func NewPlainCPU(n int) *PlainCPU {
	return &PlainCPU{Direct: pgtable.Direct{WalkCache: true}, N: n}
}

func (c *PlainCPU) ID() int         { return c.N }
func (c *PlainCPU) Lock(m *Mutex)   { m.BlockingLock(c.N) }
func (c *PlainCPU) Unlock(m *Mutex) { m.BlockingUnlock() }
func (c *PlainCPU) TLBI(TLBIOp)     {}

func (c *PlainCPU) DownRead(s *RWSem)  { s.BlockingDownRead() }
func (c *PlainCPU) UpRead(s *RWSem)    { s.BlockingUpRead() }
func (c *PlainCPU) DownWrite(s *RWSem) { s.BlockingDownWrite(c.N) }
func (c *PlainCPU) UpWrite(s *RWSem)   { s.BlockingUpWrite() }
