// Package explore runs modelled kernel operations on several simulated CPUs
// and searches their interleavings for invariant violations, the way CHESS
// and loom do for threads: systematically, depth-first with a bound on
// preemptions, plus seeded random walks, and replays any schedule exactly
// from its printed form.
//
// Two modes run the same kernel code. Explore: one CPU runs at a time; at
// every door call (descriptor load or store, table alloc or free, lock,
// rwsem, TLBI, hardware walk read, access) the running CPU yields to the
// scheduler, which picks who runs next; a CPU waiting for a held lock is not
// runnable. Real (RunReal): every CPU is a goroutine with atomic descriptor
// accesses and blocking locks, for stress tests under the race detector.
//
// Preemption points. A context switch away from a runnable CPU (a
// preemption) is considered only where another CPU could observe the
// difference: before stores, table allocs and frees, locks, rwsems, TLBIs,
// accesses and operation boundaries, and — with PointsShared, the default —
// before loads of descriptors that another CPU stores to (unless the
// loading CPU holds a mutex every such store held) and before the first of
// a run of loads from a table page that another CPU frees (all learned
// from the bound-0 runs, then fixed so the search tree is stable).
// PointsAll preempts before every load too; PointsWrites before none.
package explore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ptlab/ptlab/check"
	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
)

// Errors.
var (
	ErrScenario = errors.New("explore: bad scenario")
	// ErrNondeterminism: a replayed prefix offered different choices (the
	// modelled kernel depends on something outside the schedule).
	ErrNondeterminism = errors.New("explore: run is not deterministic")
)

// Op is one operation a CPU performs in a scenario.
type Op struct {
	Name string
	// Footprint: the VA ranges whose intended translation (permissions) the
	// operation changes; operations on different CPUs must not overlap.
	Footprint []check.Range
	// Racy: the outcome depends on the interleaving (an access racing with
	// a permission change): not compared with the serial run.
	Racy bool
	Run  func(k *kernel.Kernel, c *cpu.CPU) error
}

// Setup is a scenario's initial state, built on a freshly booted kernel by
// Scenario.Build: the threads each CPU runs and the VA ranges whose
// translations the checker follows at every step.
type Setup struct {
	K       *kernel.Kernel
	M       *cpu.Machine
	Threads [][]Op
	Tracked []check.Range
	Exempt  check.Exemption
}

// Scenario is a named concurrency scenario.
type Scenario struct {
	Name, Doc string
	CPUs      int
	// Config returns the machine to boot under a policy preset.
	Config func(p kernel.Policy) (kernel.Config, error)
	// Build runs single-threaded on the booted kernel (CPUs without a
	// scheduler) and sets the threads.
	Build func(s *Setup) error
	// Reuse: the threads' operations hold only values (addresses, object
	// numbers, footprints) and act on the kernel and CPU they are given,
	// so one Build serves every run: the explorer restores the kernel and
	// the CPUs to their state after it (setupPool) instead of building
	// anew. A scenario whose operations share state with each other or
	// with the Build (a counter, a lock the Build created) must not set it.
	Reuse bool
}

// Points selects the preemption points.
type Points uint8

const (
	PointsShared Points = iota // writes, sync, and loads of descriptors other CPUs write or from pages they free
	PointsAll                  // every door call
	PointsWrites               // never before a load
)

var pointNames = []string{"shared", "all", "writes"}

func (p Points) String() string {
	if int(p) < len(pointNames) {
		return pointNames[p]
	}
	return fmt.Sprintf("points(%d)", uint8(p))
}

// ParsePoints reads a Points name.
func ParsePoints(s string) (Points, error) {
	for i, n := range pointNames {
		if n == s {
			return Points(i), nil
		}
	}
	return 0, fmt.Errorf("%w: preemption points %q (shared, all, writes)", ErrScenario, s)
}

// Config is one exploration.
type Config struct {
	Preset    string
	Scenario  *Scenario
	Mutations kernel.Mutations
	// Bound is the preemption bound of the depth-first search (iterative
	// deepening from 0); negative skips the systematic search.
	Bound  int
	Random int    // seeded random walks after the search
	Seed   uint64 // seed of the random walks
	Points Points
	// MaxRuns stops the search after this many runs (0: no limit).
	MaxRuns int
	// Jobs is how many schedules run at once (0 or 1: serially): the
	// depth-first search's (units.go) and the random walks; the result is
	// the serial search's. MaxRuns makes the depth-first search serial.
	Jobs int
	// Sem, when set, bounds the runs in flight of parallel searches that
	// share it (several scenarios explored at once).
	Sem chan struct{}
	// Reduce caches the search's nodes by happens-before (hb.go) and
	// searches each once.
	Reduce bool
}

