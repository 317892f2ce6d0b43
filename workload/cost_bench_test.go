package workload

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime is this process's user+system CPU time: on a shared machine wall
// time measures the other tenants too.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCompareCost runs the default scenario under one preset without
// and with the TLB cost observer: the cost rows' share of a compare run.
func BenchmarkCompareCost(b *testing.B) {
	s, err := DefaultScenario()
	if err != nil {
		b.Fatal(err)
	}
	mods, err := ScenarioModules(s)
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"plain", "cost"} {
		b.Run(mode, func(b *testing.B) {
			c0 := cpuTime()
			defer func() { b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op") }()
			for i := 0; i < b.N; i++ {
				var obs []Observer
				if mode == "cost" {
					obs, _ = ScenarioObservers(s)
				}
				if _, err := RunObserved(s, "collapse", mods, nil, obs...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
