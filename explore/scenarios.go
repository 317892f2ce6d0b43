package explore

import (
	"fmt"
	"io"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/check"
	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
)

// objSize is the size of the text objects the scenarios use: four pages, so
// an object is one contiguous run of PTEs inside a 2M ROX-cache chunk.
const objSize = 16 << 10

// scenarioRAM keeps boots cheap: every run boots a fresh kernel.
const scenarioRAM = 128 << 20

// machine returns a Config function for a machine preset with scenarioRAM
// and n CPUs of one model.
func machine(name, model string, n int) func(kernel.Policy) (kernel.Config, error) {
	return func(p kernel.Policy) (kernel.Config, error) {
		cfg, err := kernel.Machine(name)
		if err != nil {
			return cfg, err
		}
		cfg.Policy = p
		cfg.RAM = []kernel.RAMRegion{{Base: cfg.RAM[0].Base, Size: scenarioRAM}}
		cfg.CPUs = []kernel.CPUGroup{{Model: model, Count: n}}
		return cfg, nil
	}
}

// Scenarios are the named scenarios, by name.
var Scenarios = map[string]*Scenario{}

var scenarioOrder []string

// ScenarioNames lists the scenarios in the order they were defined.
func ScenarioNames() []string { return append([]string(nil), scenarioOrder...) }

// LookupScenario returns a named scenario.
func LookupScenario(name string) (*Scenario, error) {
	s, ok := Scenarios[name]
	if !ok {
		return nil, fmt.Errorf("%w: no scenario %q (%v)", ErrScenario, name, ScenarioNames())
	}
	return s, nil
}

func register(s *Scenario) {
	s.Reuse = reusable[s.Name]
	Scenarios[s.Name] = s
	scenarioOrder = append(scenarioOrder, s.Name)
}

// reusable are the scenarios whose operations hold only values and act on
// the kernel and CPU they are given (Scenario.Reuse). Not: repaint (its
// Build creates the parking locks and takes them for the CPUs), vmap-reuse
// (an operation keeps the Build's *VMArea), bpf-pack (the frees share the
// pack's live count).
var reusable = map[string]bool{
	"neighbours": true, "ptdump": true, "access": true, "free": true, "text-poke": true, "split": true,
	"bbm": true, "ptdump-vmap": true, "chunk-offsets": true, "chunk-release": true, "two-vmalloc": true,
	"kcore": true, "three-ptdump": true, "three-kcore": true,
}

func init() {
	register(&Scenario{
		Name: "neighbours",
		Doc: "two text objects A and B in one 2M ROX-cache chunk; CPU0 makes A writable again " +
			"(execmem_force_rw: set_memory_nx + set_memory_rw), CPU1 seals B (execmem_restore_rox), " +
			"which under rfc-v1 collapses the chunk's linear alias while CPU0 rewrites A's alias PTEs",
		CPUs:   2,
		Config: machine("bbml2-server", "ampere1", 2),
		Build: withTwoObjects(func(s *Setup, a, b uint64) [][]Op {
			return [][]Op{
				{forceRW(s.K, "A", a)},
				{restoreROX(s.K, "B", b)},
			}
		}),
	})
	register(&Scenario{
		Name: "ptdump",
		Doc: "CPU0 dumps the kernel page tables (arm64_ptdump_walk_pgd, a lockless walker) while " +
			"CPU1 seals object B (execmem_restore_rox), whose collapse frees a PTE table",
		CPUs:   2,
		Config: machine("bbml2-server", "ampere1", 2),
		Build: func(s *Setup) error {
			_, b, err := twoObjects(s)
			if err != nil {
				return err
			}
			s.Threads = [][]Op{
				{ptdumpOp()},
				{restoreROX(s.K, "B", b)},
			}
			return nil
		},
	})
	register(&Scenario{
		Name: "access",
		Doc: "CPU0 seals object B (execmem_restore_rox) while CPU1, whose TLB holds B's writable " +
			"translation, writes to B and executes it",
		CPUs:   2,
		Config: machine("bbml2-server", "ampere1", 2),
		Build: func(s *Setup) error {
			_, b, err := twoObjects(s)
			if err != nil {
				return err
			}
			s.Threads = [][]Op{
				{restoreROX(s.K, "B", b)},
				{access(cpu.Write, "B", b), access(cpu.Exec, "B", b)},
			}
			return nil
		},
	})
	register(&Scenario{
		Name: "free",
		Doc: "CPU0 frees sealed object A back to the ROX cache (execmem_free: force_rw, refill with " +
			"traps, restore_rox, cache clean) while CPU1 seals its neighbour B in the same chunk",
		CPUs:   2,
		Config: machine("bbml2-server", "ampere1", 2),
		Build: func(s *Setup) error {
			a, b, err := twoObjects(s)
			if err != nil {
				return err
			}
			oa := contentOf(s.K, a)
			s.Threads = [][]Op{
				// A's text is dead once execmem_free returns: the cache must
				// have refilled it with traps if it stays executable.
				{{Name: "execmem_free(A)", Footprint: footprint(s.K, a, objSize),
					Run: func(k *kernel.Kernel, c *cpu.CPU) error {
						err := k.ExecmemFree(c, a)
						k.Exec.Retire(oa)
						return err
					}}},
				{restoreROX(s.K, "B", b)},
			}
			return nil
		},
	})
	register(&Scenario{
		Name: "text-poke",
		Doc: "CPU0 rewrites sealed object A in place (a JIT or live patch: aarch64_insn_copy, whose " +
			"patch_map finds the page with vmalloc_to_page, a lockless walk of the vmalloc tables) " +
			"while CPU1 seals B, whose collapse may fold the chunk's vmalloc PTE table",
		CPUs:   2,
		Config: machine("bbml2-server", "ampere1", 2),
		Build: withTwoObjects(func(s *Setup, a, b uint64) [][]Op {
			return [][]Op{
				{textPokeOp(s, "A", a)},
				{restoreROX(s.K, "B", b)},
			}
		}),
	})
	register(&Scenario{
		Name: "split",
		Doc: "two one-page vmalloc areas whose pages share one 2M block of the linear map; both CPUs " +
			"make theirs read-only (set_memory_ro), each splitting the linear alias under pgtable_split_lock",
		CPUs:   2,
		Config: machine("bbml2-server", "ampere1", 2),
		Build:  buildSplit,
	})
	register(&Scenario{
		Name: "bbm",
		Doc: "Neoverse-N1 CPUs (no BBML2_NOABORT): CPU1 caches a 2M vmalloc_huge block and reads it " +
			"again while CPU0 asks for one page of it read-only, which the kernel refuses without BBML2_NOABORT",
		CPUs:   2,
		Config: machine("n1-server", "neoverse-n1", 2),
		Build:  buildBBM,
	})
	register(&Scenario{
		Name: "ptdump-vmap",
		Doc: "CPU0 dumps the kernel page tables while CPU1 vmalloc_huge()s a 2M area over a PMD slot " +
			"that still holds an empty PTE table, which vmap_try_huge_pmd frees (pmd_free_pte_page)",
		CPUs:   2,
		Config: machine("bbml2-server", "ampere1", 2),
		Build:  buildPtdumpVmap,
	})
}

