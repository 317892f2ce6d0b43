package explore

import (
	"fmt"
	"io"

	"github.com/ptlab/ptlab/check"
)

// MutantResult is how one mutant fared in one scenario.
type MutantResult struct {
	Mutant, Scenario string
	Caught           bool
	Kind             check.Kind // the invariant that caught it
	Schedules        int
	Preemptions      int
}

// MutationScore runs every mutant (and every equivalent change) under
// preset over the scenarios it names, with the preemption bound given, and
// reports which invariant caught it where. A mutant is caught when at least
// one of its scenarios finds a violation. reduce caches states
// (Config.Reduce).
func MutationScore(preset string, bound int, reduce bool) ([]MutantResult, error) {
	var out []MutantResult
	for _, m := range append(append([]Mutant(nil), Mutants...), Equivalent...) {
		for _, name := range m.Scenarios {
			sc, err := LookupScenario(name)
			if err != nil {
				return nil, err
			}
			x, err := New(Config{Preset: preset, Scenario: sc, Mutations: m.Mutations, Bound: bound, Reduce: reduce})
			if err != nil {
				return nil, fmt.Errorf("mutant %s, scenario %s: %w", m.Name, name, err)
			}
			res, err := x.Run()
			if err != nil {
				return nil, err
			}
			r := MutantResult{Mutant: m.Name, Scenario: name, Schedules: res.Schedules}
			if v := res.Violation; v != nil {
				r.Caught, r.Kind, r.Preemptions = true, v.Kind, res.Preemptions
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// WriteMutationScore prints the mutant | scenario | caught-by table and the
// score (mutants caught / mutants; the equivalent changes apart).
func WriteMutationScore(w io.Writer, preset string, bound int, rs []MutantResult) error {
	equiv := map[string]bool{}
	for _, m := range Equivalent {
		equiv[m.Name] = true
	}
	caught := map[string]bool{}
	all := map[string]bool{}
	fmt.Fprintf(w, "mutation score, preset %s, bound %d\n", preset, bound)
	fmt.Fprintf(w, "%-32s %-15s %s\n", "mutant", "scenario", "caught by")
	for _, r := range rs {
		by := "NOT CAUGHT"
		if r.Caught {
			by = fmt.Sprintf("%s (%d preemption(s), %d schedules)", r.Kind, r.Preemptions, r.Schedules)
		} else if equiv[r.Mutant] {
			by = fmt.Sprintf("not caught: equivalent (%d schedules)", r.Schedules)
		}
		fmt.Fprintf(w, "%-32s %-15s %s\n", r.Mutant, r.Scenario, by)
		if !equiv[r.Mutant] {
			all[r.Mutant] = true
			caught[r.Mutant] = caught[r.Mutant] || r.Caught
		}
	}
	n := 0
	for m := range all {
		if caught[m] {
			n++
		}
	}
	_, err := fmt.Fprintf(w, "score: %d of %d mutants caught\n", n, len(all))
	for _, m := range Equivalent {
		fmt.Fprintf(w, "equivalent %s: %s\n", m.Name, m.Doc)
	}
	return err
}
