package analysis

import (
	"fmt"
	"io"
	"math/bits"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/ptlab/ptlab/ptdump"
)

// Summary is the analysis of one dump (Stats). Field names in JSON are stable.
type Summary struct {
	Name          string          `json:"name"`
	Arch          ptdump.Arch     `json:"arch"`
	PageSize      uint64          `json:"page_size"`
	VABits        int             `json:"va_bits"`
	Geometry      string          `json:"geometry"`
	GeometryBasis string          `json:"geometry_basis"`
	Ranges        int             `json:"ranges"`
	RegionBasis   string          `json:"region_basis"`
	Regions       []RegionStats   `json:"regions"`
	Total         RegionStats     `json:"total"`
	LinearMap     *LinearMapStats `json:"linear_map"` // nil when no range lies in a linear-map region
	// TablesPrinted counts the table pages the dump's TBL lines (ptlab
	// capture --tables) point to, per level: exact, where Total.Tables is an
	// estimate. Nil without TBL lines.
	TablesPrinted []TableStat `json:"tables_printed,omitempty"`
	Notes         []string    `json:"notes"`
}

// RegionStats describes the ranges of one region (or of the whole dump).
type RegionStats struct {
	Name          string       `json:"name"` // opening marker, or what the region was inferred from
	Kind          string       `json:"kind"` // see RegionKind; "gap" after an end marker
	FirstLine     int          `json:"first_line"`
	LastLine      int          `json:"last_line"`
	Start         uint64       `json:"start"` // first range's start
	End           uint64       `json:"end"`   // last range's end (0: top of the address space)
	Ranges        int          `json:"ranges"`
	MappedRanges  int          `json:"mapped_ranges"`
	ValidBytes    uint64       `json:"valid_bytes"`
	InvalidBytes  uint64       `json:"present_invalid_bytes"`
	UnmappedBytes uint64       `json:"unmapped_bytes"` // printed unmapped ranges only
	Leaves        []LeafStat   `json:"leaves"`         // mapped bytes per leaf size, largest leaf first
	AttrSets      []AttrStat   `json:"attr_sets"`      // mapped bytes per attribute set, most bytes first
	Tables        []TableStat  `json:"tables"`         // estimated table pages per level
	TablePages    uint64       `json:"table_pages"`
	TableBytes    uint64       `json:"table_bytes"`
	Collapse      CollapseStat `json:"collapse"`
}

// LeafStat is the mapped (valid or present-invalid) bytes at one leaf size.
type LeafStat struct {
	Leaf     string  `json:"leaf"` // e.g. "PTE 4K", "contPTE 64K", "PMD 2M"
	Level    string  `json:"level"`
	Cont     bool    `json:"cont"`
	LeafSize uint64  `json:"leaf_size"` // VA one TLB entry covers
	Bytes    uint64  `json:"bytes"`
	Ranges   int     `json:"ranges"`
	Fraction float64 `json:"fraction"` // of the region's mapped bytes
}

// AttrStat is the mapped bytes with one permission set (AttrSet.Perm).
type AttrStat struct {
	Attrs  string `json:"attrs"`
	Bytes  uint64 `json:"bytes"`
	Ranges int    `json:"ranges"`
}

// TableStat is the estimated number of table pages holding entries of a level.
type TableStat struct {
	Level  string `json:"level"` // the level of the entries the tables hold ("PTE": PTE tables)
	Tables uint64 `json:"tables"`
	Bytes  uint64 `json:"bytes"`
}

// CollapseStat is what folding PTE tables back into PMD blocks would recover:
// PMD-aligned blocks fully covered by valid PTE-level mappings with one
// permission set (CON ignored), as the RFC's PMD coalescing would fold them.
type CollapseStat struct {
	BlockSize        uint64 `json:"block_size"` // PMD entry size (2M with 4K pages)
	Blocks           uint64 `json:"blocks"`
	Bytes            uint64 `json:"bytes"`
	TablePagesSaved  uint64 `json:"table_pages_saved"` // one PTE table per block
	TableBytesSaved  uint64 `json:"table_bytes_saved"`
	TLBEntriesBefore uint64 `json:"tlb_entries_before"` // 1 per PTE, 1 per contPTE run
	TLBEntriesAfter  uint64 `json:"tlb_entries_after"`  // 1 per block
}

