package trace

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/modscan"
	"github.com/ptlab/ptlab/workload"
)

// Options select what of a recording becomes the timeline.
type Options struct {
	// From and To name trace marks ("ptlab-mark NAME" written to
	// trace_marker): operations before From become the start state (time 0),
	// events after To are left out (and counted). Empty: the whole recording.
	From, To string
	// ModuleSizes gives the region sizes of a module the recording saw
	// loaded without its allocations (in the start snapshot, or with the
	// execmem probes missing); nil: workload.ModuleSpecs (Debian arm64 6.12).
	ModuleSizes func(name string) (kernel.ModuleSpec, bool)
	// Pinned makes the replay place every area at its recorded address
	// (workload.Replay.Pinned): for checking the model against the machine.
	Pinned bool
}

// Disposition says what became of one event.
type Disposition int

const (
	// AsOp: the event is a replay operation.
	AsOp Disposition = iota
	// Modelled: the event is part of an operation the model performs itself
	// (set_memory_* of a module load, the vmalloc area of an execmem_alloc).
	Modelled
	// Unmapped: the event has no counterpart in the model; Reason says why.
	Unmapped
	// Outside: the event lies outside the From/To window.
	Outside
)

// Mapping is the fate of one event.
type Mapping struct {
	Line   int
	Event  string
	Disp   Disposition
	Reason string
}

// Timeline is a recording turned into model operations.
type Timeline struct {
	Replay *workload.Replay
	// Mappings has one entry per event, in time order.
	Mappings []Mapping
	// Notes are facts about the conversion (KASLR offset, lost events,
	// missing probes, sizes taken from the module dataset).
	Notes []Issue
	// Start is the time stamp the timeline's zero stands for.
	Start uint64
}

// Unmapped returns the events that have no model counterpart.
func (t *Timeline) Unmapped() []Mapping {
	var out []Mapping
	for _, m := range t.Mappings {
		if m.Disp == Unmapped {
			out = append(out, m)
		}
	}
	return out
}

// Summary counts events per name and disposition.
func (t *Timeline) Summary() map[string][4]int {
	s := map[string][4]int{}
	for _, m := range t.Mappings {
		c := s[m.Event]
		c[m.Disp]++
		s[m.Event] = c
	}
	return s
}

const pageSize = 4096

// maxArea bounds the size of one area a recording may ask for (the replay
// validates against the same bound).
const maxArea = 1 << 34

// region is one module memory region or one JIT/vmalloc object.
type object struct {
	start, size uint64
	line        int
	kind        string // "module", "jit", "vmalloc"
	exType      int    // execmem type of the allocation
	mod         *modRec
	roBefore    bool // set_memory_ro before module_load (rodata)
	roAfter     bool // set_memory_ro after module_load (ro_after_init)
	freedLive   bool // freed while the module was loaded (an init region)
	opObject    int  // replay object number (jit, vmalloc)
	vaLine      int  // module memory: the line of its alloc_vmap_area
	live        bool
}

func (o *object) contains(a uint64) bool { return a >= o.start && a < o.start+max(o.size, 1) }

type modRec struct {
	op        int // index of its load op in Replay.Ops (-1: none)
	name      string
	regions   []*object
	index     int // into Replay.Modules
	loaded    bool
	dataset   bool // sizes from the dataset (no traced allocations)
	initFreed bool // do_free_init seen
	line      int
}

// freeInitOp is a free-init op waiting for its region's name.
type freeInitOp struct {
	op   int
	mod  *modRec
	addr uint64
}

type builder struct {
	rec     *Recording
	opt     Options
	tl      *Timeline
	rp      *workload.Replay
	objects []*object // every object ever created, for address lookup
	pendEx  map[int]*Event
	outerEx map[int]*Event // an execmem_alloc_rw waiting for the execmem_alloc it calls
	pendMod map[int][]*object
	// pendLoad: the load op of the module pid is loading, placed where its
	// first allocation happened (the model allocates all regions there), its
	// module filled in by module_load; -1 while unknown.
	pendLoad map[int]int
	// initFree: init regions execmem_free was called on, by address, until
	// their VA is released.
	initFree map[uint64]*modRec
	// initPurge: init regions whose VA was queued by free_vmap_area_noflush,
	// until a purge releases it.
	initPurge map[uint64]*modRec
	freeInit  []freeInitOp
	loaded    map[string]*modRec
	freeing   map[int]*modRec // pid -> module being freed by free_module
	vmaps     map[uint64]*object
	inFree    map[int]bool // pid is inside an execmem_free (vm_reset_perms follows)
	nextObj   int
	base      uint64
	started   bool // past the From mark
	// inSnapshot: between the "snapshot" and "start" marks the recorder
	// read the start snapshot with tracing on; an event there may or may
	// not be reflected in the snapshot.
	inSnapshot bool
	stopped    bool // past the To mark
	toAt       workload.Duration
	mods       []*modRec
}

