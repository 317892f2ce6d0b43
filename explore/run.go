package explore

import (
	"fmt"
	"runtime/debug"

	"github.com/ptlab/ptlab/check"
	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
)

// run is one execution: a goroutine per CPU, exactly one of them running at
// a time. The running CPU holds the baton; at every door call (Before) it
// asks the chooser who performs the next step and, if that is another CPU,
// hands the baton over and parks until it gets it back.
type run struct {
	x       *Explorer
	k       *kernel.Kernel
	m       *cpu.Machine
	mon     *check.Monitor
	ch      chooser
	tr      *tracer
	threads [][]Op

	pending  []*cpu.Event // what each CPU is about to perform
	done     []bool
	begun    []bool
	lastPage []uint64 // page of the CPU's last step if it was a load
	held     []uint64 // the mutexes (Explorer.lockBit) each CPU holds
	wake     []chan struct{}
	parked   chan int
	fin      chan struct{}
	opts     []int

	// The learned writers of the last page point looked up (a walker's
	// loads come page by page); not kept while the explorer learns them.
	spPage   uint64
	sp       *sharedPage
	spOK     bool
	pageMask uint64 // the page size - 1
	replay   bool   // the chooser replays a schedule
	points   Points
	// quiet: QuietLoad may take loads (no tracer, not learning, not
	// replaying).
	quiet bool

	// checked is how many first steps of the run an earlier run
	// performed the same way and checked (dfsChooser.checked): the
	// monitor only follows them (check.Monitor.Replayed).
	checked     int
	sched       Schedule
	preemptions int
	violation   *check.Violation
	winding     bool // after a violation: run to completion without checks

	// State caching (hb.go): the run's partial order, the iteration's
	// cache, and its bound; fresh is how many first steps the run replays
	// from the previous one (no node among them is new). tainted: a step
	// broke what the bound-0 runs learned, so the order may miss a quiet
	// load's dependence. pruning: the run met a node searched before and
	// its CPUs are unwinding.
	hb      *hbTrace
	cache   *stateCache
	bound   int
	fresh   int
	tainted bool
	pruning bool
	// did is per CPU a digest of its steps (Explorer.behaviours).
	did []uint64
}

// pruned is the panic that unwinds a CPU's thread when the run is pruned.
type pruned struct{}

func newRun(x *Explorer, s *Setup, mon *check.Monitor, ch chooser, tr *tracer) *run {
	n := len(s.M.CPUs)
	r := &run{x: x, k: s.K, m: s.M, mon: mon, ch: ch, tr: tr, threads: s.Threads,
		pending: make([]*cpu.Event, n), done: make([]bool, n), begun: make([]bool, n), lastPage: make([]uint64, n), held: make([]uint64, n), wake: make([]chan struct{}, n),
		parked: make(chan int, n), fin: make(chan struct{}),
		opts: make([]int, 0, n), pageMask: s.K.G.PageSize() - 1, points: x.cfg.Points}
	_, r.replay = ch.(*replayChooser)
	r.quiet = tr == nil && !x.learn && !r.replay
	for i, c := range s.M.CPUs {
		r.wake[i] = make(chan struct{})
		c.SetHook(r)
	}
	return r
}

// start runs the threads to completion.
func (r *run) start() {
	for i := range r.m.CPUs {
		go r.thread(i)
	}
	for range r.m.CPUs {
		<-r.parked // every CPU announced its first operation
	}
	next := r.decide(-1)
	r.wake[next] <- struct{}{}
	<-r.fin
}

func (r *run) thread(i int) {
	c := r.m.CPUs[i]
	defer func() {
		if p := recover(); p != nil && !r.pruning {
			r.fail(&check.Violation{Kind: check.KindPanic, CPU: i, Step: len(r.sched) - 1,
				Msg: fmt.Sprintf("CPU%d: %v\n%s", i, p, debug.Stack())})
		}
		r.exit(i)
	}()
	for j, op := range r.threads[i] {
		c.Mark(cpu.EvOpBegin, j, nil)
		err := op.Run(r.k, c)
		c.Mark(cpu.EvOpEnd, j, err)
	}
}

