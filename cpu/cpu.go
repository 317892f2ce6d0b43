// Package cpu simulates the CPUs that kernel code runs on. Each CPU is the
// one door (kernel.CPU) through which modelled kernel code touches shared
// state: descriptor loads and stores, table-page allocation and free, locks,
// and TLB invalidation broadcasts. Each CPU has a TLB that caches every
// translation its hardware walks produced — leaf entries with their size and
// attributes, and walk-cache entries (table pointers per level) — until a
// TLBI removes it, which is the architecture's worst case. Accesses (Exec,
// Read, Write at a VA) consult the TLB, walk the tables on a miss, and fault
// as the hardware would.
//
// A CPU runs in one of two modes. Real: CPUs are goroutines; descriptors are
// read and written with single-copy-atomic accesses and locks block. Cooperative:
// one CPU runs at a time and a Hook (the interleaving explorer) is called before
// and after every door call, so it can switch CPUs there and check invariants.
package cpu

import (
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/pgtable"
)

// Mode is how a machine's CPUs run.
type Mode uint8

const (
	// Real: every CPU may be a goroutine; locks block.
	Real Mode = iota
	// Cooperative: one CPU runs at a time; a Hook decides who runs next and
	// locks are taken only when free (a CPU waiting for a lock is not runnable).
	Cooperative
)

func (m Mode) String() string {
	if m == Real {
		return "real"
	}
	return "cooperative"
}

// EventKind is what a door call does.
type EventKind uint8

const (
	EvLoad       EventKind = iota // kernel code reads a descriptor
	EvStore                       // kernel code writes a descriptor
	EvTableAlloc                  // a table page is about to be allocated
	EvTableFree                   // a table page is about to be freed
	EvLock                        // mutex_lock
	EvUnlock                      // mutex_unlock
	EvDownRead                    // down_read / mmap_read_lock
	EvUpRead                      // up_read
	EvDownWrite                   // down_write / mmap_write_lock
	EvUpWrite                     // up_write
	EvTLBI                        // a TLB invalidation broadcast
	EvWalk                        // the hardware walker reads a descriptor
	EvAccess                      // an instruction fetch, load or store at a VA
	EvOpBegin                     // a scenario operation starts on this CPU
	EvOpEnd                       // ... and returns
	NumEventKinds
)

var eventNames = [NumEventKinds]string{"load", "store", "alloc", "free", "lock", "unlock",
	"down_read", "up_read", "down_write", "up_write", "tlbi", "walk", "access", "begin", "end"}