// Build turns a recording into a replay timeline. Every event ends up as an
// operation, as part of one the model performs itself, or in the unmapped
// list with a reason.
func Build(rec *Recording, opt Options) (*Timeline, error) {
	b := &builder{rec: rec, opt: opt, tl: &Timeline{}, rp: &workload.Replay{Source: rec.Name},
		pendEx: map[int]*Event{}, outerEx: map[int]*Event{}, pendMod: map[int][]*object{}, pendLoad: map[int]int{}, initFree: map[uint64]*modRec{}, initPurge: map[uint64]*modRec{}, loaded: map[string]*modRec{},
		freeing: map[int]*modRec{}, vmaps: map[uint64]*object{}, inFree: map[int]bool{}}
	b.tl.Replay = b.rp
	b.rp.Pinned = opt.Pinned
	if off, ok := rec.Meta["KERNELOFFSET"]; ok {
		if v, err := parseHex(off); err == nil && v%(2<<20) == 0 && v < 1<<46 {
			b.rp.KASLR = kernel.Size(v)
		}
	}
	if b.opt.ModuleSizes == nil {
		b.opt.ModuleSizes = datasetSizes
	}
	if opt.From != "" || opt.To != "" {
		found := map[string]bool{}
		for _, e := range rec.Events {
			if name, ok := markName(e); ok {
				found[name] = true
			}
		}
		for _, m := range []string{opt.From, opt.To} {
			if m == "snapshot" || m == "start" && found["snapshot"] {
				return nil, fmt.Errorf("%s: %w: mark %q is the recorder's own", rec.Name, ErrFormat, m)
			}
			if m != "" && !found[m] {
				return nil, fmt.Errorf("%s: %w: no trace mark %q (ptlab-mark %s)", rec.Name, ErrFormat, m, m)
			}
		}
	}
	b.started = opt.From == ""
	for _, e := range rec.Events {
		if name, ok := markName(e); ok && name == "snapshot" {
			b.inSnapshot = rec.Start != nil
			break
		}
	}
	if len(rec.Events) > 0 && b.started {
		b.base = rec.Events[0].TS
	}
	b.notes()
	b.startState()
	for i := range rec.Events {
		b.event(&rec.Events[i])
	}
	b.finish()
	return b.tl, nil
}

// debian is the module dataset, read once (DebianModules clones it per call).
var debian = sync.OnceValues(modscan.DebianModules)

// datasetSizes is the region sizes of a module of the Debian arm64 6.12
// dataset, as workload.ModuleSpecs computes them.
func datasetSizes(name string) (kernel.ModuleSpec, bool) {
	d, err := debian()
	if err != nil {
		return kernel.ModuleSpec{}, false
	}
	m, ok := d.Lookup(name)
	if !ok {
		return kernel.ModuleSpec{}, false
	}
	spec := kernel.ModuleSpec{Name: m.Name}
	sizes := m.AllocSizes(pageSize)
	for t := range sizes {
		spec.Size[t] = sizes[t]
	}
	return spec, true
}

func markName(e Event) (string, bool) {
	if e.Name != "tracing_mark_write" && e.Name != "print" {
		return "", false
	}
	s := strings.TrimSpace(e.Args)
	if i := strings.Index(s, "ptlab-mark "); i >= 0 {
		return strings.TrimSpace(s[i+len("ptlab-mark "):]), true
	}
	return "", false
}

func (b *builder) note(line int, format string, args ...any) {
	b.tl.Notes = append(b.tl.Notes, Issue{Line: line, Msg: fmt.Sprintf(format, args...)})
}

// notes records what the reader should know about the recording itself.
func (b *builder) notes() {
	r := b.rec
	for _, p := range r.Probes {
		if !p.OK {
			b.note(p.Line, "probe %s unavailable: %s", p.Name, p.Detail)
		}
	}
	if r.Overruns > 0 {
		b.note(0, "the ring buffer lost %d events (overrun): the timeline is incomplete; record with a larger -b", r.Overruns)
	}
	if off, ok := r.Meta["KERNELOFFSET"]; ok {
		b.note(0, "KASLR: kernel image offset %s (VMCOREINFO). Addresses are resolved to objects within this boot (anchored on the start snapshot); the model places every object itself", off)
	}
	if r.Start != nil {
		for _, s := range r.Start.Symbols {
			if s.Name == "_text" {
				b.note(0, "kernel _text at %#x in the recorded boot", s.Addr)
			}
		}
	}
	for _, w := range r.Warnings {
		b.tl.Notes = append(b.tl.Notes, w)
	}
}

