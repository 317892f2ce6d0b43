package trace

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/ptdump"
)

// Table pages, exactly. A capture taken with `ptlab capture --tables` prints
// a TBL line for every table descriptor; each names one table page of the
// next level. The model's table pages come from its own tables (the pgtable
// census), so the table-page change of a recording is compared count for
// count, and table by table where both sides print table lines. Captures
// without table lines fall back to the estimate from the leaves
// (analysis.Stats, pteTables).

// TableKey is one table page: the kernel's name of its level (the level of
// the entries it holds: "PUD", "PMD", "PTE", ...) and the first VA it
// translates.
type TableKey struct {
	Level string
	VA    uint64
}

// TableInfo is where a table page is: the end of the VA range it
// translates, its physical address (0 when only estimated) and the
// hierarchical attributes of the descriptor pointing to it ("PXNTable",
// "UXNTable", "" when only estimated).
type TableInfo struct {
	End, PA uint64
	Attrs   string
}

// TableSet is table pages by level and first VA.
type TableSet map[TableKey]TableInfo

// regionKindAt is the region kind of the range holding va ("modules" and
// "vmalloc" as "modules+vmalloc"), "" outside every marked region (also
// between an end marker and the next region's start).
func regionKindAt(d *ptdump.Dump, va uint64) string {
	rs := d.Ranges
	i := sort.Search(len(rs), func(i int) bool { return rs[i].End == 0 || rs[i].End > va })
	if i == len(rs) || rs[i].Start > va || rs[i].Marker < 0 || rs[i].Marker >= len(d.Markers) {
		return ""
	}
	m := &d.Markers[rs[i].Marker]
	if m.End {
		return "" // after "vmalloc() end" and the like: no region's
	}
	k := m.Kind
	if k == "modules" || k == "vmalloc" {
		k = "modules+vmalloc"
	}
	return k
}

// DumpTables is the set of table pages below the root that a dump's table
// lines name, in the region kind given ("" for the whole tree). ok is false
// when the dump has no table lines (a capture without --tables).
func DumpTables(d *ptdump.Dump, kind string) (set TableSet, ok bool) {
	if len(d.Tables) == 0 {
		return nil, false
	}
	g := &d.Geometry
	set = TableSet{}
	for i := range d.Tables {
		tl := &d.Tables[i]
		l := g.Level(tl.Level)
		if l < 0 || l+1 >= len(g.Levels) {
			continue
		}
		if kind != "" && regionKindAt(d, tl.Start) != kind {
			continue
		}
		set[TableKey{g.Levels[l+1].Name, tl.Start}] = TableInfo{tl.End, tl.PA, tableAttrs(tl)}
	}
	return set, true
}

// tableAttrs names a table line's hierarchical attributes.
func tableAttrs(tl *ptdump.TableLine) string {
	switch {
	case tl.PXNTable && tl.UXNTable:
		return "PXNTable UXNTable"
	case tl.PXNTable:
		return "PXNTable"
	case tl.UXNTable:
		return "UXNTable"
	}
	return "-"
}

// Count is the set's table pages per level.
func (s TableSet) Count() map[string]int64 {
	out := map[string]int64{}
	for k := range s {
		out[k.Level]++
	}
	return out
}

// estimatedTables is the fallback for a dump without table lines: the PTE
// tables its leaves prove (pteTables) in the module/vmalloc region.
func estimatedTables(d *ptdump.Dump) TableSet {
	out := TableSet{}
	i := d.Geometry.Level("PTE")
	if i < 1 {
		return out
	}
	blk := d.Geometry.Levels[i-1].Size
	for b := range pteTables(d) {
		out[TableKey{"PTE", b}] = TableInfo{End: b + blk}
	}
	return out
}

// RegionTables is the table pages of the module/vmalloc region of a dump:
// exact from its table lines, or estimated from its leaves (exact false).
func RegionTables(d *ptdump.Dump) (set TableSet, exact bool) {
	if s, ok := DumpTables(d, "modules+vmalloc"); ok {
		return s, true
	}
	return estimatedTables(d), false
}

// TableCensus is a model's table pages per level (below the root), counted
// by a walk of its own tables (pgtable.Tables.TakeCensus), in the module and
// vmalloc ranges and in the whole kernel half.
type TableCensus struct {
	Region, Whole map[string]int64
}

