package explore

import (
	"testing"
)

// A search that only follows the steps a run replays from the run before it
// (check.Monitor.Replayed) prints what a search that checks every step of
// every run prints: every mutant on its scenarios (the violation, its step,
// message and schedule, the counts up to it) and every scenario clean, on
// one worker and on two (whose units start from other workers' runs). The
// race detector runs the two-worker searches with a violation only.
func TestReplayedPrefixChecksNothingNew(t *testing.T) {
	type tc struct {
		preset, scenario, mut string
		bound                 int
	}
	var cases []tc
	for _, m := range Mutants {
		for _, sc := range m.Scenarios {
			cases = append(cases, tc{"collapse", sc, m.Name, 2})
		}
	}
	cases = append(cases, tc{"rfc-v1", "neighbours", "", 2})
	if !raceDetector {
		for _, name := range ScenarioNames() {
			cases = append(cases, tc{"collapse", name, "", 1})
		}
	}
	jobs := []int{1, 2}
	if raceDetector {
		jobs = []int{2}
	}
	for _, c := range cases {
		muts, err := LookupMutant(c.mut)
		if err != nil {
			t.Fatal(err)
		}
		sc, _ := LookupScenario(c.scenario)
		for _, j := range jobs {
			var out [2]string
			for i, all := range []bool{true, false} {
				x, err := New(Config{Preset: c.preset, Scenario: sc, Bound: c.bound, Mutations: muts, Jobs: j})
				if err != nil {
					t.Fatal(err)
				}
				x.checkReplayed = all
				r, err := x.Run()
				if err != nil {
					t.Fatal(err)
				}
				out[i] = resultText(r)
			}
			if out[0] != out[1] {
				t.Errorf("%s/%s %s, %d jobs:\nevery step checked %s\nreplayed followed  %s", c.preset, c.scenario, c.mut, j, out[0], out[1])
			}
		}
	}
}
