package workload

import (
	"errors"
	"testing"
)

// A scenario's cost section either builds observers or fails with
// ErrScenario; nothing panics.
func FuzzScenarioCost(f *testing.F) {
	f.Add("cost: {cpus: [n1], window: 10, streams: [{name: a, over: linear, pattern: zipf, rate: 1, zipf_s: 1.2}]}")
	f.Add("cost: {off: true}")
	f.Add("cost: {cpus: [pentium]}")
	f.Add("cost: {streams: [{name: b, over: bpf, pattern: code, rate: .nan, run_lines: 1e300}]}")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseScenario([]byte("name: fuzz\n"+text), "fuzz.yaml")
		if err != nil {
			return
		}
		obs, err := ScenarioObservers(s)
		if err != nil && !errors.Is(err, ErrScenario) {
			t.Fatalf("%q: %v does not wrap ErrScenario", text, err)
		}
		for _, o := range obs {
			if len(o.Columns()) == 0 {
				t.Fatalf("%q: observer without columns", text)
			}
		}
	})
}