// Result is what an exploration found.
type Result struct {
	Preset, Scenario string
	Bound            int
	Points           Points
	// Schedules counts distinct schedules checked: runs of the depth-first
	// search with exactly the iteration's number of preemptions (earlier
	// iterations covered the others) plus random walks (with Reduce: of
	// the runs that went to the end, which depends on Jobs). Runs counts
	// every execution.
	Schedules, Runs int
	// With Config.Reduce: Pruned counts the runs stopped, and the options
	// not run, at a state searched before; Behaviours the distinct
	// behaviours of the runs that went to the end (what every CPU did:
	// each step through the hook, with the values read and written), per
	// the last iteration (the one with the bound: it runs the schedules
	// with fewer preemptions again): every behaviour within the bound, so
	// the same for any Jobs, unlike the runs, which depend on which worker
	// meets a state first.
	Pruned, Behaviours int
	// Tainted counts the runs with a step the bound-0 runs did not learn
	// (a store or free by a CPU not seen doing it): they neither stop at
	// nor record states, and the load preemption points may have missed
	// an interleaving there (--time prints it when not zero).
	Tainted    int
	Exhaustive bool // the search covered every schedule within the bound
	Steps      int  // steps executed in total
	Elapsed    time.Duration
	// Violation is the first violation, with the schedule that reaches it.
	Violation   *check.Violation
	Schedule    Schedule
	Preemptions int  // in the violating schedule
	Random      bool // found by a random walk
}

// Explorer runs one scenario under one preset.
type Explorer struct {
	cfg    Config
	kcfg   kernel.Config
	oracle *check.Oracle
	// Learned from the bound-0 runs for PointsShared: which CPUs store to
	// or free each table page, and store to each of its descriptors, and
	// under which mutexes; lockBit numbers the mutexes by name (each
	// modelled lock has its own name, and a run's kernel is a fresh copy:
	// the name is what stays the same).
	shared  map[uint64]*sharedPage
	lockBit map[string]uint
	learn   bool
	kernels kernelPool // booted kernels, restored per run (snapshot.go)
	setups  setupPool  // built scenarios, restored per run (Scenario.Reuse)
	// start is the monitors' reference, read once from the tables the
	// serial run's setup left (every run's setup leaves the same).
	start *check.Start
	// steps is the length of the longest run so far: a run's schedule
	// starts with that capacity. schedules keeps those of runs that found
	// nothing, for the next.
	steps     atomic.Int64
	schedules sync.Pool
	// checkReplayed checks every step of every run, also those a run
	// replays from an earlier one (dfsChooser.checked): the tests' oracle.
	checkReplayed bool
	// behaviours, when set (tests), collects a digest of what every CPU
	// of each run that went to the end did: each step it performed
	// through the hook, with the values it read and wrote.
	behaviours   map[uint64]bool
	behavioursMu sync.Mutex
}

// sharedPage is what the bound-0 runs learned of one table page: the CPUs
// (a bit each) that store to it or free it, and per descriptor the CPUs
// that store to it. Read-only once learned, by every worker.
type sharedPage struct {
	writers uint64
	freers  uint64   // the CPUs that free it
	desc    []uint64 // nil until a store
	// guard is per descriptor the mutexes (Explorer.lockBit) held at
	// every store to it, by any CPU.
	guard []uint64
}

// learnEvent records what CPU id's step ev tells of the shared pages; held
// is the mutexes the CPU holds.
func (x *Explorer) learnEvent(id int, ev *cpu.Event, pageSize, held uint64) {
	bit := uint64(1) << uint(id)
	switch ev.Kind {
	case cpu.EvStore:
		sp := x.sharedPage(ev.PA &^ (pageSize - 1))
		sp.writers |= bit
		if sp.desc == nil {
			sp.desc = make([]uint64, pageSize/8)
			sp.guard = make([]uint64, pageSize/8)
		}
		i := (ev.PA & (pageSize - 1)) / 8
		if sp.desc[i] == 0 {
			sp.guard[i] = held
		} else {
			sp.guard[i] &= held
		}
		sp.desc[i] |= bit
	case cpu.EvTableFree:
		sp := x.sharedPage(ev.PA)
		sp.writers |= bit
		sp.freers |= bit
	}
}