// LinearMapStats is the headline for the linear map (all linear regions).
type LinearMapStats struct {
	Basis            string       `json:"basis"`
	MappedBytes      uint64       `json:"mapped_bytes"`   // valid + present-invalid
	PTEBytes         uint64       `json:"pte_bytes"`      // base pages without CON
	ContPTEBytes     uint64       `json:"cont_pte_bytes"` // base pages in contiguous runs
	PTEFraction      float64      `json:"pte_fraction"`
	ContPTEFraction  float64      `json:"cont_pte_fraction"`
	BasePageFraction float64      `json:"base_page_fraction"` // PTE level, CON or not
	Leaves           []LeafStat   `json:"leaves"`
	Tables           []TableStat  `json:"tables"`
	TablePages       uint64       `json:"table_pages"`
	TableBytes       uint64       `json:"table_bytes"`
	Collapse         CollapseStat `json:"collapse"`
}

// tableCounter counts distinct table pages arithmetically. The kernel
// allocates one table page per upper-level entry that maps anything below it
// (alloc_init_pud / alloc_init_cont_pmd / alloc_init_cont_pte in
// arch/arm64/mm/mmu.c), and ptdump notes every slot of a table it descends
// into (mm/ptdump.c): so a table at level j (j > 0) covering one entry of
// level j-1 exists wherever something was printed at level j or deeper,
// holes included. Ranges arrive in ascending order, so remembering the last
// block counted per level avoids double counting.
type tableCounter struct {
	last  [5]uint64
	have  [5]bool
	count [5]uint64
}

func (tc *tableCounter) add(g *ptdump.DumpGeometry, lvl int, r *ptdump.Range) {
	tc.addSeen(tc, g, lvl, r)
}

// addSeen counts the tables of r that seen has not counted yet: with one
// seen shared by every region, a table serving two regions (a PTE table
// holding the end of one and the start of the next) counts in the first only.
func (tc *tableCounter) addSeen(seen *tableCounter, g *ptdump.DumpGeometry, lvl int, r *ptdump.Range) {
	for j := 1; j <= lvl && j < len(tc.count); j++ {
		shift := uint(bits.TrailingZeros64(g.Levels[j-1].Size))
		first, last := r.Start>>shift, r.Last()>>shift
		n := last - first + 1
		if seen.have[j] && seen.last[j] >= first {
			n -= min(n, seen.last[j]-first+1)
		}
		tc.count[j] += n
		if !seen.have[j] || last > seen.last[j] {
			seen.last[j] = last
		}
		seen.have[j] = true
	}
}

func (tc *tableCounter) stats(g *ptdump.DumpGeometry) (ts []TableStat, pages uint64) {
	for j := 1; j < len(g.Levels) && j < len(tc.count); j++ {
		ts = append(ts, TableStat{Level: g.Levels[j].Name, Tables: tc.count[j], Bytes: tc.count[j] * g.PageSize})
		pages += tc.count[j]
	}
	return ts, pages
}

// collapser finds runs of adjacent valid PTE-level ranges with one permission
// set and counts the PMD-aligned blocks inside each run, per run, not per page.
// A block qualifies as x86's collapse_pmd_page (arch/x86/mm/pat/set_memory.c)
// and the arm64 RFC's PMD coalescing require: all PTRS_PER_PTE entries
// present and valid with the same attributes. CON is ignored (the block
// replaces the contiguous runs); physical contiguity and alignment, which the
// dump does not show, are assumed.
type collapser struct {
	g          *ptdump.DumpGeometry
	pteName    string
	shift      uint   // log2 of the block (PMD entry) size
	contSize   uint64 // VA of one contiguous PTE run
	d          *ptdump.Dump
	first, end int // run is d.Ranges[first:end]
	st         CollapseStat
}

func newCollapser(d *ptdump.Dump) collapser {
	g := &d.Geometry
	c := collapser{g: g, d: d}
	if n := len(g.Levels); n >= 2 {
		c.pteName = g.Levels[n-1].Name
		c.shift = uint(bits.TrailingZeros64(g.Levels[n-2].Size))
		c.contSize = g.Levels[n-1].Size * uint64(max(g.Levels[n-1].ContEntries, 1))
		c.st.BlockSize = g.Levels[n-2].Size
	}
	return c
}

