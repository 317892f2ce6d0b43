package explore

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
)

// A kernel restored from its snapshot after any schedules of any scenario
// is the freshly booted kernel: the same physmem metadata and free lists,
// the same table pages with the same descriptors, the same bookkeeping
// (vmalloc, execmem cache, locks, statistics, TLBI counts, warnings), and a
// byte-identical ptdump. (Under the race detector: one preset; restoring
// runs on one goroutine, and the run without -race covers the others.)
func TestRestoreEqualsFreshBoot(t *testing.T) {
	walks, presets := restoreTestSize()
	for _, preset := range presets {
		for _, name := range ScenarioNames() {
			sc, _ := LookupScenario(name)
			rebuilt := *sc
			rebuilt.Reuse = false // runs take kernels from the pool and build on them
			x, err := New(Config{Preset: preset, Scenario: &rebuilt})
			if err != nil {
				t.Fatal(err)
			}
			for i := range walks {
				if _, err := x.run(newRandomChooser(uint64(len(name)), uint64(i)), nil); err != nil {
					t.Fatal(err)
				}
			}
			k, err := x.kernels.get(x.kcfg, cpu.Cooperative)
			if err != nil {
				t.Fatal(err)
			}
			fresh, err := kernel.Boot(x.kcfg)
			if err != nil {
				t.Fatal(err)
			}
			if d := k.Diff(fresh); d != "" {
				t.Errorf("%s/%s: restored kernel differs from a fresh boot: %s", preset, name, d)
			}
			var a, b bytes.Buffer
			if err := k.PtdumpWalk(&kernel.PlainCPU{}, &a); err != nil {
				t.Fatal(err)
			}
			if err := fresh.PtdumpWalk(&kernel.PlainCPU{}, &b); err != nil {
				t.Fatal(err)
			}
			if a.String() != b.String() || a.Len() == 0 {
				t.Errorf("%s/%s: ptdump of the restored kernel differs (%d vs %d bytes)", preset, name, a.Len(), b.Len())
			}
			x.kernels.put(k)
		}
	}
}

// Searching with restored kernels and setups prints what searching with a
// fresh boot and Build per run prints, for every scenario, with and without
// a violation. Under the race detector the searches run on two workers,
// which share the pools, and only the cases with a violation: a serial
// search runs one goroutine at a time (nothing for the detector), and the
// run without -race covers every scenario.
func TestSnapshotSearchEqualsFreshBoots(t *testing.T) {
	type tc struct{ preset, scenario, mut string }
	cases := []tc{{"rfc-v1", "neighbours", ""}, {"collapse", "split", "no-split-lock"}, {"collapse", "chunk-release", "clean-forgets-alias"}}
	jobs := 1
	if raceDetector {
		jobs = 2
	} else {
		for _, name := range ScenarioNames() {
			cases = append(cases, tc{"collapse", name, ""})
		}
	}
	for _, c := range cases {
		muts, err := LookupMutant(c.mut)
		if err != nil {
			t.Fatal(err)
		}
		sc, _ := LookupScenario(c.scenario)
		var out [2]string
		for i, fresh := range []bool{true, false} {
			x, err := New(Config{Preset: c.preset, Scenario: sc, Bound: 1, Mutations: muts, Jobs: jobs})
			if err != nil {
				t.Fatal(err)
			}
			x.kernels.fresh = fresh
			r, err := x.Run()
			if err != nil {
				t.Fatal(err)
			}
			out[i] = resultText(r)
		}
		if out[0] != out[1] {
			t.Errorf("%s/%s %s:\nfresh boots %s\nrestored    %s", c.preset, c.scenario, c.mut, out[0], out[1])
		}
	}
}

// A reused setup restored after any schedules is what a new boot and Build
// make: the same kernel (physmem, tables, bookkeeping, ptdump), the same CPU
// state (TLBs and walk caches the Build warmed), the same threads. (Under
// the race detector: one preset, as TestRestoreEqualsFreshBoot.)
func TestSetupRestoreEqualsFreshBuild(t *testing.T) {
	walks, presets := restoreTestSize()
	for _, preset := range presets {
		for _, name := range ScenarioNames() {
			sc, _ := LookupScenario(name)
			if !sc.Reuse {
				continue
			}
			x, err := New(Config{Preset: preset, Scenario: sc})
			if err != nil {
				t.Fatal(err)
			}
			for i := range walks {
				if _, err := x.run(newRandomChooser(uint64(len(name)), uint64(i)), nil); err != nil {
					t.Fatal(err)
				}
			}
			if len(x.setups.idle) == 0 {
				t.Fatalf("%s/%s: no setup kept after %d runs", preset, name, walks)
			}
			s, err := x.boot(cpu.Cooperative)
			if err != nil {
				t.Fatal(err)
			}
			fresh, err := x.build(cpu.Cooperative)
			if err != nil {
				t.Fatal(err)
			}
			if d := s.K.Diff(fresh.K); d != "" {
				t.Errorf("%s/%s: restored setup's kernel differs from a new Build's: %s", preset, name, d)
			}
			if !reflect.DeepEqual(s.M.SaveState(), fresh.M.SaveState()) {
				t.Errorf("%s/%s: restored setup's CPUs differ from a new Build's", preset, name)
			}
			var a, b bytes.Buffer
			if err := s.K.PtdumpWalk(&kernel.PlainCPU{}, &a); err != nil {
				t.Fatal(err)
			}
			if err := fresh.K.PtdumpWalk(&kernel.PlainCPU{}, &b); err != nil {
				t.Fatal(err)
			}
			if a.String() != b.String() || a.Len() == 0 {
				t.Errorf("%s/%s: ptdump of the restored setup differs (%d vs %d bytes)", preset, name, a.Len(), b.Len())
			}
			if got, want := threadNames(s), threadNames(fresh); got != want {
				t.Errorf("%s/%s: threads %s, a new Build's %s", preset, name, got, want)
			}
			x.setups.put(s)
		}
	}
}

func threadNames(s *Setup) string {
	var b bytes.Buffer
	for i, th := range s.Threads {
		fmt.Fprintf(&b, "CPU%d:", i)
		for _, op := range th {
			fmt.Fprintf(&b, " %s %v %v;", op.Name, op.Footprint, op.Racy)
		}
	}
	fmt.Fprintf(&b, " tracked %v", s.Tracked)
	return b.String()
}

// restoreTestSize is how many random walks per scenario, and under which
// presets, the restore tests compare: fewer in -short, and one preset under
// the race detector, where restoring runs on one goroutine and the run
// without -race covers the others.
func restoreTestSize() (walks int, presets []string) {
	walks, presets = 6, []string{"collapse", "rfc-v1", "mainline"}
	if testing.Short() || raceDetector {
		walks = 2
	}
	if raceDetector {
		presets = presets[:1]
	}
	return walks, presets
}
