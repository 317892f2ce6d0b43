package explore

import (
	"testing"
)

// benchExplore measures schedules explored per second: each iteration is
// one run of the depth-first search (a fresh kernel, the scenario's setup,
// one schedule, every check) until the search is exhausted, then again.
func benchExplore(b *testing.B, preset, scenario string, bound int) {
	s, err := LookupScenario(scenario)
	if err != nil {
		b.Fatal(err)
	}
	x, err := New(Config{Preset: preset, Scenario: s, Bound: bound})
	if err != nil {
		b.Fatal(err)
	}
	d := &dfsChooser{bound: bound}
	steps := 0
	defer relaxGC()()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.depth = 0
		o, err := x.run(d, nil)
		if err != nil {
			b.Fatal(err)
		}
		steps += o.steps
		if !d.next() {
			d = &dfsChooser{bound: bound}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "schedules/s")
	b.ReportMetric(float64(steps)/b.Elapsed().Seconds(), "steps/s")
}

// The race scenario under RFC patch 6 as posted and under the general
// collapse (where the owner-level lock serialises the two operations).
func BenchmarkExploreNeighboursRFCv1(b *testing.B)    { benchExplore(b, "rfc-v1", "neighbours", 1) }
func BenchmarkExploreNeighboursCollapse(b *testing.B) { benchExplore(b, "collapse", "neighbours", 2) }
func BenchmarkExplorePtdumpCollapse(b *testing.B)     { benchExplore(b, "collapse", "ptdump", 2) }
func BenchmarkExploreSplitCollapse(b *testing.B)      { benchExplore(b, "collapse", "split", 2) }

// BenchmarkFindRFCv1Race is the time `ptlab check --preset rfc-v1` needs to
// find the review's race: the whole iterative-deepening search.
func BenchmarkFindRFCv1Race(b *testing.B) {
	s, _ := LookupScenario("neighbours")
	for i := 0; i < b.N; i++ {
		x, err := New(Config{Preset: "rfc-v1", Scenario: s, Bound: 2})
		if err != nil {
			b.Fatal(err)
		}
		res, err := x.Run()
		if err != nil || res.Violation == nil {
			b.Fatalf("race not found: %v", err)
		}
	}
}