// startState loads the start snapshot's modules at time 0, oldest first
// (/proc/modules lists the newest first), with region sizes from the
// dataset and region bases from /sys/module/*/sections.
func (b *builder) startState() {
	if b.rec.Start == nil {
		return
	}
	b.startVmalloc()
	secs := map[string][]Section{}
	for _, s := range b.rec.Start.Sections {
		secs[s.Module] = append(secs[s.Module], s)
	}
	mods := b.rec.Start.Modules
	for i := len(mods) - 1; i >= 0; i-- {
		lm := mods[i]
		m := &modRec{name: lm.Name, line: lm.Line, dataset: true, op: -1}
		spec, ok := b.opt.ModuleSizes(lm.Name)
		if !ok {
			// Unknown module: the whole core size as text, so the address
			// space and the permission changes are still there.
			spec = kernel.ModuleSpec{Name: lm.Name}
			spec.Size[kernel.ModText] = (lm.Size + pageSize - 1) &^ (pageSize - 1)
			b.note(lm.Line, "module %s (start snapshot) is not in the module dataset: its %d bytes are replayed as text", lm.Name, lm.Size)
		}
		// Region bases: the text base from /proc/modules, the others from
		// the lowest section address of their kind.
		bases := map[kernel.ModMemType]uint64{kernel.ModText: lm.Addr}
		for _, s := range secs[lm.Name] {
			t := sectionRegion(s.Name)
			if t == kernel.ModText {
				continue
			}
			if a := s.Addr &^ (pageSize - 1); bases[t] == 0 || a < bases[t] {
				bases[t] = a
			}
		}
		for t := kernel.ModMemType(0); t < kernel.NumModMemTypes; t++ {
			if spec.Size[t] == 0 || t.IsInit() {
				continue
			}
			o := &object{start: bases[t], size: spec.Size[t], kind: "module", mod: m, line: lm.Line, live: true}
			if o.start == 0 {
				o.size = 0 // base unknown: matched by module only
			}
			m.regions = append(m.regions, o)
			b.objects = append(b.objects, o)
		}
		b.addModule(m, spec)
		m.loaded = true
		b.loaded[m.name] = m
		b.rp.Ops = append(b.rp.Ops, workload.ReplayOp{Op: workload.OpLoad, Module: m.index, Line: lm.Line})
	}
}

// startVmalloc replays the start snapshot's vmalloc areas (vmallocinfo's
// "vmalloc" kind: kernel stacks, BPF maps, ...) as vmalloc operations at time
// 0, so that their frees during the recording map to model areas. ioremap,
// vmap and other kinds map memory the model does not own; they are counted
// in a note. Module memory comes with the start modules instead.
func (b *builder) startVmalloc() {
	skipped := map[string]int{}
	for _, a := range b.rec.Start.Vmalloc {
		if a.Kind != "vmalloc" || a.Pages <= 0 || uint64(a.Pages) > maxArea/pageSize || strings.Contains(a.Caller, "execmem") || strings.Contains(a.Caller, "module") {
			k := a.Kind
			if k == "" {
				k = "unnamed"
			}
			skipped[k]++
			continue
		}
		b.nextObj++
		v := &object{start: a.Start, size: a.End - a.Start, line: a.Line, kind: "vmalloc", opObject: b.nextObj, live: true}
		b.vmaps[a.Start] = v
		b.rp.Ops = append(b.rp.Ops, workload.ReplayOp{Op: workload.OpVmalloc, Object: v.opObject, Size: uint64(a.Pages) * pageSize, Line: a.Line, Addr: kernel.Size(a.Start)})
	}
	if len(skipped) > 0 {
		var ks []string
		for k, n := range skipped {
			ks = append(ks, fmt.Sprintf("%d %s", n, k))
		}
		sort.Strings(ks)
		b.note(0, "start vmallocinfo areas not replayed (not vmalloc'ed pages, or module memory): %s", strings.Join(ks, ", "))
	}
}

// sectionRegion is the module memory region an ELF section lands in
// (layout_sections' rules, by section name).
func sectionRegion(name string) kernel.ModMemType {
	switch {
	case strings.HasPrefix(name, ".init.text") || strings.HasPrefix(name, ".exit.text"):
		return kernel.ModInitText
	case strings.HasPrefix(name, ".init"):
		return kernel.ModInitData
	case strings.HasPrefix(name, ".text") || strings.HasPrefix(name, ".noinstr") || name == ".plt" || name == ".text.ftrace_trampoline":
		return kernel.ModText
	case strings.HasPrefix(name, ".data..ro_after_init") || name == "__jump_table":
		return kernel.ModROAfterInit
	case strings.HasPrefix(name, ".rodata") || name == "__ksymtab" || strings.HasPrefix(name, "__ksymtab") ||
		strings.HasPrefix(name, "__kcrctab") || name == "__param" || name == "__ex_table" || name == ".note.gnu.build-id" || name == ".note.Linux":
		return kernel.ModRodata
	default:
		return kernel.ModData
	}
}

func (b *builder) addModule(m *modRec, spec kernel.ModuleSpec) {
	rm := workload.ReplayModule{Name: m.name, Size: map[string]kernel.Size{}}
	for t := kernel.ModMemType(0); t < kernel.NumModMemTypes; t++ {
		if spec.Size[t] != 0 {
			rm.Size[t.String()] = kernel.Size(spec.Size[t])
		}
	}
	m.index = len(b.rp.Modules)
	b.rp.Modules = append(b.rp.Modules, rm)
	b.mods = append(b.mods, m)
}

func (b *builder) at(e *Event) workload.Duration {
	if !b.started || e.TS < b.base {
		return 0
	}
	return workload.Duration(time.Duration(e.TS - b.base))
}

func (b *builder) op(e *Event, o workload.ReplayOp) {
	o.At = b.at(e)
	o.Line = e.Line
	b.rp.Ops = append(b.rp.Ops, o)
	b.tl.Mappings = append(b.tl.Mappings, Mapping{Line: e.Line, Event: e.Name, Disp: AsOp, Reason: o.Op})
}

func (b *builder) modelled(e *Event, format string, args ...any) {
	b.tl.Mappings = append(b.tl.Mappings, Mapping{Line: e.Line, Event: e.Name, Disp: Modelled, Reason: fmt.Sprintf(format, args...)})
}

