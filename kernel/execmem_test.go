package kernel_test

import (
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/check"
	"github.com/ptlab/ptlab/kernel"
	"pgregory.net/rapid"
)

func bootPreset(t testing.TB, machine, preset string, edit func(*kernel.Config)) *kernel.Kernel {
	t.Helper()
	cfg, err := kernel.Machine(machine)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Policy, err = kernel.Preset(preset); err != nil {
		t.Fatal(err)
	}
	cfg.RAM = []kernel.RAMRegion{{Base: 0x80000000, Size: 4 << 30}}
	if edit != nil {
		edit(&cfg)
	}
	k, err := kernel.Boot(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func checkAll(t interface{ Fatalf(string, ...any) }, k *kernel.Kernel, c kernel.CPU, step string) {
	for _, err := range []error{check.WX(k, c, nil), check.ExecContent(k, c), check.Accounting(k)} {
		if err != nil {
			t.Fatalf("after %s: %v", step, err)
		}
	}
}

// After any sequence of module loads and unloads and BPF program loads and
// frees, under mainline and under the ROX cache: no page is executable
// while holding anything but trap fill or live text; no executable page has
// a writable alias; physmem accounting holds. When everything is gone, the
// ROX cache has released every chunk and their linear alias is valid and
// writable again.
func TestPropertyExecmem(t *testing.T) {
	for _, preset := range []string{"mainline", "rox-cache"} {
		t.Run(preset, func(t *testing.T) {
			rapid.Check(t, func(rt *rapid.T) {
				k := bootPreset(t, "bbml2-server", preset, nil)
				c := &kernel.PlainCPU{}
				var mods []*kernel.Module
				var progs []*kernel.JITText
				chunkPAs := map[uint64]bool{}
				recordChunks := func() {
					for _, a := range k.Exec.Chunks() {
						for i := 0; i < a.NrPages; i++ {
							chunkPAs[a.PagePA(i)] = true
						}
					}
				}
				steps := rapid.IntRange(1, 30).Draw(rt, "steps")
				for i := 0; i < steps; i++ {
					switch rapid.IntRange(0, 3).Draw(rt, "op") {
					case 0:
						var spec kernel.ModuleSpec
						spec.Name = "m"
						for typ := kernel.ModMemType(0); typ < kernel.NumModMemTypes; typ++ {
							if rapid.Bool().Draw(rt, "has") || typ == kernel.ModText {
								spec.Size[typ] = rapid.Uint64Range(1, 700<<10).Draw(rt, "size")
							}
						}
						m, err := k.LoadModule(c, spec)
						if err != nil {
							rt.Fatal(err)
						}
						mods = append(mods, m)
						recordChunks()
						checkAll(rt, k, c, "load")
					case 1:
						if len(mods) == 0 {
							continue
						}
						j := rapid.IntRange(0, len(mods)-1).Draw(rt, "which")
						if err := k.UnloadModule(c, mods[j]); err != nil {
							rt.Fatal(err)
						}
						mods = append(mods[:j], mods[j+1:]...)
						checkAll(rt, k, c, "unload")
					case 2:
						p, err := k.LoadJITText(c, kernel.ExecmemBPF, rapid.Uint64Range(64, 64<<10).Draw(rt, "bpf"))
						if err != nil {
							rt.Fatal(err)
						}
						progs = append(progs, p)
						recordChunks()
						checkAll(rt, k, c, "bpf load")
					case 3:
						if len(progs) == 0 {
							continue
						}
						j := rapid.IntRange(0, len(progs)-1).Draw(rt, "prog")
						if err := k.FreeJITText(c, progs[j]); err != nil {
							rt.Fatal(err)
						}
						progs = append(progs[:j], progs[j+1:]...)
						checkAll(rt, k, c, "bpf free")
					}
					if cs := k.Exec.CacheStats(); cs.BusyBytes+cs.FreeBytes != cs.ChunkBytes {
						rt.Fatalf("cache accounting: busy %d + free %d != chunks %d", cs.BusyBytes, cs.FreeBytes, cs.ChunkBytes)
					}
				}
				for _, m := range mods {
					if err := k.UnloadModule(c, m); err != nil {
						rt.Fatal(err)
					}
				}
				for _, p := range progs {
					if err := k.FreeJITText(c, p); err != nil {
						rt.Fatal(err)
					}
				}
				checkAll(rt, k, c, "teardown")
				if cs := k.Exec.CacheStats(); cs.Chunks != 0 || cs.Populates != cs.Releases {
					rt.Fatalf("cache not empty after teardown: %+v", cs)
				}
				for pa := range chunkPAs {
					p := check.Permission(k, c, k.Lin(pa))
					if !p.Mapped || !p.Write {
						rt.Fatalf("released chunk page %#x: linear alias mapped=%v writable=%v", pa, p.Mapped, p.Write)
					}
				}
			})
		})
	}
}

// RFC patch 3: without it, a released chunk's linear alias is only made
// valid again (set_direct_map_valid_noflush), so pages go back to the page
// allocator read-only in the linear map.
func TestCacheCleanWithoutPatch3LeavesAliasRO(t *testing.T) {
	k := bootPreset(t, "bbml2-server", "rox-cache", func(c *kernel.Config) { c.Policy.CleanRestoresRW = false })
	c := &kernel.PlainCPU{}
	m, err := k.LoadModule(c, kernel.ModuleSpec{Name: "x", Size: [kernel.NumModMemTypes]uint64{kernel.ModText: 40 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	chunk := k.Exec.Chunks()[0]
	pa := chunk.PagePA(100)
	if err := k.UnloadModule(c, m); err != nil {
		t.Fatal(err)
	}
	if len(k.Exec.Chunks()) != 0 {
		t.Fatal("chunk not released")
	}
	if p := check.Permission(k, c, k.Lin(pa)); !p.Mapped || p.Write {
		t.Errorf("without patch 3 the released alias must stay read-only: %+v", p)
	}
}

// The ROX cache only exists when every CPU has BBML2_NOABORT (patch 5).
func TestROXCacheNeedsBBML2(t *testing.T) {
	k := bootPreset(t, "n1-server", "rox-cache", nil)
	if k.Exec.IsROX(kernel.ExecmemModuleText) {
		t.Error("no BBML2: no ROX cache")
	}
	k = bootPreset(t, "bbml2-server", "rox-cache", nil)
	if !k.Exec.IsROX(kernel.ExecmemModuleText) || k.Exec.IsROX(kernel.ExecmemModuleData) {
		t.Error("BBML2: text cached, data not (patch 1)")
	}
}

// Mainline's kprobe instruction pages are mapped PAGE_KERNEL_ROX straight
// from vmalloc, so their linear alias stays writable: W^X across aliases
// does not hold for them. The ROX cache closes the gap (the whole chunk's
// alias is read-only).
func TestKprobePagesAliasGap(t *testing.T) {
	k := bootPreset(t, "bbml2-server", "mainline", nil)
	c := &kernel.PlainCPU{}
	if _, err := k.LoadJITText(c, kernel.ExecmemKprobes, 4096); err != nil {
		t.Fatal(err)
	}
	if err := check.WX(k, c, nil); err == nil {
		t.Error("mainline kprobe page: expected a W^X-across-aliases violation")
	}
	k = bootPreset(t, "bbml2-server", "rox-cache", nil)
	if _, err := k.LoadJITText(c, kernel.ExecmemKprobes, 4096); err != nil {
		t.Fatal(err)
	}
	if err := check.WX(k, c, nil); err != nil {
		t.Error(err)
	}
}

// Modules loaded with the ROX cache share 2M chunks: the vmalloc mapping of
// module text is split (sub-range RW during load) and the linear alias of
// the chunk is PTE mapped under per-page alias updates.
func TestROXCacheSplitsChunk(t *testing.T) {
	k := bootPreset(t, "bbml2-server", "rox-cache", nil)
	c := &kernel.PlainCPU{}
	for i := 0; i < 3; i++ {
		if _, err := k.LoadModule(c, kernel.ModuleSpec{Name: "x", Size: [kernel.NumModMemTypes]uint64{kernel.ModText: 100 << 10, kernel.ModData: 8 << 10}}); err != nil {
			t.Fatal(err)
		}
	}
	cs := k.Exec.CacheStats()
	if cs.Chunks != 1 || cs.BusyBytes != 300<<10 {
		t.Errorf("cache %+v", cs)
	}
	a := k.Exec.Chunks()[0]
	if p := check.Permission(k, c, a.Addr); p.Level == 2 {
		t.Error("the chunk's vmalloc PMD must have been split by the temporary RW window")
	}
	if p := check.Permission(k, c, a.Addr+1<<20); p.Level != arm64.LastLevel || p.Write || !p.Exec {
		t.Errorf("free part of the chunk: %+v", p)
	}
}

// execmem_cache_clean (mm/execmem.c in linux-mm, commit 11384dff) releases a
// free range whose start and size are PMD aligned by vfree'ing the whole vm
// area it starts — without checking that the range is the whole area. With a
// chunk larger than 2 MiB (one object over 2 MiB of text) a free 2 MiB prefix
// takes the busy rest of the chunk with it. The model follows that code, so
// the hazard shows: the still-allocated objects lose their mapping.
func TestCacheCleanFreesBusyRestOfLargeChunk(t *testing.T) {
	for _, preset := range []string{"rox-cache", "collapse"} {
		t.Run(preset, func(t *testing.T) { cleanLargeChunk(t, preset) })
	}
}

func cleanLargeChunk(t *testing.T, preset string) {
	k := bootPreset(t, "bbml2-server", preset, nil)
	c := &kernel.PlainCPU{}
	alloc := func(size uint64) uint64 {
		p, err := k.ExecmemAllocRW(c, kernel.ExecmemModuleText, size)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	x := alloc(3 << 20) // a 4 MiB chunk: [0, 3M) busy
	y := alloc(512 << 10)
	if y != x+3<<20 {
		t.Fatalf("layout: x %#x y %#x", x, y)
	}
	if err := k.ExecmemFree(c, x); err != nil {
		t.Fatal(err)
	}
	a, b, cc := alloc(1<<20), alloc(1<<20), alloc(1<<20) // [0,1M) [1M,2M) [2M,3M)
	if a != x || b != x+1<<20 || cc != x+2<<20 {
		t.Fatalf("first fit: %#x %#x %#x", a, b, cc)
	}
	for _, p := range []uint64{a, b} {
		if err := k.ExecmemFree(c, p); err != nil {
			t.Fatal(err)
		}
	}
	// [0, 2M) is free, PMD aligned and PMD sized: linux-mm's clean vfrees
	// the whole chunk; with the whole-area check (collapse preset) it waits.
	_, _, stillMapped := k.PT.Translate(c, cc)
	if k.Cfg.Policy.CleanWholeArea != stillMapped {
		t.Fatalf("%s: busy object %#x mapped=%v after the clean", preset, cc, stillMapped)
	}
	if !stillMapped {
		t.Logf("busy objects at %#x and %#x lost their mapping when a free 2 MiB prefix of their 4 MiB chunk was released", cc, y)
	}
}