// twoObjects allocates text objects A and B next to each other (in one ROX
// cache chunk when the policy has the cache), writes their text, seals A and
// leaves B writable, so the chunk's linear alias is split and all read-only
// but B. Every CPU's TLB then caches A and B through both aliases.
// withTwoObjects is a Build for scenarios whose threads act on two objects
// A and B carved out of one ROX-cache chunk (twoObjects).
func withTwoObjects(threads func(s *Setup, a, b uint64) [][]Op) func(*Setup) error {
	return func(s *Setup) error {
		a, b, err := twoObjects(s)
		if err != nil {
			return err
		}
		s.Threads = threads(s, a, b)
		return nil
	}
}

func twoObjects(s *Setup) (a, b uint64, err error) {
	k, c0 := s.K, s.M.CPUs[0]
	if a, err = k.ExecmemAllocRW(c0, kernel.ExecmemModuleText, objSize); err != nil {
		return
	}
	if b, err = k.ExecmemAllocRW(c0, kernel.ExecmemModuleText, objSize); err != nil {
		return
	}
	for _, p := range []uint64{a, b} {
		if err = k.WriteText(p, objSize, k.Exec.NewObject()); err != nil {
			return
		}
	}
	if err = k.ExecmemRestoreROX(c0, a, objSize); err != nil {
		return
	}
	for _, c := range s.M.CPUs {
		for _, p := range []uint64{a, b} {
			warm(k, c, p)
		}
		touch(c, cpu.Exec, a)
		touch(c, cpu.Write, b)
	}
	s.Tracked = append(s.Tracked, areaRanges(k, a)...)
	s.Tracked = append(s.Tracked, areaRanges(k, b)...)
	return a, b, nil
}

// warm reads va and its linear alias on CPU c, filling its TLB and walk cache.
func warm(k *kernel.Kernel, c *cpu.CPU, va uint64) {
	touch(c, cpu.Read, va)
	if pa, _, ok := k.PT.Translate(c, va); ok {
		touch(c, cpu.Read, k.Lin(pa))
	}
}

// footprint is an object's pages through its vmalloc mapping and its linear
// alias.
func footprint(k *kernel.Kernel, va, size uint64) []check.Range {
	rs := []check.Range{{Start: va, End: va + size}}
	a := k.FindVMArea(va)
	if a == nil {
		return rs
	}
	ps := k.G.PageSize()
	first := int((va - a.Addr) / ps)
	for i := first; i < first+int(size/ps) && i < a.NrPages; i++ {
		lin := k.Lin(a.PagePA(i))
		if n := len(rs); n > 1 && rs[n-1].End == lin {
			rs[n-1].End += ps
		} else {
			rs = append(rs, check.Range{Start: lin, End: lin + ps})
		}
	}
	return rs
}

