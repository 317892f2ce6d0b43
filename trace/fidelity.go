package trace

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/ptdump/analysis"
	"github.com/ptlab/ptlab/workload"
)

// Shape is what a dump maps in one region: bytes per permission set and
// per leaf size (ptdump.Stats), and the number of mapped ranges.
type Shape struct {
	Perm   map[string]int64 // AttrSet.Perm -> bytes
	Leaf   map[string]int64 // "PTE 4K", "PMD 2M", ... -> bytes
	Tables map[string]int64 // estimated table pages per level (ptdump.Stats)
	Ranges int64
}

// RegionShapes sums a dump's Stats by region kind ("modules", "vmalloc",
// "linear", ...). With KASLR, arm64 places modules anywhere within 2 GiB of
// the randomized kernel image (module_init_limits), i.e. mostly inside the
// vmalloc area, so "modules" and "vmalloc" are summed as "modules+vmalloc".
func RegionShapes(d *ptdump.Dump) map[string]*Shape {
	out := map[string]*Shape{}
	for _, r := range analysis.Stats(d).Regions {
		kind := r.Kind
		if kind == "modules" || kind == "vmalloc" {
			kind = "modules+vmalloc"
		}
		s := out[kind]
		if s == nil {
			s = &Shape{Perm: map[string]int64{}, Leaf: map[string]int64{}, Tables: map[string]int64{}}
			out[kind] = s
		}
		for _, a := range r.AttrSets {
			s.Perm[a.Attrs] += int64(a.Bytes)
		}
		for _, l := range r.Leaves {
			s.Leaf[l.Leaf] += int64(l.Bytes)
		}
		s.Ranges += int64(r.MappedRanges)
		for _, t := range r.Tables {
			s.Tables[t.Level] += int64(t.Tables)
		}
	}
	return out
}

// Difference is one way the model's change of a region differs from the
// real kernel's: what (a permission set, a leaf size, or the table pages of
// a level), by how much the real kernel's mapping changed and by how much
// the model's did (bytes; table pages for "tables").
type Difference struct {
	Region, What string
	Real, Model  int64
}

func (d Difference) String() string {
	return fmt.Sprintf("%s %s: real %+d, model %+d (model - real %+d)", d.Region, d.What, d.Real, d.Model, d.Model-d.Real)
}

// CompareChanges compares how the real kernel's regions changed between two
// dumps (before, after) with how the model's changed (mBefore, mAfter), per
// permission set and per leaf size (table pages: CompareTableSets). Comparing changes, not states, keeps
// out what the model never had (boot-time vmalloc areas, other users of the
// address space before the recording).
func CompareChanges(regions []string, before, after, mBefore, mAfter *ptdump.Dump) []Difference {
	rb, ra, mb, ma := RegionShapes(before), RegionShapes(after), RegionShapes(mBefore), RegionShapes(mAfter)
	get := func(m map[string]*Shape, r string) *Shape {
		if s := m[r]; s != nil {
			return s
		}
		return &Shape{Perm: map[string]int64{}, Leaf: map[string]int64{}, Tables: map[string]int64{}}
	}
	var out []Difference
	for _, reg := range regions {
		b, a, x, y := get(rb, reg), get(ra, reg), get(mb, reg), get(ma, reg)
		cmp := func(kind string, pb, pa, px, py map[string]int64) {
			for _, k := range sortedKeys(pb, pa, px, py) {
				real, model := pa[k]-pb[k], py[k]-px[k]
				if real != model {
					out = append(out, Difference{Region: reg, What: kind + " " + k, Real: real, Model: model})
				}
			}
		}
		cmp("perm", b.Perm, a.Perm, x.Perm, y.Perm)
		cmp("leaf", b.Leaf, a.Leaf, x.Leaf, y.Leaf)
	}
	return out
}

