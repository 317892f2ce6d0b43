package explore

import (
	"sync"

	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
)

// State caching by happens-before (CHESS's state hashing by the
// happens-before graph, kept exact under the preemption bound): two runs
// whose steps so far form the same partial order — the same steps per CPU,
// and every pair of conflicting steps in the same order — reach the same
// state, whatever order independent steps took. Each run keeps a hash of
// that partial order (hbTrace). Every CPU waits at a decision just before a
// step, so at a decision the hash names the state. At every decision after
// the steps a run replays, the run looks the state up in the iteration's
// cache with the preemptions it has left (stateCache): a search from the
// same state with as many left, or with one more from another CPU, covers
// it, and the run stops there (pruned). A choice point also remembers the
// state each option's step leads to (ahead), so that an option already
// covered is not run at all.
//
// Why that is sound. A CPU's next steps depend on what it read; the
// partial order fixes the last store before every load, so every CPU is
// in the same state, and the tables and the kernel's bookkeeping are the
// same. The monitor checks every step a run performs, in that run's
// context; what it carries to later steps follows from the order too: the
// operations in flight are counts, and the reference translations an
// operation's end reads from the tables are ordered with every store. A
// step enters the order when it is performed, in Before: an access
// contains the walk that fills its TLB entry, whose decision comes before
// the access's After. TestStateCachingKeepsEveryBehaviour compares every
// scenario with the search that runs every schedule.
//
// What conflicts, conservatively (treating independent steps as
// conflicting only loses reduction): a load or hardware-walk read of a
// descriptor reads it and its table page; a store writes the descriptor
// and reads the page; freeing a table page writes the page and the page
// allocator; an alloc writes the allocator; a TLBI writes the TLBs, which
// walks and accesses read; an access writes memory (all accesses
// conflict); locks and rwsems write themselves; an operation's end writes
// the monitor's references, which every store reads.
//
// Bookkeeping the kernel shares outside the door calls (the page
// allocator, vmalloc areas, execmem objects, the ptdump static key) is in
// the order too: the kernel
// names each access (kernel.SetSharedHook), and it counts as a write by
// the CPU running, between its steps.
//
// Quiet loads (run.QuietLoad) are not in the order: a load is quiet only
// when no other CPU stores to its descriptor (or every store holds a
// mutex the loader holds, whose steps order them) and it is not the first
// load from a page another CPU frees; its value is then fixed by steps
// already in the order. That rests on the learned writers; a step that
// breaks what was learned (a store or free by a CPU the bound-0 runs did
// not see do it) taints the run, which then neither prunes nor records.

// hbObj is one shared object's part of the order: the hash of the last
// step that wrote it, and the sum of the hashes of the steps that read it
// since (reads commute with each other, so their order must not count).
// gen is the run it belongs to: an object of an earlier run is untouched
// (reset costs nothing however many objects the runs touched).
type hbObj struct {
	w, r uint64
	gen  uint32
}

// hbPage is a table page's objects: the page and its descriptors (one
// lookup for both).
type hbPage struct {
	page hbObj
	desc []hbObj
}

// hbTrace is the hash of one run's partial order so far. Its objects live
// as long as it does, stamped with the run (gen).
type hbTrace struct {
	chain []uint64 // per CPU: the hash of its last step in the order
	gen   uint32
	objs  map[uint64]*hbObj
	pages map[uint64]*hbPage
	// The page last looked up.
	lastKey  uint64
	lastPage *hbPage
}

// Object keys (descriptors and table pages are in hbTrace.pages, by page):
// tagged singletons; locks by name (a run's kernel is
// a fresh copy: the name is what stays the same). Two objects that share a
// key only add order.
const (
	hbBookTag  = 2 // bookkeeping named by kernel.SetSharedHook
	hbTLB      = 3 // all TLBs and walk caches
	hbRefs     = 4 // the monitor's reference translations
	hbLockTag  = 5
	hbSemTag   = 6
	hbData     = 7 // the memory accesses read and write
	hbNameSeed = 0x9e3779b97f4a7c15
)

// hbPages is the page allocator, which table allocs and frees write and
// the kernel's other page allocations touch (kernel.SharedPages).
var hbPages = hbName(kernel.SharedPages, hbBookTag)

// hbName is the key of a named object (a lock, shared bookkeeping).
func hbName(name string, tag uint64) uint64 {
	return hbString(name)<<3 | tag
}

