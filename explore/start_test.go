package explore

import (
	"reflect"
	"testing"

	"github.com/ptlab/ptlab/check"
	"github.com/ptlab/ptlab/cpu"
)

// Every run's monitor starts from the check.Start read once in New: after
// any schedules of any scenario, a restored kernel's setup leaves tables
// from which NewStart reads exactly that Start (the same tracked ranges,
// references and aliases), and a monitor started from it shares nothing a
// run changes with the next.
func TestMonitorStartSameEveryRun(t *testing.T) {
	walks, presets := 4, []string{"collapse", "rfc-v1", "mainline"}
	if testing.Short() || raceDetector {
		walks, presets = 2, presets[:1] // the race run's budget: one preset
	}
	for _, preset := range presets {
		for _, name := range ScenarioNames() {
			sc, _ := LookupScenario(name)
			x, err := New(Config{Preset: preset, Scenario: sc})
			if err != nil {
				t.Fatal(err)
			}
			if x.start == nil {
				t.Fatalf("%s/%s: no start after the serial run", preset, name)
			}
			for i := range walks {
				if _, err := x.run(newRandomChooser(uint64(len(name)), uint64(i)), nil); err != nil {
					t.Fatal(err)
				}
				s, err := x.boot(cpu.Cooperative)
				if err != nil {
					t.Fatal(err)
				}
				if got := check.NewStart(s.K, s.Tracked); !reflect.DeepEqual(got, x.start) {
					t.Errorf("%s/%s after %d walks: the setup's tables differ from the serial run's start", preset, name, i+1)
				}
				x.kernels.put(s.K)
				x.setups.put(s)
			}
		}
	}
}
