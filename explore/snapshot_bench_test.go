package explore

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user and system CPU time: on a machine shared
// with other load, CPU time per schedule is the figure that holds still.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

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
				c0 := cpuTime()
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
				b.ReportMetric(float64(b.N)/(cpuTime()-c0).Seconds(), "schedules/cpu-s")
			})
		}
	}
}

// BenchmarkSearchJobs is a whole search (collapse, neighbours, bound 2) with
// one worker and with two: wall time, and schedules per CPU second (the
// parallel search's overhead).
func BenchmarkSearchJobs(b *testing.B) {
	for _, jobs := range []int{1, 2} {
		b.Run(map[int]string{1: "jobs1", 2: "jobs2"}[jobs], func(b *testing.B) {
			s, _ := LookupScenario("neighbours")
			runs := 0
			c0 := cpuTime()
			for range b.N {
				x, err := New(Config{Preset: "collapse", Scenario: s, Bound: 2, Jobs: jobs})
				if err != nil {
					b.Fatal(err)
				}
				r, err := x.Run()
				if err != nil {
					b.Fatal(err)
				}
				runs += r.Runs
			}
			b.ReportMetric(float64(runs)/b.Elapsed().Seconds(), "schedules/s")
			b.ReportMetric(float64(runs)/(cpuTime()-c0).Seconds(), "schedules/cpu-s")
		})
	}
}