func (b *builder) unmapped(e *Event, format string, args ...any) {
	b.tl.Mappings = append(b.tl.Mappings, Mapping{Line: e.Line, Event: e.Name, Disp: Unmapped, Reason: fmt.Sprintf(format, args...)})
}

// find returns the live object containing addr, newest first.
func (b *builder) find(addr uint64) *object {
	for i := len(b.objects) - 1; i >= 0; i-- {
		if o := b.objects[i]; o.live && o.size > 0 && o.contains(addr) {
			return o
		}
	}
	return nil
}

func hexArg(f map[string]string, k string) (uint64, error) {
	v, ok := f[k]
	if !ok {
		return 0, fmt.Errorf("no %s= argument", k)
	}
	return parseHex(v)
}

func decArg(f map[string]string, k string) (int64, error) {
	v, ok := f[k]
	if !ok {
		return 0, fmt.Errorf("no %s= argument", k)
	}
	x, err := strconv.ParseInt(v, 0, 64)
	if err != nil {
		u, uerr := strconv.ParseUint(v, 0, 64)
		if uerr != nil {
			return 0, fmt.Errorf("bad %s=%q", k, v)
		}
		x = int64(u)
	}
	return x, nil
}

func (b *builder) event(e *Event) {
	if name, ok := markName(*e); ok {
		if name == "start" {
			b.inSnapshot = false
		}
		if name == b.opt.From && !b.started {
			b.started = true
			b.base = e.TS
		}
		if name == b.opt.To && b.started {
			b.stopped = true
			b.toAt = b.at(e)
		}
		b.modelled(e, "trace mark %q", name)
		return
	}
	f := Fields(e.Args)
	if b.stopped {
		b.lookahead(e, f)
		b.tl.Mappings = append(b.tl.Mappings, Mapping{Line: e.Line, Event: e.Name, Disp: Outside, Reason: "after the --to mark " + b.opt.To})
		return
	}
	bad := func(err error) { b.unmapped(e, "malformed arguments (%v): %q", err, clip(e.Args)) }
	switch e.Name { // events of the vfree inside an execmem_free keep the pid "in free"
	case "set_direct_map_invalid", "set_direct_map_default", "set_direct_map_valid", "free_vmap_area_noflush", "purge_vmap_area_lazy",
		"split_kernel_leaf_mapping": // 6.18+ calls it inside set_direct_map_*
	default:
		delete(b.inFree, e.PID)
	}
	switch e.Name {
	case "execmem_alloc", "execmem_alloc_rw":
		if _, err := decArg(f, "type"); err != nil {
			bad(err)
			return
		}
		if _, err := decArg(f, "size"); err != nil {
			bad(err)
			return
		}
		if p := b.pendEx[e.PID]; p != nil {
			if p.Name == e.Name {
				b.unmapped(p, "%s without a return event (lost, or the task was interrupted)", p.Name)
			} else {
				// execmem_alloc_rw calls execmem_alloc: the outer call waits.
				b.outerEx[e.PID] = p
			}
		}
		b.pendEx[e.PID] = e
	case "execmem_alloc_ret", "execmem_alloc_rw_ret":
		b.execmemRet(e, f)
	case "execmem_free":
		addr, err := hexArg(f, "addr")
		if err != nil {
			bad(err)
			return
		}
		if b.execmemFree(e, addr) {
			b.inFree[e.PID] = true
		}
	case "module_load":
		b.moduleLoad(e)
	case "module_free":
		b.moduleFree(e)
	case "set_memory_ro", "set_memory_rw", "set_memory_x", "set_memory_nx", "set_memory_valid":
		addr, err := hexArg(f, "addr")
		if err != nil {
			bad(err)
			return
		}
		if _, err := decArg(f, "numpages"); err != nil {
			bad(err)
			return
		}
		b.setMemory(e, addr)
	case "set_direct_map_invalid", "set_direct_map_default", "set_direct_map_valid":
		if _, err := hexArg(f, "page"); err != nil {
			bad(err)
			return
		}
		switch {
		case b.inFree[e.PID]:
			b.modelled(e, "vm_reset_perms of the area execmem_free released (modelled by vfree)")
		case b.freeing[e.PID] != nil:
			b.modelled(e, "vm_reset_perms while freeing module %s (modelled by UnloadModule)", b.freeing[e.PID].name)
		default:
			b.unmapped(e, "struct page %s outside a modelled free: the model does not know this page's owner", f["page"])
		}
	case "split_kernel_leaf_mapping":
		b.modelled(e, "the model splits leaf mappings by its own rules (compare the split counters)")
	case "bpf_prog_pack_alloc", "bpf_prog_pack_alloc_ret", "bpf_prog_pack_free":
		b.modelled(e, "a program inside a BPF pack: no page-table change (the pack itself is an execmem allocation)")
	case "alloc_vmap_area":
		b.allocVmap(e, f)
	case "free_vmap_area_noflush":
		b.freeVmap(e, f)
	case "purge_vmap_area_lazy":
		b.purge(e, f)
	case "tracing_mark_write", "print":
		b.unmapped(e, "trace marker text, not a ptlab mark")
	default:
		b.unmapped(e, "unknown event (not one the ptlab recorder defines)")
	}
}

