package explore

import "testing"

// BenchmarkRestoreVsBoot is benchExplore with a fresh boot per run (the
// old way) and with a kernel restored from its snapshot, side by side.
func BenchmarkRestoreVsBoot(b *testing.B) {
	for _, c := range []struct{ preset, scenario string }{{"collapse", "neighbours"}, {"collapse", "ptdump"}, {"collapse", "chunk-release"}} {
		for _, fresh := range []bool{true, false} {
			name := c.scenario + "/restore"
			if fresh {
				name = c.scenario + "/boot"
			}
			b.Run(name, func(b *testing.B) {
				s, _ := LookupScenario(c.scenario)
				x, err := New(Config{Preset: c.preset, Scenario: s, Bound: 2})
				if err != nil {
					b.Fatal(err)
				}
				x.kernels.fresh = fresh
				d := &dfsChooser{bound: 2}
				defer relaxGC()()
				b.ResetTimer()
				for range b.N {
					d.depth = 0
					if _, err := x.run(d, nil); err != nil {
						b.Fatal(err)
					}
					if !d.next() {
						d = &dfsChooser{bound: 2}
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "schedules/s")
			})
		}
	}
}
