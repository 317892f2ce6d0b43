package explore

import (
	"testing"

	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
)

// behaviours searches sc under preset at bound, with or without state
// caching, and returns what the runs that went to the end did.
func behaviours(t *testing.T, preset string, sc *Scenario, bound int, reduce bool, jobs int) (map[uint64]bool, *Result) {
	t.Helper()
	x, err := New(Config{Preset: preset, Scenario: sc, Bound: bound, Reduce: reduce, Jobs: jobs})
	if err != nil {
		t.Fatal(err)
	}
	x.behaviours = map[uint64]bool{}
	res, err := x.Run()
	if err != nil {
		t.Fatal(err)
	}
	return x.behaviours, res
}

// sameBehaviours searches sc with and without state caching (on jobs
// workers) and fails t unless both end in the same behaviours; it returns
// the cached search's result.
func sameBehaviours(t *testing.T, sc *Scenario, bound, jobs int) *Result {
	t.Helper()
	plain, pr := behaviours(t, "collapse", sc, bound, false, jobs)
	red, rr := behaviours(t, "collapse", sc, bound, true, jobs)
	missing := 0
	for b := range plain {
		if !red[b] {
			missing++
		}
	}
	if missing > 0 || len(red) != len(plain) {
		t.Errorf("%s, bound %d: state caching ends in %d behaviours, the plain search in %d; %d missing", sc.Name, bound, len(red), len(plain), missing)
	}
	t.Logf("%s bound %d: %d behaviours; %d runs plain, %d cached", sc.Name, bound, len(plain), pr.Runs, rr.Runs)
	return rr
}

// State caching loses no behaviour: the runs of a search with it, which
// stops runs at states searched before, end in exactly the behaviours
// (every step of every CPU, with the values it read and wrote) of the
// search that runs every schedule within the bound; and it finds the same
// behaviours on one worker and on two.
func TestStateCachingKeepsEveryBehaviour(t *testing.T) {
	if testing.Short() {
		t.Skip("searches every scenario three times")
	}
	for _, name := range ScenarioNames() {
		sc, err := LookupScenario(name)
		if err != nil {
			t.Fatal(err)
		}
		bound := 2
		if sc.CPUs > 2 || sc.Name == "chunk-release" {
			bound = 1
		}
		res := sameBehaviours(t, sc, bound, 1)
		_, par := behaviours(t, "collapse", sc, bound, true, 2)
		if res.Behaviours != par.Behaviours || res.Behaviours == 0 {
			t.Errorf("%s: %d behaviours on one worker, %d on two", sc.Name, res.Behaviours, par.Behaviours)
		}
	}
}

