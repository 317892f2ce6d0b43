package check

import (
	"errors"
	"fmt"
	"slices"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
)

// Violation is one invariant failure found while CPUs run: what broke,
// where (a VA or a PA, as Addr says), on which CPU and at which step of the
// schedule. It wraps ErrViolation.
type Violation struct {
	Kind Kind // the invariant (Registry)
	Addr uint64
	CPU  int // the CPU whose action broke it (-1: none in particular)
	Step int // the schedule step at which it was found (-1: at the end)
	Msg  string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("%v: %s at %#x: %s", ErrViolation, v.Kind, v.Addr, v.Msg)
}

func (v *Violation) Unwrap() error { return ErrViolation }

// Range is a VA range [Start, End).
type Range struct{ Start, End uint64 }

// Translation is what a VA maps to through the tables (or a TLB) and what
// the kernel may do through it.
type Translation struct {
	PA                 uint64
	Valid, Write, Exec bool
}

func (t Translation) String() string {
	if !t.Valid {
		return "unmapped"
	}
	p := []byte("r--")
	if t.Write {
		p[1] = 'w'
	}
	if t.Exec {
		p[2] = 'x'
	}
	return fmt.Sprintf("%#x %s", t.PA, p)
}

// OpInfo is what the monitor knows of a scenario operation.
type OpInfo struct {
	Name string
	// Footprint is where the operation changes intended translations
	// (permissions): its object's pages, through every alias.
	Footprint []Range
	// Racy: the result depends on the interleaving (an access racing with a
	// permission change), so it is not compared with the serial run.
	Racy bool
}

type opKey struct{ cpu, op int }

type pageIntent struct {
	va uint64
	t  Translation
}

// Oracle holds the intended outcome of every operation of a scenario: the
// translations of its footprint and its error when the CPUs run one after
// another. Operations of different CPUs have disjoint footprints, so the
// serial outcome is what every interleaving must produce.
type Oracle struct {
	after map[opKey][]pageIntent
	errs  map[opKey]error
}

// group follows the translations of one PMD-sized, PMD-aligned VA region.
type group struct {
	va   uint64
	up   [5]uint64 // descriptor addresses read above the last level (by level+1)
	pte  uint64    // the last-level table, 0 when a block or nothing maps the region
	ref  []Translation
	flux []uint8 // operations in progress that may change the page
}

// Monitor checks the invariants at every step of one run of CPUs over a
// kernel: translation equivalence against a reference map (every split and
// collapse keeps VA → PA and permissions, operations change only their
// footprint and end with the serial outcome), no stale permissive TLB entry
// when an operation returns, no conflicting TLB entries on CPUs without
// BBML2_NOABORT, no table page freed while a walk cache or a walker can reach
// it, no store into a table that is no longer reachable (a lost update), W^X
// across aliases, and at the end physmem accounting and table leaks.
//
// It is driven by the cpu package's Hook calls (Before/After), through the
// explorer, which sets Step. In record mode it only builds the Oracle.
type Monitor struct {
	K *kernel.Kernel
	M *cpu.Machine
	// Step is the schedule step being performed (set by the driver).
	Step int
	// Exempt exempts vm areas from the W^X check.
	Exempt Exemption

	g        *arm64.Geometry
	raw      pgtable.Atomic
	groups   []group
	ops      [][]OpInfo
	cur      []int
	oracle   *Oracle
	record   bool
	err      *Violation
	nonBBML2 bool
	// alias maps the PA of every tracked page outside the linear map to
	// its VA (a PA never changes under a split or collapse): the per-step
	// W^X check finds the executable mapping of a linear page through it.
	// Shared with the Start, read-only.
	alias    map[uint64]uint64
	aliasPAs []uint64
	owners   []physmem.Owner // directMap's scratch, one per aliasPAs entry
	memo     regionMemo
	pmdSize  uint64
	ps       uint64
}

// Start is what a monitor starts from: the reference translation of every
// page of the PMD-sized regions the tracked ranges touch, read from the
// tables, and the VA of every tracked page outside the linear map by its PA.
// It is read-only once built, so the explorer reads it once and starts the
// monitor of every run from it: each run restores the same snapshot and
// runs the same deterministic setup, so the tables are the same at every
// run's start (TestMonitorStartSameEveryRun checks it).
type Start struct {
	tracked []Range
	groups  []group // flux unused
	alias   map[uint64]uint64
	// aliasPAs are alias's keys in ascending order (directMap reports the
	// first violation deterministically).
	aliasPAs []uint64
}