func (c *collapser) add(i int) {
	r := &c.d.Ranges[i]
	if c.pteName == "" || r.Level != c.pteName || !r.Valid() {
		c.flush()
		return
	}
	if c.end > c.first {
		p := &c.d.Ranges[c.end-1]
		if p.End == r.Start && p.End != 0 && p.Attrs.Perm == r.Attrs.Perm {
			c.end = i + 1
			return
		}
		c.flush()
	}
	c.first, c.end = i, i+1
}

func (c *collapser) flush() {
	if c.end <= c.first {
		return
	}
	run := c.d.Ranges[c.first:c.end]
	c.first, c.end = 0, 0
	start, last := run[0].Start, run[len(run)-1].Last()
	firstBlk := start >> c.shift
	if start&(1<<c.shift-1) != 0 {
		firstBlk++
	}
	var endBlk uint64
	if last == ^uint64(0) {
		endBlk = 1 << (64 - c.shift)
	} else {
		endBlk = (last + 1) >> c.shift
	}
	if endBlk <= firstBlk {
		return
	}
	n := endBlk - firstBlk
	lo, hi := firstBlk<<c.shift, endBlk<<c.shift-1
	page := c.g.Levels[len(c.g.Levels)-1].Size
	for k := range run {
		r := &run[k]
		a, b := max(r.Start, lo), min(r.Last(), hi)
		if b < a {
			continue
		}
		bytes := b - a + 1
		if r.Attrs.Has(ptdump.AttrCont) {
			c.st.TLBEntriesBefore += (bytes + c.contSize - 1) / c.contSize
		} else {
			c.st.TLBEntriesBefore += bytes / page
		}
	}
	c.st.Blocks += n
	c.st.Bytes += n << c.shift
	c.st.TablePagesSaved += n
	c.st.TableBytesSaved += n * c.g.PageSize
	c.st.TLBEntriesAfter += n
}

// regionAcc accumulates one RegionStats.
type regionAcc struct {
	st    RegionStats
	leaf  [5][2]LeafStat
	attrs map[string]*AttrStat
	tc    tableCounter
	seen  *tableCounter // shared by the regions of one dump; nil: own
	col   collapser
}

func newAcc(d *ptdump.Dump, name, kind string) *regionAcc {
	return &regionAcc{st: RegionStats{Name: name, Kind: kind}, attrs: map[string]*AttrStat{}, col: newCollapser(d)}
}

func (a *regionAcc) add(d *ptdump.Dump, i int) {
	r := &d.Ranges[i]
	g := &d.Geometry
	st := &a.st
	if st.Ranges == 0 {
		st.FirstLine, st.Start = r.Line, r.Start
	}
	st.Ranges++
	st.LastLine, st.End = r.Line, r.End
	lvl := g.Level(r.Level)
	if lvl >= 0 && a.seen != nil {
		a.tc.addSeen(a.seen, g, lvl, r)
	} else if lvl >= 0 {
		a.tc.add(g, lvl, r)
	}
	a.col.add(i)
	if !r.Mapped() {
		st.UnmappedBytes += r.Size
		return
	}
	st.MappedRanges++
	if r.Valid() {
		st.ValidBytes += r.Size
	} else {
		st.InvalidBytes += r.Size
	}
	if lvl >= 0 && lvl < len(a.leaf) {
		c := 0
		if r.Attrs.Has(ptdump.AttrCont) {
			c = 1
		}
		l := &a.leaf[lvl][c]
		l.Bytes += r.Size
		l.Ranges++
	}
	as := a.attrs[r.Attrs.Perm]
	if as == nil {
		as = &AttrStat{Attrs: r.Attrs.Perm}
		a.attrs[r.Attrs.Perm] = as
	}
	as.Bytes += r.Size
	as.Ranges++
}

