package workload

import (
	"fmt"
	"sync"

	"github.com/ptlab/ptlab/kernel"
)

// RunPresets runs the scenario under each preset on its own kernel, with the
// scenario's observers (ScenarioObservers, made anew per preset), up to jobs
// presets at once (jobs < 1 means one), and returns the results in preset
// order. Every preset's kernel, timeline, observers and CPU are its own, so the
// results are those of running the presets one after another (only WallNS
// differs); if presets fail, the error is the first failing preset's in
// preset order. progress, if not nil, receives the events done over all
// presets and their total, from one goroutine at a time.
func RunPresets(s *Scenario, presets []string, mods []kernel.ModuleSpec, jobs int, progress Progress) ([]*Result, error) {
	results := make([]*Result, len(presets))
	errs := make([]error, len(presets))
	jobs = max(1, min(jobs, len(presets)))
	var mu sync.Mutex
	done, total := make([]int, len(presets)), make([]int, len(presets))
	report := func(i int) Progress {
		if progress == nil {
			return nil
		}
		return func(d, t int) {
			mu.Lock()
			defer mu.Unlock()
			done[i], total[i] = d, t
			var sd, st int
			for j := range done {
				sd += done[j]
				st += total[j]
			}
			// presets not started yet count as much as this one
			for j := range total {
				if total[j] == 0 {
					st += t
				}
			}
			progress(sd, st)
		}
	}
	run := func(i int) (*Result, error) {
		obs, err := ScenarioObservers(s)
		if err != nil {
			return nil, err
		}
		return RunObserved(s, presets[i], mods, report(i), obs...)
	}
	if jobs == 1 {
		for i, p := range presets {
			if results[i], errs[i] = run(i); errs[i] != nil {
				return nil, fmt.Errorf("preset %s: %w", p, errs[i])
			}
		}
		return results, nil
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range jobs {
		wg.Go(func() {
			for i := range next {
				results[i], errs[i] = run(i)
			}
		})
	}
	for i := range presets {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("preset %s: %w", presets[i], err)
		}
	}
	return results, nil
}
