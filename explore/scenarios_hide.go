package explore

import (
	"fmt"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/check"
	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/physmem"
)

// The scenarios where bugs hide (issue 10): an asymmetric machine's repaint
// on CPUs with TLBs, objects away from a chunk's start, chunk release and
// re-population, address reuse after a lazy purge, two CPUs populating one
// empty table, bpf_prog_pack with text patching, /proc/kcore's lockless
// walk, and three-CPU meetings of two writers and a lockless walker.
func init() {
	register(&Scenario{
		Name: "repaint",
		Doc: "an asymmetric machine: the boot CPU (BBML2_NOABORT) block-maps the linear map, then a secondary " +
			"without it comes up; CPU0 repaints the linear map to PTEs (linear_map_split_to_ptes) while CPU1, " +
			"whose TLB holds the old blocks, parks in wait_linear_map_split_to_ptes and reads the linear map once released",
		CPUs:   2,
		Config: machine("bbml2-server", "ampere1", 2),
		Build:  buildRepaint,
	})
	register(&Scenario{
		Name: "chunk-offsets",
		Doc: "objects away from a chunk's start: a one-page object A in the chunk's last page and B at a seeded " +
			"random offset, fillers around them; CPU0 makes A writable, CPU1 seals B (the collapse must see A's PTE)",
		CPUs:   2,
		Config: machine("bbml2-server", "ampere1", 2),
		Build:  buildChunkOffsets,
	})
	register(&Scenario{
		Name: "chunk-release",
		Doc: "the only two objects of a chunk freed at once (execmem_free on both CPUs: the last one releases " +
			"the chunk, restoring its linear alias), then CPU0 loads a new program, re-populating the cache",
		CPUs:   2,
		Config: machine("bbml2-server", "ampere1", 2),
		Build:  buildChunkRelease,
	})
	register(&Scenario{
		Name: "vmap-reuse",
		Doc: "a vfree'd area whose TLB entries every CPU still holds (the lazy purge has not run): CPU0 vmallocs " +
			"in the same window, which purges and reuses the address, while CPU1 runs vm_unmap_aliases",
		CPUs:   2,
		Config: machine("bbml2-server", "ampere1", 2),
		Build:  buildVmapReuse,
	})
	register(&Scenario{
		Name: "two-vmalloc",
		Doc: "two CPUs vmalloc one page each into one empty 2M region: both find no PTE table and populate " +
			"the slot (__pte_alloc_kernel re-checks under init_mm.page_table_lock)",
		CPUs:   2,
		Config: machine("bbml2-server", "ampere1", 2),
		Build:  buildTwoVmalloc,
	})
	register(&Scenario{
		Name: "bpf-pack",
		Doc: "a bpf_prog_pack with programs P1 and P2: CPU0 rewrites P1 (bpf_arch_text_copy → aarch64_insn_copy, " +
			"a lockless vmalloc_to_page walk under patch_lock) and frees it; CPU1 frees P2 " +
			"(bpf_prog_pack_free: bpf_arch_text_invalidate under pack_mutex); the last free releases the pack (execmem_free)",
		CPUs:   2,
		Config: machine("bbml2-server", "ampere1", 2),
		Build:  buildBPFPack,
	})
	register(&Scenario{
		Name: "kcore",
		Doc: "CPU0 reads object A through /proc/kcore (vread_iter: vmalloc_to_page under the vmap node's busy lock " +
			"only) while CPU1 seals B, whose collapse may fold the chunk's vmalloc PTE table",
		CPUs:   2,
		Config: machine("bbml2-server", "ampere1", 2),
		Build: withTwoObjects(func(s *Setup, a, b uint64) [][]Op {
			return [][]Op{{vreadOp("A", a)}, {restoreROX(s.K, "B", b)}}
		}),
	})
	register(&Scenario{
		Name: "three-ptdump",
		Doc: "three CPUs: CPU0 makes A writable, CPU1 seals B (collapsing under the collapse policies), CPU2 " +
			"dumps the kernel page tables (a lockless walker)",
		CPUs:   3,
		Config: machine("bbml2-server", "ampere1", 3),
		Build: withTwoObjects(func(s *Setup, a, b uint64) [][]Op {
			return [][]Op{{forceRW(s.K, "A", a)}, {restoreROX(s.K, "B", b)}, {ptdumpOp()}}
		}),
	})
	register(&Scenario{
		Name: "three-kcore",
		Doc: "three CPUs: CPU0 patches A's text (text_poke), CPU1 seals B, CPU2 reads A through /proc/kcore: " +
			"two lockless walkers of the vmalloc mapping under different locks while the chunk may collapse",
		CPUs:   3,
		Config: machine("bbml2-server", "ampere1", 3),
		Build: withTwoObjects(func(s *Setup, a, b uint64) [][]Op {
			return [][]Op{
				{textPokeOp(s, "A", a)},
				{restoreROX(s.K, "B", b)},
				{vreadOp("A", a)},
			}
		}),
	})
}

