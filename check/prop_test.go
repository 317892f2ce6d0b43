package check

import (
	"testing"

	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/pgtable"
	"pgregory.net/rapid"
)

// Under every preset, any sequence of module loads and unloads, JIT text
// loads and frees, vmallocs (small and huge), vfrees, permission changes of
// sampled vmalloc pages and /proc/kcore reads, run on one simulated CPU with
// the monitor as its hook, breaks no invariant: at every door call (use
// after free, lost updates, tables freed under the walk cache,
// break-before-make), after every operation (W^X and executable content of
// all execmem memory, accounting; translations of every page of the areas
// created, sampled pages through a second walk) and at the end (leaks).
// Each case draws up to 40 operations and 8 sampled pages per area after
// each, so the 100 cases rapid runs per preset cover about two thousand
// kernel operations and tens of thousands of page translations;
// -rapid.checks scales it.
func TestPropertyMonitorEveryPreset(t *testing.T) {
	for _, preset := range kernel.PresetNames() {
		t.Run(preset, func(t *testing.T) {
			rapid.Check(t, func(rt *rapid.T) {
				k := bootSmall(t, "bbml2-server", preset)
				m := cpu.NewMachine(k, 1, cpu.Cooperative)
				c := m.CPUs[0]
				mon := NewMonitor(k, m, nil, [][]OpInfo{nil}, NewEmptyOracle())
				c.Hook = mon
				var areas []*kernel.VMArea
				var mods []*kernel.Module
				var progs []*kernel.JITText
				ps := k.G.PageSize()
				n := rapid.IntRange(1, 40).Draw(rt, "ops")
				for i := 0; i < n; i++ {
					var err error
					switch op := rapid.IntRange(0, 7).Draw(rt, "op"); op {
					case 0, 1:
						size := uint64(rapid.IntRange(1, 700).Draw(rt, "pages")) * ps
						var a *kernel.VMArea
						if op == 0 {
							a, err = k.Vmalloc(c, size)
						} else {
							a, err = k.VmallocHuge(c, size)
						}
						if err == nil {
							areas = append(areas, a)
						}
					case 2:
						if len(areas) > 0 {
							j := rapid.IntRange(0, len(areas)-1).Draw(rt, "area")
							err = k.Vfree(c, areas[j].Addr)
							areas = append(areas[:j], areas[j+1:]...)
						}
					case 3:
						if len(areas) > 0 {
							a := areas[rapid.IntRange(0, len(areas)-1).Draw(rt, "area")]
							first := rapid.IntRange(0, a.NrPages-1).Draw(rt, "first")
							cnt := rapid.IntRange(1, a.NrPages-first).Draw(rt, "count")
							va := a.Addr + uint64(first)*ps
							switch rapid.IntRange(0, 2).Draw(rt, "prot") {
							case 0:
								err = k.SetMemoryRO(c, va, cnt)
							case 1:
								err = k.SetMemoryRW(c, va, cnt)
							default:
								err = k.SetMemoryNX(c, va, cnt)
							}
							if err != nil {
								err = nil // refusals (huge areas under mainline) are the kernel's answer
							}
						}
					case 4:
						var spec kernel.ModuleSpec
						spec.Name = "m"
						spec.Size[kernel.ModText] = rapid.Uint64Range(1, 300<<10).Draw(rt, "text")
						spec.Size[kernel.ModData] = rapid.Uint64Range(0, 64<<10).Draw(rt, "data")
						var mod *kernel.Module
						if mod, err = k.LoadModule(c, spec); err == nil {
							mods = append(mods, mod)
						}
					case 5:
						if len(mods) > 0 {
							j := rapid.IntRange(0, len(mods)-1).Draw(rt, "mod")
							err = k.UnloadModule(c, mods[j])
							mods = append(mods[:j], mods[j+1:]...)
						}
					case 6:
						if len(progs) > 0 && rapid.Bool().Draw(rt, "free") {
							j := rapid.IntRange(0, len(progs)-1).Draw(rt, "prog")
							err = k.FreeJITText(c, progs[j])
							progs = append(progs[:j], progs[j+1:]...)
						} else {
							var p *kernel.JITText
							if p, err = k.LoadJITText(c, kernel.ExecmemBPF, rapid.Uint64Range(64, 64<<10).Draw(rt, "bpf")); err == nil {
								progs = append(progs, p)
							}
						}
					case 7:
						if len(mods) > 0 {
							mod := mods[rapid.IntRange(0, len(mods)-1).Draw(rt, "mod")]
							_, err = k.VreadIter(c, mod.Base[kernel.ModText], ps)
						}
					}
					if err != nil {
						rt.Fatalf("op %d: %v", i, err)
					}
					if err := mon.CheckState(); err != nil {
						rt.Fatalf("after op %d: %v", i, err)
					}
					// Sampled pages of every live area translate to their page,
					// through the monitor's raw walk as through the tables' walk.
					for _, a := range areas {
						for s := 0; s < 8; s++ {
							p := rapid.IntRange(0, a.NrPages-1).Draw(rt, "page")
							va := a.Addr + uint64(p)*ps
							tr := mon.Translate(va)
							pm := Permission(k, pgtable.Atomic{}, va)
							if !tr.Valid || tr.PA != a.PagePA(p) || tr.Write != pm.Write || tr.Exec != pm.Exec {
								rt.Fatalf("after op %d: %#x translates %v, door %+v, page %#x", i, va, tr, pm, a.PagePA(p))
							}
							// The region memo (kept across pages of one call) agrees
							// with a walk from the root, for the page and its alias.
							for _, v := range []uint64{va, k.Lin(a.PagePA(p)), va + ps, va - ps} {
								if m, w := mon.tr(v), mon.Translate(v); m != w {
									rt.Fatalf("after op %d: %#x: memo %v, walk %v", i, v, m, w)
								}
							}
						}
					}
				}
				if err := mon.Final(); err != nil {
					rt.Fatal(err)
				}
			})
		})
	}
}