// lockStep keeps held[id] for a mutex CPU id took or released. Mutexes
// are numbered while the explorer learns; one first met later has no
// number and counts as not held.
func (r *run) lockStep(id int, ev *cpu.Event) {
	b, ok := r.x.lockBit[ev.Mutex.Name]
	if !ok && r.x.learn && len(r.x.lockBit) < 64 {
		b, ok = uint(len(r.x.lockBit)), true
		r.x.lockBit[ev.Mutex.Name] = b
	}
	if !ok {
		return
	}
	if ev.Kind == cpu.EvLock {
		r.held[id] |= 1 << b
	} else {
		r.held[id] &^= 1 << b
	}
}

// fail records the first violation; the run then winds down without
// preemptions or checks.
func (r *run) fail(v *check.Violation) {
	if r.violation == nil {
		r.violation = v
	}
	r.winding = true
}

// Before implements cpu.Hook: park until the chooser gives c the next step.
func (r *run) Before(c *cpu.CPU, ev *cpu.Event) {
	if r.pruning {
		return // unwinding: the rest of the run is not searched
	}
	id := c.ID()
	r.pending[id] = ev
	if r.x.learn {
		r.x.learnEvent(id, ev, r.k.G.PageSize(), r.held[id])
	}
	if !r.begun[id] {
		// The thread's first announcement: wait for the scheduler's decision.
		r.begun[id] = true
		r.parked <- id
		<-r.wake[id]
	} else if next := r.decide(id); next < 0 {
		panic(pruned{})
	} else if next != id {
		r.wake[next] <- struct{}{}
		<-r.wake[id]
	}
	if r.pruning {
		panic(pruned{})
	}
	// c performs ev now, as step len(r.sched)-1. It enters the order now,
	// not in After: a step may contain others (an access, the walk that
	// fills its TLB entry), whose decisions come before its After.
	if r.hb != nil {
		r.order(id, ev)
	}
	r.pending[id] = nil
	r.lastPage[id] = 0
	if ev.Kind == cpu.EvLoad || ev.Kind == cpu.EvWalk {
		r.lastPage[id] = ev.PA &^ r.pageMask
	}
	if !r.winding {
		r.mon.Step = len(r.sched) - 1
		r.mon.Before(c, ev)
	}
	if r.tr != nil {
		r.tr.before(r, c, ev)
	}
}

// QuietLoad implements cpu.QuietLoader: a load by the running CPU before
// which no preemption may happen is a step (in the schedule, as decide
// would record it) with nothing else to do: Before would keep the CPU, the
// monitor checks a load only for a table page that is not live (the CPU
// asks only for live ones), and a load changes no table, so the monitor's
// memo of them stays valid. Tracing, learning the shared pages, and
// replaying a schedule (whose chooser sees every step) take every load
// through Before and After.
func (r *run) QuietLoad(c *cpu.CPU, pa uint64) bool {
	if r.pruning {
		return true
	}
	id := c.ID()
	if !r.quiet || !r.begun[id] {
		return false
	}
	if !r.winding && r.loadPoint(id, pa) {
		return false
	}
	r.sched = append(r.sched, int8(id))
	r.lastPage[id] = pa &^ r.pageMask
	return true
}

// After implements cpu.Hook: check the step.
func (r *run) After(c *cpu.CPU, ev *cpu.Event) {
	if r.pruning {
		return
	}
	if ev.Kind == cpu.EvLock || ev.Kind == cpu.EvUnlock {
		r.lockStep(c.ID(), ev)
	}
	if r.did != nil {
		id := c.ID()
		r.did[id] = mix(mix(mix(mix(r.did[id], uint64(ev.Kind)), ev.PA), ev.Val^ev.VA), uint64(ev.Op))
		if ev.Err != nil {
			r.did[id] = mix(r.did[id], hbString(ev.Err.Error()))
		}
	}
	if r.tr != nil {
		r.tr.after(r, c, ev)
	}
	if r.winding {
		return
	}
	if len(r.sched) <= r.checked { // this step is len(r.sched)-1
		r.mon.Replayed(c, ev)
		return
	}
	r.mon.After(c, ev)
	if v := r.mon.Violation(); v != nil {
		r.fail(v)
	}
}