// ModelTables takes the census of k's tables: the module range
// [MODULES_VADDR, MODULES_END) and the vmalloc range [VMALLOC_START,
// VMALLOC_END) (with KASLR the module region lies in the latter), and
// everything from PAGE_OFFSET up. A table counts where its first address is.
func ModelTables(k *kernel.Kernel, c kernel.CPU) (TableCensus, error) {
	tc := TableCensus{Region: map[string]int64{}, Whole: map[string]int64{}}
	add := func(out map[string]int64, start, end uint64) error {
		if start == end {
			return nil
		}
		cs, err := k.PT.TakeCensus(c, start, end)
		if err != nil {
			return fmt.Errorf("census [%#x, %#x): %w", start, end, err)
		}
		for l := k.G.StartLevel + 1; l <= arm64.LastLevel; l++ {
			out[k.G.Name(l)] += int64(cs.Tables.Get(l))
		}
		return nil
	}
	ly := &k.Layout
	if err := add(tc.Region, ly.ModulesVaddr, min(ly.ModulesEnd, max(ly.VmallocStart, ly.ModulesVaddr))); err != nil {
		return tc, err
	}
	if ly.ModulesEnd > ly.VmallocStart && ly.ModulesVaddr < ly.VmallocStart {
		return tc, fmt.Errorf("module range [%#x, %#x) overlaps VMALLOC_START %#x", ly.ModulesVaddr, ly.ModulesEnd, ly.VmallocStart)
	}
	if err := add(tc.Region, max(ly.VmallocStart, ly.ModulesEnd), ly.VmallocEnd); err != nil {
		return tc, err
	}
	if err := add(tc.Whole, ly.PageOffset, 0); err != nil {
		return tc, err
	}
	return tc, nil
}

// tableDump walks k's tables like arm64_ptdump_walk_pgd and parses the text
// back with a TBL line for every table descriptor and the PA column, as
// `ptlab capture --pa --tables` prints a live kernel.
func tableDump(k *kernel.Kernel, c kernel.CPU, name string) (*ptdump.Dump, error) {
	c.DownWrite(k.InitMM)
	var buf bytes.Buffer
	w := ptdump.NewWriter(&buf, k.G, ptdump.KernelMarkers(k.Layout), ptdump.Options{PA: true, Tables: true})
	err := ptdump.Walk(k.PT, c, k.G, k.PT.Root(), k.Layout.PageOffset, w)
	c.UpWrite(k.InitMM)
	if err != nil {
		return nil, err
	}
	return ptdump.Parse(&buf, name, ptdump.ParseOptions{})
}

// TableDiff is one table page whose change (before to after) differs
// between the real kernel and the model: present or not at each of the
// four states, whether a side replaced it (present before and after, at
// another physical page), and, for a table both sides added, the
// descriptor's attributes when they differ.
type TableDiff struct {
	Key                                            TableKey
	End                                            uint64
	RealBefore, RealAfter, ModelBefore, ModelAfter bool
	RealReplaced, ModelReplaced                    bool
	RealAttrs, ModelAttrs                          string
}

func (d TableDiff) String() string {
	b := func(v bool) string {
		if v {
			return "present"
		}
		return "absent"
	}
	r := func(v bool) string {
		if v {
			return " (another page)"
		}
		return ""
	}
	a := func(s string) string {
		if s == "" {
			return ""
		}
		return " (" + s + ")"
	}
	return fmt.Sprintf("%s table at %#x: real %s -> %s%s%s, model %s -> %s%s%s", d.Key.Level, d.Key.VA,
		b(d.RealBefore), b(d.RealAfter), r(d.RealReplaced), a(d.RealAttrs), b(d.ModelBefore), b(d.ModelAfter), r(d.ModelReplaced), a(d.ModelAttrs))
}

// CompareTableSets lists the table pages whose change differs between the
// real kernel (rb -> ra) and the model (mb -> ma), in VA then level order:
// added or removed on one side only, or replaced by another page on one
// side only (page tables of the kernel's mappings stay where they were
// allocated until freed, so a table at the same VA on another page was freed
// and allocated again), or added by both with other descriptor attributes
// (PXNTable, UXNTable: pmd_populate_kernel and friends set them).
// Replacement and attributes need table lines on both sides; estimated sets
// have neither.
func CompareTableSets(rb, ra, mb, ma TableSet) []TableDiff {
	keys := map[TableKey]uint64{}
	for _, s := range []TableSet{rb, ra, mb, ma} {
		for k, e := range s {
			keys[k] = max(keys[k], e.End)
		}
	}
	replaced := func(b, a TableSet, k TableKey) bool {
		x, okb := b[k]
		y, oka := a[k]
		return okb && oka && x.PA != y.PA
	}
	var out []TableDiff
	for k, e := range keys {
		_, xrb := rb[k]
		_, xra := ra[k]
		_, xmb := mb[k]
		_, xma := ma[k]
		rr, mr := replaced(rb, ra, k), replaced(mb, ma, k)
		// A table both sides added must be hooked up alike.
		var rat, mat string
		if !xrb && !xmb && xra && xma && ra[k].Attrs != ma[k].Attrs {
			rat, mat = ra[k].Attrs, ma[k].Attrs
		}
		if b2i(xra)-b2i(xrb) != b2i(xma)-b2i(xmb) || rr != mr || rat != mat {
			out = append(out, TableDiff{k, e, xrb, xra, xmb, xma, rr, mr, rat, mat})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key.VA != out[j].Key.VA {
			return out[i].Key.VA < out[j].Key.VA
		}
		return out[i].Key.Level < out[j].Key.Level
	})
	return out
}

func b2i(v bool) int64 {
	if v {
		return 1
	}
	return 0
}
