package workload

import (
	"fmt"
	"testing"
)

// BenchmarkBPFChurn runs the default scenario under mainline with BPF
// programs attached at 3.6k, 18k and 72k per hour (10 minutes' mean
// lifetime, so about 600, 3,000 and 12,000 live programs): µs/event (wall)
// and cpu-µs/event (process CPU time, GC included) should
// stay flat as the number of live vmalloc areas grows, since the vmap
// allocator's lowest-fit search is O(log n).
func BenchmarkBPFChurn(b *testing.B) {
	for _, perHour := range []float64{3600, 18000, 72000} {
		b.Run(fmt.Sprintf("bpf=%gk", perHour/1000), func(b *testing.B) {
			s, err := DefaultScenario()
			if err != nil {
				b.Fatal(err)
			}
			s.Work.BPF.PerHour = perHour
			mods, err := ScenarioModules(s)
			if err != nil {
				b.Fatal(err)
			}
			var events int
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r, err := Run(s, "mainline", mods, nil)
				if err != nil {
					b.Fatal(err)
				}
				events += r.Events
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(events), "µs/event")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(events), "cpu-µs/event")
		})
	}
}
