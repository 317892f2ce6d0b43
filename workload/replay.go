package workload

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/physmem"
)

// Replay is a recorded history to run instead of the seeded timeline: the
// modules a real machine loaded (with the sizes of their memory regions as
// its kernel allocated them) and the operations in the order it did them.
// `ptlab trace import` writes one from a recording.
type Replay struct {
	Source string `json:"source,omitempty" yaml:"source,omitempty"` // the recording it came from
	// KASLR is the recorded kernel's image offset (VMCOREINFO KERNELOFFSET):
	// a pinned replay places the model's image there too.
	KASLR kernel.Size `json:"kaslr_offset,omitempty" yaml:"kaslr_offset,omitempty"`
	// ModuleWindow is the VA window the recorded kernel allocated module
	// memory from (alloc_vmap_area's vstart, vend; module_init_limits).
	ModuleWindow []kernel.Size `json:"module_window,omitempty" yaml:"module_window,omitempty,flow"`
	// Pinned replays every area at its recorded address: module memory from
	// the recorded module window (where the model's own lowest-fit search
	// must find the recorded addresses), other vmalloc areas and JIT
	// allocations in a window of exactly their recorded span. For checking
	// the model against the machine; policy comparisons leave placement to
	// the model.
	Pinned  bool           `json:"pinned,omitempty" yaml:"pinned,omitempty"`
	Modules []ReplayModule `json:"modules" yaml:"modules"`
	Ops     []ReplayOp     `json:"ops" yaml:"ops"`
}

// ReplayModule is one module: its name and the size of each memory region
// (mod_mem_type names: text, data, rodata, ro_after_init, init_text,
// init_data, init_rodata).
type ReplayModule struct {
	Name string                 `json:"name" yaml:"name"`
	Size map[string]kernel.Size `json:"size" yaml:"size,flow"`
}

// Replay operation kinds.
const (
	OpLoad     = "load"      // load_module of Module
	OpFreeInit = "free-init" // do_free_init of Module's last load (that load then keeps its init regions until here)
	OpUnload   = "unload"    // free_module of Module
	OpJITAlloc = "jit-alloc" // execmem_alloc(Type, Size) + the JIT's set_memory_rox: Object
	OpJITFree  = "jit-free"  // execmem_free of Object
	OpVmalloc  = "vmalloc"   // another vmalloc user's area of Size bytes (guard page excluded): Object
	OpVfree    = "vfree"     // vfree of Object
	// OpPurge is a recorded __purge_vmap_area_lazy over [Addr, Addr+Size):
	// in a pinned replay that has them, lazily freed VA is released only
	// here, as the recorded kernel did (kernel.PurgeTraced); otherwise the
	// model purges by its own rules and the op does nothing.
	OpPurge = "purge"
)

// ReplayOp is one operation. Line is where the recording shows it.
type ReplayOp struct {
	At     Duration `json:"at" yaml:"at"`
	Op     string   `json:"op" yaml:"op"`
	Module int      `json:"module,omitempty" yaml:"module,omitempty"`
	Object int      `json:"object,omitempty" yaml:"object,omitempty"`
	Type   string   `json:"type,omitempty" yaml:"type,omitempty"` // execmem type: bpf, kprobes, ftrace, module-text, module-data
	Size   uint64   `json:"size,omitempty" yaml:"size,omitempty"`
	Line   int      `json:"line,omitempty" yaml:"line,omitempty"`
	// Addr is where the recorded kernel put the area (vmalloc, jit-alloc).
	Addr kernel.Size `json:"addr,omitempty" yaml:"addr,omitempty"`
	// Region (free-init): the one init region to free (mod_mem_type name);
	// empty: all of them.
	Region string `json:"region,omitempty" yaml:"region,omitempty"`
	// DeferInit (load): the init regions stay mapped until a free-init op.
	DeferInit bool `json:"defer_init,omitempty" yaml:"defer_init,omitempty"`
	// Regions are where the recorded kernel put a loaded module's regions.
	Regions map[string]kernel.Size `json:"regions,omitempty" yaml:"regions,omitempty,flow"`
	// RegionLines (load, pinned): the recording's line of each region's
	// allocation; the operations recorded between the load's first
	// allocation and a region's run before that region is allocated.
	RegionLines map[string]int `json:"region_lines,omitempty" yaml:"region_lines,omitempty,flow"`
}

// Specs turns the replay's modules into loader specs.
func (r *Replay) Specs() ([]kernel.ModuleSpec, error) {
	specs := make([]kernel.ModuleSpec, len(r.Modules))
	for i, m := range r.Modules {
		specs[i].Name = m.Name
		for name, sz := range m.Size {
			t, ok := modMemType(name)
			if !ok {
				return nil, fmt.Errorf("%w: module %s: unknown region %q", ErrScenario, m.Name, name)
			}
			specs[i].Size[t] = uint64(sz)
		}
	}
	return specs, nil
}