// NewStart reads the reference translations of the tracked ranges from k's
// tables.
func NewStart(k *kernel.Kernel, tracked []Range) *Start {
	mo := &Monitor{K: k, g: &k.G, pmdSize: k.G.Size(arm64.LevelPMD), ps: k.G.PageSize()}
	st := &Start{tracked: slices.Clone(tracked), alias: map[uint64]uint64{}}
	n := int(mo.pmdSize / mo.ps)
	for _, r := range tracked {
		for va := r.Start &^ (mo.pmdSize - 1); va < r.End; va += mo.pmdSize {
			if slices.ContainsFunc(st.groups, func(g group) bool { return g.va == va }) {
				continue
			}
			st.groups = append(st.groups, group{va: va, ref: make([]Translation, n)})
			gr := &st.groups[len(st.groups)-1]
			mo.scan(gr, 0, n, func(i int, t Translation) {
				gr.ref[i] = t
				if va := gr.va + uint64(i)*mo.ps; t.Valid && !k.Layout.IsLinear(va) {
					st.alias[t.PA&^(mo.ps-1)] = va
				}
			})
		}
	}
	st.aliasPAs = make([]uint64, 0, len(st.alias))
	for pa := range st.alias {
		st.aliasPAs = append(st.aliasPAs, pa)
	}
	slices.Sort(st.aliasPAs)
	return st
}

// Tracked reports whether s was read for these tracked ranges.
func (s *Start) Tracked(tracked []Range) bool { return slices.Equal(s.tracked, tracked) }

// NewMonitor follows the translations of every PMD-sized region that the
// tracked ranges touch, starting from the current tables as the reference.
// ops are the operations of each CPU's thread. With a nil oracle the monitor
// records one (a serial run); otherwise it checks against it.
func NewMonitor(k *kernel.Kernel, m *cpu.Machine, tracked []Range, ops [][]OpInfo, oracle *Oracle) *Monitor {
	return NewMonitorFrom(NewStart(k, tracked), k, m, ops, oracle)
}

// NewMonitorFrom is NewMonitor starting from st, which must have been read
// (NewStart) from tables equal to k's now.
func NewMonitorFrom(st *Start, k *kernel.Kernel, m *cpu.Machine, ops [][]OpInfo, oracle *Oracle) *Monitor {
	mo := &Monitor{K: k, M: m, g: &k.G, ops: ops, oracle: oracle, pmdSize: k.G.Size(arm64.LevelPMD), ps: k.G.PageSize(),
		alias: st.alias, aliasPAs: st.aliasPAs}
	if oracle == nil {
		mo.record = true
		mo.oracle = &Oracle{after: map[opKey][]pageIntent{}, errs: map[opKey]error{}}
	}
	mo.cur = make([]int, len(m.CPUs))
	for i := range mo.cur {
		mo.cur[i] = -1
	}
	for _, c := range m.CPUs {
		mo.nonBBML2 = mo.nonBBML2 || !c.BBML2
	}
	// The reference changes as operations end (opEnd), and flux as they run:
	// both are the run's own.
	n := int(mo.pmdSize / mo.ps)
	mo.groups = make([]group, len(st.groups))
	for i, g := range st.groups {
		g.ref = slices.Clone(g.ref)
		g.flux = make([]uint8, n)
		mo.groups[i] = g
	}
	return mo
}

// Oracle returns the oracle recorded by a record-mode monitor.
func (mo *Monitor) Oracle() *Oracle { return mo.oracle }

// Err is the first violation found, or nil.
func (mo *Monitor) Err() error {
	if mo.err == nil {
		return nil
	}
	return mo.err
}

// Violation is the first violation found, or nil.
func (mo *Monitor) Violation() *Violation { return mo.err }

// CurrentOp is the index of the operation CPU c is running, or -1.
func (mo *Monitor) CurrentOp(c int) int { return mo.cur[c] }

// fail records a violation found by the monitor itself; report is the one
// path every violation takes, the whole-state checks' too.
func (mo *Monitor) fail(kind Kind, addr uint64, c int, format string, args ...any) {
	mo.report(&Violation{Kind: kind, Addr: addr, CPU: c, Step: mo.Step, Msg: fmt.Sprintf(format, args...)})
}