// areaRanges is the vm area holding va and the linear alias of its pages.
func areaRanges(k *kernel.Kernel, va uint64) []check.Range {
	a := k.FindVMArea(va)
	if a == nil {
		return nil
	}
	rs := []check.Range{{Start: a.Addr, End: a.End()}}
	chunk := k.G.PageSize() << a.PageOrder
	for _, pa := range a.Blocks {
		rs = append(rs, check.Range{Start: k.Lin(pa), End: k.Lin(pa) + chunk})
	}
	return rs
}

func forceRW(k *kernel.Kernel, name string, p uint64) Op {
	return Op{Name: "execmem_force_rw(" + name + ")", Footprint: footprint(k, p, objSize),
		Run: func(k *kernel.Kernel, c *cpu.CPU) error { return k.ExecmemForceRW(c, p, objSize) }}
}

func restoreROX(k *kernel.Kernel, name string, p uint64) Op {
	return Op{Name: "execmem_restore_rox(" + name + ")", Footprint: footprint(k, p, objSize),
		Run: func(k *kernel.Kernel, c *cpu.CPU) error { return k.ExecmemRestoreROX(c, p, objSize) }}
}

func ptdumpOp() Op {
	return Op{Name: "ptdump_walk_pgd", Run: func(k *kernel.Kernel, c *cpu.CPU) error { return k.PtdumpWalk(c, io.Discard) }}
}

func access(kind cpu.AccessKind, name string, va uint64) Op {
	return Op{Name: fmt.Sprintf("%v(%s)", kind, name), Racy: true,
		Run: func(_ *kernel.Kernel, c *cpu.CPU) error { _, err := c.Access(kind, va); return err }}
}

func setMemoryRO(k *kernel.Kernel, name string, va uint64, pages int) Op {
	return Op{Name: "set_memory_ro(" + name + ")", Footprint: footprint(k, va, uint64(pages)*k.G.PageSize()),
		Run: func(k *kernel.Kernel, c *cpu.CPU) error { return k.SetMemoryRO(c, va, pages) }}
}

func buildSplit(s *Setup) error {
	k, c0 := s.K, s.M.CPUs[0]
	v1, err := k.Vmalloc(c0, k.G.PageSize())
	if err != nil {
		return err
	}
	v2, err := k.Vmalloc(c0, k.G.PageSize())
	if err != nil {
		return err
	}
	pmd := k.G.Size(arm64.LevelPMD)
	if k.Lin(v1.PagePA(0))&^(pmd-1) != k.Lin(v2.PagePA(0))&^(pmd-1) {
		return fmt.Errorf("the two pages %#x and %#x are not in one PMD block", v1.PagePA(0), v2.PagePA(0))
	}
	for _, c := range s.M.CPUs {
		warm(k, c, v1.Addr)
		warm(k, c, v2.Addr)
	}
	s.Tracked = append(areaRanges(k, v1.Addr), areaRanges(k, v2.Addr)...)
	s.Threads = [][]Op{{setMemoryRO(k, "V1", v1.Addr, 1)}, {setMemoryRO(k, "V2", v2.Addr, 1)}}
	return nil
}

func buildBBM(s *Setup) error {
	k, c0 := s.K, s.M.CPUs[0]
	pmd := k.G.Size(arm64.LevelPMD)
	h, err := k.VmallocHuge(c0, pmd)
	if err != nil {
		return err
	}
	if h.PageOrder != int(k.G.Shift(arm64.LevelPMD)-k.G.PageShift) {
		return fmt.Errorf("vmalloc_huge fell back to order %d", h.PageOrder)
	}
	for _, c := range s.M.CPUs {
		touch(c, cpu.Read, h.Addr)
	}
	s.Tracked = areaRanges(k, h.Addr)
	s.Threads = [][]Op{
		{setMemoryRO(k, "H+4K", h.Addr+k.G.PageSize(), 1)},
		{access(cpu.Read, "H+1M", h.Addr+pmd/2)},
	}
	return nil
}

func buildPtdumpVmap(s *Setup) error {
	k, c0 := s.K, s.M.CPUs[0]
	// A small area leaves a PTE table in the first PMD slot of the vmalloc
	// range; once it is freed and purged, a huge mapping can take the slot.
	v, err := k.VmallocNodeRange(c0, kernel.VmallocRequest{Size: k.G.PageSize(), Align: k.G.Size(arm64.LevelPMD), Caller: "vmalloc"})
	if err != nil {
		return err
	}
	if err := k.Vfree(c0, v.Addr); err != nil {
		return err
	}
	k.VmUnmapAliases(c0)
	s.Threads = [][]Op{
		{ptdumpOp()},
		{{Name: "vmalloc_huge(2M)", Run: func(k *kernel.Kernel, c *cpu.CPU) error {
			_, err := k.VmallocHuge(c, k.G.Size(arm64.LevelPMD))
			return err
		}}},
	}
	return nil
}

// textPokeOp rewrites the sealed object at va in place with new text
// (aarch64_insn_copy through text_poke: patch_map walks the vmalloc tables
// with vmalloc_to_page under patch_lock only).
func textPokeOp(s *Setup, name string, va uint64) Op {
	obj := s.K.Exec.NewObject()
	return Op{Name: "text_poke(" + name + ")", Run: func(k *kernel.Kernel, c *cpu.CPU) error { return k.TextPoke(c, va, objSize, obj) }}
}