func (a *regionAcc) finish(g *ptdump.DumpGeometry) RegionStats {
	a.col.flush()
	st := a.st
	mapped := st.ValidBytes + st.InvalidBytes
	st.Leaves = []LeafStat{}
	for lvl := range a.leaf {
		if lvl >= len(g.Levels) {
			break
		}
		for _, c := range []int{1, 0} { // contiguous runs are the larger leaf
			l := a.leaf[lvl][c]
			if l.Ranges == 0 {
				continue
			}
			l.Level, l.Cont = g.Levels[lvl].Name, c == 1
			l.Leaf = g.LeafName(l.Level, l.Cont)
			l.LeafSize = g.Levels[lvl].Size
			if l.Cont && g.Levels[lvl].ContEntries > 0 {
				l.LeafSize *= uint64(g.Levels[lvl].ContEntries)
			}
			if mapped > 0 {
				l.Fraction = float64(l.Bytes) / float64(mapped)
			}
			st.Leaves = append(st.Leaves, l)
		}
	}
	st.AttrSets = make([]AttrStat, 0, len(a.attrs))
	for _, v := range a.attrs {
		st.AttrSets = append(st.AttrSets, *v)
	}
	sort.Slice(st.AttrSets, func(i, j int) bool {
		x, y := st.AttrSets[i], st.AttrSets[j]
		if x.Bytes != y.Bytes {
			return x.Bytes > y.Bytes
		}
		return x.Attrs < y.Attrs
	})
	st.Tables, st.TablePages = a.tc.stats(g)
	st.TableBytes = st.TablePages * g.PageSize
	st.Collapse = a.col.st
	return st
}

// Stats analyzes a dump: per region, the bytes at each leaf size and
// attribute set, the number of ranges, an estimate of the page-table pages
// the printed ranges need, and the PMD blocks a collapse would recover; and a
// headline for the linear map. It works per printed range (never per page), so
// its cost is proportional to the number of lines.
//
// It reads the dump as the kernel wrote it in note_page (mm/ptdump.c,
// arch/arm64/mm/ptdump.c): a line at a level is a run of entries at that level,
// CON marks contiguous-hint runs, and the levels' sizes come from the dump's
// geometry.
func Stats(d *ptdump.Dump) *Summary {
	g := &d.Geometry
	s := &Summary{
		Name: d.Name, Arch: d.Arch, PageSize: g.PageSize, VABits: g.VABits,
		Geometry: g.String(), GeometryBasis: g.Basis, Ranges: len(d.Ranges),
		Regions: []RegionStats{}, Notes: []string{},
	}
	regs, idx := ptdump.Regions(d)
	accs := make([]*regionAcc, len(regs))
	total := newAcc(d, "total", "")
	seen := &tableCounter{}
	for i := range d.Ranges {
		k := idx[i]
		if accs[k] == nil {
			accs[k] = newAcc(d, regs[k].Name, regs[k].Kind)
			accs[k].seen = seen
		}
		accs[k].add(d, i)
		total.add(d, i)
	}
	var lin *regionAcc
	linRegions := 0
	basis := ""
	for k, a := range accs {
		if a == nil {
			// Keep empty regions that a start marker opened (e.g. 4.x's empty
			// "Modules start"); drop the gaps after end markers.
			if regs[k].Kind != "gap" && regs[k].Basis == "marker" {
				s.Regions = append(s.Regions, RegionStats{Name: regs[k].Name, Kind: regs[k].Kind,
					Leaves: []LeafStat{}, AttrSets: []AttrStat{}})
			}
			continue
		}
		st := a.finish(g)
		s.Regions = append(s.Regions, st)
		if regs[k].Kind == "linear" {
			linRegions++
			if lin == nil {
				lin = newAcc(d, "linear", "linear")
				basis = fmt.Sprintf("from the %d-bit VA layout", g.VABits)
				if regs[k].Basis == "marker" {
					basis = "marker \"" + regs[k].Name + "\""
				}
			}
		}
	}
	// The total's own collapser sees runs that cross a marker, which the
	// per-region ones cut.
	s.Total = total.finish(g)
	if lin != nil {
		for i := range d.Ranges {
			if regs[idx[i]].Kind == "linear" {
				lin.add(d, i)
			}
		}
		ls := lin.finish(g)
		lm := &LinearMapStats{
			Basis: basis, MappedBytes: ls.ValidBytes + ls.InvalidBytes, Leaves: ls.Leaves,
			Tables: ls.Tables, TablePages: ls.TablePages, TableBytes: ls.TableBytes, Collapse: ls.Collapse,
		}
		if n := len(g.Levels); n > 0 {
			pte := g.Levels[n-1].Name
			for _, l := range ls.Leaves {
				if l.Level == pte && l.Cont {
					lm.ContPTEBytes += l.Bytes
				} else if l.Level == pte {
					lm.PTEBytes += l.Bytes
				}
			}
		}
		if lm.MappedBytes > 0 {
			lm.PTEFraction = float64(lm.PTEBytes) / float64(lm.MappedBytes)
			lm.ContPTEFraction = float64(lm.ContPTEBytes) / float64(lm.MappedBytes)
			lm.BasePageFraction = float64(lm.PTEBytes+lm.ContPTEBytes) / float64(lm.MappedBytes)
		}
		s.LinearMap = lm
	}
	if len(d.Tables) > 0 {
		s.TablesPrinted = printedTables(d)
	}
	var linMapped uint64
	if s.LinearMap != nil {
		linMapped = s.LinearMap.MappedBytes
	}
	s.RegionBasis, s.Notes = notes(d, regs, linRegions, linMapped)
	return s
}