// report records v as the run's violation unless one is already recorded
// (the first one counts) or the monitor only records an oracle.
func (mo *Monitor) report(v *Violation) {
	if mo.err != nil || mo.record || v == nil {
		return
	}
	mo.err = v
}

// reportErr records the result of a whole-state check (WX, ExecContent,
// Accounting, Leaks, DirectMap), stamping it with the current step and CPU.
func (mo *Monitor) reportErr(err error, c int) {
	if err == nil {
		return
	}
	var v *Violation
	if !errors.As(err, &v) {
		v = &Violation{Kind: KindAccounting, Msg: err.Error()}
	}
	cp := *v
	cp.Step, cp.CPU = mo.Step, c
	mo.report(&cp)
}

func (mo *Monitor) groupOf(va uint64) *group {
	base := va &^ (mo.pmdSize - 1)
	for i := range mo.groups {
		if mo.groups[i].va == base {
			return &mo.groups[i]
		}
	}
	return nil
}

func (mo *Monitor) load(pa uint64) (uint64, bool) {
	tbl, err := mo.K.PT.Table(pa &^ (mo.ps - 1))
	if err != nil {
		return 0, false
	}
	return mo.raw.Load(pa, &tbl[(pa&(mo.ps-1))/8]), true
}

func leafTranslation(g *arm64.Geometry, d uint64, l arm64.Level, va uint64, pxn bool) Translation {
	if !arm64.DescValid(d) || (l < arm64.LastLevel && !g.BlockAllowed(l)) {
		return Translation{}
	}
	w, x := access(d, pxn)
	return Translation{PA: g.OutputAddress(d)&^(g.Size(l)-1) + va&(g.Size(l)-1), Valid: true, Write: w, Exec: x}
}

// scan walks the group's region, refreshing its upper descriptor addresses
// and last-level table, and calls fn with the translation of pages [i0, i1).
func (mo *Monitor) scan(gr *group, i0, i1 int, fn func(i int, t Translation)) {
	mo.scanPages(gr, i0, i1, false, fn)
}

// scanPages is scan; with execOnly, fn sees only the executable pages
// (valid, PXN clear at the leaf and above), which is all W^X looks at: most
// tracked pages are not executable, and a region under PXNTable has none.
func (mo *Monitor) scanPages(gr *group, i0, i1 int, execOnly bool, fn func(i int, t Translation)) {
	g := mo.g
	gr.up = [5]uint64{}
	gr.pte = 0
	tpa, pxn := mo.K.PT.Root(), false
	for l := g.StartLevel; ; l++ {
		if execOnly && pxn {
			i1 = i0 // nothing below is executable; the walk goes on for up and pte
		}
		if l == arm64.LastLevel {
			gr.pte = tpa
			// Every page's descriptor is in this one table page (mo.load,
			// with the table looked up once; not a table: all invalid).
			tbl, err := mo.K.PT.Table(tpa)
			if execOnly && err != nil {
				return
			}
			for i := i0; i < i1; i++ {
				va := gr.va + uint64(i)*mo.ps
				var d uint64
				if err == nil {
					idx := g.Index(va, l)
					d = mo.raw.Load(tpa+uint64(idx)*8, &tbl[idx])
				}
				if execOnly && (!arm64.DescValid(d) || d&arm64.PTEPXN != 0) {
					continue
				}
				fn(i, leafTranslation(g, d, l, va, pxn))
			}
			return
		}
		dpa := tpa + uint64(g.Index(gr.va, l))*8
		gr.up[int(l)+1] = dpa
		d, ok := mo.load(dpa)
		if ok && g.IsTable(d, l) {
			pxn = pxn || d&arm64.TablePXN != 0
			tpa = g.OutputAddress(d)
			continue
		}
		if execOnly && !leafTranslation(g, d, l, gr.va, pxn).Exec {
			return
		}
		for i := i0; i < i1; i++ {
			va := gr.va + uint64(i)*mo.ps
			fn(i, leafTranslation(g, d, l, va, pxn))
		}
		return
	}
}