// ModelRun is what a replay did to the model: its tables at the start
// state and after the replay, as dumps with table lines (tableDump) and as
// a census of its own tables, the result, and the module regions a pinned
// replay put elsewhere than the recorded kernel did.
type ModelRun struct {
	Before, After             *ptdump.Dump
	TablesBefore, TablesAfter TableCensus
	Result                    *workload.Result
	Misplaced                 []workload.Misplaced
}

// ModelDump runs a replay scenario under one preset twice: with only the
// operations at time 0 (the start state) and with all of them.
func ModelDump(s *workload.Scenario, preset string) (*ModelRun, error) {
	start := *s
	rp := *s.Replay
	rp.Ops = nil
	for _, o := range s.Replay.Ops {
		if o.At == 0 {
			rp.Ops = append(rp.Ops, o)
		}
	}
	start.Replay = &rp
	run := &ModelRun{}
	dump := func(sc *workload.Scenario, d **ptdump.Dump, tc *TableCensus) error {
		r, st, err := workload.RunReplay(sc, preset, nil)
		if err != nil {
			return err
		}
		c := &kernel.PlainCPU{}
		if *d, err = tableDump(st.Kernel, c, "model:"+preset); err != nil {
			return err
		}
		if *tc, err = ModelTables(st.Kernel, c); err != nil {
			return err
		}
		run.Result, run.Misplaced = r, st.Misplaced
		return nil
	}
	if err := dump(&start, &run.Before, &run.TablesBefore); err != nil {
		return nil, err
	}
	if err := dump(s, &run.After, &run.TablesAfter); err != nil {
		return nil, err
	}
	return run, nil
}

// PageChange is how one page's mapping changed between two dumps.
type PageChange struct{ From, To string }

// ChangedPages is the page-by-page change between two dumps of one region
// kind (ptdump.Diff), keyed by VA. Pages of pageSize; regions by
// ptdump.RegionKind of the change's region name ("modules" and "vmalloc"
// count as one).
func ChangedPages(a, b *ptdump.Dump, kind string, pageSize uint64) map[uint64]PageChange {
	out := map[uint64]PageChange{}
	for _, c := range analysis.Diff(a, b).Changes {
		k, _ := ptdump.RegionKind(c.Region)
		if k == "modules" || k == "vmalloc" {
			k = "modules+vmalloc"
		}
		if k != kind || c.Kind == analysis.DiffLevel {
			continue
		}
		from, to := c.From+" "+c.FromAttrs, c.To+" "+c.ToAttrs
		for va := c.Start; va < c.End && va >= c.Start; va += pageSize {
			out[va] = PageChange{from, to}
		}
	}
	return out
}

// PageMismatch is a maximal VA range where the model changed pages
// differently from the real kernel.
type PageMismatch struct {
	Start, End  uint64
	Real, Model PageChange // zero: no change on that side
}

func (m PageMismatch) String() string {
	show := func(p PageChange) string {
		if p == (PageChange{}) {
			return "unchanged"
		}
		return p.From + " -> " + p.To
	}
	return fmt.Sprintf("%#x-%#x (%d pages): real %s; model %s", m.Start, m.End, (m.End-m.Start)/4096, show(m.Real), show(m.Model))
}

// ComparePages lists where two page-change maps disagree, as ranges.
func ComparePages(real, model map[uint64]PageChange, pageSize uint64) []PageMismatch {
	keys := map[uint64]bool{}
	for va := range real {
		keys[va] = true
	}
	for va := range model {
		keys[va] = true
	}
	var vas []uint64
	for va := range keys {
		if real[va] != model[va] {
			vas = append(vas, va)
		}
	}
	sort.Slice(vas, func(i, j int) bool { return vas[i] < vas[j] })
	var out []PageMismatch
	for _, va := range vas {
		r, m := real[va], model[va]
		if n := len(out); n > 0 && out[n-1].End == va && out[n-1].Real == r && out[n-1].Model == m {
			out[n-1].End += pageSize
			continue
		}
		out = append(out, PageMismatch{Start: va, End: va + pageSize, Real: r, Model: m})
	}
	return out
}