func (b *builder) execmemRet(e *Event, f map[string]string) {
	ret, err := hexArg(f, "ret")
	if err != nil {
		b.unmapped(e, "malformed arguments (%v): %q", err, clip(e.Args))
		return
	}
	p := b.pendEx[e.PID]
	delete(b.pendEx, e.PID)
	if outer := b.outerEx[e.PID]; outer != nil && p != nil && p.Name+"_ret" == e.Name {
		// The return of the inner execmem_alloc: the outer one is pending again.
		delete(b.outerEx, e.PID)
		b.pendEx[e.PID] = outer
	} else if p != nil && ret != 0 {
		// The return of a wrapper whose inner allocation was mapped already.
		if o := b.find(ret); o != nil && o.start == ret && o.line > p.Line {
			b.modelled(p, "%s wrapping the execmem_alloc at %#x (line %d)", p.Name, ret, o.line)
			b.modelled(e, "return of the %s wrapper (line %d)", p.Name, p.Line)
			return
		}
	}
	if p == nil {
		b.unmapped(e, "execmem_alloc return without its entry event (lost, or before the recording)")
		return
	}
	pf := Fields(p.Args)
	typ, _ := decArg(pf, "type")
	size, _ := decArg(pf, "size")
	if ret == 0 {
		b.unmapped(e, "execmem_alloc(type %d, %d bytes) failed in the kernel", typ, size)
		b.unmapped(p, "entry of the failed execmem_alloc at line %d", e.Line)
		return
	}
	if typ < 0 || typ >= int64(kernel.NumExecmemTypes) || size <= 0 || size > maxArea {
		b.unmapped(e, "execmem_alloc type %d size %d out of range", typ, size)
		b.unmapped(p, "entry of execmem_alloc at line %d (out of range)", e.Line)
		return
	}
	o := &object{start: ret, size: (uint64(size) + pageSize - 1) &^ (pageSize - 1), line: e.Line, exType: int(typ), live: true}
	if v := b.vmaps[ret]; v != nil && v.kind == "execmem" {
		v.opObject = -1 // claimed
		o.vaLine = v.line
	}
	b.objects = append(b.objects, o)
	switch kernel.ExecmemType(typ) {
	case kernel.ExecmemModuleText, kernel.ExecmemModuleData:
		o.kind = "module"
		if _, ok := b.pendLoad[e.PID]; !ok {
			b.pendLoad[e.PID] = len(b.rp.Ops)
			b.rp.Ops = append(b.rp.Ops, workload.ReplayOp{Op: workload.OpLoad, Module: -1, At: b.at(e), Line: e.Line})
		}
		b.pendMod[e.PID] = append(b.pendMod[e.PID], o)
		b.modelled(p, "module memory (%v, %d bytes) for the next module_load of pid %d", kernel.ExecmemType(typ), size, e.PID)
		b.modelled(e, "module memory at %#x", ret)
	default:
		o.kind = "jit"
		b.nextObj++
		o.opObject = b.nextObj
		b.modelled(p, "entry of the %v allocation at line %d", kernel.ExecmemType(typ), e.Line)
		b.op(e, workload.ReplayOp{Op: workload.OpJITAlloc, Object: o.opObject, Type: kernel.ExecmemType(typ).String(), Size: uint64(size), Addr: kernel.Size(ret)})
	}
}

// purge is a purge_vmap_area_lazy: init regions whose VA it releases are
// freed in the model now (do_free_init's FreeModuleInit); otherwise the model
// purges by its own lazy_max_pages rule.
func (b *builder) purge(e *Event, f map[string]string) {
	start, err1 := hexArg(f, "start")
	end, err2 := hexArg(f, "end")
	n, _ := decArg(f, "num_purged")
	emitted := false
	if err1 == nil && err2 == nil && n > 0 {
		var addrs []uint64
		for a := range b.initPurge {
			if start <= a && a < end {
				addrs = append(addrs, a)
			}
		}
		sort.Slice(addrs, func(i, j int) bool { return addrs[i] < addrs[j] })
		for _, a := range addrs {
			m := b.initPurge[a]
			delete(b.initPurge, a)
			if m.op < 0 || !m.loaded {
				continue
			}
			b.rp.Ops[m.op].DeferInit = true
			// The region is named in finish, once classified.
			b.freeInit = append(b.freeInit, freeInitOp{op: len(b.rp.Ops), mod: m, addr: a})
			if !emitted {
				b.op(e, workload.ReplayOp{Op: workload.OpFreeInit, Module: m.index})
				emitted = true
			} else {
				b.rp.Ops = append(b.rp.Ops, workload.ReplayOp{Op: workload.OpFreeInit, Module: m.index, At: b.at(e), Line: e.Line})
			}
		}
	}
	if b.opt.Pinned && err1 == nil && err2 == nil && n > 0 && start < end {
		// A pinned replay releases lazily freed VA only here, as the
		// recorded kernel did: until then a module cannot land on it.
		o := workload.ReplayOp{Op: workload.OpPurge, Addr: kernel.Size(start), Size: end - start}
		if !emitted {
			b.op(e, o)
			return
		}
		o.At, o.Line = b.at(e), e.Line
		b.rp.Ops = append(b.rp.Ops, o)
		return
	}
	if !emitted {
		b.modelled(e, "lazy purge: the model purges by its own lazy_max_pages rule")
	}
}