func modMemType(name string) (kernel.ModMemType, bool) {
	for t := kernel.ModMemType(0); t < kernel.NumModMemTypes; t++ {
		if t.String() == name {
			return t, true
		}
	}
	return 0, false
}

func execmemType(name string) (kernel.ExecmemType, bool) {
	for t := kernel.ExecmemType(0); t < kernel.NumExecmemTypes; t++ {
		if t.String() == name {
			return t, true
		}
	}
	return 0, false
}

func (r *Replay) validate() error {
	for i, o := range r.Ops {
		switch o.Op {
		case OpLoad, OpUnload, OpFreeInit:
			if o.Module < 0 || o.Module >= len(r.Modules) {
				return fmt.Errorf("%w: replay op %d (line %d): module %d of %d", ErrScenario, i, o.Line, o.Module, len(r.Modules))
			}
		case OpJITAlloc:
			if _, ok := execmemType(o.Type); !ok {
				return fmt.Errorf("%w: replay op %d (line %d): execmem type %q", ErrScenario, i, o.Line, o.Type)
			}
			if o.Size == 0 || o.Size > 1<<34 {
				return fmt.Errorf("%w: replay op %d (line %d): size %d", ErrScenario, i, o.Line, o.Size)
			}
		case OpVmalloc:
			if o.Size == 0 || o.Size > 1<<34 {
				return fmt.Errorf("%w: replay op %d (line %d): size %d", ErrScenario, i, o.Line, o.Size)
			}
		case OpJITFree, OpVfree, OpPurge:
		default:
			return fmt.Errorf("%w: replay op %d (line %d): unknown op %q", ErrScenario, i, o.Line, o.Op)
		}
		if i > 0 && o.At < r.Ops[i-1].At {
			return fmt.Errorf("%w: replay op %d (line %d) at %v before the previous one", ErrScenario, i, o.Line, time.Duration(o.At))
		}
	}
	return nil
}

const maxReplaySamples = 200

// reservePresentInvalid keeps the pages the imported linear map shows
// present-invalid or read-only out of the model's page allocator: the
// machine's kernel changed their linear alias because someone owns them (the
// kernel image's rodata, whose size the model's image layout does not know;
// on Debian's 7.3 kernel also the image's data/bss segment, whose alias is
// present-invalid and non-global; the pages of read-only vmalloc areas), so
// the replay must not hand them to vmalloc. Pages the model itself uses
// already are left alone.
func reservePresentInvalid(k *kernel.Kernel, im *kernel.Imported) error {
	if im == nil {
		return nil
	}
	ps := k.G.PageSize()
	for _, r := range im.Ranges {
		if r.Prot&arm64.PTEValid != 0 && r.Prot&arm64.PTERdonly == 0 {
			continue
		}
		for pa := r.PA; pa < r.PA+(r.End-r.Start); pa += ps {
			// A page the model uses already (its own image or tables) is
			// busy: it stays the model's, which is all the replay needs.
			if err := k.Mem.Reserve(pa, ps, physmem.OwnerReserved); err != nil && !errors.Is(err, physmem.ErrBusy) {
				return err
			}
		}
	}
	return nil
}

// ReplayState is the kernel a replay ran on, for callers that inspect it
// (the QEMU fidelity test dumps its tables).
type ReplayState struct {
	Kernel  *kernel.Kernel
	Modules []*kernel.Module
	// Misplaced lists, for a pinned replay, every module region the model
	// put elsewhere than the recorded kernel did.
	Misplaced []Misplaced
}

// Misplaced is a module region a pinned replay put elsewhere than the
// recorded kernel.
type Misplaced struct {
	Line            int // the load op's line in the recording
	Module, Region  string
	Model, Recorded uint64
}

func (m Misplaced) String() string {
	return fmt.Sprintf("line %d: %s %s at %#x, recorded at %#x", m.Line, m.Module, m.Region, m.Model, m.Recorded)
}

