package explore

import (
	"cmp"
	"slices"
	"sync"
)

// The depth-first search of one iteration (one preemption bound) on several
// cores, with the serial search's result.
//
// A run is identified by its choices: the index taken at each choice point,
// in order; the serial search visits runs in lexicographic order of those
// sequences (no run's sequence is a prefix of another's: the run is
// deterministic). The work is cut into units, each a contiguous interval of
// that order: a choice prefix whose last entry says which siblings at its
// depth (from idx to limit) the unit covers. A unit is searched depth-first
// by one worker; when another worker is idle, the worker hands over the
// unexplored siblings at the shallowest depth of its unit, which keeps both
// its own rest and the handed-over part contiguous, the rest before the
// part. Every unit counts its runs, schedules and steps, and stops at its
// first violation. The result is then the serial one: the units sorted by
// their first choices, summed up to the first unit that has a violation,
// whose counts stop at that violation. A unit that starts after a known
// violation is dropped, so the search still ends early.

// unit is an interval of the depth-first order of one iteration.
type unit struct {
	prefix []choicePoint // the first run of the unit replays these choices
	floor  int           // depth of the unit's last prefix entry
	limit  int           // last sibling index at floor that the unit covers
	shard  bool          // an initial unit (root or level one), see shardUnits

	runs, schedules, steps int
	pruned, tainted        int // runs and options pruned (hb.go), tainted runs
	viol                   *outcome
	aborted                bool // dropped or left before its end
}

// before orders units by their first run: the first differing choice, a
// prefix before its extensions.
func before(a, b []choicePoint) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := cmp.Compare(a[i].idx, b[i].idx); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// levelResult is one iteration's counts up to and including the first
// violation in depth-first order.
type levelResult struct {
	runs, schedules, steps int
	pruned, tainted        int
	viol                   *outcome
	parts                  []ShardPart // per initial unit, up to the first violation
}

// levelSearch is the shared state of the workers of one iteration.
type levelSearch struct {
	run    func(*dfsChooser) (*outcome, error) // one run of the iteration
	bound  int
	points Points
	cache  *stateCache // shared by the workers (nil: no state caching)

	mu    sync.Mutex
	cond  *sync.Cond
	queue []*unit // waiting units, in depth-first order
	all   []*unit
	busy  int   // workers inside a unit
	idle  int   // workers waiting for a unit
	first *unit // the unit with a violation that starts first
	err   error // the first error of a run
}

// searchLevel explores iteration bound b (≥ 1) with jobs workers, over the
// whole tree or, with a shard, the shard's part of it (see shardUnits).
func (x *Explorer) searchLevel(b, jobs int, sh Shard, cache *stateCache) (*levelResult, error) {
	return searchTree(x.runLimited, b, x.cfg.Points, jobs, sh, cache)
}

// runLimited is one run within the shared bound on runs in flight.
func (x *Explorer) runLimited(ch *dfsChooser) (*outcome, error) {
	if x.cfg.Sem != nil {
		x.cfg.Sem <- struct{}{}
		defer func() { <-x.cfg.Sem }()
	}
	return x.run(ch, nil)
}

// searchTree is searchLevel over any deterministic run function.
func searchTree(run func(*dfsChooser) (*outcome, error), b int, points Points, jobs int, sh Shard, cache *stateCache) (*levelResult, error) {
	ls := &levelSearch{run: run, bound: b, points: points, cache: cache}
	ls.cond = sync.NewCond(&ls.mu)
	// The root unit's first run is the iteration's first schedule: every
	// shard runs it, as it names the level-one units.
	root := &unit{floor: -1, shard: true}
	d := &dfsChooser{bound: b, points: points, cache: cache}
	o, err := run(d)
	if err != nil {
		return nil, err
	}
	root.count(o, b)
	spine := slices.Clone(d.stack)
	ls.all = append(ls.all, root)
	if o.violation != nil {
		root.viol = o
		ls.first = root
	} else {
		ls.queue = shardUnits(spine, sh)
		ls.all = append(ls.all, ls.queue...)
	}
	if sh.Index != 0 {
		root.runs, root.schedules, root.steps = 0, 0, 0 // shard 0 counts it
	}
	var wg sync.WaitGroup
	for range max(jobs, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ls.worker()
		}()
	}
	wg.Wait()
	if ls.err != nil {
		return nil, ls.err
	}
	return ls.result(), nil
}