// printedTables counts TBL lines by the level of the table they point to.
func printedTables(d *ptdump.Dump) []TableStat {
	g := &d.Geometry
	ts := make([]TableStat, 0, len(g.Levels))
	for j := 1; j < len(g.Levels); j++ {
		ts = append(ts, TableStat{Level: g.Levels[j].Name})
	}
	for i := range d.Tables {
		if l := g.Level(d.Tables[i].Level); l >= 0 && l+1 < len(g.Levels) {
			ts[l].Tables++
			ts[l].Bytes += g.PageSize
		}
	}
	return ts
}

func notes(d *ptdump.Dump, regs []ptdump.Region, linRegions int, linMapped uint64) (string, []string) {
	var ns []string
	basis := "none (no markers)"
	switch {
	case len(d.Markers) > 0:
		basis = "markers"
		vmalloc := false
		for _, m := range d.Markers {
			vmalloc = vmalloc || m.Kind == "vmalloc"
			if m.Kind == "linear" && !m.End && vmalloc && d.Arch == ptdump.ArchARM64 {
				basis = "markers (pre-5.4 order: linear map above vmalloc, its marker last)"
			}
		}
		ns = append(ns, "regions follow the marker lines as printed: a range belongs to the last marker above it")
	case len(regs) > 0 && regs[0].Basis == "layout" && d.Arch == ptdump.ArchARM64:
		basis = fmt.Sprintf("arm64 5.4+ VA layout (%d-bit VA), no markers in the dump", d.Geometry.VABits)
		ns = append(ns, "the dump has no marker lines; regions were placed by the 5.4+ kernel VA layout, which pre-5.4 kernels do not use")
	}
	if d.Arch == ptdump.ArchARM64 && len(d.Ranges) > 0 {
		ns = append(ns, "arm64 ptdump has no kernel-image marker: the image is inside the vmalloc region (KIMAGE_VADDR), counted there")
	}
	if d.Arch == ptdump.ArchARM64 && !d.HolesPrinted && len(d.Ranges) > 0 {
		ns = append(ns, "unmapped ranges are not printed (4.x format): gaps between lines are unmapped, and table counts are lower bounds")
	}
	if d.Skipped > 0 {
		ns = append(ns, fmt.Sprintf("the kernel skipped %d entries (line limit of a marker region); they are not counted", d.Skipped))
	}
	for _, r := range regs {
		if r.Kind == "kasan" {
			ns = append(ns, "KASAN shadow regions reuse shared early-shadow tables; their table counts are overestimates")
			break
		}
	}
	if linRegions == 0 && len(d.Ranges) > 0 {
		ns = append(ns, "no linear-map region identified")
	}
	if linRegions > 0 && linMapped == 0 {
		ns = append(ns, "the linear-map region holds no mapped range: its markers may be misplaced (x86 kernels of the 4.x era printed static markers under KASLR)")
	}
	ns = append(ns,
		"leaf sizes: entry size of the printed level, times the contiguous-run length when CON is shown",
		"page tables: one table per distinct table-sized block holding a line at that level or deeper (printed unmapped entries prove a table); the top-level table is not counted",
		"collapse: PMD-aligned blocks fully covered by valid PTE-level lines with one attribute set (CON ignored); assumes the physical pages behind are contiguous and aligned (true in the linear map, unknown elsewhere); TLB entries before count one per PTE and one per contiguous PTE run, after one per block")
	return basis, ns
}

// humanBytes prints a byte count in binary units with two decimals.
func humanBytes(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	u := 0
	v := float64(n) / 1024
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if v == float64(uint64(v)) {
		return fmt.Sprintf("%d %ciB", uint64(v), units[u])
	}
	return fmt.Sprintf("%.2f %ciB", v, units[u])
}

func pct(f float64) string { return fmt.Sprintf("%.2f%%", 100*f) }