// Explained is a page mismatch with the recorded cause that explains it.
type Explained struct {
	PageMismatch
	Why string
}

func (e Explained) String() string { return e.PageMismatch.String() + ": " + e.Why }

// ExplainedResidual is what explained page mismatches add to CompareChanges'
// differences of their region, model minus real, keyed like Difference.What
// ("perm ...", "leaf PTE 4K"): a difference of the totals is accounted for
// exactly when it equals this.
func ExplainedResidual(ex []Explained, d Dumps, pageSize uint64) map[string]int64 {
	out := map[string]int64{}
	add := func(dump *ptdump.Dump, va uint64, sign int64) {
		rs := dump.Ranges
		i := sort.Search(len(rs), func(i int) bool { return rs[i].End == 0 || rs[i].End > va })
		if i == len(rs) || rs[i].Start > va || !rs[i].Mapped() {
			return
		}
		r := &rs[i]
		out["perm "+r.Attrs.Perm] += sign * int64(pageSize)
		out["leaf "+dump.Geometry.LeafName(r.Level, r.Attrs.Has(ptdump.AttrCont))] += sign * int64(pageSize)
	}
	for _, e := range ex {
		for va := e.Start; va < e.End && va >= e.Start; va += pageSize {
			add(d.ModelAfter, va, 1)
			add(d.ModelBefore, va, -1)
			add(d.RealAfter, va, -1)
			add(d.RealBefore, va, 1)
		}
	}
	for k, v := range out {
		if v == 0 {
			delete(out, k)
		}
	}
	return out
}

// Dumps are the four page-table dumps a fidelity check compares: the real
// kernel's captures and the model's dumps at the two marks.
type Dumps struct{ RealBefore, RealAfter, ModelBefore, ModelAfter *ptdump.Dump }

// pageState is how a dump maps the page at va, in ChangedPages' terms
// ("PTE 4K" and the permission columns; "unmapped " where nothing is).
func pageState(d *ptdump.Dump, va uint64) string {
	rs := d.Ranges
	i := sort.Search(len(rs), func(i int) bool { return rs[i].End == 0 || rs[i].End > va })
	if i == len(rs) || rs[i].Start > va || !rs[i].Mapped() {
		return "unmapped "
	}
	r := &rs[i]
	return d.Geometry.LeafName(r.Level, r.Attrs.Has(ptdump.AttrCont)) + " " + r.Attrs.Perm
}

// areaEvent is one alloc_vmap_area or free_vmap_area_noflush of a recording
// with the span of its area.
type areaEvent struct {
	start, end uint64
	alloc      bool
	line       int
}

// captureWindows are the vmap events the captures may or may not have seen:
// the "before" capture walks the tables between the recorder's "start" mark
// (the workload's "capture-start" if it has one) and the from mark while
// other tasks run, the "after" capture between the to mark and the
// recorder's "end" mark (the workload's "capture-end"). A free event names only va_start; its
// span is that of the area's last allocation (or the start snapshot's entry).
func captureWindows(rec *Recording, from, to string) (pre, post []areaEvent) {
	span := map[uint64]uint64{}
	if rec.Start != nil {
		for _, a := range rec.Start.Vmalloc {
			span[a.Start] = a.End
		}
	}
	// A workload that marks "capture-start" before its first capture and
	// "capture-end" after its last narrows the windows to the captures.
	first, last := "start", "end"
	for _, e := range rec.Events {
		if n, ok := markName(e); ok && n == "capture-start" {
			first = n
		} else if ok && n == "capture-end" {
			last = n
		}
	}
	phase := 0 // 0: before first, 1: first..from, 2: window, 3: to..last, 4: after last
	for _, e := range rec.Events {
		if n, ok := markName(e); ok {
			switch {
			case n == first && phase == 0:
				phase = 1
			case n == from && phase <= 1:
				phase = 2
			case n == to && phase == 2:
				phase = 3
			case n == last && phase == 3:
				phase = 4
			}
			continue
		}
		if e.Name != "alloc_vmap_area" && e.Name != "free_vmap_area_noflush" {
			continue
		}
		f := Fields(e.Args)
		v, err := decArg(f, "va_start")
		if err != nil {
			continue
		}
		ae := areaEvent{start: uint64(v), line: e.Line, alloc: e.Name == "alloc_vmap_area"}
		if ae.alloc {
			sz, err := decArg(f, "size")
			if err != nil || sz <= 0 || sz > maxArea {
				continue
			}
			ae.end = ae.start + uint64(sz)
			span[ae.start] = ae.end
		} else if ae.end = span[ae.start]; ae.end == 0 {
			ae.end = ae.start + pageSize
		}
		switch phase {
		case 1:
			pre = append(pre, ae)
		case 3:
			post = append(post, ae)
		}
	}
	return pre, post
}