// shardUnits are the level-one units: the root run's choice points each
// start one, with every sibling after the root's choice (the root run takes
// index 0 everywhere). In depth-first order the deepest comes first. Shard
// i of N takes the units at depths d with d mod N = i: the subtrees hanging
// off the root run shrink smoothly with depth, so every shard gets a like
// share, and every shard finds them by one run.
func shardUnits(spine []choicePoint, sh Shard) []*unit {
	var us []*unit
	for d := len(spine) - 1; d >= 0; d-- {
		if !sh.owns(d) {
			continue
		}
		p := slices.Clone(spine[:d+1])
		p[d].idx = 1
		us = append(us, &unit{prefix: p, floor: d, limit: spine[d].n - 1, shard: true})
	}
	return us
}

func (u *unit) count(o *outcome, b int) {
	u.runs++
	u.steps += o.steps
	if o.tainted {
		u.tainted++
	}
	if o.pruned {
		u.pruned++
	} else if o.preemptions == b {
		u.schedules++
	}
}

// dropped says whether u starts after the first violation found so far
// (ls.mu held).
func (ls *levelSearch) dropped(u *unit) bool {
	return ls.first != nil && before(u.prefix, ls.first.prefix) > 0
}

func (ls *levelSearch) worker() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for {
		for len(ls.queue) == 0 && ls.busy > 0 && ls.err == nil {
			ls.idle++
			ls.cond.Wait()
			ls.idle--
		}
		if len(ls.queue) == 0 || ls.err != nil {
			ls.cond.Broadcast()
			return
		}
		u := ls.queue[0]
		ls.queue = ls.queue[1:]
		if ls.dropped(u) {
			u.aborted = true
			continue
		}
		ls.busy++
		ls.mu.Unlock()
		err := ls.search(u)
		ls.mu.Lock()
		ls.busy--
		if err != nil && ls.err == nil {
			ls.err = err
		}
		if ls.busy == 0 || ls.err != nil {
			ls.cond.Broadcast()
		}
	}
}

// search explores unit u depth-first, handing over work when a worker is
// idle.
func (ls *levelSearch) search(u *unit) error {
	d := &dfsChooser{bound: ls.bound, points: ls.points, stack: slices.Clone(u.prefix), cache: ls.cache}
	defer func() { u.pruned += d.skipped }()
	if n := len(u.prefix); n > 0 {
		// Up to its last choice, the unit's first run is a run that
		// passed: the root run (a level-one unit), or the last run of
		// the unit it was handed over from.
		d.checked = u.prefix[n-1].step
	}
	floor, limit := u.floor, u.limit
	for {
		d.depth = 0
		o, err := ls.run(d)
		if err != nil {
			return err
		}
		u.count(o, ls.bound)
		if o.violation != nil {
			u.viol = o
			ls.mu.Lock()
			if ls.first == nil || before(u.prefix, ls.first.prefix) < 0 {
				ls.first = u
			}
			ls.mu.Unlock()
			return nil
		}
		if !nextWithin(d, floor, limit) {
			return nil
		}
		ls.mu.Lock()
		if ls.dropped(u) || ls.err != nil {
			u.aborted = true
			ls.mu.Unlock()
			return nil
		}
		if ls.idle > 0 && len(ls.queue) == 0 {
			if nu := handOver(d, &floor, &limit); nu != nil {
				ls.queue = append(ls.queue, nu)
				ls.all = append(ls.all, nu)
				ls.cond.Signal()
			}
		}
		ls.mu.Unlock()
	}
}

// nextWithin is dfsChooser.next confined to a unit: it never moves a choice
// above floor, and at floor not past limit.
func nextWithin(d *dfsChooser, floor, limit int) bool {
	for len(d.stack) > floor {
		i := len(d.stack) - 1
		top := &d.stack[i]
		top.idx++
		last := top.n - 1
		if i == floor {
			last = limit
		}
		d.skipCovered(top, last)
		if top.idx <= last {
			d.checked = top.step
			return true
		}
		d.stack = d.stack[:i]
	}
	return false
}