func vreadOp(name string, va uint64) Op {
	return Op{Name: "vread_iter(" + name + ")", Run: func(k *kernel.Kernel, c *cpu.CPU) error {
		_, err := k.VreadIter(c, va, objSize)
		return err
	}}
}

// hold takes mu for CPU id before the run starts (Build runs without a
// scheduler), in the way the machine's mode needs.
func hold(m *cpu.Machine, mu *kernel.Mutex, id int) {
	if m.Mode == cpu.Real {
		mu.BlockingLock(id)
	} else {
		mu.TryAcquire(id)
	}
}

// buildRepaint boots with two BBML2 CPUs (the linear map block-mapped),
// warms both TLBs over part of the linear map, then brings CPU1 up as a
// Neoverse-N1 (no BBML2_NOABORT): the repaint is due. stop_machine's
// rendezvous is two mutexes: CPU1 holds "parked" until it has parked and
// waits for "released", which CPU0 holds until the repaint is flushed.
func buildRepaint(s *Setup) error {
	k := s.K
	if !k.LinearMapRequiresBBML2 {
		return fmt.Errorf("the linear map is not block mapped")
	}
	n1, err := kernel.Machine("n1-server")
	if err != nil {
		return err
	}
	midrs, err := n1.MIDRs()
	if err != nil {
		return err
	}
	r := k.Mem.Regions()[0]
	lin := k.Lin(r.Base+r.Size) - 8<<20
	span := uint64(4 << 20)
	for _, c := range s.M.CPUs {
		for va := lin; va < lin+span; va += k.G.Size(arm64.LevelPMD) {
			touch(c, cpu.Read, va)
		}
	}
	k.SecondaryOnline(1, midrs[0])
	s.M.CPUs[1].MIDR, s.M.CPUs[1].BBML2 = midrs[0], false
	parked, released := kernel.NewMutex("idmap_kpti_bbml2_flag (parked)"), kernel.NewMutex("idmap_kpti_bbml2_flag (released)")
	hold(s.M, parked, 1)
	hold(s.M, released, 0)
	s.Tracked = []check.Range{{Start: lin, End: lin + span}}
	s.Threads = [][]Op{
		{{Name: "linear_map_split_to_ptes (boot CPU)", Run: func(k *kernel.Kernel, c *cpu.CPU) error {
			c.Lock(parked) // every secondary is in the waiting area
			err := k.LinearMapMaybeSplitToPTEs(c)
			c.Unlock(released)
			c.Unlock(parked)
			return err
		}}},
		{{Name: "wait_linear_map_split_to_ptes", Run: func(k *kernel.Kernel, c *cpu.CPU) error {
			// __idmap_cpu_set_reserved_ttbr1: TTBR1 to reserved_pg_dir,
			// then a local TLBI VMALLE1.
			if !k.Mutations.ParkKeepsTLB {
				c.TLB.Invalidate(&k.G, kernel.TLBIOp{Kind: kernel.TLBIVMALLE1IS})
			}
			c.Unlock(parked)
			c.Lock(released)
			c.Unlock(released)
			return nil
		}}, access(cpu.Read, "linear map", lin), access(cpu.Read, "linear map+2M+4K", lin+k.G.Size(arm64.LevelPMD)+k.G.PageSize())},
	}
	return nil
}

// chunkOffsetSeed places B in buildChunkOffsets (a seeded random offset,
// fixed so every run and replay sees the same layout).
const chunkOffsetSeed = 0x9e3779b97f4a7c15