// ExplainLate splits page mismatches into those the recording itself
// explains and the rest. The captures walk the tables a little before the
// mark that starts the replayed window (from) and a little after the mark
// that ends it (to), while other tasks run: kernel threads fork and exit
// (kernel/fork.c: alloc_thread_stack_node maps a vmalloc'ed stack,
// free_thread_stack vfrees it, from an RCU callback or a worker when the
// per-CPU cached_stacks are full), the capture's own threads get stacks. A
// page of such an area may have been walked before or after its alloc or
// free, so the capture shows either state. A mismatched page is explained
// when, on each side (before, after) where the real and the model's state
// differ, an area covering the page was allocated or freed between that
// side's capture and its mark, and the two states are exactly the area's
// mapped and unmapped states (mapped the same way on both sides where both
// map it). Every other difference stays in rest. It also explains pages the
// model mapped that the capture shows unmapped while the kernel's end
// vmallocinfo lists them as a live vmalloc area with all its pages.
func ExplainLate(rec *Recording, from, to string, mm []PageMismatch, d Dumps) (explained []Explained, rest []PageMismatch) {
	pre, post := captureWindows(rec, from, to)
	// side checks one capture: real and model state of the page, the
	// events that capture may have missed.
	side := func(real, model string, evs []areaEvent, lo, hi uint64, what string) (bool, string) {
		if real == model {
			return true, ""
		}
		um := func(s string) bool { return strings.HasPrefix(s, "unmapped") }
		if um(real) == um(model) {
			return false, "" // mapped differently: not a question of timing
		}
		var seen []string
		for _, ev := range evs {
			if ev.start < hi && lo < ev.end {
				kind := "freed"
				if ev.alloc {
					kind = "allocated"
				}
				seen = append(seen, fmt.Sprintf("%#x-%#x %s at line %d", ev.start, ev.end, kind, ev.line))
			}
		}
		if len(seen) == 0 {
			return false, ""
		}
		return true, strings.Join(seen, ", ") + ", " + what
	}
	for _, m := range mm {
		rb, ra := pageState(d.RealBefore, m.Start), pageState(d.RealAfter, m.Start)
		mb, ma := pageState(d.ModelBefore, m.Start), pageState(d.ModelAfter, m.Start)
		okB, whyB := side(rb, mb, pre, m.Start, m.End, fmt.Sprintf("between the \"before\" capture and the %q mark", from))
		okA, whyA := side(ra, ma, post, m.Start, m.End, fmt.Sprintf("between the %q mark and the \"after\" capture", to))
		if okB && okA && (whyB != "" || whyA != "") {
			why := strings.Trim(whyB+"; "+whyA, "; ")
			explained = append(explained, Explained{m, "the capture saw the other side of an area's lifetime: " + why})
			continue
		}
		// The model mapped pages the capture shows unmapped, and the
		// kernel's own vmallocinfo at the end lists them as part of a live
		// vmalloc area with all its pages (vmalloc maps every page before
		// it returns): the capture disagrees with the kernel, not the model.
		if m.Real == (PageChange{}) && strings.HasPrefix(m.Model.From, "unmapped") && rec.End != nil {
			found := false
			for _, a := range rec.End.Vmalloc {
				if a.Kind == "vmalloc" && a.Start <= m.Start && m.End <= a.Start+uint64(a.Pages)*pageSize {
					explained = append(explained, Explained{m, fmt.Sprintf("the end snapshot's vmallocinfo (line %d) lists %#x-%#x %s with all %d pages mapped; the capture shows these unmapped (a capture discrepancy)", a.Line, a.Start, a.End, a.Caller, a.Pages)})
					found = true
					break
				}
			}
			if found {
				continue
			}
		}
		rest = append(rest, m)
	}
	return explained, rest
}