// handOver splits the unexplored siblings at the shallowest depth of the
// unit being searched (d's stack, positioned at its next run) into a new
// unit, and confines the searcher to the rest, which comes before it.
func handOver(d *dfsChooser, floor, limit *int) *unit {
	for i := *floor; i < len(d.stack); i++ {
		last := d.stack[i].n - 1
		if i == *floor {
			last = *limit
		}
		if d.stack[i].idx < last {
			p := slices.Clone(d.stack[:i+1])
			p[i].idx++
			*floor, *limit = i, d.stack[i].idx
			return &unit{prefix: p, floor: i, limit: last}
		}
	}
	return nil
}

// result sums the units in depth-first order up to the first violation,
// and per initial unit (the root, or the level-one unit a unit came from:
// the first choice that is not the root run's).
func (ls *levelSearch) result() *levelResult {
	slices.SortFunc(ls.all, func(a, b *unit) int { return before(a.prefix, b.prefix) })
	r := &levelResult{}
	var part *ShardPart
	for _, u := range ls.all {
		d := -1
		for i, c := range u.prefix {
			if c.idx != 0 {
				d = i
				break
			}
		}
		if part == nil || part.Depth != d {
			if part != nil && part.Violation != nil {
				break
			}
			r.parts = append(r.parts, ShardPart{Depth: d, Complete: true})
			part = &r.parts[len(r.parts)-1]
		}
		if part.Violation != nil {
			continue
		}
		part.Runs += u.runs
		part.Schedules += u.schedules
		part.Steps += u.steps
		part.Complete = part.Complete && !u.aborted
		r.runs += u.runs
		r.schedules += u.schedules
		r.steps += u.steps
		r.pruned += u.pruned
		r.tainted += u.tainted
		if u.viol != nil {
			part.Complete = true
			part.Violation = record(u.viol)
			if r.viol == nil {
				r.viol = u.viol
			}
		}
	}
	if r.viol != nil {
		// Parts after the first violation are not part of the result.
		for i, p := range r.parts {
			if p.Violation != nil {
				r.parts = r.parts[:i+1]
				break
			}
		}
	}
	return r
}

// walks runs the shard's walks of [0, n) with jobs workers and returns them
// in order up to and including the first violating one.
func (x *Explorer) walks(n, jobs int, sh Shard) (ws []ShardWalk, err error) {
	var (
		mu        sync.Mutex
		next      int
		first     = n // index of the first violating walk
		walkSteps = make([]int, n)
		done      = make([]bool, n)
		viols     = map[int]*outcome{}
		wg        sync.WaitGroup
	)
	for range max(jobs, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				for next < n && !sh.owns(next) {
					next++
				}
				i := next
				next++
				if i >= first || err != nil {
					mu.Unlock()
					return
				}
				mu.Unlock()
				if x.cfg.Sem != nil {
					x.cfg.Sem <- struct{}{}
				}
				o, e := x.run(newRandomChooser(x.cfg.Seed, uint64(i)), nil)
				if x.cfg.Sem != nil {
					<-x.cfg.Sem
				}
				mu.Lock()
				switch {
				case e != nil:
					if err == nil {
						err = e
					}
				default:
					walkSteps[i], done[i] = o.steps, true
					if o.violation != nil {
						viols[i] = o
						first = min(first, i)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err != nil {
		return nil, err
	}
	for i := 0; i < n && i <= first; i++ {
		if done[i] {
			w := ShardWalk{Index: i, Steps: walkSteps[i]}
			if o := viols[i]; o != nil {
				w.viol, w.Violation = o, record(o)
			}
			ws = append(ws, w)
		}
	}
	return ws, nil
}

// Shard is part Index of Count of a search (see shardUnits); the zero value
// and 0 of 1 are the whole search.
type Shard struct {
	Index int `json:"index"`
	Count int `json:"count"`
}

// owns says whether the shard takes item i of a round-robin partition.
func (s Shard) owns(i int) bool { return s.Count <= 1 || i%s.Count == s.Index }

// parallel says whether Run takes the unit-based search: several jobs or a
// shard, and no run limit (the first MaxRuns runs in depth-first order are
// only known serially).
func (x *Explorer) parallel() bool {
	return x.cfg.MaxRuns == 0 && x.cfg.Jobs > 1
}
