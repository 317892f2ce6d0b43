package main

import (
	"errors"
	"testing"
)

// ptlab check prints the same, byte for byte, with one job and with several
// (schedules of one scenario explored at once, not only scenarios):
// every scenario, with and without violations, with random walks.
func TestCheckJobsWithinScenarios(t *testing.T) {
	cases := [][]string{
		{"check", "--preset", "rfc-v1", "--scenario", "all", "--bound", "1"},
		{"check", "--preset", "collapse", "--scenario", "split", "--mutant", "no-split-lock", "--bound", "2"},
		{"check", "--preset", "rfc-v1", "--scenario", "neighbours", "--bound", "-1", "--random", "30"},
	}
	if !testing.Short() {
		cases = append(cases, []string{"check", "--preset", "collapse", "--scenario", "all", "--bound", "1"})
	}
	for _, args := range cases {
		want, werr := run(t, append(args, "--jobs", "1")...)
		if werr != nil && !errors.Is(werr, errViolations) {
			t.Fatal(werr)
		}
		for _, jobs := range []string{"2", "4"} {
			got, err := run(t, append(args, "--jobs", jobs)...)
			if (err == nil) != (werr == nil) || got != want {
				t.Errorf("%v --jobs %s differs from --jobs 1 (%v vs %v):\n%s\n--- want\n%s", args, jobs, err, werr, got, want)
			}
		}
	}
}