func (x *Explorer) sharedPage(page uint64) *sharedPage {
	sp := x.shared[page]
	if sp == nil {
		sp = &sharedPage{}
		x.shared[page] = sp
	}
	return sp
}

// New prepares an exploration: it checks the configuration and records the
// oracle (the outcome of each operation when the CPUs run one after the
// other).
func New(cfg Config) (*Explorer, error) {
	if cfg.Scenario == nil {
		return nil, fmt.Errorf("%w: no scenario", ErrScenario)
	}
	pol, err := kernel.Preset(cfg.Preset)
	if err != nil {
		return nil, err
	}
	kcfg, err := cfg.Scenario.Config(pol)
	if err != nil {
		return nil, err
	}
	x := &Explorer{cfg: cfg, kcfg: kcfg, shared: map[uint64]*sharedPage{}, lockBit: map[string]uint{}}
	// The serial run is the bound-0 search's first schedule: learn the
	// shared pages from it too, so random walks without a systematic search
	// (--bound -1) keep the load preemption points.
	x.learn = true
	o, err := x.run(&serialChooser{}, nil)
	x.learn = false
	if err != nil {
		return nil, err
	}
	if o.violation != nil {
		return nil, fmt.Errorf("%w: the serial run fails: %v", ErrScenario, o.violation)
	}
	x.oracle = o.oracle
	return x, nil
}

// outcome is what one run produced.
type outcome struct {
	violation   *check.Violation
	schedule    Schedule
	preemptions int
	steps       int
	oracle      *check.Oracle
	trace       []TraceStep
	pruned      bool // stopped at a node searched before (hb.go)
	tainted     bool // run.tainted
}

// boot builds a fresh kernel and the scenario's initial state.
func (x *Explorer) boot(mode cpu.Mode) (*Setup, error) {
	if x.cfg.Scenario.Reuse && mode == cpu.Cooperative && !x.kernels.fresh {
		return x.setups.get(x)
	}
	return x.build(mode)
}

// build boots (or restores) a kernel and runs the scenario's Build on it.
func (x *Explorer) build(mode cpu.Mode) (*Setup, error) {
	k, err := x.kernels.get(x.kcfg, mode)
	if err != nil {
		return nil, err
	}
	k.Mutations = x.cfg.Mutations
	s := &Setup{K: k, M: cpu.NewMachine(k, x.cfg.Scenario.CPUs, mode)}
	if err := x.buildOn(s); err != nil {
		return nil, err
	}
	return s, nil
}

// buildOn runs the scenario's Build on s's kernel and machine.
func (x *Explorer) buildOn(s *Setup) error {
	if err := x.cfg.Scenario.Build(s); err != nil {
		return fmt.Errorf("%w: %s: setup: %w", ErrScenario, x.cfg.Scenario.Name, err)
	}
	if len(s.Threads) != len(s.M.CPUs) {
		return fmt.Errorf("%w: %s: %d threads for %d CPUs", ErrScenario, x.cfg.Scenario.Name, len(s.Threads), len(s.M.CPUs))
	}
	return nil
}