// lookahead reads an event after the To mark only for what it tells about
// the regions of modules loaded before it: an init region freed after its
// init, ro_after_init sealed.
func (b *builder) lookahead(e *Event, f map[string]string) {
	if e.Name != "execmem_free" && e.Name != "set_memory_ro" {
		return
	}
	addr, err := hexArg(f, "addr")
	if err != nil {
		return
	}
	o := b.find(addr)
	if o == nil || o.kind != "module" || o.mod == nil || !o.mod.loaded {
		return
	}
	switch e.Name {
	case "execmem_free":
		if o.start == addr && b.freeing[e.PID] != o.mod {
			o.freedLive = true
			if b.opt.Pinned && o.mod.op >= 0 {
				// do_free_init ran after the window: through it the init
				// region was allocated and its VA busy (no purge in the
				// window may release it); it is freed at the end, as the
				// capture that follows the mark mostly sees it.
				// Every init region the window left: do_free_init frees
				// them together; the ones freed already are skipped.
				b.rp.Ops[o.mod.op].DeferInit = true
				b.rp.Ops = append(b.rp.Ops, workload.ReplayOp{Op: workload.OpFreeInit, Module: o.mod.index, At: b.toAt, Line: e.Line})
			}
		}
	case "set_memory_ro":
		o.roAfter = true
	}
}

func (b *builder) execmemFree(e *Event, addr uint64) bool {
	if addr == 0 {
		b.modelled(e, "execmem_free(NULL) of an empty region: a no-op")
		return false
	}
	o := b.find(addr)
	if o != nil && o.start != addr {
		o = nil // execmem_free takes the start of an allocation
	}
	switch {
	case o != nil && o.kind == "jit":
		o.live = false
		b.op(e, workload.ReplayOp{Op: workload.OpJITFree, Object: o.opObject})
	case o != nil && o.kind == "module" && o.mod == nil:
		o.live = false
		b.unmapped(e, "module memory at %#x freed before any module_load claimed it (a failed load)", addr)
		b.dropPending(e.PID, o)
	case o != nil && o.kind == "module":
		o.live = false
		if o.mod.loaded && b.freeing[e.PID] != o.mod {
			o.freedLive = true
			// do_free_init: the model frees every init region when the
			// kernel released the first one's VA (free_vmap_area_noflush):
			// until then the area is busy, however long the worker takes.
			b.initFree[addr] = o.mod
			b.modelled(e, "init region of %s freed by do_free_init (FreeModuleInit at its VA release)", o.mod.name)
		} else {
			b.modelled(e, "region of %s freed by free_module (UnloadModule)", o.mod.name)
		}
	case b.freeing[e.PID] != nil:
		b.modelled(e, "region of %s freed by free_module (region base unknown from the start snapshot)", b.freeing[e.PID].name)
	default:
		b.unmapped(e, "execmem_free(%#x): no allocation at this address in the recording or the start snapshot", addr)
		return false
	}
	return true
}

func (b *builder) dropPending(pid int, o *object) {
	p := b.pendMod[pid]
	for i, x := range p {
		if x == o {
			b.pendMod[pid] = append(p[:i:i], p[i+1:]...)
			break
		}
	}
	if len(b.pendMod[pid]) == 0 {
		delete(b.pendLoad, pid) // a failed load: its placeholder op is dropped in finish
	}
}

func (b *builder) moduleLoad(e *Event) {
	name := strings.Fields(e.Args)
	if len(name) == 0 {
		b.unmapped(e, "module_load without a module name")
		return
	}
	if old := b.loaded[name[0]]; old != nil && old.loaded {
		b.unmapped(e, "module_load of %s, which is loaded already (line %d)", name[0], old.line)
		return
	}
	m := &modRec{name: name[0], line: e.Line, regions: b.pendMod[e.PID], loaded: true}
	delete(b.pendMod, e.PID)
	slot, hasSlot := b.pendLoad[e.PID]
	delete(b.pendLoad, e.PID)
	for _, o := range m.regions {
		o.mod = m
	}
	if len(m.regions) == 0 {
		spec, ok := b.opt.ModuleSizes(m.name)
		if !ok {
			b.unmapped(e, "module_load of %s: no traced allocations (execmem probes missing?) and not in the module dataset", m.name)
			return
		}
		m.dataset = true
		b.note(e.Line, "module %s: no traced allocations; region sizes from the module dataset", m.name)
		b.addModule(m, spec)
	} else {
		b.addModule(m, kernel.ModuleSpec{Name: m.name}) // sizes filled in by finish, once init regions are known
	}
	b.loaded[m.name] = m
	if hasSlot && len(m.regions) > 0 {
		// The model allocates all regions at once: at the first allocation,
		// so later frees (another module's init regions) come after it as
		// they did in the kernel.
		m.op = slot
		b.rp.Ops[slot].Module = m.index
		b.tl.Mappings = append(b.tl.Mappings, Mapping{Line: e.Line, Event: e.Name, Disp: AsOp, Reason: fmt.Sprintf("load, at its first allocation (line %d)", b.rp.Ops[slot].Line)})
		return
	}
	m.op = len(b.rp.Ops)
	b.op(e, workload.ReplayOp{Op: workload.OpLoad, Module: m.index})
}

