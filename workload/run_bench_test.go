package workload

import (
	"testing"

	"github.com/ptlab/ptlab/kernel"
)

// BenchmarkModuleSet loads and unloads a whole real module set on a 16 GiB
// BBML2 server under mainline and under the ROX cache; modules/s counts
// loads plus unloads.
func BenchmarkModuleSet(b *testing.B) {
	for _, set := range []string{"server", "all"} {
		s := &Scenario{Work: Workload{Modules: set}}
		mods, err := ScenarioModules(s)
		if err != nil {
			b.Fatal(err)
		}
		for _, preset := range []string{"mainline", "rox-cache"} {
			b.Run(set+"/"+preset, func(b *testing.B) {
				cfg, _ := kernel.Machine("bbml2-server")
				cfg.Policy, _ = kernel.Preset(preset)
				k, err := kernel.Boot(cfg)
				if err != nil {
					b.Fatal(err)
				}
				c := &kernel.PlainCPU{}
				loaded := make([]*kernel.Module, len(mods))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for j, spec := range mods {
						if loaded[j], err = k.LoadModule(c, spec); err != nil {
							b.Fatal(err)
						}
					}
					for j := len(mods) - 1; j >= 0; j-- {
						if err := k.UnloadModule(c, loaded[j]); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(2*len(mods)*b.N)/b.Elapsed().Seconds(), "modules/s")
			})
		}
	}
}

// BenchmarkDefaultScenario runs the embedded default scenario under each
// preset; page-updates/s counts the page descriptors pageattr rewrote per
// second of simulation, events/s the workload's events.
func BenchmarkDefaultScenario(b *testing.B) {
	s, err := DefaultScenario()
	if err != nil {
		b.Fatal(err)
	}
	mods, err := ScenarioModules(s)
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range s.Presets {
		b.Run(p, func(b *testing.B) {
			var updates, events uint64
			for i := 0; i < b.N; i++ {
				r, err := Run(s, p, mods, nil)
				if err != nil {
					b.Fatal(err)
				}
				updates += r.PageUpdates
				events += uint64(r.Events)
			}
			b.ReportMetric(float64(updates)/b.Elapsed().Seconds(), "page-updates/s")
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
