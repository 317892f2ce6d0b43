package explore

import (
	"testing"
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
		plain, plainRes := behaviours(t, "collapse", sc, bound, false, 1)
		red, res := behaviours(t, "collapse", sc, bound, true, 1)
		_, par := behaviours(t, "collapse", sc, bound, true, 2)
		missing := 0
		for b := range plain {
			if !red[b] {
				missing++
			}
		}
		if missing > 0 || len(red) != len(plain) {
			t.Errorf("%s, bound %d: state caching ends in %d behaviours, the plain search in %d; %d missing", sc.Name, bound, len(red), len(plain), missing)
		}
		if res.Behaviours != par.Behaviours || res.Behaviours == 0 {
			t.Errorf("%s: %d behaviours on one worker, %d on two", sc.Name, res.Behaviours, par.Behaviours)
		}
		t.Logf("%s bound %d: %d behaviours; runs %d, plain %d", sc.Name, bound, len(plain), res.Runs, plainRes.Runs)
	}
}