func (b *builder) moduleFree(e *Event) {
	name := strings.Fields(e.Args)
	if len(name) == 0 {
		b.unmapped(e, "module_free without a module name")
		return
	}
	m := b.loaded[name[0]]
	if m == nil || !m.loaded {
		b.unmapped(e, "module_free of %s, which the recording never saw loaded (no start snapshot entry, no module_load)", name[0])
		return
	}
	m.loaded = false
	b.freeing[e.PID] = m
	for _, o := range m.regions {
		if o.start == 0 {
			o.live = false
		}
	}
	b.op(e, workload.ReplayOp{Op: workload.OpUnload, Module: m.index})
}

func (b *builder) setMemory(e *Event, addr uint64) {
	o := b.find(addr)
	switch {
	case o == nil:
		if v := b.findVmap(addr); v != nil {
			b.unmapped(e, "%#x is in a vmalloc area (line %d) the model replays as plain vmalloc: its owner's permission changes are not modelled", addr, v.line)
			return
		}
		b.unmapped(e, "%#x is in no object the recording allocated (module, execmem, vmalloc)", addr)
	case o.kind == "module" && o.mod == nil:
		if e.Name == "set_memory_ro" {
			o.roBefore = true
		}
		b.modelled(e, "complete_formation of the module being loaded by pid %d (LoadModule)", e.PID)
	case o.kind == "module":
		if e.Name == "set_memory_ro" && o.mod.loaded {
			o.roAfter = true
		}
		b.modelled(e, "%s of module %s (LoadModule/UnloadModule)", e.Name, o.mod.name)
	case o.kind == "jit":
		b.modelled(e, "seal of the %v allocation at line %d (LoadJITText)", kernel.ExecmemType(o.exType), o.line)
	default:
		b.unmapped(e, "%#x: object kind %s has no permission model", addr, o.kind)
	}
}

func (b *builder) findVmap(addr uint64) *object {
	for _, v := range b.vmaps {
		if v.contains(addr) {
			return v
		}
	}
	return nil
}

func (b *builder) allocVmap(e *Event, f map[string]string) {
	a, err := decArg(f, "va_start")
	if err != nil {
		b.unmapped(e, "malformed arguments (%v): %q", err, clip(e.Args))
		return
	}
	size, err := decArg(f, "size")
	if err != nil || size <= 0 || size > maxArea {
		b.unmapped(e, "malformed arguments (size out of range): %q", clip(e.Args))
		return
	}
	if fl, _ := decArg(f, "failed"); fl != 0 {
		b.unmapped(e, "alloc_vmap_area failed in the kernel (%d bytes)", size)
		return
	}
	addr := uint64(a)
	if v := b.vmaps[addr]; v != nil && b.inSnapshot && v.line < e.Line && v.kind == "vmalloc" {
		b.modelled(e, "allocated while the start snapshot was read: the snapshot has it (line %d)", v.line)
		return
	}
	if p := b.pendEx[e.PID]; p != nil {
		t, _ := decArg(Fields(p.Args), "type")
		module := kernel.ExecmemType(t) == kernel.ExecmemModuleText || kernel.ExecmemType(t) == kernel.ExecmemModuleData
		if module && len(b.rp.ModuleWindow) == 0 {
			vs, err1 := hexArg(f, "vstart")
			ve, err2 := hexArg(f, "vend")
			if err1 == nil && err2 == nil && vs < ve {
				b.rp.ModuleWindow = []kernel.Size{kernel.Size(vs), kernel.Size(ve)}
			}
		}
		if _, ok := b.pendLoad[e.PID]; module && !ok {
			// The load's slot is where its first region took its VA: the
			// kretprobe of execmem_alloc can fire much later (a preempted
			// vCPU), after other CPUs freed and purged VA the kernel could
			// not have used for it.
			b.pendLoad[e.PID] = len(b.rp.Ops)
			b.rp.Ops = append(b.rp.Ops, workload.ReplayOp{Op: workload.OpLoad, Module: -1, At: b.at(e), Line: e.Line})
		}
		b.vmaps[addr] = &object{start: addr, size: uint64(size), line: e.Line, kind: "execmem", live: true}
		b.modelled(e, "the vmalloc area of the execmem_alloc at line %d", p.Line)
		return
	}
	// Another vmalloc/vmap user. The size includes the guard page
	// (__get_vm_area_node adds it unless VM_NO_GUARD).
	n := uint64(size)
	if n > pageSize {
		n -= pageSize
	}
	b.nextObj++
	v := &object{start: addr, size: uint64(size), line: e.Line, kind: "vmalloc", opObject: b.nextObj, live: true}
	b.vmaps[addr] = v
	b.op(e, workload.ReplayOp{Op: workload.OpVmalloc, Object: v.opObject, Size: n, Addr: kernel.Size(addr)})
}