// exit ends CPU i's thread and hands the baton on.
func (r *run) exit(i int) {
	r.done[i] = true
	r.pending[i] = nil
	for j, d := range r.done {
		if d {
			continue
		}
		next := j // pruning: every CPU unwinds in turn
		if !r.pruning {
			next = r.decide(-1)
		}
		if next < 0 {
			next = j // pruned here
		}
		r.wake[next] <- struct{}{}
		return
	}
	close(r.fin)
}

// decide picks the CPU that performs the next step; cur is the CPU that
// holds the baton (-1 when it has none: the start, or it just finished).
func (r *run) decide(cur int) int {
	curRuns := cur >= 0 && r.canRun(cur)
	if curRuns {
		// Most steps: no preemption may happen before cur's step (or the
		// run winds down), and every chooser but the replay's then keeps
		// cur without looking at the others.
		if !r.replay && (r.winding || !r.point(cur, r.pending[cur])) {
			r.sched = append(r.sched, int8(cur))
			return cur
		}
	}
	// The options: the current CPU first if it can go on, then the
	// others in CPU order.
	r.opts = r.opts[:0]
	if curRuns {
		r.opts = append(r.opts, cur)
	}
	for i := range r.m.CPUs {
		if i != cur && r.canRun(i) {
			r.opts = append(r.opts, i)
		}
	}
	if len(r.opts) == 0 {
		curRuns = r.deadlock(cur)
	}
	if r.cache != nil && !r.winding && !r.tainted && len(r.sched) > r.fresh && r.cacheHere(curRuns) {
		// A node no earlier run of this search passed on its way here.
		who := -1 // a CPU that cannot go on does not count
		if curRuns {
			who = cur
		}
		if r.cache.visit(r.hb.state(), who, r.bound-r.preemptions) {
			r.pruning = true
			return -1
		}
	}
	next := r.opts[0]
	if r.replay {
		next = r.ch.choose(r, len(r.sched), cur, curRuns, r.opts, true)
	} else if !r.winding && len(r.opts) > 1 {
		// Here cur cannot run, or a preemption may happen before its step.
		next = r.ch.choose(r, len(r.sched), cur, curRuns, r.opts, true)
	}
	if curRuns && next != cur {
		r.preemptions++
	}
	r.sched = append(r.sched, int8(next))
	return next
}

// cacheHere says whether the decision at hand looks up its state: every
// choice the search can make (where runs branch, and where the state an
// option leads to is looked up: hbTrace.ahead), and one decision in
// sampleEvery of the others, chosen by the state itself. A run that meets
// a searched state at a decision that is no choice follows the search
// that recorded it step for step (no choice, no other state), so it meets
// a sampled one a few decisions later. Looking up every decision made the
// cache's lookups a sixth of a long run's time (rfc-v1 bpf-pack: 96 s,
// with 4: 48 s, with 8: 51 s; the collapse preset at bound 3: 24 s with
// 4, 27 s with 8, on two cores).
func (r *run) cacheHere(curRuns bool) bool {
	if len(r.opts) > 1 && (!curRuns || r.preemptions < r.bound) {
		return true
	}
	return r.hb.state()%sampleEvery == 0
}

// sampleEvery: see cacheHere.
const sampleEvery = 4

// order adds CPU id's step ev to the run's partial order, after checking
// that the step keeps to what the bound-0 runs learned of the CPUs that
// store to a descriptor (and under which mutexes) or free a table page:
// quiet loads are left out of the order on that ground.
func (r *run) order(id int, ev *cpu.Event) {
	switch ev.Kind {
	case cpu.EvStore:
		sp := r.x.shared[ev.PA&^r.pageMask]
		i := (ev.PA & r.pageMask) / 8
		if sp == nil || sp.desc == nil || sp.desc[i]&(1<<uint(id)) == 0 || sp.guard[i]&^r.held[id] != 0 {
			r.tainted = true
		}
	case cpu.EvTableFree:
		if sp := r.x.shared[ev.PA]; sp == nil || sp.freers&(1<<uint(id)) == 0 {
			r.tainted = true
		}
	}
	r.hb.step(id, ev, r.pageMask)
}