func (k EventKind) String() string {
	if k < NumEventKinds {
		return eventNames[k]
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// LevelUnknown is the level of a descriptor address outside any live table
// page (a freed or never-allocated page).
const LevelUnknown arm64.Level = -8

// Event is one door call. The CPU reuses its Event values: a Hook must copy
// what it wants to keep.
type Event struct {
	Kind  EventKind
	Level arm64.Level // Load/Store/Walk: the descriptor's level; Alloc/Free: the table's
	PA    uint64      // Load/Store/Walk: descriptor address; Free: the table page
	Old   uint64      // Store: the value replaced
	Val   uint64      // Load/Walk: the value read; Store: the value written; Access: the PA
	VA    uint64      // Access: the address
	Acc   AccessKind  // Access: what kind
	Mutex *kernel.Mutex
	Sem   *kernel.RWSem
	TLBI  kernel.TLBIOp
	Op    int   // OpBegin/OpEnd: index of the operation in the CPU's thread
	Err   error // Access: the fault, if any; OpEnd: the operation's error
}

// Hook sees every door call of a CPU. Before is called when the CPU is about
// to perform ev (a cooperative scheduler may run other CPUs before it
// returns); After when ev has been performed.
type Hook interface {
	Before(c *CPU, ev *Event)
	After(c *CPU, ev *Event)
}

// QuietLoader is a Hook of a cooperative scheduler that can take most
// descriptor loads in one call. Nine steps in ten of an explored run are
// loads before which no other CPU may run and after which nothing is
// checked but that the page is a live table; for those the full Before and
// After (an Event built, the choice, the monitor) cost more than the
// kernel code between them.
type QuietLoader interface {
	Hook
	// QuietLoad is asked before CPU c loads the descriptor at pa, in a
	// live table page: true means the hook has taken the load as a step
	// with nothing to decide or check, and Before and After are not called
	// for it; false, that the load goes through Before and After.
	QuietLoad(c *CPU, pa uint64) bool
}

// Machine is a set of CPUs sharing one modelled kernel.
type Machine struct {
	K    *kernel.Kernel
	Mode Mode
	CPUs []*CPU

	pt       *pgtable.Tables
	g        arm64.Geometry
	root     uint64
	pageMask uint64
	// pageShift is log2 of the page size: levelOf's slot is a shift, not
	// a division (a 64-bit divide was a tenth of a ptdump walk's time).
	pageShift uint
	// performed counts the door calls that went ahead after their hook
	// returned: a CPU whose hook let others run sees it move by more than
	// its own call (relevel).
	performed atomic.Uint64
	// stepped is performed for Cooperative machines, whose CPUs run one
	// at a time (handing over orders their accesses): no atomic needed.
	stepped uint64
	levels  levelCache // Cooperative machines only
}

// levelCache remembers the levels of the table pages a cooperative
// machine's CPUs accessed last (a walk touches one page per level): a page
// stays a table at its level until the tables' release generation moves
// (pgtable.Tables.ReleaseGeneration). Pages that are not tables are not
// remembered: any allocation may make one a table.
type levelCache struct {
	gen   uint64
	key   [4]uint64 // page + 1 (0: empty)
	level [4]arm64.Level
}

// NewMachine creates n CPUs for k. CPU i has the MIDR of the kernel's CPU i
// (cycling when n is larger), and with it BBML2_NOABORT or not.
func NewMachine(k *kernel.Kernel, n int, mode Mode) *Machine {
	m := &Machine{K: k, Mode: mode, pt: k.PT, g: k.G, root: k.PT.Root(), pageMask: k.G.PageSize() - 1,
		pageShift: uint(bits.TrailingZeros64(k.G.PageSize()))}
	for i := 0; i < n; i++ {
		midr := k.MIDRs[i%len(k.MIDRs)]
		m.CPUs = append(m.CPUs, &CPU{id: i, m: m, MIDR: midr, BBML2: midr.SupportsBBML2NoAbort()})
	}
	return m
}

// Geometry is the translation geometry of the machine's tables.
func (m *Machine) Geometry() *arm64.Geometry { return &m.g }

// levelOf returns the level of the live table page holding pa.
func (m *Machine) levelOf(pa uint64) arm64.Level {
	page := pa &^ m.pageMask
	if m.Mode != Cooperative {
		l, ok := m.pt.LevelOf(page)
		if !ok {
			return LevelUnknown
		}
		return l
	}
	lc := &m.levels
	if gen := m.pt.ReleaseGeneration(); gen != lc.gen {
		*lc = levelCache{gen: gen}
	}
	i := (page >> m.pageShift) & 3
	if lc.key[i] == page+1 {
		return lc.level[i]
	}
	l, ok := m.pt.LevelOf(page)
	if !ok {
		return LevelUnknown
	}
	lc.key[i], lc.level[i] = page+1, l
	return l
}

// CPU is one simulated CPU. It implements kernel.CPU.
type CPU struct {
	id    int
	m     *Machine
	MIDR  arm64.MIDR
	BBML2 bool // BBML2_NOABORT: live block-size changes raise no TLB conflict abort
	// Hook, if set, is called around every door call. A machine's CPUs are
	// hooked all or none: a descriptor access refreshes its table level
	// only when other hooked CPUs went ahead while its hook ran (relevel).
	Hook Hook
	// quiet is Hook as a QuietLoader on a cooperative machine (SetHook).
	quiet QuietLoader
	// IgnoreLocks lets a cooperative CPU proceed past a lock it cannot take
	// (set by an explorer that found a deadlock and winds the run down).
	IgnoreLocks bool

	TLB  TLB
	Path Path

	// walking is set while the CPU's hardware walker is between descriptor
	// reads; walkMu is held for the whole walk in real mode. A TLBI (with
	// its DSB) completes only once walks that may use the old tables are
	// done, which is what lets the kernel free a table page right after
	// __flush_tlb_kernel_pgtable.
	walking atomic.Bool
	walkMu  sync.Mutex

	ev, walkEv, accEv Event
	// othersRan: other CPUs performed door calls while the hook of this
	// CPU's current one ran (before).
	othersRan bool
	// Counts of door calls by kind.
	Counts [NumEventKinds]uint64
}

var _ kernel.CPU = (*CPU)(nil)

// SetHook sets Hook, and lets a cooperative CPU take loads through its
// QuietLoad when h is a QuietLoader. A hook that may be one must be set
// with SetHook (a Hook set directly keeps the QuietLoader set before).
func (c *CPU) SetHook(h Hook) {
	c.Hook = h
	c.quiet = nil
	if q, ok := h.(QuietLoader); ok && c.m.Mode == Cooperative {
		c.quiet = q
	}
}

// ID is smp_processor_id().
func (c *CPU) ID() int { return c.id }

// Machine is the machine c belongs to.
func (c *CPU) Machine() *Machine { return c.m }

func (c *CPU) before(ev *Event) {
	c.Counts[ev.Kind]++
	if c.Hook == nil {
		return
	}
	if c.m.Mode == Cooperative {
		n := c.m.stepped
		c.Hook.Before(c, ev)
		c.m.stepped++
		c.othersRan = c.m.stepped != n+1
		return
	}
	n := c.m.performed.Load()
	c.Hook.Before(c, ev)
	c.othersRan = c.m.performed.Add(1) != n+1
}

func (c *CPU) after(ev *Event) {
	if c.Hook != nil {
		c.Hook.After(c, ev)
	}
}

// Load reads a descriptor (READ_ONCE / pXdp_get).
func (c *CPU) Load(pa uint64, p *uint64) uint64 {
	l := c.m.levelOf(pa)
	if c.quiet != nil && l != LevelUnknown && c.quiet.QuietLoad(c, pa) {
		// A step like any other (counted, on the walker's path), with
		// no other CPU running before it and nothing to check after.
		c.Counts[EvLoad]++
		c.m.stepped++
		c.othersRan = false
		c.Path.enter(c.m, pa, l)
		v := atomic.LoadUint64(p)
		c.Path.follow(c.m, pa, l, v)
		return v
	}
	ev := &c.ev
	*ev = Event{Kind: EvLoad, PA: pa, Level: l}
	c.Path.enter(c.m, pa, ev.Level)
	c.before(ev)
	c.relevel(ev)
	v := atomic.LoadUint64(p)
	ev.Val = v
	c.Path.follow(c.m, pa, ev.Level, v)
	c.after(ev)
	return v
}

// Store writes a descriptor (WRITE_ONCE / __set_pte / set_pmd).
func (c *CPU) Store(pa uint64, p *uint64, v uint64) {
	ev := &c.ev
	*ev = Event{Kind: EvStore, PA: pa, Level: c.m.levelOf(pa), Val: v}
	c.Path.enter(c.m, pa, ev.Level)
	c.before(ev)
	c.relevel(ev)
	ev.Old = atomic.LoadUint64(p)
	atomic.StoreUint64(p, v)
	c.Path.follow(c.m, pa, ev.Level, v)
	c.after(ev)
}

// relevel refreshes the level of a descriptor access after the hook ran
// other CPUs: its table page may have been freed (or reused) meanwhile.
func (c *CPU) relevel(ev *Event) {
	if c.Hook != nil && c.othersRan {
		ev.Level = c.m.levelOf(ev.PA)
	}
}

// TableAlloc is called before a table page for level l is allocated.
func (c *CPU) TableAlloc(l arm64.Level) error {
	ev := &c.ev
	*ev = Event{Kind: EvTableAlloc, Level: l}
	c.before(ev)
	c.after(ev)
	return nil
}

// TableFree is called before the table page at pa is freed.
func (c *CPU) TableFree(pa uint64, l arm64.Level) {
	ev := &c.ev
	*ev = Event{Kind: EvTableFree, PA: pa, Level: l}
	c.before(ev)
	c.after(ev)
}

// Lock is mutex_lock.
func (c *CPU) Lock(mu *kernel.Mutex) {
	ev := c.syncEvent(EvLock)
	ev.Mutex = mu
	c.before(ev)
	if c.m.Mode == Real {
		mu.BlockingLock(c.id)
	} else {
		for !mu.TryAcquire(c.id) && !c.IgnoreLocks {
			c.wait(ev)
		}
	}
	c.after(ev)
}

// Unlock is mutex_unlock.
func (c *CPU) Unlock(mu *kernel.Mutex) {
	ev := c.syncEvent(EvUnlock)
	ev.Mutex = mu
	c.before(ev)
	if c.m.Mode == Real {
		mu.BlockingUnlock()
	} else {
		mu.Release()
	}
	c.after(ev)
}

// DownRead takes an rwsem for reading.
func (c *CPU) DownRead(s *kernel.RWSem) {
	ev := c.syncEvent(EvDownRead)
	ev.Sem = s
	c.before(ev)
	if c.m.Mode == Real {
		s.BlockingDownRead()
	} else {
		for !s.TryDownRead() && !c.IgnoreLocks {
			c.wait(ev)
		}
	}
	c.after(ev)
}

// UpRead releases a read hold.
func (c *CPU) UpRead(s *kernel.RWSem) {
	ev := c.syncEvent(EvUpRead)
	ev.Sem = s
	c.before(ev)
	if c.m.Mode == Real {
		s.BlockingUpRead()
	} else {
		s.ReleaseRead()
	}
	c.after(ev)
}

// DownWrite takes an rwsem for writing.
func (c *CPU) DownWrite(s *kernel.RWSem) {
	ev := c.syncEvent(EvDownWrite)
	ev.Sem = s
	c.before(ev)
	if c.m.Mode == Real {
		s.BlockingDownWrite(c.id)
	} else {
		for !s.TryDownWrite(c.id) && !c.IgnoreLocks {
			c.wait(ev)
		}
	}
	c.after(ev)
}

// UpWrite releases a write hold.
func (c *CPU) UpWrite(s *kernel.RWSem) {
	ev := c.syncEvent(EvUpWrite)
	ev.Sem = s
	c.before(ev)
	if c.m.Mode == Real {
		s.BlockingUpWrite()
	} else {
		s.ReleaseWrite()
	}
	c.after(ev)
}

// wait is what a cooperative CPU does when the lock it wants is held: with a
// scheduler, announce the acquire again (the scheduler resumes it only once
// the lock is free); alone, nobody can release it.
func (c *CPU) wait(ev *Event) {
	if c.Hook == nil {
		panic(fmt.Sprintf("cpu%d: %v on a lock held with no scheduler to run its holder", c.id, ev.Kind))
	}
	runtime.Gosched()
	c.before(ev)
}

// syncEvent starts a lock, rwsem or TLBI event. The CPU's software walks are
// over: a walker does not hold a table pointer across these.
func (c *CPU) syncEvent(k EventKind) *Event {
	c.Path.Clear()
	ev := &c.ev
	*ev = Event{Kind: k}
	return ev
}

// TLBI broadcasts a TLB invalidation to every CPU of the machine, with the
// DSB that waits for it to complete.
func (c *CPU) TLBI(op kernel.TLBIOp) {
	ev := c.syncEvent(EvTLBI)
	ev.TLBI = op
	c.before(ev)
	for _, o := range c.m.CPUs {
		if c.m.Mode == Real && o != c {
			o.walkMu.Lock() // wait for a walk in progress
			o.TLB.Invalidate(&c.m.g, op)
			o.walkMu.Unlock()
			continue
		}
		o.TLB.Invalidate(&c.m.g, op)
	}
	c.after(ev)
}

// Mark announces a scenario-level event (operation begin or end) through the
// hook, so the explorer may switch CPUs there and the checker may act.
func (c *CPU) Mark(k EventKind, op int, err error) {
	ev := c.syncEvent(k)
	ev.Op, ev.Err = op, err
	c.before(ev)
	c.after(ev)
}

// Enabled reports whether a cooperative CPU announcing ev could perform it
// now: lock acquires need the lock free (or locks ignored).
func (c *CPU) Enabled(ev *Event) bool {
	if c.IgnoreLocks {
		return true
	}
	switch ev.Kind {
	case EvLock:
		return ev.Mutex.Holder() < 0
	case EvDownRead:
		return ev.Sem.Writer() < 0
	case EvDownWrite:
		return ev.Sem.Writer() < 0 && ev.Sem.Readers() == 0
	case EvTLBI:
		for _, o := range c.m.CPUs {
			if o != c && o.walking.Load() {
				return false // its DSB waits for the walk to finish
			}
		}
	}
	return true
}