// Translate is the current translation of va through the tables.
func (mo *Monitor) Translate(va uint64) Translation {
	pa, e, ok := mo.K.PT.Translate(mo.raw, va)
	if !ok {
		return Translation{}
	}
	w, x := access(e.Desc, e.TablePXN)
	return Translation{PA: pa, Valid: true, Write: w, Exec: x}
}

// checkGroup compares pages [i0, i1) of a group with the reference: pages no
// operation is changing must translate exactly as before; pages being changed
// may change permissions but never their PA.
func (mo *Monitor) checkGroup(gr *group, i0, i1, c int) {
	mo.scan(gr, i0, i1, func(i int, t Translation) {
		if mo.err != nil {
			return
		}
		ref := gr.ref[i]
		va := gr.va + uint64(i)*mo.ps
		mo.wxStep(va, t, c)
		if gr.flux[i] == 0 {
			if t != ref && (t.Valid || ref.Valid) {
				mo.fail(KindTranslation, va, c, "%#x now translates to %v, was %v, and no operation is changing it", va, t, ref)
			}
			return
		}
		if t.Valid && ref.Valid && t.PA != ref.PA {
			mo.fail(KindTranslation, va, c, "%#x now translates to PA %#x, was %#x (a split or collapse must keep the output address)", va, t.PA, ref.PA)
		}
	})
}

// Before is called when CPU c announces ev (before any switch to another CPU).
func (mo *Monitor) Before(c *cpu.CPU, ev *cpu.Event) {
	if ev.Kind == cpu.EvOpBegin && !mo.record {
		mo.cur[c.ID()] = ev.Op
		mo.flux(c.ID(), ev.Op, 1)
	}
}

func (mo *Monitor) flux(c, op int, delta int) {
	for _, r := range mo.ops[c][op].Footprint {
		for va := r.Start &^ (mo.ps - 1); va < r.End; va += mo.ps {
			if gr := mo.groupOf(va); gr != nil {
				i := (va - gr.va) / mo.ps
				gr.flux[i] = uint8(int(gr.flux[i]) + delta)
			}
		}
	}
}

// After is called when CPU c has performed ev.
func (mo *Monitor) After(c *cpu.CPU, ev *cpu.Event) {
	mo.forget()
	id := c.ID()
	switch ev.Kind {
	case cpu.EvOpBegin:
		if mo.record {
			mo.cur[id] = ev.Op
		}
	case cpu.EvOpEnd:
		mo.opEnd(c, ev)
	}
	if mo.err != nil || mo.record {
		return
	}
	switch ev.Kind {
	case cpu.EvLoad, cpu.EvWalk:
		if ev.Level == cpu.LevelUnknown {
			mo.fail(KindUseAfterFree, ev.PA, id, "CPU%d read the descriptor at %#x in page %#x, which is not a live table page", id, ev.PA, ev.PA&^(mo.ps-1))
		}
	case cpu.EvStore:
		mo.afterStore(c, ev)
	case cpu.EvTableFree:
		mo.tableFree(c, ev)
	case cpu.EvAccess:
		mo.access(c, ev)
	}
}

// Replayed is After for a step that an earlier run of the same scenario
// performed the same way, after the same steps, and that passed every
// check there (an explorer replaying a schedule's prefix): a check would
// find what it found then, so Replayed checks nothing and only keeps what
// the monitor carries from step to step — the operation each CPU is in,
// the reference translations an operation's end sets, and where each
// group's descriptors are.
func (mo *Monitor) Replayed(c *cpu.CPU, ev *cpu.Event) {
	mo.forget()
	if mo.record || mo.err != nil {
		mo.After(c, ev)
		return
	}
	switch ev.Kind {
	case cpu.EvOpEnd:
		id := c.ID()
		mo.cur[id] = -1
		mo.setRefs(opKey{id, ev.Op})
		mo.flux(id, ev.Op, -1)
	case cpu.EvStore:
		for i := range mo.groups {
			if gr := &mo.groups[i]; gr.hit(ev.PA) {
				mo.scan(gr, 0, 0, nil) // the path to the region moved
			}
		}
	}
}

// hit says whether the descriptor at pa leads to gr's region above its
// last level.
func (gr *group) hit(pa uint64) bool {
	hit := false
	for _, u := range gr.up {
		hit = hit || (u == pa && u != 0)
	}
	return hit
}