// buildChunkOffsets fills one chunk exactly: filler F0, B (4 pages) at a
// seeded offset, filler F1, and a one-page A in the last page. All but B are
// sealed; A then becomes writable on CPU0 while CPU1 seals B.
func buildChunkOffsets(s *Setup) error {
	k, c0 := s.K, s.M.CPUs[0]
	ps := k.G.PageSize()
	n := k.G.Size(arm64.LevelPMD) / ps
	off := 1 + chunkOffsetSeed%(n-8) // B's first page, in [1, n-7)
	var objs []uint64
	for _, sz := range []uint64{off * ps, objSize, (n - off - objSize/ps - 1) * ps, ps} {
		p, err := k.ExecmemAllocRW(c0, kernel.ExecmemModuleText, sz)
		if err != nil {
			return err
		}
		if err := k.WriteText(p, sz, k.Exec.NewObject()); err != nil {
			return err
		}
		objs = append(objs, p)
		if err := k.ExecmemRestoreROX(c0, p, sz); err != nil {
			return err
		}
	}
	b, a := objs[1], objs[3]
	if k.Exec.IsROX(kernel.ExecmemModuleText) && (a+ps)&(k.G.Size(arm64.LevelPMD)-1) != 0 {
		return fmt.Errorf("A at %#x is not the chunk's last page", a)
	}
	if err := k.ExecmemForceRW(c0, b, objSize); err != nil {
		return err
	}
	for _, c := range s.M.CPUs {
		warm(k, c, a)
		warm(k, c, b)
	}
	s.Tracked = append(areaRanges(k, a), areaRanges(k, b)...)
	s.Threads = [][]Op{
		{{Name: "execmem_force_rw(A)", Footprint: footprint(k, a, ps),
			Run: func(k *kernel.Kernel, c *cpu.CPU) error { return k.ExecmemForceRW(c, a, ps) }}},
		{restoreROX(k, "B", b)},
	}
	return nil
}

// chunkFootprint is everything a release of the chunk holding va changes:
// its vmalloc mapping and linear alias.
func chunkFootprint(k *kernel.Kernel, va uint64) []check.Range { return areaRanges(k, va) }

func buildChunkRelease(s *Setup) error {
	k := s.K
	a, b, err := twoObjects(s)
	if err != nil {
		return err
	}
	oa, ob := contentOf(k, a), contentOf(k, b)
	// One chunk under the ROX cache; two areas (and their aliases) without.
	fp := append(chunkFootprint(k, a), chunkFootprint(k, b)...)
	free := func(name string, p, obj uint64) Op {
		// Racy: which free releases the chunk depends on the interleaving.
		return Op{Name: "execmem_free(" + name + ")", Footprint: fp, Racy: true,
			Run: func(k *kernel.Kernel, c *cpu.CPU) error {
				err := k.ExecmemFree(c, p)
				k.Exec.Retire(obj) // the owner's text is dead once its memory is handed back
				return err
			}}
	}
	s.Threads = [][]Op{
		// C's pages and their alias are unknown until it runs: its footprint
		// is every tracked region (whole PMDs around the chunk and aliases).
		{free("A", a, oa), {Name: "execmem_alloc + text_poke (C)", Footprint: pmdRegions(k, fp), Racy: true,
			Run: func(k *kernel.Kernel, c *cpu.CPU) error {
				_, err := k.LoadJITText(c, kernel.ExecmemModuleText, objSize)
				return err
			}}},
		{free("B", b, ob)},
	}
	return nil
}

func contentOf(k *kernel.Kernel, va uint64) uint64 {
	c, _ := k.Content(atomicDoor{}, va)
	return c
}

// vmapWindow is a PMD-aligned 2M window near the top of the vmalloc range
// that no allocation reaches on a fresh boot.
func vmapWindow(k *kernel.Kernel) uint64 {
	return (k.Layout.VmallocEnd - 64<<20) &^ (k.G.Size(arm64.LevelPMD) - 1)
}

func buildVmapReuse(s *Setup) error {
	k, c0 := s.K, s.M.CPUs[0]
	ps := k.G.PageSize()
	w := vmapWindow(k)
	req := kernel.VmallocRequest{Size: ps, Start: w, End: w + 2*ps, Caller: "vmalloc"}
	v, err := k.VmallocNodeRange(c0, req)
	if err != nil {
		return err
	}
	for _, c := range s.M.CPUs {
		touch(c, cpu.Write, v.Addr)
	}
	if err := k.Vfree(c0, v.Addr); err != nil {
		return err
	}
	// Someone else gets the freed page: the reused address maps another.
	if _, err := k.Mem.Alloc(0, physmem.OwnerVmalloc); err != nil {
		return err
	}
	s.Tracked = []check.Range{{Start: w, End: w + 2*ps}}
	s.Threads = [][]Op{
		// Racy: the page it gets depends on the interleaving (so the oracle
		// cannot name its PA); stale TLB entries are still checked when it returns.
		{{Name: "vmalloc (reuses the address)", Footprint: []check.Range{{Start: w, End: w + ps}}, Racy: true,
			Run: func(k *kernel.Kernel, c *cpu.CPU) error {
				a, err := k.VmallocNodeRange(c, req)
				if err == nil && a.Addr != v.Addr {
					err = fmt.Errorf("vmalloc at %#x, not the reused %#x", a.Addr, v.Addr)
				}
				return err
			}}},
		{{Name: "vm_unmap_aliases", Run: func(k *kernel.Kernel, c *cpu.CPU) error { k.VmUnmapAliases(c); return nil }}},
	}
	return nil
}