// RunReplay runs the scenario's Replay under one preset on a freshly booted
// kernel (from the scenario's imported dump when it names one), sampling
// metrics every SampleEvery and at the end. Operations the model refuses are
// listed in Result.Failed; operations on objects the replay never created are
// errors of the replay file.
func RunReplay(s *Scenario, preset string, progress Progress) (*Result, *ReplayState, error) {
	start := time.Now()
	if s.Replay == nil {
		return nil, nil, fmt.Errorf("%w: no replay", ErrScenario)
	}
	if err := s.Replay.validate(); err != nil {
		return nil, nil, err
	}
	specs, err := s.Replay.Specs()
	if err != nil {
		return nil, nil, err
	}
	cfg, err := s.MachineConfig(preset)
	if err != nil {
		return nil, nil, err
	}
	var im *kernel.Imported
	if s.Import != "" {
		if cfg, im, err = kernel.ImportFile(cfg, s.Import); err != nil {
			return nil, nil, err
		}
	}
	rp := s.Replay
	if rp.Pinned && rp.KASLR != 0 {
		cfg.Image.KASLR = rp.KASLR
	}
	k, err := kernel.BootImported(cfg, im)
	if err != nil {
		return nil, nil, err
	}
	if err := reservePresentInvalid(k, im); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.Import, err)
	}
	c := &kernel.PlainCPU{}
	if rp.Pinned {
		k.VM.TracedPurges = rp.hasPurges()
	}
	if rp.Pinned && len(rp.ModuleWindow) == 2 {
		for _, t := range []kernel.ExecmemType{kernel.ExecmemModuleText, kernel.ExecmemModuleData} {
			r := &k.Exec.Ranges[t]
			r.Start, r.End, r.FallbackStart, r.FallbackEnd = uint64(rp.ModuleWindow[0]), uint64(rp.ModuleWindow[1]), 0, 0
		}
	}
	// pin narrows an execmem range to exactly [addr, addr+span) for one
	// allocation.
	pin := func(t kernel.ExecmemType, addr, size uint64) func() {
		if !rp.Pinned || addr == 0 {
			return func() {}
		}
		r := &k.Exec.Ranges[t]
		saved := *r
		r.Start, r.End, r.FallbackStart, r.FallbackEnd = addr, addr+size+k.G.PageSize(), 0, 0
		return func() { *r = saved }
	}
	r := &Result{Preset: preset, Config: cfg, Events: len(s.Replay.Ops)}
	st := &ReplayState{Kernel: k, Modules: make([]*kernel.Module, len(specs))}
	jit := map[int]*kernel.JITText{}
	areas := map[int]uint64{}
	// Sample every SampleEvery, but at most maxReplaySamples times: a
	// census walks every table.
	var span time.Duration
	if n := len(s.Replay.Ops); n > 0 {
		span = time.Duration(s.Replay.Ops[n-1].At)
	}
	span = max(span, time.Duration(s.Work.Duration))
	every := max(time.Duration(s.Work.SampleEvery), span/maxReplaySamples, time.Millisecond)
	next := time.Duration(0)
	sample := func(at time.Duration) error {
		m, err := k.Metrics(c)
		if err != nil {
			return err
		}
		r.Series = append(r.Series, Sample{At: at, Metrics: m, Cache: k.Exec.CacheStats(), Collapse: k.Stats.Collapse})
		return nil
	}
	fail := func(o ReplayOp, err error) {
		if len(r.Failed) < 100 {
			r.Failed = append(r.Failed, fmt.Sprintf("%s at %v (line %d): %v", o.Op, time.Duration(o.At), o.Line, err))
		}
	}
	var end time.Duration
	// do runs one operation: refusals go to r.Failed, model errors are
	// returned.
	var do func(i int, o ReplayOp) error
	done := make([]bool, len(s.Replay.Ops))
	do = func(i int, o ReplayOp) error {
		switch o.Op {
		case OpLoad:
			if st.Modules[o.Module] != nil {
				fail(o, fmt.Errorf("%s is already loaded", specs[o.Module].Name))
				return nil
			}
			load := k.LoadModule
			if o.DeferInit {
				load = k.LoadModuleDeferInit
			}
			// move_module allocates region by region; what other CPUs
			// did in between (a purge releasing VA, say) runs in between.
			var inner error
			if rp.Pinned && len(o.RegionLines) > 0 {
				k.BeforeModuleAlloc = func(_ kernel.CPU, _ kernel.ModuleSpec, t kernel.ModMemType) error {
					line, ok := o.RegionLines[t.String()]
					for j := i + 1; ok && j < len(s.Replay.Ops) && s.Replay.Ops[j].Line < line; j++ {
						if done[j] {
							continue
						}
						if s.Replay.Ops[j].Op == OpLoad {
							break // another load: it runs after this one
						}
						done[j] = true
						if inner = do(j, s.Replay.Ops[j]); inner != nil {
							return inner
						}
					}
					return nil
				}
			}
			m, err := load(c, specs[o.Module])
			k.BeforeModuleAlloc = nil
			if inner != nil {
				return inner
			}
			if err != nil {
				fail(o, err)
				return nil
			}
			st.Modules[o.Module] = m
			if rp.Pinned {
				for name, want := range o.Regions {
					if t, ok := modMemType(name); ok && !t.IsInit() && m.Base[t] != uint64(want) {
						st.Misplaced = append(st.Misplaced, Misplaced{o.Line, specs[o.Module].Name, name, m.Base[t], uint64(want)})
					}
				}
			}
		case OpFreeInit:
			m := st.Modules[o.Module]
			if m == nil {
				fail(o, fmt.Errorf("%s is not loaded", specs[o.Module].Name))
				return nil
			}
			var err error
			if t, ok := modMemType(o.Region); ok && t.IsInit() {
				err = k.FreeModuleRegion(c, m, t)
			} else if o.Region != "" {
				err = fmt.Errorf("%w: region %q is not an init region", ErrScenario, o.Region)
			} else {
				err = k.FreeModuleInit(c, m)
			}
			if err != nil {
				return fmt.Errorf("line %d: %s: %w", o.Line, specs[o.Module].Name, err)
			}
		case OpUnload:
			m := st.Modules[o.Module]
			if m == nil {
				fail(o, fmt.Errorf("%s is not loaded", specs[o.Module].Name))
				return nil
			}
			if err := k.UnloadModule(c, m); err != nil {
				return fmt.Errorf("line %d: %s: %w", o.Line, specs[o.Module].Name, err)
			}
			st.Modules[o.Module] = nil
		case OpJITAlloc:
			t, _ := execmemType(o.Type)
			unpin := pin(t, uint64(o.Addr), o.Size)
			j, err := k.LoadJITText(c, t, o.Size)
			unpin()
			if err != nil {
				fail(o, err)
				return nil
			}
			jit[o.Object] = j
		case OpJITFree:
			j := jit[o.Object]
			if j == nil {
				fail(o, fmt.Errorf("object %d was never allocated", o.Object))
				return nil
			}
			if err := k.FreeJITText(c, j); err != nil {
				return fmt.Errorf("line %d: %w", o.Line, err)
			}
			delete(jit, o.Object)
		case OpVmalloc:
			var a *kernel.VMArea
			if rp.Pinned && o.Addr != 0 {
				ps := k.G.PageSize()
				sz := (o.Size + ps - 1) &^ (ps - 1)
				a, err = k.VmallocNodeRange(c, kernel.VmallocRequest{Size: sz, Start: uint64(o.Addr), End: uint64(o.Addr) + sz + ps, Caller: "replay"})
			} else {
				a, err = k.Vmalloc(c, o.Size)
			}
			if err != nil {
				fail(o, err)
				return nil
			}
			areas[o.Object] = a.Addr
		case OpVfree:
			addr, ok := areas[o.Object]
			if !ok {
				fail(o, fmt.Errorf("area %d was never allocated", o.Object))
				return nil
			}
			if err := k.Vfree(c, addr); err != nil {
				return fmt.Errorf("line %d: %w", o.Line, err)
			}
			delete(areas, o.Object)
		case OpPurge:
			if k.VM.TracedPurges {
				k.PurgeTraced(c, uint64(o.Addr), uint64(o.Addr)+o.Size)
			}
		}
		return nil
	}
	for i, o := range s.Replay.Ops {
		at := time.Duration(o.At)
		end = max(end, at)
		for next < at {
			if err := sample(next); err != nil {
				return nil, nil, err
			}
			next += every
		}
		if done[i] {
			continue
		}
		if err := do(i, o); err != nil {
			return nil, nil, err
		}
		if progress != nil && (i%64 == 0 || i == len(s.Replay.Ops)-1) {
			progress(i+1, len(s.Replay.Ops))
		}
	}
	end = max(end, time.Duration(s.Work.Duration))
	for next < end {
		if err := sample(next); err != nil {
			return nil, nil, err
		}
		next += every
	}
	if err := sample(end); err != nil {
		return nil, nil, err
	}
	last := r.Series[len(r.Series)-1]
	r.Final, r.Cache, r.Collapse = last.Metrics, last.Cache, last.Collapse
	r.PageUpdates = k.Stats.PageUpdates.Load()
	if s.CaptureDump {
		var buf bytes.Buffer
		if err := k.PtdumpWalk(c, &buf); err != nil {
			return nil, nil, err
		}
		r.Dump = buf.Bytes()
	}
	r.WallNS = time.Since(start).Nanoseconds()
	return r, st, nil
}

// hasPurges says whether the replay carries the recorded purges.
func (r *Replay) hasPurges() bool {
	for _, o := range r.Ops {
		if o.Op == OpPurge {
			return true
		}
	}
	return false
}

// ValidateReplay checks a scenario's replay without running it.
func ValidateReplay(s *Scenario) error {
	if s.Replay == nil {
		return nil
	}
	return s.Replay.validate()
}