// ExplainMisplaced checks the first misplaced module region of a pinned
// replay against the recording. The kernel queues a freed area
// (free_vmap_area_noflush) and releases its VA at the next purge
// (__purge_vmap_area_lazy); a pinned replay with the recorded purges does the
// same (OpPurge), so this applies only to a recording without the
// purge_vmap_area_lazy tracepoint, whose replay lets the model purge by its
// own rules: a module loading on another CPU between the free and the
// kernel's purge could not use the area and went higher. The first misplacement is explained when the recording shows
// exactly that for the area the model used: freed before the load's first
// allocation, purged after it. Every later misplacement follows from the
// first (the address spaces differ from there on) and is returned as such;
// an unexplained first one is returned in rest with everything after it.
func ExplainMisplaced(rec *Recording, mp []workload.Misplaced) (explained []string, rest []workload.Misplaced) {
	if len(mp) == 0 {
		return nil, nil
	}
	first := mp[0]
	for _, m := range mp {
		if m.Line < first.Line || m.Line == first.Line && m.Model < first.Model {
			first = m
		}
	}
	for _, e := range rec.Events {
		if e.Name == "purge_vmap_area_lazy" {
			// The replay released VA exactly at the recorded purges: a
			// misplacement is the model's.
			return nil, mp
		}
	}
	freed, purged := 0, 0
	span := map[uint64]uint64{} // va_start -> va_end of the last allocation there
	for _, e := range rec.Events {
		f := Fields(e.Args)
		switch e.Name {
		case "alloc_vmap_area":
			v, err1 := decArg(f, "va_start")
			sz, err2 := decArg(f, "size")
			if err1 == nil && err2 == nil && sz > 0 && sz <= maxArea {
				span[uint64(v)] = uint64(v) + uint64(sz)
			}
		case "free_vmap_area_noflush":
			v, err := decArg(f, "va_start")
			if err != nil || e.Line >= first.Line {
				continue
			}
			// The freed area covers the address the model used (the model
			// may have placed the region anywhere inside it).
			end := max(span[uint64(v)], uint64(v)+pageSize)
			if uint64(v) <= first.Model && first.Model < end {
				freed, purged = e.Line, 0
			}
		case "purge_vmap_area_lazy":
			s, err1 := hexArg(f, "start")
			en, err2 := hexArg(f, "end")
			if n, _ := decArg(f, "num_purged"); err1 == nil && err2 == nil && n > 0 && freed > 0 && purged == 0 && s <= first.Model && first.Model < en {
				purged = e.Line
			}
		}
	}
	if freed == 0 || purged < first.Line {
		return nil, mp
	}
	explained = append(explained, fmt.Sprintf("%v: the area the model used was freed at line %d and purged only at line %d, after this load's first allocation (line %d) on another CPU", first, freed, purged, first.Line))
	for _, m := range mp {
		if m != first {
			explained = append(explained, fmt.Sprintf("%v: follows from the first misplacement (line %d)", m, first.Line))
		}
	}
	return explained, nil
}