// run executes one schedule chosen by ch on a fresh kernel, checked against
// the oracle (or recording it when there is none yet).
func (x *Explorer) run(ch chooser, tr *tracer) (*outcome, error) {
	s, err := x.boot(cpu.Cooperative)
	if err != nil {
		return nil, err
	}
	mon := x.monitor(s)
	r := newRun(x, s, mon, ch, tr)
	if d, ok := ch.(*dfsChooser); ok {
		if !x.checkReplayed {
			r.checked = d.checked
		}
		if d.cache != nil && !x.learn && x.cfg.Points != PointsWrites && len(s.M.CPUs) <= maxCPUs {
			r.cache, r.bound, r.fresh = d.cache, d.bound, d.checked
			r.hb = &d.hb
			r.hb.reset(len(s.M.CPUs))
			s.K.SetSharedHook(r.touch) // until the run ends, below
		}
	}
	if x.behaviours != nil || r.cache != nil {
		r.did = make([]uint64, len(s.M.CPUs))
	}
	if buf, ok := x.schedules.Get().(*Schedule); ok && int64(cap(*buf)) >= x.steps.Load() {
		r.sched = (*buf)[:0]
	} else {
		r.sched = make(Schedule, 0, x.steps.Load())
	}
	r.start()
	if n := int64(len(r.sched)); n > x.steps.Load() {
		x.steps.Store(n) // a race between workers only costs a reallocation
	}
	o := &outcome{schedule: r.sched, preemptions: r.preemptions, steps: len(r.sched), trace: r.traceSteps(), pruned: r.pruning, tainted: r.tainted}
	if !r.pruning { // a pruned run has no final state to check
		if r.violation != nil {
			o.violation = r.violation
		} else if err := mon.Final(); err != nil {
			o.violation = mon.Violation()
		} else if v := mon.Violation(); v != nil {
			o.violation = v
		}
		if o.violation == nil && r.did != nil {
			b := r.behaviour()
			if r.cache != nil {
				r.cache.end(b)
			}
			if x.behaviours != nil {
				x.behavioursMu.Lock()
				x.behaviours[b] = true
				x.behavioursMu.Unlock()
			}
		}
	}
	if x.oracle == nil {
		o.oracle = mon.Oracle()
	}
	if o.violation == nil && tr == nil {
		// Only a violation's schedule is kept: this one serves the next
		// run (a long search allocated gigabytes of them).
		o.schedule = nil
		x.schedules.Put(&r.sched)
	}
	// The kernel goes back to the pools without the hook: another worker
	// may take it at once.
	s.K.SetSharedHook(nil)
	if tr == nil {
		x.kernels.put(s.K)
		x.setups.put(s)
	}
	return o, nil
}

func (x *Explorer) monitor(s *Setup) *check.Monitor {
	infos := make([][]check.OpInfo, len(s.Threads))
	for i, th := range s.Threads {
		for _, op := range th {
			infos[i] = append(infos[i], check.OpInfo{Name: op.Name, Footprint: op.Footprint, Racy: op.Racy})
		}
	}
	st := x.start
	if st == nil || !st.Tracked(s.Tracked) || s.M.Mode != cpu.Cooperative {
		// Real mode boots afresh per round and builds with goroutine
		// CPUs: it reads its own start.
		st = check.NewStart(s.K, s.Tracked)
		if x.oracle == nil {
			// The serial run in New, before any search: every later run
			// starts from the same tables (check.Start).
			x.start = st
		}
	}
	mon := check.NewMonitorFrom(st, s.K, s.M, infos, x.oracle)
	mon.Exempt = s.Exempt
	return mon
}