func tablesText(ts []TableStat, pages, bytes uint64) string {
	var parts []string
	for _, t := range ts {
		if t.Tables > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", t.Level, t.Tables))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d pages, %s (%s)", pages, humanBytes(bytes), strings.Join(parts, ", "))
}

func collapseText(c CollapseStat) string {
	if c.Blocks == 0 {
		return "nothing to collapse"
	}
	return fmt.Sprintf("%d blocks of %s (%s): saves %d table pages (%s), TLB entries %d -> %d (saves %d)",
		c.Blocks, ptdump.FormatSize(c.BlockSize), humanBytes(c.Bytes), c.TablePagesSaved, humanBytes(c.TableBytesSaved),
		c.TLBEntriesBefore, c.TLBEntriesAfter, c.TLBEntriesBefore-c.TLBEntriesAfter)
}

// WriteText prints the summary as text tables.
func (s *Summary) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("%s: %s\n", s.Name, s.Geometry)
	ew.printf("  geometry: %s\n", s.GeometryBasis)
	ew.printf("  %d ranges; regions from %s\n", s.Ranges, s.RegionBasis)
	if lm := s.LinearMap; lm != nil {
		pte := "base pages (" + ptdump.FormatSize(s.PageSize) + ")"
		ew.printf("\nlinear map (%s):\n", lm.Basis)
		tw := tabwriter.NewWriter(ew, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "  mapped\t%s\n", humanBytes(lm.MappedBytes))
		fmt.Fprintf(tw, "  at %s\t%s\t(%s; without CON %s, in contiguous runs %s)\n", pte, pct(lm.BasePageFraction),
			humanBytes(lm.PTEBytes+lm.ContPTEBytes), pct(lm.PTEFraction), pct(lm.ContPTEFraction))
		fmt.Fprintf(tw, "  page tables\t%s\n", tablesText(lm.Tables, lm.TablePages, lm.TableBytes))
		fmt.Fprintf(tw, "  collapse to %s\t%s\n", "PMD blocks", collapseText(lm.Collapse))
		tw.Flush()
	}
	if len(s.TablesPrinted) > 0 {
		var pages, bytes uint64
		for _, t := range s.TablesPrinted {
			pages += t.Tables
			bytes += t.Bytes
		}
		ew.printf("\ntable pages from TBL lines (exact, whole dump): %s\n", tablesText(s.TablesPrinted, pages, bytes))
	}
	for i := range s.Regions {
		writeRegion(ew, &s.Regions[i])
	}
	writeRegion(ew, &s.Total)
	if len(s.Notes) > 0 {
		ew.printf("\nnotes:\n")
		for _, n := range s.Notes {
			ew.printf("  - %s\n", n)
		}
	}
	return ew.err
}

func writeRegion(ew *errWriter, r *RegionStats) {
	kind := r.Kind
	if kind == "" {
		kind = "-"
	}
	ew.printf("\nregion %q [%s]", r.Name, kind)
	if r.Ranges == 0 {
		ew.printf(": no ranges\n")
		return
	}
	ew.printf(" lines %d-%d, 0x%016x-0x%016x\n", r.FirstLine, r.LastLine, r.Start, r.End)
	ew.printf("  %d ranges (%d mapped); valid %s, present-invalid %s, printed unmapped %s\n",
		r.Ranges, r.MappedRanges, humanBytes(r.ValidBytes), humanBytes(r.InvalidBytes), humanBytes(r.UnmappedBytes))
	if len(r.Leaves) > 0 {
		tw := tabwriter.NewWriter(ew, 2, 8, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "  leaf\tbytes\tshare\tranges\t\n")
		for _, l := range r.Leaves {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t\n", l.Leaf, humanBytes(l.Bytes), pct(l.Fraction), l.Ranges)
		}
		tw.Flush()
	}
	if len(r.AttrSets) > 0 {
		tw := tabwriter.NewWriter(ew, 2, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "  attributes\tbytes\tranges\n")
		for _, a := range r.AttrSets {
			fmt.Fprintf(tw, "  %s\t%s\t%d\n", a.Attrs, humanBytes(a.Bytes), a.Ranges)
		}
		tw.Flush()
	}
	ew.printf("  page tables: %s\n", tablesText(r.Tables, r.TablePages, r.TableBytes))
	ew.printf("  collapse: %s\n", collapseText(r.Collapse))
}

// errWriter keeps the first write error so text output can be written
// without checking every call.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }
