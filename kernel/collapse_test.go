package kernel_test

import (
	"strings"
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/check"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/physmem"
	"pgregory.net/rapid"
)

func textSpec(text uint64) kernel.ModuleSpec {
	var s kernel.ModuleSpec
	s.Name = "m"
	s.Size[kernel.ModText] = text
	s.Size[kernel.ModRodata] = 8 << 10
	s.Size[kernel.ModData] = 8 << 10
	return s
}

// Every page of every vmalloc area still maps the page behind it, and the
// linear map still maps RAM one to one.
func checkTranslation(t interface{ Fatalf(string, ...any) }, k *kernel.Kernel, c kernel.CPU) {
	ps := k.G.PageSize()
	for _, a := range k.VM.Areas() {
		for i := 0; i < a.NrPages; i++ {
			pa, _, ok := k.PT.Translate(c, a.Addr+uint64(i)*ps)
			if !ok || pa != a.PagePA(i) {
				t.Fatalf("%s page %d: %#x -> %#x (%v), want %#x", a.Caller, i, a.Addr+uint64(i)*ps, pa, ok, a.PagePA(i))
			}
		}
	}
	holes := k.LinearHoles()
	for _, r := range k.Mem.Regions() {
		for pa := r.Base; pa < r.End(); pa += 1 << 20 {
			if inHoles(holes, pa) {
				continue
			}
			if got, _, ok := k.PT.Translate(c, k.Lin(pa)); !ok || got != pa {
				t.Fatalf("linear map %#x -> %#x (%v)", k.Lin(pa), got, ok)
			}
		}
	}
}

// Under every policy, random module loads and unloads and BPF programs keep
// every translation, W^X across aliases, executable content and accounting.
func TestPropertyCollapsePreservesTranslation(t *testing.T) {
	for _, preset := range []string{"rfc-v1", "collapse", "no-alias-split"} {
		t.Run(preset, func(t *testing.T) {
			rapid.Check(t, func(rt *rapid.T) {
				k := bootPreset(t, "bbml2-server", preset, nil)
				c := &kernel.PlainCPU{}
				var mods []*kernel.Module
				for i, n := 0, rapid.IntRange(1, 20).Draw(rt, "steps"); i < n; i++ {
					if len(mods) > 0 && rapid.IntRange(0, 2).Draw(rt, "op") == 0 {
						j := rapid.IntRange(0, len(mods)-1).Draw(rt, "which")
						if err := k.UnloadModule(c, mods[j]); err != nil {
							rt.Fatal(err)
						}
						mods = append(mods[:j], mods[j+1:]...)
					} else {
						m, err := k.LoadModule(c, textSpec(rapid.Uint64Range(1, 900<<10).Draw(rt, "text")))
						if err != nil {
							rt.Fatal(err)
						}
						mods = append(mods, m)
					}
					checkTranslation(rt, k, c)
					checkAll(rt, k, c, preset)
				}
			})
		})
	}
}

// With the general collapse, once every object in the cache is ROX, every
// 2M chunk is one PMD block in vmalloc space and in the linear map.
func TestCollapseLeavesNoChunkSplit(t *testing.T) {
	for _, preset := range []string{"collapse", "no-alias-split"} {
		k := bootPreset(t, "bbml2-server", preset, nil)
		c := &kernel.PlainCPU{}
		for i := 0; i < 12; i++ {
			if _, err := k.LoadModule(c, textSpec(uint64(40+i*37)<<10)); err != nil {
				t.Fatal(err)
			}
		}
		if len(k.Exec.Chunks()) == 0 {
			t.Fatal("no chunks")
		}
		for _, a := range k.Exec.Chunks() {
			if a.PageOrder != 9 {
				continue
			}
			for i := 0; i < a.NrPages; i += 512 {
				va := a.Addr + uint64(i)<<12
				if p := check.Permission(k, c, va); p.Level != 2 || !p.Exec || p.Write {
					t.Errorf("%s: chunk %#x vmalloc mapping level %d exec %v", preset, va, p.Level, p.Exec)
				}
				if p := check.Permission(k, c, k.Lin(a.PagePA(i))); p.Level != 2 || p.Write {
					t.Errorf("%s: chunk %#x alias level %d write %v", preset, va, p.Level, p.Write)
				}
			}
		}
	}
}

// RFC patch 6 as posted: the linear alias is updated 4K by 4K (512 calls for
// a populated chunk, splitting the alias to PTEs first); the collapse then
// folds the alias, but never the vmalloc mapping, which stays split after a
// module load.
func TestRFCv1Flaws(t *testing.T) {
	k := bootPreset(t, "bbml2-server", "rfc-v1", nil)
	c := &kernel.PlainCPU{}
	calls := k.Stats.SetMemoryCalls.Load()
	if _, err := k.LoadModule(c, textSpec(100<<10)); err != nil {
		t.Fatal(err)
	}
	if n := k.Stats.SetMemoryCalls.Load() - calls; n < 512 {
		t.Errorf("alias updated with %d calls, want >= 512 (one per 4K page of the chunk)", n)
	}
	if k.Stats.Split.Blocks.Get(arm64.LevelPMD) == 0 {
		t.Error("the alias PMD must have been split to PTEs")
	}
	a := k.Exec.Chunks()[0]
	if p := check.Permission(k, c, a.Addr); p.Level == 2 {
		t.Error("rfc-v1 never collapses the vmalloc mapping: it must stay split")
	}
	if p := check.Permission(k, c, k.Lin(a.PagePA(0))); p.Level != 2 {
		t.Errorf("rfc-v1 collapses the alias of pages[0]: level %d", p.Level)
	}
	if k.Stats.Collapse.PMDLinear == 0 {
		t.Error("no linear collapse recorded")
	}
	// The general policy changes the alias once per 2M backing page.
	kc := bootPreset(t, "bbml2-server", "collapse", nil)
	calls = kc.Stats.SetMemoryCalls.Load()
	if _, err := kc.LoadModule(c, textSpec(100<<10)); err != nil {
		t.Fatal(err)
	}
	if n := kc.Stats.SetMemoryCalls.Load() - calls; n >= 512 {
		t.Errorf("collapse policy: %d calls, want far fewer than 512", n)
	}
}

// When the ROX cache cannot get a 2M page, the chunk falls back to small
// pages, area->pages[0]'s alias is not PMD aligned, and the RFC's collapse
// is refused with its WARN.
func TestRFCv1UnalignedCollapseWarns(t *testing.T) {
	k := bootPreset(t, "bbml2-server", "rfc-v1", nil)
	c := &kernel.PlainCPU{}
	// Take the first page of every 2M block: no free page is 2M aligned.
	for _, r := range k.Mem.Regions() {
		for pa := r.Base; pa < r.End(); pa += 2 << 20 {
			_ = k.Mem.Reserve(pa, 4096, physmem.OwnerReserved)
		}
	}
	if _, err := k.LoadModule(c, textSpec(40<<10)); err != nil {
		t.Fatal(err)
	}
	if k.Stats.Collapse.Warned == 0 {
		t.Fatal("expected the unaligned-address WARN")
	}
	found := false
	for _, w := range k.Stats.Warnings {
		found = found || strings.Contains(w, "not PMD aligned")
	}
	if !found {
		t.Errorf("warnings %q", k.Stats.Warnings)
	}
	_ = arm64.LastLevel
}

// inHoles reports whether pa lies in one of the boot's deliberate linear-map
// holes (Kernel.LinearHoles).
func inHoles(holes [][2]uint64, pa uint64) bool {
	for _, h := range holes {
		if pa >= h[0] && pa < h[1] {
			return true
		}
	}
	return false
}