// setRefs makes the translations an ending operation leaves over its
// footprint the reference of the pages the monitor follows.
func (mo *Monitor) setRefs(key opKey) {
	for _, p := range mo.oracle.after[key] {
		if gr := mo.groupOf(p.va); gr != nil {
			gr.ref[(p.va-gr.va)/mo.ps] = mo.tr(p.va)
		}
	}
}

func (mo *Monitor) afterStore(c *cpu.CPU, ev *cpu.Event) {
	id := c.ID()
	if ev.Level == cpu.LevelUnknown {
		mo.fail(KindUseAfterFree, ev.PA, id, "CPU%d stored %#016x at %#x in page %#x, which is no longer a table page (freed)", id, ev.Val, ev.PA, ev.PA&^(mo.ps-1))
		return
	}
	// Lost update: the store lands in a table the walker reached from the
	// root, but the chain that led there no longer holds.
	g := mo.g
	if c.Path.Chain(g.StartLevel, ev.Level) && c.Path.Slot(g.StartLevel).Table == mo.K.PT.Root() {
		for l := g.StartLevel; l < ev.Level; l++ {
			s, next := c.Path.Slot(l), c.Path.Slot(l+1).Table
			dpa := s.Table + uint64(s.Index)*8
			d, ok := mo.load(dpa)
			if !ok || !g.IsTable(d, l) || g.OutputAddress(d) != next {
				va, _ := c.Path.VA(g, ev.Level, int((ev.PA&(mo.ps-1))/8))
				mo.fail(KindLostUpdate, va, id, "CPU%d stored %#016x at %#x (%s entry for va %#x) in table %#x, which is no longer reachable: the %s entry at %#x that led to it now holds %#016x",
					id, ev.Val, ev.PA, g.Name(ev.Level), va, ev.PA&^(mo.ps-1), g.Name(l), dpa, d)
				return
			}
		}
	}
	for i := range mo.groups {
		gr := &mo.groups[i]
		switch {
		case gr.hit(ev.PA):
			mo.checkGroup(gr, 0, len(gr.ref), id)
		case gr.pte != 0 && ev.PA&^(mo.ps-1) == gr.pte:
			j := int((ev.PA & (mo.ps - 1)) / 8)
			mo.checkGroup(gr, j, j+1, id)
		}
	}
	if mo.nonBBML2 {
		mo.conflicts(id)
	}
}

// conflicts checks break-before-make: a CPU without BBML2_NOABORT must never
// hold a TLB entry while the tables map part of it with a leaf of another
// size, since its walker may then cache both (a TLB conflict abort).
func (mo *Monitor) conflicts(by int) {
	for _, o := range mo.M.CPUs {
		if o.BBML2 {
			continue
		}
		o.TLB.Leaves(func(e *cpu.Entry) {
			if mo.err != nil {
				return
			}
			leaf, err := mo.K.PT.Lookup(mo.raw, e.VA)
			if err != nil || !arm64.DescValid(leaf.Desc) || mo.g.IsTable(leaf.Desc, leaf.Level) {
				return
			}
			size := mo.g.Size(leaf.Level)
			if arm64.DescCont(leaf.Desc) {
				size = mo.g.ContSize(leaf.Level)
			}
			if size != e.Size {
				mo.fail(KindBBM, e.VA, by, "CPU%d (no BBML2_NOABORT) caches a %#x-byte entry for %#x while the tables now map it with a %#x-byte leaf: its walker may add a conflicting entry",
					o.ID(), e.Size, e.VA, size)
			}
		})
	}
}

func (mo *Monitor) tableFree(c *cpu.CPU, ev *cpu.Event) {
	id := c.ID()
	for _, o := range mo.M.CPUs {
		o.TLB.Walks(func(w *cpu.WalkEntry) {
			if w.Table == ev.PA {
				mo.fail(KindFreedUnderWalk, ev.PA, id, "CPU%d frees table page %#x while CPU%d's walk cache still points to it for [%#x, %#x)",
					id, ev.PA, o.ID(), w.VA, w.VA+w.Size)
			}
		})
		if o == c {
			continue
		}
		if l, ok := o.Path.Contains(ev.PA); ok {
			op := "its walk"
			if k := mo.cur[o.ID()]; k >= 0 {
				op = mo.ops[o.ID()][k].Name
			}
			mo.fail(KindFreedUnderWalker, ev.PA, id, "CPU%d frees the %s table page %#x while CPU%d (%s) is walking it",
				id, mo.g.Name(l), ev.PA, o.ID(), op)
		}
	}
}

