package kernel

import (
	"reflect"
	"testing"
)

// The region figures of Metrics come from the counters the table operations
// keep; after boot, module loads and unloads, JIT text, vmalloc and
// set_memory changes they equal a full census of each region.
func TestMetricsCountersMatchCensus(t *testing.T) {
	for _, preset := range PresetNames() {
		t.Run(preset, func(t *testing.T) {
			cfg, err := Machine("bbml2-server")
			if err != nil {
				t.Fatal(err)
			}
			cfg.RAM = []RAMRegion{{Base: cfg.RAM[0].Base, Size: 256 << 20}}
			if cfg.Policy, err = Preset(preset); err != nil {
				t.Fatal(err)
			}
			k, err := Boot(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !k.PT.IsTracking() {
				t.Fatal("boot did not turn on the incremental census")
			}
			c := NewPlainCPU(0)
			compare := func(step string) {
				t.Helper()
				got, err := k.metrics(c, false)
				if err != nil {
					t.Fatal(err)
				}
				want, err := k.metrics(c, true)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got.Regions, want.Regions) {
					t.Fatalf("%s: counters %+v\ncensus %+v", step, got.Regions, want.Regions)
				}
			}
			compare("boot")
			var mods []*Module
			for i := 0; i < 12; i++ {
				var spec ModuleSpec
				spec.Name = "m" + string(rune('a'+i))
				spec.Size[ModText] = uint64(8+i*13) << 10
				spec.Size[ModRodata] = uint64(4+i) << 10
				spec.Size[ModData] = uint64(2+i*3) << 10
				m, err := k.LoadModule(c, spec)
				if err != nil {
					t.Fatal(err)
				}
				mods = append(mods, m)
			}
			compare("load")
			var progs []*JITText
			for i := 0; i < 20; i++ {
				p, err := k.LoadJITText(c, ExecmemBPF, uint64(1+i%7)<<10)
				if err != nil {
					t.Fatal(err)
				}
				progs = append(progs, p)
			}
			a, err := k.Vmalloc(c, 3<<20)
			if err != nil {
				t.Fatal(err)
			}
			if err := k.SetMemoryRO(c, a.Addr, 5); err != nil {
				t.Fatal(err)
			}
			compare("jit+vmalloc")
			for i, m := range mods {
				if i%2 == 0 {
					if err := k.UnloadModule(c, m); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, p := range progs[:15] {
				if err := k.FreeJITText(c, p); err != nil {
					t.Fatal(err)
				}
			}
			compare("unload")
		})
	}
}