func buildTwoVmalloc(s *Setup) error {
	k := s.K
	ps := k.G.PageSize()
	w := vmapWindow(k) - 8*k.G.Size(arm64.LevelPMD)
	if t, err := k.PT.TableAt(atomicDoor{}, w, arm64.LevelPMD); err != nil || t {
		return fmt.Errorf("the window %#x already has a PTE table (%v)", w, err)
	}
	s.Tracked = []check.Range{{Start: w, End: w + k.G.Size(arm64.LevelPMD)}}
	op := func(name string, start uint64) Op {
		// Racy: which CPU's page comes first from the allocator depends on
		// the interleaving; lost updates and leaks are still checked.
		return Op{Name: "vmalloc(" + name + ")", Footprint: []check.Range{{Start: start, End: start + ps}}, Racy: true,
			Run: func(k *kernel.Kernel, c *cpu.CPU) error {
				_, err := k.VmallocNodeRange(c, kernel.VmallocRequest{Size: ps, Start: start, End: start + 2*ps, Caller: "vmalloc"})
				return err
			}}
	}
	s.Threads = [][]Op{{op("V0", w)}, {op("V1", w+4*ps)}}
	return nil
}

// bpfPack is a bpf_prog_pack: a 2M execmem allocation carved into programs,
// whose last free releases it (kernel/bpf/core.c, bpf_prog_pack_free).
type bpfPack struct {
	mu   *kernel.Mutex // pack_mutex
	addr uint64
	live int
}

func buildBPFPack(s *Setup) error {
	k, c0 := s.K, s.M.CPUs[0]
	pmd := k.G.Size(arm64.LevelPMD)
	// bpf_prog_pack_alloc: bpf_jit_alloc_exec(BPF_PROG_PACK_SIZE), filled
	// with illegal instructions, made ROX (the ROX cache hands it out so).
	addr, err := k.ExecmemAlloc(c0, kernel.ExecmemBPF, pmd)
	if err != nil {
		return err
	}
	if !k.Exec.IsROX(kernel.ExecmemBPF) {
		if err := k.WriteText(addr, pmd, kernel.ContentTrap); err != nil {
			return err
		}
		if err := k.SetMemoryROX(c0, addr, int(pmd/k.G.PageSize())); err != nil {
			return err
		}
	}
	pack := &bpfPack{mu: kernel.NewMutex("pack_mutex"), addr: addr, live: 3}
	// P1 and P2 are loaded; P3's slot is reserved in the pack's bitmap and
	// still holds the illegal-instruction fill.
	p1, p2, p3 := addr, addr+objSize, addr+2*objSize
	o1, o2, o3 := k.Exec.NewObject(), k.Exec.NewObject(), k.Exec.NewObject()
	for _, p := range []struct{ va, obj uint64 }{{p1, o1}, {p2, o2}} {
		if err := k.TextPoke(c0, p.va, objSize, p.obj); err != nil { // bpf_arch_text_copy
			return err
		}
	}
	for _, c := range s.M.CPUs {
		warm(k, c, p1)
		warm(k, c, p2)
	}
	s.Tracked = areaRanges(k, addr)
	fp := areaRanges(k, addr)
	free := func(name string, p, obj uint64) Op {
		// Racy: the last free releases the pack, whichever CPU it is on.
		return Op{Name: "bpf_prog_pack_free(" + name + ")", Footprint: fp, Racy: true,
			Run: func(k *kernel.Kernel, c *cpu.CPU) error {
				c.Lock(pack.mu)
				defer c.Unlock(pack.mu)
				err := k.TextPoke(c, p, objSize, kernel.ContentTrap) // bpf_arch_text_invalidate
				k.Exec.Retire(obj)
				if pack.live--; err == nil && pack.live == 0 {
					err = k.ExecmemFree(c, pack.addr) // bpf_jit_free_exec
				}
				return err
			}}
	}
	s.Threads = [][]Op{
		{{Name: "bpf_arch_text_copy(P3)", Run: func(k *kernel.Kernel, c *cpu.CPU) error { return k.TextPoke(c, p3, objSize, o3) }},
			free("P1", p1, o1), free("P3", p3, o3)},
		{free("P2", p2, o2)},
	}
	return nil
}

// pmdRegions widens ranges to the PMD-aligned regions holding them.
func pmdRegions(k *kernel.Kernel, rs []check.Range) []check.Range {
	pmd := k.G.Size(arm64.LevelPMD)
	out := make([]check.Range, 0, len(rs))
	for _, r := range rs {
		out = append(out, check.Range{Start: r.Start &^ (pmd - 1), End: (r.End + pmd - 1) &^ (pmd - 1)})
	}
	return out
}