// pteTables is the set of PMD-sized blocks of the module/vmalloc region where
// a dump shows a PTE table: a line at PTE level, mapped or not (the walk
// prints a table's empty entries, so an unmapped PTE line proves a table).
func pteTables(d *ptdump.Dump) map[uint64]bool {
	out := map[uint64]bool{}
	i := d.Geometry.Level("PTE")
	if i < 1 {
		return out
	}
	blk := d.Geometry.Levels[i-1].Size
	for _, r := range d.Ranges {
		if r.Level != "PTE" || r.Marker < 0 {
			continue
		}
		if k, _ := ptdump.RegionKind(d.Markers[r.Marker].Name); k != "modules" && k != "vmalloc" {
			continue
		}
		for b := r.Start &^ (blk - 1); b < r.End && b >= r.Start&^(blk-1); b += blk {
			out[b] = true
		}
	}
	return out
}

// ExplainTables accounts for the table pages whose change differs between
// the real kernel and the model (CompareTableSets) by what the recording
// cannot order. The kernel never frees the page tables of a vmalloc or
// module mapping (mm/vmalloc.c: vunmap_range_noflush and the
// vunmap_p*d_range helpers clear leaf entries only; free_vmap_area and
// __purge_vmap_area_lazy release VA, not tables), so a table exists from
// the first mapping through its range on; which ones the start state has
// depends on history before the recording:
//   - the "before" capture shows a table the model's start state lacks, and
//     both have it after: the kernel already had it (left by areas freed
//     before the recording, or by boot-time users the model does not
//     repeat), the model allocated it during the replay;
//   - the model's start state has a table the "before" capture lacks, and
//     both have it after: the model's start state mapped there (its own
//     boot-time areas), the kernel allocated it during the recording;
//   - the table covers an explained page difference (a capture that saw the
//     other side of an area's lifetime, ExplainLate).
//
// A table one side replaced (freed and allocated again at the same VA) and
// the other kept, or one both added with other descriptor attributes, is
// explained only by an explained page difference.
//
// It returns the table pages these causes add to model minus real per
// level, why, and the differences none explains.
func ExplainTables(diffs []TableDiff, ex []Explained) (residual map[string]int64, why []string, rest []TableDiff) {
	residual = map[string]int64{}
	inExplained := func(d TableDiff) bool {
		for _, e := range ex {
			if e.Start < d.End && d.Key.VA < e.End {
				return true
			}
		}
		return false
	}
	for _, d := range diffs {
		diff := (b2i(d.ModelAfter) - b2i(d.ModelBefore)) - (b2i(d.RealAfter) - b2i(d.RealBefore))
		switch {
		case d.RealReplaced || d.ModelReplaced || d.RealAttrs != d.ModelAttrs:
			if !inExplained(d) {
				rest = append(rest, d)
				continue
			}
			why = append(why, fmt.Sprintf("%v: covers an explained page difference", d))
		case d.RealBefore && !d.ModelBefore && d.RealAfter && d.ModelAfter:
			why = append(why, fmt.Sprintf("%v: the kernel had this table before the recording (page tables of freed areas stay; vunmap_range_noflush clears entries only), the model's start state had not", d))
		case d.ModelBefore && !d.RealBefore && d.RealAfter && d.ModelAfter:
			why = append(why, fmt.Sprintf("%v: the model's start state mapped here (its own boot-time areas), the kernel allocated the table during the recording", d))
		case inExplained(d):
			why = append(why, fmt.Sprintf("%v: covers an explained page difference", d))
		default:
			rest = append(rest, d)
			continue
		}
		residual[d.Key.Level] += diff
	}
	return residual, why, rest
}

// sortedKeys is the union of the maps' keys, in order.
func sortedKeys[K cmp.Ordered, V any](ms ...map[K]V) []K {
	seen := map[K]bool{}
	var ks []K
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				ks = append(ks, k)
			}
		}
	}
	slices.Sort(ks)
	return ks
}