func (mo *Monitor) access(c *cpu.CPU, ev *cpu.Event) {
	id := c.ID()
	if ev.Err != nil {
		if errors.Is(ev.Err, cpu.ErrTLBConflict) {
			mo.fail(KindTLBConflict, ev.VA, id, "%v", ev.Err)
		} else if errors.Is(ev.Err, cpu.ErrStaleWalk) {
			mo.fail(KindUseAfterFree, ev.VA, id, "%v", ev.Err)
		}
		return
	}
	gr := mo.groupOf(ev.VA)
	if gr == nil {
		return
	}
	i := (ev.VA - gr.va) / mo.ps
	ref := gr.ref[i]
	if ref.Valid && ev.Val&^(mo.ps-1) != ref.PA {
		mo.fail(KindTranslation, ev.VA, id, "CPU%d's %v at %#x reached PA %#x, intended %#x", id, ev.Acc, ev.VA, ev.Val, ref.PA)
		return
	}
	if gr.flux[i] != 0 {
		return
	}
	if (ev.Acc == cpu.Write && !ref.Write) || (ev.Acc == cpu.Exec && !ref.Exec) || !ref.Valid {
		mo.fail(KindStaleTLB, ev.VA, id, "CPU%d's %v at %#x succeeded although the page is %v", id, ev.Acc, ev.VA, ref)
	}
}

// opEnd records (record mode) or checks the operation's outcome: its
// footprint translates as in the serial run, its error is the serial run's,
// no CPU's TLB is more permissive than the tables over the footprint, and
// W^X holds for the tracked executable pages.
func (mo *Monitor) opEnd(c *cpu.CPU, ev *cpu.Event) {
	id := c.ID()
	info := &mo.ops[id][ev.Op]
	key := opKey{id, ev.Op}
	mo.cur[id] = -1
	if mo.record {
		var got []pageIntent
		for _, r := range info.Footprint {
			for va := r.Start &^ (mo.ps - 1); va < r.End; va += mo.ps {
				got = append(got, pageIntent{va, mo.tr(va)})
			}
		}
		mo.oracle.after[key] = got
		mo.oracle.errs[key] = ev.Err
		return
	}
	defer mo.flux(id, ev.Op, -1)
	if mo.err != nil {
		return
	}
	if want := mo.oracle.errs[key]; !info.Racy && (want == nil) != (ev.Err == nil) {
		mo.fail(KindOpFailed, 0, id, "%s on CPU%d returned %v; alone it returns %v", info.Name, id, ev.Err, want)
		return
	}
	for _, p := range mo.oracle.after[key] {
		t := mo.tr(p.va)
		if !info.Racy && t != p.t && (t.Valid || p.t.Valid) {
			mo.fail(KindLostUpdate, p.va, id, "after %s returned on CPU%d, %#x translates to %v; the operation alone leaves %v", info.Name, id, p.va, t, p.t)
			return
		}
		if gr := mo.groupOf(p.va); gr != nil {
			gr.ref[(p.va-gr.va)/mo.ps] = t
		}
	}
	// No stale permissive TLB entry over the footprint once it returns.
	for _, o := range mo.M.CPUs {
		o.TLB.Leaves(func(e *cpu.Entry) {
			for _, r := range info.Footprint {
				if mo.err != nil || !e.Overlaps(r.Start, r.End) || !(e.Write || e.Exec) {
					continue
				}
				for va := max(r.Start, e.VA) &^ (mo.ps - 1); va < min(r.End, e.VA+e.Size); va += mo.ps {
					if mo.othersChanging(va) {
						continue // another CPU's operation is between its store and its TLBI
					}
					t := mo.tr(va)
					if (e.Write && !t.Write) || (e.Exec && !t.Exec) || (t.Valid && e.Translate(va)&^(mo.ps-1) != t.PA&^(mo.ps-1)) {
						mo.fail(KindStaleTLB, va, id, "after %s returned on CPU%d, CPU%d's TLB still maps %#x %s while the tables say %v",
							info.Name, id, o.ID(), va, perm(e.Write, e.Exec), t)
						return
					}
				}
			}
		})
	}
	mo.wx(id, false)
	mo.directMap()
	mo.reportErr(execContent(mo.K, mo.tr, info.Footprint), id)
	mo.reportErr(Accounting(mo.K), id)
}