// hbString hashes a name (FNV-1a): the same in every run and process, so
// the search, and so its counts, do not depend on a random seed.
func hbString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix combines a hash and a value (the finaliser of SplitMix64 over a
// multiply-xor; good avalanche, no allocation).
func mix(h, v uint64) uint64 {
	h ^= v + hbNameSeed + h<<6 + h>>2
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// reset starts a run's order.
func (t *hbTrace) reset(cpus int) {
	if cap(t.chain) < cpus {
		t.chain = make([]uint64, cpus)
	}
	t.chain = t.chain[:cpus]
	for i := range t.chain {
		t.chain[i] = mix(uint64(i), 0x51ed)
	}
	if t.objs == nil {
		t.objs = map[uint64]*hbObj{}
		t.pages = map[uint64]*hbPage{}
	}
	t.gen++
}

// live returns o as the current run sees it.
func (t *hbTrace) live(o *hbObj) *hbObj {
	if o.gen != t.gen {
		*o = hbObj{gen: t.gen}
	}
	return o
}

// obj is a named or singleton object.
func (t *hbTrace) obj(key uint64) *hbObj {
	o := t.objs[key]
	if o == nil {
		o = &hbObj{}
		t.objs[key] = o
	}
	return t.live(o)
}

// desc is the objects of the descriptor at pa and of its table page.
func (t *hbTrace) desc(pa, pageMask uint64) (d, page *hbObj) {
	key := pa &^ pageMask
	p := t.lastPage
	if p == nil || t.lastKey != key {
		p = t.pages[key]
		if p == nil {
			p = &hbPage{desc: make([]hbObj, (pageMask+1)/8)}
			t.pages[key] = p
		}
		t.lastKey, t.lastPage = key, p
	}
	return t.live(&p.desc[(pa&pageMask)/8]), t.live(&p.page)
}

// step adds CPU id's step ev (performed) to the order.
func (t *hbTrace) step(id int, ev *cpu.Event, pageMask uint64) {
	var a hbAccess
	h := t.hash(id, ev, pageMask, &a)
	for _, o := range a.rd[:a.nr] {
		o.r += h
	}
	for _, o := range a.wr[:a.nw] {
		o.w, o.r = h, 0
	}
	t.chain[id] = h
}

// touch adds to CPU id's part of the order an access to kernel bookkeeping
// shared outside the door calls (kernel.SetSharedHook), made between its
// steps: a write, as the kernel may change it.
func (t *hbTrace) touch(id int, what string) {
	o := t.obj(hbName(what, hbBookTag))
	h := mix(mix(mix(t.chain[id], 0xb00c), o.w), o.r)
	o.w, o.r = h, 0
	t.chain[id] = h
}

// hbAccess is the objects a step writes and reads.
type hbAccess struct {
	wr     [2]*hbObj
	rd     [3]*hbObj
	nw, nr int
}

// hash is the hash of CPU id's step ev if it came next: its CPU's last
// step, what it is, and the last writes (and for a write, the reads since)
// of the objects it touches, which a collects.
func (t *hbTrace) hash(id int, ev *cpu.Event, pageMask uint64, a *hbAccess) uint64 {
	wr, rd := &a.wr, &a.rd
	nw, nr := 0, 0
	h := absorb(t.chain[id], uint64(ev.Kind))
	switch ev.Kind {
	case cpu.EvLoad, cpu.EvWalk:
		h = absorb(h, ev.PA)
		rd[0], rd[1] = t.desc(ev.PA, pageMask)
		nr = 2
		if ev.Kind == cpu.EvWalk {
			rd[2] = t.obj(hbTLB)
			nr = 3
		}
	case cpu.EvStore:
		h = absorb(h, ev.PA)
		wr[0], rd[0] = t.desc(ev.PA, pageMask)
		rd[1] = t.obj(hbRefs)
		nw, nr = 1, 2
	case cpu.EvTableAlloc:
		wr[0] = t.obj(hbPages)
		nw = 1
	case cpu.EvTableFree:
		h = absorb(h, ev.PA)
		_, wr[1] = t.desc(ev.PA, pageMask)
		wr[0] = t.obj(hbPages)
		nw = 2
	case cpu.EvLock, cpu.EvUnlock:
		k := hbName(ev.Mutex.Name, hbLockTag)
		h = absorb(h, k)
		wr[0] = t.obj(k)
		nw = 1
	case cpu.EvDownRead, cpu.EvUpRead, cpu.EvDownWrite, cpu.EvUpWrite:
		k := hbName(ev.Sem.Name, hbSemTag)
		h = absorb(h, k)
		wr[0] = t.obj(k)
		nw = 1
	case cpu.EvTLBI:
		wr[0] = t.obj(hbTLB)
		nw = 1
	case cpu.EvAccess:
		h = absorb(h, ev.VA)
		wr[0], rd[0] = t.obj(hbData), t.obj(hbTLB)
		nw, nr = 1, 1
	case cpu.EvOpEnd:
		h = absorb(h, uint64(ev.Op))
		wr[0] = t.obj(hbRefs)
		nw = 1
	default: // an operation's begin: the CPU's own affair
		h = absorb(h, uint64(ev.Op))
	}
	for _, o := range rd[:nr] {
		h = absorb(h, o.w)
	}
	for _, o := range wr[:nw] {
		h = absorb(absorb(h, o.w), o.r)
	}
	a.nw, a.nr = nw, nr
	return mix(h, uint64(nr<<4|nw))
}

// absorb takes v into h: injective in v for a given h (an xor, a multiply
// by an odd constant, an xorshift); mix finishes a step's hash.
func absorb(h, v uint64) uint64 {
	h = (h ^ v) * 0x9e3779b97f4a7c15
	return h ^ h>>29
}

// state is the hash of the order so far: with every CPU waiting just
// before a step in the order (as at every decision), it names the state.
func (t *hbTrace) state() uint64 {
	return t.stateWith(-1, 0)
}

// stateWith is state with CPU id's last step hashed h instead (id -1:
// none).
func (t *hbTrace) stateWith(id int, h uint64) uint64 {
	k := uint64(0x6a09e667f3bcc908)
	for i, c := range t.chain {
		if i == id {
			c = h
		}
		k = mix(k, c)
	}
	return k
}

// aheadOption is one option of a choice point: the state its step leads
// to, the CPU that then runs, and the preemptions left.
type aheadOption struct {
	state     uint64
	cpu, left int
}

// ahead is, for a choice among opts (the CPUs that may perform the next
// step; pending their announced steps; left preemptions left, one less for
// every option after the first when preempt), the state each option leads
// to once its step is performed. Every CPU waits at a decision just before
// a step in the order, so the next decision after the option's step (its
// CPU's next steps outside the order change nothing in it) is at that
// state if it comes before another step in the order; either way, a
// search from that state covers the option (dfsChooser.next).
func (t *hbTrace) ahead(opts []int, pending []*cpu.Event, pageMask uint64, left int, preempt bool) []aheadOption {
	as := make([]aheadOption, len(opts))
	var a hbAccess
	for i, o := range opts {
		as[i] = aheadOption{state: t.stateWith(o, t.hash(o, pending[o], pageMask, &a)), cpu: o, left: left}
		if preempt && i > 0 {
			as[i].left--
		}
	}
	return as
}

// maxCPUs bounds the CPUs of a scenario whose search caches states.
const maxCPUs = 7

// nodeLeft is what the cache knows of one state: per CPU that ran last
// and can go on (index CPU+1; index 0: the CPU that ran cannot), the most
// preemptions left that a search from the state had; -1: none.
type nodeLeft struct {
	left [maxCPUs + 1]int8
	best int8 // the most over the CPUs that can go on
}

// stateCache is one iteration's searched states: a search from (state,
// cur, left) covers every schedule from (state, cur, l) with l ≤ left, and
// every schedule from (state, c, l) with l < left for any other c — the
// first switch from cur to c costs at most the one preemption. With cur
// -1 (the CPU that ran cannot go on) no first choice costs any. The
// workers of a parallel search share it; it is cut into shards by state,
// each with its own lock, so that they seldom wait for each other.
type stateCache struct {
	shards [64]cacheShard
	// ends are the behaviours of the runs that went to the end
	// (run.behaviour). Unlike the runs, and the states met at decisions
	// (whether a state is a decision depends on which CPU arrives there),
	// they are the same in every order of search: every behaviour within
	// the bound (TestStateCachingKeepsEveryBehaviour).
	endsMu sync.Mutex
	ends   map[uint64]struct{}
}

type cacheShard struct {
	mu sync.Mutex
	m  map[uint64]nodeLeft
	_  [40]byte // a cache line each
}

func (c *stateCache) shard(state uint64) *cacheShard { return &c.shards[state>>58] }

// covers is the rule above; cur -1 is a CPU that cannot go on.
func (n *nodeLeft) covers(cur, left int) bool {
	return int(n.left[0]) >= left || int(n.left[cur+1]) >= left || int(n.best) > left
}

// end records the behaviour of a run that went to the end.
func (c *stateCache) end(b uint64) {
	c.endsMu.Lock()
	defer c.endsMu.Unlock()
	if c.ends == nil {
		c.ends = map[uint64]struct{}{}
	}
	c.ends[b] = struct{}{}
}

// visit says whether a search from (state, cur) with left preemptions
// left is covered by one made (or begun) before; if not, it records this
// one.
func (c *stateCache) visit(state uint64, cur, left int) bool {
	sh := c.shard(state)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = map[uint64]nodeLeft{}
	}
	n, ok := sh.m[state]
	if !ok {
		n = nodeLeft{best: -1}
		for i := range n.left {
			n.left[i] = -1
		}
	} else if n.covers(cur, left) {
		return true
	}
	n.left[cur+1] = max(n.left[cur+1], int8(left))
	if cur >= 0 {
		n.best = max(n.best, int8(left))
	}
	sh.m[state] = n
	return false
}

// covered says whether a search from the state option o leads to, with
// its CPU running (or unable to go on), is covered.
func (c *stateCache) covered(o aheadOption) bool {
	sh := c.shard(o.state)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n, ok := sh.m[o.state]
	return ok && n.covers(o.cpu, o.left)
}

// behaviours is how many behaviours the search met (0 without a cache).
func (c *stateCache) behaviours() int {
	if c == nil {
		return 0
	}
	c.endsMu.Lock()
	defer c.endsMu.Unlock()
	return len(c.ends)
}
