package explore

import (
	"sync"
)

// ScenarioRun is one scenario's exploration, as RunScenarios returns it.
type ScenarioRun struct {
	Scenario *Scenario
	X        *Explorer
	Res      *Result
}

// RunScenarios explores the named scenarios, up to jobs at once (each on its
// own kernels: explorations share nothing), and returns the results in the
// order of names: a caller that prints them in that order prints what a
// serial run prints. The first error in name order is returned.
func RunScenarios(names []string, cfg func(*Scenario) Config, jobs int) ([]ScenarioRun, error) {
	if jobs < 1 {
		jobs = 1
	}
	out := make([]ScenarioRun, len(names))
	errs := make([]error, len(names))
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for i, name := range names {
		sc, err := LookupScenario(name)
		if err != nil {
			return nil, err
		}
		out[i].Scenario = sc
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			x, err := New(cfg(out[i].Scenario))
			if err != nil {
				errs[i] = err
				return
			}
			res, err := x.Run()
			out[i].X, out[i].Res, errs[i] = x, res, err
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