// othersChanging says whether an operation other than the one ending has
// va in its footprint and is still running (the ending one still counts
// itself in flux). Racy operations may share footprints.
func (mo *Monitor) othersChanging(va uint64) bool {
	gr := mo.groupOf(va)
	return gr != nil && gr.flux[(va-gr.va)/mo.ps] > 1
}

func perm(w, x bool) string {
	return Translation{Valid: true, Write: w, Exec: x}.String()[4:]
}

// wx checks W^X across aliases over every tracked page.
func (mo *Monitor) wx(by int, strict bool) {
	for gi := range mo.groups {
		gr := &mo.groups[gi]
		mo.scanPages(gr, 0, len(gr.ref), true, func(i int, t Translation) {
			mo.wxCheck(gr.va+uint64(i)*mo.ps, t, by, strict)
		})
	}
}

// wxStep is the per-step W^X check of a page whose translation a store may
// just have changed: through its own mapping and its alias (wxPage), and —
// for a linear-map page that became writable — through the tracked
// mapping whose alias it is.
func (mo *Monitor) wxStep(va uint64, t Translation, by int) {
	if mo.err != nil || mo.record {
		return
	}
	mo.wxCheck(va, t, by, false)
	if !t.Valid || !t.Write || !mo.K.Layout.IsLinear(va) {
		return
	}
	if x, ok := mo.alias[t.PA&^(mo.ps-1)]; ok {
		mo.wxCheck(x, mo.tr(x), by, false)
	}
}

// wxCheck applies the W^X rule to one page. During a run (strict false)
// an executable page holding trap fill may have a writable alias: the ROX
// cache's clean restores a released chunk's linear alias before it vfrees
// the chunk (execmem_cache_clean), so trap fill (or the zeroes the chunk's
// pages go back with; zero is UDF #0 and traps too) is briefly executable
// and writable through its alias — no text is exposed. At the end nothing
// is exempt.
func (mo *Monitor) wxCheck(va uint64, t Translation, by int, strict bool) {
	if mo.err != nil || !t.Valid || !t.Exec {
		return
	}
	if mo.Exempt != nil {
		if a := mo.K.FindVMArea(va); a != nil && mo.Exempt(a) {
			return
		}
	}
	msg := wxPage(mo.K, va, t, mo.tr)
	if msg == "" {
		return
	}
	if c := mo.K.Mem.Private(t.PA &^ (mo.ps - 1)); !strict && !t.Write && (c == kernel.ContentTrap || c == kernel.ContentZero) {
		return
	}
	mo.fail(KindWX, va, by, "%s", msg)
}

// Final checks the state when every CPU is done: the tracked translations,
// no TLB entry more permissive than the tables over them, W^X across aliases
// and executable content for all execmem memory, the direct map of freed
// tracked pages, physmem accounting, and that every table page is reachable
// from the root exactly once (none leaked). Every violation is recorded (Err
// and Violation return it) as well as returned.
func (mo *Monitor) Final() error {
	if mo.err != nil || mo.record {
		return mo.Err()
	}
	mo.Step = -1
	mo.forget()
	for gi := range mo.groups {
		gr := &mo.groups[gi]
		mo.checkGroup(gr, 0, len(gr.ref), -1)
		for _, o := range mo.M.CPUs {
			o.TLB.Leaves(func(e *cpu.Entry) {
				if mo.err != nil || !e.Overlaps(gr.va, gr.va+mo.pmdSize) {
					return
				}
				for va := max(gr.va, e.VA); va < min(gr.va+mo.pmdSize, e.VA+e.Size); va += mo.ps {
					ref := gr.ref[(va-gr.va)/mo.ps]
					if (e.Write && !ref.Write) || (e.Exec && !ref.Exec) || (ref.Valid && e.Translate(va) != ref.PA) {
						mo.fail(KindStaleTLB, va, -1, "CPU%d's TLB maps %#x to %#x %s at the end; the tables say %v", o.ID(), va, e.Translate(va), perm(e.Write, e.Exec), ref)
						return
					}
				}
			})
		}
	}
	if mo.nonBBML2 && mo.err == nil {
		mo.conflicts(-1)
	}
	mo.wx(-1, true)
	mo.directMap()
	for _, check := range []func() error{
		// The tracked pages were just checked the same way (wx, strict).
		func() error {
			return wxAll(mo.K, mo.tr, mo.Exempt, func(va uint64) bool { return mo.groupOf(va) != nil })
		},
		func() error { return execContent(mo.K, mo.tr, nil) },
		func() error { return Accounting(mo.K) },
		func() error { return Leaks(mo.K) },
	} {
		if mo.err != nil {
			break
		}
		mo.reportErr(check(), -1)
	}
	return mo.Err()
}