// The order's hash: steps that touch different things commute, steps that
// conflict do not, and reads of one thing commute with each other.
func TestHBOrder(t *testing.T) {
	const mask = 4095
	mu := &kernel.Mutex{Name: "m"}
	load := func(pa uint64) *cpu.Event { return &cpu.Event{Kind: cpu.EvLoad, PA: pa} }
	store := func(pa uint64) *cpu.Event { return &cpu.Event{Kind: cpu.EvStore, PA: pa} }
	type step struct {
		id int
		ev *cpu.Event
		bk string // a touch of shared bookkeeping instead
	}
	state := func(steps ...step) uint64 {
		var t hbTrace
		t.reset(2)
		for _, s := range steps {
			if s.bk != "" {
				t.touch(s.id, s.bk)
			} else {
				t.step(s.id, s.ev, mask)
			}
		}
		return t.state()
	}
	for _, c := range []struct {
		name    string
		a, b    step
		commute bool
	}{
		{"loads of two descriptors", step{0, load(0x1000), ""}, step{1, load(0x2008), ""}, true},
		{"loads of one descriptor", step{0, load(0x1000), ""}, step{1, load(0x1000), ""}, true},
		{"store and load of one descriptor", step{0, store(0x1000), ""}, step{1, load(0x1000), ""}, false},
		{"stores to two pages", step{0, store(0x1000), ""}, step{1, store(0x2000), ""}, true},
		{"free of the page a load reads", step{0, &cpu.Event{Kind: cpu.EvTableFree, PA: 0x1000}, ""}, step{1, load(0x1ff8), ""}, false},
		{"alloc and free", step{0, &cpu.Event{Kind: cpu.EvTableAlloc}, ""}, step{1, &cpu.Event{Kind: cpu.EvTableFree, PA: 0x3000}, ""}, false},
		{"TLBI and walk", step{0, &cpu.Event{Kind: cpu.EvTLBI}, ""}, step{1, &cpu.Event{Kind: cpu.EvWalk, PA: 0x5000}, ""}, false},
		{"TLBI and load", step{0, &cpu.Event{Kind: cpu.EvTLBI}, ""}, step{1, load(0x5000), ""}, true},
		{"operation end and store", step{0, &cpu.Event{Kind: cpu.EvOpEnd}, ""}, step{1, store(0x5000), ""}, false},
		{"operation begin and store", step{0, &cpu.Event{Kind: cpu.EvOpBegin}, ""}, step{1, store(0x5000), ""}, true},
		{"lock and unlock", step{0, &cpu.Event{Kind: cpu.EvLock, Mutex: mu}, ""}, step{1, &cpu.Event{Kind: cpu.EvUnlock, Mutex: mu}, ""}, false},
		{"two accesses", step{0, &cpu.Event{Kind: cpu.EvAccess, VA: 1}, ""}, step{1, &cpu.Event{Kind: cpu.EvAccess, VA: 2}, ""}, false},
		{"bookkeeping", step{0, nil, "vmap bookkeeping"}, step{1, nil, "vmap bookkeeping"}, false},
		{"page allocator and table alloc", step{0, nil, kernel.SharedPages}, step{1, &cpu.Event{Kind: cpu.EvTableAlloc}, ""}, false},
		{"bookkeeping and a store", step{0, nil, "vmap bookkeeping"}, step{1, store(0x1000), ""}, true},
	} {
		ab, ba := state(c.a, c.b), state(c.b, c.a)
		if (ab == ba) != c.commute {
			t.Errorf("%s: commute = %v, want %v", c.name, ab == ba, c.commute)
		}
	}
	// One CPU's steps in another order are another state.
	if state(step{0, load(0x1000), ""}, step{0, load(0x2000), ""}) == state(step{0, load(0x2000), ""}, step{0, load(0x1000), ""}) {
		t.Error("program order ignored")
	}
}

// The cover rule: a search from (state, CPU, left) covers the same CPU
// with no more left, any CPU with fewer, and a CPU that cannot go on
// covers every CPU with no more left.
func TestStateCacheCovers(t *testing.T) {
	var c stateCache
	if c.visit(7, 0, 2) {
		t.Fatal("a new state is covered")
	}
	for _, q := range []struct {
		cur, left int
		want      bool
	}{{0, 2, true}, {0, 1, true}, {1, 1, true}, {1, 2, false}, {-1, 1, true}, {-1, 2, false}} {
		if got := c.covered(aheadOption{state: 7, cpu: q.cur, left: q.left}); got != q.want {
			t.Errorf("after (0, 2): covered(%d, %d) = %v, want %v", q.cur, q.left, got, q.want)
		}
	}
	c.visit(9, -1, 1)
	for _, q := range []struct {
		cur, left int
		want      bool
	}{{0, 1, true}, {1, 1, true}, {-1, 1, true}, {2, 2, false}} {
		if got := c.covered(aheadOption{state: 9, cpu: q.cur, left: q.left}); got != q.want {
			t.Errorf("after (-1, 1): covered(%d, %d) = %v, want %v", q.cur, q.left, got, q.want)
		}
	}
}

// Workers sharing one cache print what one worker prints: the behaviours,
// and a violation (searched again serially) with its schedule. Short, so
// that the race detector runs it.
func TestStateCachingParallel(t *testing.T) {
	for _, preset := range []string{"collapse", "rfc-v1"} {
		sc, err := LookupScenario("neighbours")
		if err != nil {
			t.Fatal(err)
		}
		var res [2]*Result
		for i, jobs := range []int{1, 2} {
			x, err := New(Config{Preset: preset, Scenario: sc, Bound: 2, Reduce: true, Jobs: jobs})
			if err != nil {
				t.Fatal(err)
			}
			if res[i], err = x.Run(); err != nil {
				t.Fatal(err)
			}
		}
		a, b := res[0], res[1]
		if a.Behaviours != b.Behaviours || (a.Violation == nil) != (b.Violation == nil) || a.Schedule.String() != b.Schedule.String() {
			t.Errorf("%s: one worker: %d behaviours, violation %v at %s; two: %d, %v at %s",
				preset, a.Behaviours, a.Violation, a.Schedule, b.Behaviours, b.Violation, b.Schedule)
		}
		if (preset == "rfc-v1") != (a.Violation != nil) {
			t.Errorf("%s: violation %v", preset, a.Violation)
		}
	}
}