// touch is the kernel's SetSharedHook: the CPU running (the one that
// performed the last step; every thread's first step comes before any
// kernel code) accessed shared bookkeeping.
func (r *run) touch(what string) {
	if r.pruning || len(r.sched) == 0 {
		return
	}
	r.hb.touch(int(r.sched[len(r.sched)-1]), what)
}

// behaviour is the digest of what every CPU did (did).
func (r *run) behaviour() uint64 {
	b := uint64(len(r.did))
	for _, d := range r.did {
		b = mix(b, d)
	}
	return b
}

// canRun says whether CPU i has a step to perform and may perform it.
func (r *run) canRun(i int) bool {
	return !r.done[i] && r.pending[i] != nil && r.m.CPUs[i].Enabled(r.pending[i])
}

// deadlock records that no CPU can run and makes every CPU with a step an
// option, ignoring the locks, so the run winds down; it says whether cur is
// one (it may be, blocked on a lock).
func (r *run) deadlock(cur int) (curRuns bool) {
	r.fail(&check.Violation{Kind: check.KindDeadlock, CPU: cur, Step: len(r.sched),
		Msg: fmt.Sprintf("no CPU can run: %s", r.describeWaits())})
	r.opts = r.opts[:0]
	if cur >= 0 && !r.done[cur] && r.pending[cur] != nil {
		curRuns = true
		r.opts = append(r.opts, cur)
	}
	for i, c := range r.m.CPUs {
		c.IgnoreLocks = true
		if i != cur && !r.done[i] && r.pending[i] != nil {
			r.opts = append(r.opts, i)
		}
	}
	return curRuns
}

// point says whether a preemption of CPU id may happen before ev. With
// PointsShared a load is a point when another CPU stores to that very
// descriptor and the loading CPU holds no mutex that every store to it
// held, or when it is the CPU's first load in a run of loads from a page
// that another CPU frees (entering the page is what matters to a walker
// whose page is freed; its position inside does not). Any other load
// reads a value no other CPU can change before the loading CPU's next
// point (an unlock is one), from a page no other CPU frees: run before or
// after the others' steps it reads the same and leaves the same state;
// only the CPU's own walk record differs, which the others' steps look at
// only when they free a page.
func (r *run) point(id int, ev *cpu.Event) bool {
	switch ev.Kind {
	case cpu.EvLoad, cpu.EvWalk:
		return r.loadPoint(id, ev.PA)
	}
	return true
}

// loadPoint is point for a load of the descriptor at pa.
func (r *run) loadPoint(id int, pa uint64) bool {
	switch r.points {
	case PointsAll:
		return true
	case PointsWrites:
		return false
	}
	others := ^uint64(1 << uint(id))
	page := pa &^ r.pageMask
	sp := r.sharedPage(page)
	if sp == nil || sp.writers&others == 0 {
		return false
	}
	if sp.desc != nil {
		// A descriptor another CPU stores to, unless this CPU holds a
		// mutex every store to it held: then no other CPU can store to it
		// before this CPU's next point.
		if i := (pa & r.pageMask) / 8; sp.desc[i]&others != 0 && sp.guard[i]&r.held[id] == 0 {
			return true
		}
	}
	return sp.freers&others != 0 && r.lastPage[id] != page
}

// sharedPage is r.x.shared[page], remembering the last page.
func (r *run) sharedPage(page uint64) *sharedPage {
	if r.spOK && r.spPage == page {
		return r.sp
	}
	sp := r.x.shared[page]
	if !r.x.learn {
		r.spPage, r.sp, r.spOK = page, sp, true
	}
	return sp
}

func (r *run) describeWaits() string {
	s := ""
	for i, ev := range r.pending {
		if r.done[i] || ev == nil {
			continue
		}
		what := ev.Kind.String()
		switch {
		case ev.Mutex != nil:
			what += fmt.Sprintf(" %s (held by CPU%d)", ev.Mutex.Name, ev.Mutex.Holder())
		case ev.Sem != nil:
			what += fmt.Sprintf(" %s (writer CPU%d, %d readers)", ev.Sem.Name, ev.Sem.Writer(), ev.Sem.Readers())
		}
		s += fmt.Sprintf("CPU%d waits in %s; ", i, what)
	}
	return s
}
