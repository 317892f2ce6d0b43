package main

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/explore"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/workload"
	"github.com/spf13/cobra"
)

type checkFlags struct {
	preset, scenario, replay, points, mutant string
	bound, random, maxRuns                   int
	seed                                     uint64
	trace, time, mutants, reduce             bool
	jobs                                     int
	shard, output, from                      string // check_shard.go
}

func init() {
	var f checkFlags
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Search the interleavings of a concurrency scenario for invariant violations",
		Long: `check runs a named scenario — a few simulated CPUs, a few kernel operations each — under a
policy preset and searches its interleavings: depth-first with iterative deepening of the
preemption bound up to --bound (exhaustive within it), then --random seeded random walks. At every
step: translation equivalence across splits and collapses, lost updates, use after free, no table
page freed under a walk cache or a lockless walker, break-before-make on CPUs without
BBML2_NOABORT, W^X across aliases of the tracked pages. When an operation returns: its outcome
against the serial run, no stale permissive TLB entry over its footprint, executable content,
the direct map of freed pages, physmem accounting. At the end: all of it over everything, plus
table leaks. --mutants prints which invariant catches each injected bug.

It prints "no violation in N schedules (bound B, exhaustive)" or the first violation with the
schedule that reaches it (fewest preemptions first): per step the CPU, its operation, the event,
the kernel function and the descriptor (old → new); it exits non-zero after a violation. A
schedule is written CPUxSTEPS in run-length form ("0x65 1x619": CPU0 for 65 steps, then CPU1
for 619); --replay runs one printed schedule again.

Scenarios (--scenario all runs each in turn): ` + strings.Join(explore.ScenarioNames(), ", ") + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCheck(cmd.OutOrStdout(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.preset, "preset", "collapse", "policy preset ("+strings.Join(kernel.PresetNames(), ", ")+")")
	fl.StringVar(&f.scenario, "scenario", "all", "scenario name, or all")
	fl.IntVar(&f.bound, "bound", 2, "preemption bound of the exhaustive search (-1: none)")
	fl.IntVar(&f.random, "random", 0, "random walks after the search")
	fl.Uint64Var(&f.seed, "seed", 1, "seed of the random walks")
	fl.StringVar(&f.replay, "replay", "", `replay one schedule ("0x65 1x619" or "0,0,1,...") instead of searching`)
	fl.StringVar(&f.points, "points", "shared", "preemption points: shared (stores, sync, loads of descriptors other CPUs store to or from pages they free), all, writes")
	fl.StringVar(&f.mutant, "mutant", "none", "inject a known bug: "+mutantNames())
	fl.IntVar(&f.maxRuns, "max-runs", 0, "stop the search after this many runs (0: no limit)")
	fl.BoolVar(&f.trace, "trace", false, "with --replay: print every step of the run")
	fl.BoolVar(&f.reduce, "reduce", true, "search each state once: cache the states met (by happens-before) and stop a run at one searched before with as many preemptions left; --reduce=false runs every schedule within the bound (--shard always does)")
	fl.BoolVar(&f.time, "time", false, "print elapsed time, runs and steps")
	fl.IntVar(&f.jobs, "jobs", runtime.NumCPU(), "schedules explored at once: scenarios, the depth-first search of a scenario and its random walks (the output is the same for any value; --max-runs searches each scenario serially)")
	shardFlags(fl, &f)
	fl.BoolVar(&f.mutants, "mutants", false, "mutation score: run every mutant over its scenarios (at --bound, default preset collapse) and print which invariant catches it")
	rootCmd.AddCommand(cmd)
}

func mutantNames() string {
	var n []string
	for _, m := range explore.Mutants {
		n = append(n, m.Name)
	}
	return strings.Join(n, ", ")
}

func runCheck(out io.Writer, f checkFlags) error {
	if f.shard != "" {
		return runCheckShard(out, f)
	}
	if f.from != "" {
		var err error
		if f, err = flagsFromResult(f); err != nil {
			return err
		}
	}
	if f.mutants {
		rs, err := explore.MutationScore(f.preset, f.bound, f.reduce)
		if err != nil {
			return err
		}
		if err := explore.WriteMutationScore(out, f.preset, f.bound, rs); err != nil {
			return err
		}
		for _, r := range rs {
			if !r.Caught && !isEquivalent(r.Mutant) {
				return fmt.Errorf("%w: mutant %s not caught", errViolations, r.Mutant)
			}
		}
		return nil
	}
	if f.bound < 0 && f.random <= 0 && f.replay == "" {
		return usageError("--bound %d with no --random walks explores no schedule; give --random N or a bound >= 0", f.bound)
	}
	points, err := explore.ParsePoints(f.points)
	if err != nil {
		return err
	}
	muts, err := explore.LookupMutant(f.mutant)
	if err != nil {
		return err
	}
	if _, err := kernel.Preset(f.preset); err != nil {
		return err
	}
	names := []string{f.scenario}
	if f.scenario == "all" {
		if f.replay != "" {
			return fmt.Errorf("%w: --replay needs one --scenario", explore.ErrScenario)
		}
		names = explore.ScenarioNames()
	}
	// Every scenario's search uses --jobs workers; sem keeps the runs in
	// flight over all scenarios at --jobs.
	sem := make(chan struct{}, max(f.jobs, 1))
	cfg := func(sc *explore.Scenario) explore.Config {
		return explore.Config{Preset: f.preset, Scenario: sc, Mutations: muts, Bound: f.bound,
			Random: f.random, Seed: f.seed, Points: points, MaxRuns: f.maxRuns, Jobs: f.jobs, Sem: sem, Reduce: f.reduce}
	}
	if f.replay != "" {
		sc, err := explore.LookupScenario(names[0])
		if err != nil {
			return err
		}
		x, err := explore.New(cfg(sc))
		if err != nil {
			return err
		}
		return replayCheck(out, x, f, sc)
	}
	// The scenarios are explored on --jobs goroutines; the results are
	// printed in scenario order, so the output is the serial run's.
	runs, err := checkRuns(names, cfg, f)
	if err != nil {
		return err
	}
	total := explore.Result{}
	var bad []string
	for i, name := range names {
		x, res, sc := runs[i].X, runs[i].Res, runs[i].Scenario
		total.Schedules += res.Schedules
		total.Behaviours += res.Behaviours
		total.Pruned += res.Pruned
		total.Tainted += res.Tainted
		total.Runs += res.Runs
		total.Steps += res.Steps
		total.Elapsed += res.Elapsed
		if res.Violation != nil {
			if err := reportViolation(out, x, f, sc, res); err != nil {
				return err
			}
			bad = append(bad, name)
			continue
		}
		if f.reduce {
			// Which runs a state cache stops depends on the workers'
			// timing; the behaviours they end in do not.
			fmt.Fprintf(out, "preset %s, scenario %s: no violation in %d behaviours (%s)\n", f.preset, name, res.Behaviours, boundText(res, f))
		} else {
			fmt.Fprintf(out, "preset %s, scenario %s: no violation in %d schedules (%s; %d runs, %d steps)\n",
				f.preset, name, res.Schedules, boundText(res, f), res.Runs, res.Steps)
		}
		if f.time {
			writeTime(out, f, res)
		}
	}
	if len(names) > 1 {
		n, what := total.Schedules, "schedules"
		if f.reduce {
			n, what = total.Behaviours, "behaviours"
		}
		if len(bad) == 0 {
			fmt.Fprintf(out, "preset %s: no violation in %d %s over %d scenarios (bound %d)\n", f.preset, n, what, len(names), f.bound)
		} else {
			fmt.Fprintf(out, "preset %s: violations in %s; %d %s over %d scenarios (bound %d)\n",
				f.preset, strings.Join(bad, ", "), n, what, len(names), f.bound)
		}
		if f.time {
			writeTime(out, f, &total)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w in %s (preset %s)", errViolations, strings.Join(bad, ", "), f.preset)
	}
	return nil
}

// writeTime prints --time's line: the elapsed time (summed over scenarios
// explored at once), the runs (with state caching also the runs stopped
// and options not run at a state searched before, and the runs with a
// step the bound-0 runs did not learn), and the steps.
func writeTime(out io.Writer, f checkFlags, res *explore.Result) {
	fmt.Fprintf(out, "  %v, %d runs", res.Elapsed.Round(1e6), res.Runs)
	if f.reduce {
		fmt.Fprintf(out, " (%d covered by a state searched before", res.Pruned)
		if res.Tainted > 0 {
			fmt.Fprintf(out, "; %d with a step the bound-0 runs did not learn", res.Tainted)
		}
		fmt.Fprint(out, ")")
	}
	fmt.Fprintf(out, ", %d steps, %.0f runs/s\n", res.Steps, float64(res.Runs)/res.Elapsed.Seconds())
}

// errViolations makes ptlab exit non-zero when a scenario breaks an invariant.
var errViolations = errors.New("invariant violations")

func boundText(res *explore.Result, f checkFlags) string {
	s := fmt.Sprintf("bound %d", f.bound)
	switch {
	case f.bound < 0:
		s = "no systematic search"
	case res.Exhaustive:
		s += ", exhaustive"
	default:
		s += ", stopped at --max-runs"
	}
	if f.reduce && f.bound >= 0 {
		s += ", states cached"
	}
	if f.random > 0 {
		s += fmt.Sprintf(", %d random walks seed %d", f.random, f.seed)
	}
	return s + ", points " + f.points
}

func reportViolation(out io.Writer, x *explore.Explorer, f checkFlags, sc *explore.Scenario, res *explore.Result) error {
	how := fmt.Sprintf("%d preemption(s), search bound %d", res.Preemptions, f.bound)
	if res.Random {
		how = fmt.Sprintf("random walk, seed %d", f.seed)
	}
	n, what := res.Schedules, "schedules"
	if f.reduce && !res.Random {
		n, what = res.Behaviours, "behaviours"
	}
	fmt.Fprintf(out, "preset %s, scenario %s: VIOLATION after %d %s (%s)\n", f.preset, sc.Name, n, what, how)
	if f.time {
		writeTime(out, f, res)
	}
	fmt.Fprintf(out, "  %s: %s\n", res.Violation.Kind, res.Violation.Msg)
	fmt.Fprintf(out, "schedule (%d steps, %d context switches): %s\n", len(res.Schedule), res.Schedule.Switches(), res.Schedule)
	fmt.Fprintf(out, "replay: ptlab check --preset %s --scenario %s%s --replay %q\n\n", f.preset, sc.Name, mutantFlag(f), res.Schedule.String())
	_, steps, err := x.Replay(res.Schedule, true)
	if err != nil {
		return err
	}
	if err := writeTrace(out, steps, res.Violation.Step, f.trace); err != nil {
		return err
	}
	fmt.Fprintln(out)
	return nil
}

func mutantFlag(f checkFlags) string {
	if f.mutant == "" || f.mutant == "none" {
		return ""
	}
	return " --mutant " + f.mutant
}

// writeTrace prints the steps up to the violation and, after it, the next
// few state changes, which show what the violation leads to.
func writeTrace(out io.Writer, steps []explore.TraceStep, upto int, all bool) error {
	if all {
		return explore.WriteTrace(out, steps, -1)
	}
	if err := explore.WriteTrace(out, steps, upto); err != nil {
		return err
	}
	if upto < 0 {
		return nil
	}
	var next []explore.TraceStep
	per := map[int]int{}
	for _, st := range steps {
		if st.Step > upto && st.Ev.Kind != cpu.EvLoad && st.Ev.Kind != cpu.EvWalk && per[st.CPU] < 3 {
			per[st.CPU]++
			st.Switch = false
			next = append(next, st)
		}
	}
	if len(next) > 0 {
		fmt.Fprintln(out, "then each CPU goes on (no preemption, checks off):")
		return explore.WriteTrace(out, next, -1)
	}
	return nil
}

func replayCheck(out io.Writer, x *explore.Explorer, f checkFlags, sc *explore.Scenario) error {
	s, err := explore.ParseSchedule(f.replay)
	if err != nil {
		return err
	}
	res, steps, err := x.Replay(s, true)
	if err != nil {
		return err
	}
	if res.Violation == nil {
		fmt.Fprintf(out, "preset %s, scenario %s: replayed %d steps, no violation\n", f.preset, sc.Name, res.Steps)
		if f.trace {
			return explore.WriteTrace(out, steps, -1)
		}
		return nil
	}
	fmt.Fprintf(out, "preset %s, scenario %s: VIOLATION at step %d of the replay\n  %s: %s\n\n", f.preset, sc.Name, res.Violation.Step, res.Violation.Kind, res.Violation.Msg)
	if err := writeTrace(out, steps, res.Violation.Step, f.trace); err != nil {
		return err
	}
	return fmt.Errorf("%w in %s (preset %s)", errViolations, sc.Name, f.preset)
}

func isEquivalent(name string) bool {
	for _, m := range explore.Equivalent {
		if m.Name == name {
			return true
		}
	}
	return false
}

// compareCheck is `ptlab compare --check`: each preset's whole scenario run on
// one simulated CPU with the invariants checked throughout, one line per
// preset; non-zero exit when any preset breaks one.
func compareCheck(out, errw io.Writer, f compareFlags, s *workload.Scenario, mods []kernel.ModuleSpec) error {
	fmt.Fprintf(out, "scenario %s: machine %s, %d modules, %v, seed %d; invariants checked at every step on one CPU\n",
		s.Name, s.Machine, len(mods), time.Duration(s.Work.Duration), s.Seed)
	var bad []string
	for _, p := range s.Presets {
		prog, done := progressAfter(errw, p, f.quiet)
		start := time.Now()
		r, err := explore.RunChecked(s, p, mods, prog)
		done()
		if err != nil {
			return err
		}
		if r.Err != nil {
			bad = append(bad, p)
			fmt.Fprintf(out, "%-15s VIOLATION after %d events (step %d): %s: %s\n", p, r.Events, r.Err.Step, r.Err.Kind, r.Err.Msg)
			continue
		}
		fmt.Fprintf(out, "%-15s no violation: %d events, %d steps checked (%v)\n", p, r.Events, r.Steps, time.Since(start).Round(time.Millisecond))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w in presets %s", errViolations, strings.Join(bad, ", "))
	}
	return nil
}