// directMap checks that the linear alias of every tracked page that is free
// again is valid and writable: whoever changed it (the ROX cache, a
// VM_FLUSH_RESET_PERMS area) restores it before the page goes back to the
// allocator (execmem_cache_clean's set_direct_map, vm_reset_perms).
func (mo *Monitor) directMap() {
	if mo.err != nil {
		return
	}
	if mo.owners == nil {
		mo.owners = make([]physmem.Owner, len(mo.aliasPAs))
	}
	// One pass over the allocator for all pages (under one lock): no CPU
	// steps while the monitor checks (with goroutine CPUs, reading page by
	// page was no more atomic).
	mo.K.Mem.Owners(mo.aliasPAs, mo.owners)
	for i, pa := range mo.aliasPAs {
		if mo.err != nil {
			return
		}
		if mo.owners[i] != physmem.OwnerFree {
			continue
		}
		lin := mo.K.Lin(pa)
		if t := mo.tr(lin); !t.Valid || !t.Write {
			mo.fail(KindDirectMap, lin, -1, "page %#x is free but its linear alias %#x is %v", pa, lin, t)
		}
	}
}

// Leaks checks that every table page the tables count is reachable from the
// root: a table replaced without being freed (a lost split) leaks memory.
func Leaks(k *kernel.Kernel) error {
	g := &k.G
	var raw pgtable.Atomic
	seen := make(map[uint64]bool, k.PT.TotalTablePages())
	// from is the entry that points to pa (0 for the root).
	var walk func(pa uint64, l arm64.Level, from uint64) error
	walk = func(pa uint64, l arm64.Level, from uint64) error {
		if seen[pa] {
			return &Violation{Kind: KindTableTwice, Addr: pa, CPU: -1, Step: -1,
				Msg: fmt.Sprintf("table page %#x is referenced by two entries", pa)}
		}
		tbl, err := k.PT.Table(pa)
		if err != nil {
			return &Violation{Kind: KindDanglingTable, Addr: from, CPU: -1, Step: -1,
				Msg: fmt.Sprintf("the %s entry at %#x points to %#x, which is not a table page", g.Name(l-1), from, pa)}
		}
		seen[pa] = true
		if l == arm64.LastLevel {
			return nil
		}
		for i := range tbl {
			if d := raw.Load(pa+uint64(i)*8, &tbl[i]); g.IsTable(d, l) {
				if err := walk(g.OutputAddress(d), l+1, pa+uint64(i)*8); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(k.PT.Root(), g.StartLevel, 0); err != nil {
		return err
	}
	if n := k.PT.TotalTablePages(); n != len(seen) {
		return &Violation{Kind: KindTableLeak, CPU: -1, Step: -1,
			Msg: fmt.Sprintf("%d table pages allocated, %d reachable from the root", n, len(seen))}
	}
	return nil
}

// NewEmptyOracle is the oracle of a run without scenario operations (a
// single CPU replaying a timeline: its serial run is the run itself).
func NewEmptyOracle() *Oracle {
	return &Oracle{after: map[opKey][]pageIntent{}, errs: map[opKey]error{}}
}

// CheckState evaluates the whole-state invariants now — W^X across aliases
// and executable content of all execmem memory, physmem accounting — and
// records the first violation (at the current Step).
func (mo *Monitor) CheckState() error {
	mo.forget()
	for _, f := range []func() error{
		func() error { return wxAll(mo.K, mo.tr, mo.Exempt, nil) },
		func() error { return execContent(mo.K, mo.tr, nil) },
		func() error { return Accounting(mo.K) },
	} {
		if mo.err != nil {
			break
		}
		mo.reportErr(f(), 0)
	}
	return mo.Err()
}