// Run explores: depth-first with iterative deepening of the preemption
// bound from 0 to cfg.Bound, then cfg.Random seeded random walks; it stops at
// the first violation, whose schedule has the fewest preemptions the search
// needed.
func (x *Explorer) Run() (*Result, error) {
	defer relaxGC()()
	defer x.kernels.drain()
	defer x.setups.drain()
	start := time.Now()
	res := &Result{Preset: x.cfg.Preset, Scenario: x.cfg.Scenario.Name, Bound: x.cfg.Bound, Points: x.cfg.Points}
	found := func(o *outcome, random bool) {
		res.Violation = o.violation
		res.Schedule = o.schedule
		if v := o.violation; v.Step >= 0 && v.Step+1 < len(o.schedule) {
			res.Schedule = o.schedule[:v.Step+1]
		}
		res.Random = random
		res.Preemptions = o.preemptions
	}
	limited := false
	for b := 0; b <= x.cfg.Bound && res.Violation == nil && !limited; b++ {
		x.learn = b == 0
		if b > 0 && x.parallel() {
			cache := x.newCache()
			lv, err := x.searchLevel(b, x.cfg.Jobs, Shard{}, cache)
			if err != nil {
				return nil, err
			}
			res.Runs += lv.runs
			res.Steps += lv.steps
			res.Pruned += lv.pruned
			res.Tainted += lv.tainted
			if cache == nil || lv.viol == nil {
				res.Schedules += lv.schedules
				res.Behaviours = cache.behaviours()
				if lv.viol != nil {
					found(lv.viol, false)
				}
				continue
			}
			// With a shared cache, which run meets a state first (and so
			// which violation comes first) depends on the workers' timing:
			// the serial search of this iteration decides.
		}
		d := &dfsChooser{bound: b, points: x.cfg.Points, cache: x.newCache()}
		for {
			if x.cfg.MaxRuns > 0 && res.Runs >= x.cfg.MaxRuns {
				limited = true
				break
			}
			d.depth = 0
			o, err := x.run(d, nil)
			if err != nil {
				return nil, err
			}
			res.Runs++
			res.Steps += o.steps
			if o.tainted {
				res.Tainted++
			}
			if o.pruned {
				res.Pruned++
			} else if o.preemptions == b {
				res.Schedules++
			}
			if o.violation != nil {
				found(o, false)
				break
			}
			if !d.next() {
				break
			}
		}
		res.Pruned += d.skipped
		if d.cache != nil {
			res.Behaviours = d.cache.behaviours()
		}
	}
	x.learn = false
	res.Exhaustive = res.Violation == nil && !limited && x.cfg.Bound >= 0
	jobs := max(x.cfg.Jobs, 1)
	for i := 0; i < x.cfg.Random && res.Violation == nil; i += jobs {
		// Walks i..i+jobs-1 at once; counted in order up to the first
		// violating one, as a serial run would.
		n := min(jobs, x.cfg.Random-i)
		outs := make([]*outcome, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for j := 0; j < n; j++ {
			wg.Add(1)
			go func(j int) {
				defer wg.Done()
				outs[j], errs[j] = x.run(newRandomChooser(x.cfg.Seed, uint64(i+j)), nil)
			}(j)
		}
		wg.Wait()
		for j := 0; j < n && res.Violation == nil; j++ {
			if errs[j] != nil {
				return nil, errs[j]
			}
			res.Runs++
			res.Schedules++
			res.Steps += outs[j].steps
			if outs[j].violation != nil {
				found(outs[j], true)
			}
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// newCache is an iteration's state cache, when the search caches states.
func (x *Explorer) newCache() *stateCache {
	if !x.cfg.Reduce {
		return nil
	}
	return &stateCache{}
}

// relaxGC raises the garbage collector's target for the duration of a
// search: every run boots a fresh kernel (about 1.7 MB) that is garbage
// when the run ends, and with the default target and a small live heap the
// collector would run after nearly every run (a 2-4x slowdown measured).
// It returns the function that restores the previous setting.
// Explorations may run at once (RunScenarios): the first raises the target,
// the last restores it.
func relaxGC() func() {
	gcMu.Lock()
	defer gcMu.Unlock()
	if gcUsers++; gcUsers == 1 {
		gcOld = debug.SetGCPercent(400)
	}
	return func() {
		gcMu.Lock()
		defer gcMu.Unlock()
		if gcUsers--; gcUsers == 0 {
			debug.SetGCPercent(gcOld)
		}
	}
}

var (
	gcMu    sync.Mutex
	gcUsers int
	gcOld   int
)

// Replay runs one schedule, recording a trace of every step when trace is
// set; steps past the schedule continue without preemption.
func (x *Explorer) Replay(s Schedule, trace bool) (*Result, []TraceStep, error) {
	start := time.Now()
	var tr *tracer
	if trace {
		tr = &tracer{}
	}
	rc := &replayChooser{s: s}
	o, err := x.run(rc, tr)
	if err != nil {
		return nil, nil, err
	}
	if rc.err != nil {
		return nil, nil, rc.err
	}
	res := &Result{Preset: x.cfg.Preset, Scenario: x.cfg.Scenario.Name, Bound: -1, Points: x.cfg.Points,
		Schedules: 1, Runs: 1, Steps: o.steps, Violation: o.violation, Schedule: s, Elapsed: time.Since(start)}
	return res, o.trace, nil
}

// chooser decides who runs at a scheduling decision.
type chooser interface {
	// choose picks among opts (runnable CPU IDs; when cur can run, opts[0]
	// is cur and the others are preemptions) the CPU that performs step;
	// point says whether a preemption may happen here (r.preemptions counts
	// those so far).
	choose(r *run, step, cur int, curRuns bool, opts []int, point bool) int
}

// serialChooser runs each CPU to completion, lowest first: the oracle run.
type serialChooser struct{}

func (serialChooser) choose(_ *run, _, _ int, _ bool, opts []int, _ bool) int { return opts[0] }

// dfsChooser enumerates choices depth-first within a preemption bound.
type dfsChooser struct {
	bound  int
	points Points
	stack  []choicePoint
	depth  int
	// checked: the next run's first checked steps are the previous run's
	// (the same choices up to the step where the top choice point now
	// takes its next option), and that run passed every check on them.
	checked int
	// cache, when set, prunes runs at nodes searched before (hb.go); hb
	// is the partial order of the current run.
	cache   *stateCache
	hb      hbTrace
	skipped int // options not run: covered by a node searched before
}

// choicePoint is a choice of n options, idx taken, made before step.
// With state caching, ahead is per option the state its step leads to
// (hbTrace.ahead).
type choicePoint struct {
	n, idx, step int
	ahead        []aheadOption
}

func (d *dfsChooser) choose(r *run, step, _ int, curRuns bool, opts []int, point bool) int {
	n := len(opts)
	if curRuns && (!point || r.preemptions >= d.bound) {
		n = 1
	}
	if n == 1 {
		return opts[0]
	}
	if d.depth < len(d.stack) {
		cp := d.stack[d.depth]
		d.depth++
		if cp.n != n || cp.step != step {
			r.fail(&check.Violation{Kind: check.KindNondeterminism, CPU: -1, Step: len(r.sched),
				Msg: fmt.Sprintf("%v: choice point %d had %d options before step %d, now %d before step %d", ErrNondeterminism, d.depth-1, cp.n, cp.step, n, step)})
			return opts[0]
		}
		return opts[cp.idx]
	}
	cp := choicePoint{n: n, step: step}
	if d.cache != nil && r.hb != nil && !r.tainted {
		// Every option but the running CPU's is a preemption when it can
		// go on.
		cp.ahead = r.hb.ahead(opts[:n], r.pending, r.pageMask, d.bound-r.preemptions, curRuns)
	}
	d.stack = append(d.stack, cp)
	d.depth++
	return opts[0]
}

// next moves to the next unexplored branch; false when none is left.
func (d *dfsChooser) next() bool {
	for len(d.stack) > 0 {
		top := &d.stack[len(d.stack)-1]
		top.idx++
		d.skipCovered(top, top.n-1)
		if top.idx < top.n {
			d.checked = top.step
			return true
		}
		d.stack = d.stack[:len(d.stack)-1]
	}
	return false
}

// skipCovered moves top past the options up to last that a search from
// the state they lead to covers (hbTrace.ahead): they are not run.
func (d *dfsChooser) skipCovered(top *choicePoint, last int) {
	for top.ahead != nil && top.idx <= last && d.cache.covered(top.ahead[top.idx]) {
		top.idx++
		d.skipped++
	}
}

// randomChooser preempts at each point with a probability drawn per walk.
type randomChooser struct {
	rng  *rand.Rand
	pInv uint64
}

func newRandomChooser(seed, walk uint64) *randomChooser {
	rng := rand.New(rand.NewPCG(seed, walk))
	inv := []uint64{4, 16, 64, 256, 1024}
	return &randomChooser{rng: rng, pInv: inv[rng.IntN(len(inv))]}
}

func (rc *randomChooser) choose(_ *run, _, _ int, curRuns bool, opts []int, point bool) int {
	if !curRuns {
		return opts[rc.rng.IntN(len(opts))]
	}
	if !point || len(opts) == 1 || rc.rng.Uint64N(rc.pInv) != 0 {
		return opts[0]
	}
	return opts[1+rc.rng.IntN(len(opts)-1)]
}

// replayChooser follows a schedule step by step.
type replayChooser struct {
	s   Schedule
	err error
}

func (rc *replayChooser) choose(r *run, step, _ int, _ bool, opts []int, _ bool) int {
	if step >= len(rc.s) || rc.err != nil {
		return opts[0]
	}
	want := int(rc.s[step])
	for _, o := range opts {
		if o == want {
			return want
		}
	}
	rc.err = fmt.Errorf("%w: at step %d CPU%d cannot run (runnable: %v)", ErrSchedule, step, want, slices.Sorted(slices.Values(opts)))
	return opts[0]
}