func (b *builder) freeVmap(e *Event, f map[string]string) {
	a, err := decArg(f, "va_start")
	if err != nil {
		b.unmapped(e, "malformed arguments (%v): %q", err, clip(e.Args))
		return
	}
	addr := uint64(a)
	v := b.vmaps[addr]
	if m := b.initFree[addr]; m != nil {
		// The VA stays busy until a purge covers it (vm_reset_perms purges
		// right after, but another CPU may allocate in between): the model,
		// whose vfree purges at once, frees the init regions at that purge.
		delete(b.initFree, addr)
		delete(b.vmaps, addr)
		b.initPurge[addr] = m
		b.modelled(e, "an init region of %s queued for purge (FreeModuleInit at the purge)", m.name)
		return
	}
	switch {
	case v != nil && v.kind == "vmalloc":
		delete(b.vmaps, addr)
		b.op(e, workload.ReplayOp{Op: workload.OpVfree, Object: v.opObject})
	case v != nil:
		delete(b.vmaps, addr)
		b.modelled(e, "the vfree inside execmem_free of %#x", addr)
	case b.inFree[e.PID] || b.freeing[e.PID] != nil:
		b.modelled(e, "the vfree inside execmem_free of %#x", addr)
	case b.inSnapshot:
		b.modelled(e, "freed while the start snapshot was read, before it read this area")
	default:
		reason := "never allocated in the recording"
		if b.rec.Start != nil {
			for _, s := range b.rec.Start.Vmalloc {
				if s.Start == addr {
					reason = fmt.Sprintf("allocated before the recording (start vmallocinfo line %d, %s): not in the model's start state", s.Line, s.Caller)
					break
				}
			}
		}
		b.unmapped(e, "vmap area %#x freed: %s", addr, reason)
	}
}

// finish sizes the traced modules from their allocations and lists what
// never completed.
func (b *builder) finish() {
	for pid, p := range b.pendEx {
		b.unmapped(p, "execmem_alloc of pid %d never returned within the recording", pid)
	}
	for pid, objs := range b.pendMod {
		for _, o := range objs {
			b.note(o.line, "module memory at %#x (pid %d) never claimed by a module_load: a failed or unfinished load", o.start, pid)
		}
	}
	for _, m := range b.mods {
		if m.dataset {
			continue
		}
		sizes, bases, warn := classify(m.regions)
		if warn != "" {
			b.note(m.line, "module %s: %s", m.name, warn)
		}
		rm := &b.rp.Modules[m.index]
		var regions map[string]kernel.Size
		for t, sz := range sizes {
			if sz != 0 {
				rm.Size[kernel.ModMemType(t).String()] = kernel.Size(sz)
				if regions == nil {
					regions = map[string]kernel.Size{}
				}
				regions[kernel.ModMemType(t).String()] = kernel.Size(bases[t])
			}
		}
		if m.op >= 0 {
			b.rp.Ops[m.op].Regions = regions
			if b.opt.Pinned {
				lines := map[string]int{}
				for t, sz := range sizes {
					for _, o := range m.regions {
						if sz != 0 && o.start == bases[t] {
							// Where the region took its VA.
							l := o.line
							if o.vaLine > 0 {
								l = o.vaLine
							}
							lines[kernel.ModMemType(t).String()] = l
						}
					}
				}
				b.rp.Ops[m.op].RegionLines = lines
			}
		}
		for _, f := range b.freeInit {
			if f.mod != m {
				continue
			}
			for t, base := range bases {
				if base == f.addr && sizes[t] != 0 && kernel.ModMemType(t).IsInit() {
					b.rp.Ops[f.op].Region = kernel.ModMemType(t).String()
				}
			}
		}
	}
	// Drop the load slots of loads that never completed.
	ops := b.rp.Ops[:0]
	for _, o := range b.rp.Ops {
		if o.Op == workload.OpLoad && o.Module < 0 {
			continue
		}
		ops = append(ops, o)
	}
	b.rp.Ops = ops
	sort.SliceStable(b.tl.Mappings, func(i, j int) bool { return b.tl.Mappings[i].Line < b.tl.Mappings[j].Line })
}

// classify assigns a module's allocations (in module_memory_alloc's order:
// text, data, rodata, ro_after_init, init_text, init_data, init_rodata, each
// only if non-empty) to regions: text-type allocations are text then
// init_text; data-type ones freed while the module was loaded are init
// regions; set_memory_ro before module_load marks rodata, after it
// ro_after_init.
func classify(regions []*object) (sizes, bases [kernel.NumModMemTypes]uint64, _ string) {
	var warn []string
	put := func(t kernel.ModMemType, o *object) {
		if sizes[t] != 0 {
			warn = append(warn, fmt.Sprintf("two allocations classified as %v (%#x); the second is added to it", t, o.start))
		} else {
			bases[t] = o.start
		}
		sizes[t] += o.size
	}
	texts := 0
	for _, o := range regions {
		if kernel.ExecmemType(o.exType) == kernel.ExecmemModuleText {
			if texts == 0 && !o.freedLive {
				put(kernel.ModText, o)
			} else {
				put(kernel.ModInitText, o)
			}
			texts++
			continue
		}
		switch {
		case o.freedLive && o.roBefore:
			put(kernel.ModInitRodata, o)
		case o.freedLive:
			put(kernel.ModInitData, o)
		case o.roBefore:
			put(kernel.ModRodata, o)
		case o.roAfter:
			put(kernel.ModROAfterInit, o)
		default:
			put(kernel.ModData, o)
		}
	}
	return sizes, bases, strings.Join(warn, "; ")
}
