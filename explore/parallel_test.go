package explore

import (
	"fmt"
	"testing"

	"github.com/ptlab/ptlab/check"
	"github.com/ptlab/ptlab/kernel"
)

// resultText is everything of a Result the CLI prints except the time.
func resultText(r *Result) string {
	s := fmt.Sprintf("%s/%s bound %d: %d schedules, %d runs, %d steps, exhaustive %v", r.Preset, r.Scenario, r.Bound, r.Schedules, r.Runs, r.Steps, r.Exhaustive)
	if r.Violation != nil {
		s += fmt.Sprintf("; violation %v at step %d: %s; schedule %s, %d preemptions, random %v",
			r.Violation.Kind, r.Violation.Step, r.Violation.Msg, r.Schedule, r.Preemptions, r.Random)
	}
	return s
}

func runJobs(t *testing.T, preset, scenario string, bound, random, jobs int, muts kernel.Mutations) string {
	t.Helper()
	s, err := LookupScenario(scenario)
	if err != nil {
		t.Fatal(err)
	}
	x, err := New(Config{Preset: preset, Scenario: s, Bound: bound, Random: random, Seed: 3, Mutations: muts, Jobs: jobs})
	if err != nil {
		t.Fatal(err)
	}
	r, err := x.Run()
	if err != nil {
		t.Fatal(err)
	}
	return resultText(r)
}

// The parallel search reports exactly what the serial one does: the same
// counts, and the same first violation in depth-first order, with violations
// early (rfc-v1), late or nowhere.
func TestParallelEqualsSerial(t *testing.T) {
	b := 1
	if testing.Short() || raceDetector {
		b = 1
	}
	type tc struct {
		preset, scenario string
		bound, random    int
		mut              string
	}
	cases := []tc{
		{"rfc-v1", "neighbours", 2, 0, ""},
		{"rfc-v1", "chunk-offsets", 2, 0, ""},
		{"collapse", "split", 1, 0, "no-split-lock"},
		{"collapse", "neighbours", b, 0, ""},
		{"collapse", "bpf-pack", b, 0, "skip-tlbi"},
		{"rfc-v1", "neighbours", -1, 40, ""},
		{"collapse", "two-vmalloc", b, 8, ""},
	}
	if !testing.Short() && !raceDetector {
		for _, name := range ScenarioNames() {
			cases = append(cases, tc{"collapse", name, 1, 0, ""})
		}
	}
	for _, c := range cases {
		muts, err := LookupMutant(c.mut)
		if c.mut == "" {
			muts, err = LookupMutant("none")
		}
		if err != nil {
			t.Fatal(err)
		}
		want := runJobs(t, c.preset, c.scenario, c.bound, c.random, 1, muts)
		for _, jobs := range []int{2, 4} {
			if got := runJobs(t, c.preset, c.scenario, c.bound, c.random, jobs, muts); got != want {
				t.Errorf("%s/%s --mutant %q --jobs %d:\n got %s\nwant %s", c.preset, c.scenario, c.mut, jobs, got, want)
			}
		}
	}
}

// fakeRun is a deterministic synthetic schedule tree: up to three CPUs, some
// steps where the running CPU is blocked, some that are no preemption
// point, and violations at leaves picked by a hash of the path (one in
// every) — tree shapes the real scenarios take seconds to produce.
func fakeRun(seed uint64, every uint64) func(d *dfsChooser) (*outcome, error) {
	mix := func(h, v uint64) uint64 {
		h ^= v + 0x9e3779b97f4a7c15 + h<<6 + h>>2
		h *= 0xff51afd7ed558ccd
		return h ^ h>>33
	}
	return func(d *dfsChooser) (*outcome, error) {
		r := &run{}
		h := mix(seed, 1)
		n := 8 + int(seed%9)
		cur := 0
		for i := 0; i < n; i++ {
			h = mix(h, uint64(i))
			ncpu := 2 + int(h%2)
			curRuns := h>>8%5 != 0
			point := h>>16%3 != 0
			opts := []int{}
			if curRuns {
				opts = append(opts, cur)
			}
			for c := 0; c < ncpu; c++ {
				if c != cur {
					opts = append(opts, c)
				}
			}
			next := opts[0]
			if len(opts) > 1 {
				next = d.choose(r, i, cur, curRuns, opts, point)
			}
			if curRuns && next != cur {
				r.preemptions++
			}
			r.sched = append(r.sched, int8(next))
			cur = next
			h = mix(h, uint64(next)+100)
		}
		o := &outcome{schedule: r.sched, preemptions: r.preemptions, steps: n + int(h%5)}
		if r.violation != nil {
			o.violation = r.violation
		} else if every > 0 && mix(h, 7)%every == 0 {
			o.violation = &check.Violation{Kind: check.KindTranslation, Step: -1, Msg: fmt.Sprintf("leaf %x", h)}
		}
		return o, nil
	}
}

// serialLevel is the serial search of Explorer.Run for one iteration.
func serialLevel(run func(*dfsChooser) (*outcome, error), b int) string {
	d := &dfsChooser{bound: b}
	runs, sched, steps := 0, 0, 0
	for {
		d.depth = 0
		o, _ := run(d)
		runs++
		steps += o.steps
		if o.preemptions == b {
			sched++
		}
		if o.violation != nil {
			return fmt.Sprintf("%d runs %d schedules %d steps; %s at %v", runs, sched, steps, o.violation.Msg, o.schedule)
		}
		if !d.next() {
			return fmt.Sprintf("%d runs %d schedules %d steps", runs, sched, steps)
		}
	}
}

func levelText(lv *levelResult) string {
	s := fmt.Sprintf("%d runs %d schedules %d steps", lv.runs, lv.schedules, lv.steps)
	if lv.viol != nil {
		s += fmt.Sprintf("; %s at %v", lv.viol.violation.Msg, lv.viol.schedule)
	}
	return s
}

// On synthetic trees of every shape, the unit search with any number of
// workers gives the serial search's counts and first violation.
func TestSearchTreeEqualsSerial(t *testing.T) {
	trees := 300
	if testing.Short() || raceDetector {
		trees = 60
	}
	for seed := uint64(0); seed < uint64(trees); seed++ {
		every := []uint64{0, 3, 40, 400}[seed%4]
		run := fakeRun(seed, every)
		for b := 1; b <= 3; b++ {
			want := serialLevel(run, b)
			for _, jobs := range []int{1, 2, 3, 8} {
				lv, err := searchTree(run, b, PointsShared, jobs, Shard{}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if got := levelText(lv); got != want {
					t.Fatalf("tree %d bound %d jobs %d:\n got %s\nwant %s", seed, b, jobs, got, want)
				}
			}
		}
	}
}
