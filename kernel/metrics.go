package kernel

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
)

// LeafKinds names the five leaf kinds in descending size (for 4K pages: 1G
// PUD block, 32M contiguous PMDs, 2M PMD block, 64K contiguous PTEs, 4K PTE).
var LeafKinds = []string{"PUD", "contPMD", "PMD", "contPTE", "PTE"}

// RegionMetrics describes one region of the kernel VA space.
type RegionMetrics struct {
	Name       string    `json:"name"`
	Start, End uint64    `json:"-"`
	LeafBytes  [5]uint64 `json:"leaf_bytes"` // indexed like LeafKinds
	Invalid    uint64    `json:"present_invalid_bytes"`
	TablePages [5]int    `json:"table_pages"` // by kernel level: PGD, P4D, PUD, PMD, PTE
}

// Mapped is the number of bytes mapped by valid leaves.
func (r *RegionMetrics) Mapped() uint64 {
	var n uint64
	for _, b := range r.LeafBytes {
		n += b
	}
	return n
}

// Tables is the number of table pages serving the region.
func (r *RegionMetrics) Tables() int {
	n := 0
	for _, t := range r.TablePages {
		n += t
	}
	return n
}

// Metrics is a snapshot of what the kernel's mappings cost.
type Metrics struct {
	Machine        string             `json:"machine"`
	LeafSizes      [5]string          `json:"leaf_sizes"` // "1G", "32M", ... for this granule
	Regions        []RegionMetrics    `json:"regions"`
	TablePages     int                `json:"table_pages"`
	TableKiB       uint64             `json:"table_kib"`
	Splits         pgtable.SplitStats `json:"splits"`
	TLBI           TLBICounts         `json:"tlbi"`       // broadcasts by instruction
	TLBIInsns      TLBICounts         `json:"tlbi_insns"` // instructions by kind
	MemFreeKiB     uint64             `json:"memfree_kib"`
	Owned          map[string]uint64  `json:"owned_pages"`
	SetMemoryCalls uint64             `json:"set_memory_calls"`
	VmallocAreas   int                `json:"vmalloc_areas"`
	Warnings       []string           `json:"warnings,omitempty"`
}

func sizeName(b uint64) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%dG", b>>30)
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%dM", b>>20)
	default:
		return fmt.Sprintf("%dK", b>>10)
	}
}

// trackedRegions are the ranges the table operations keep counters for
// (pgtable.Track), in address order: the linear map, the modules area, the
// vmalloc area below the image, the image, the vmalloc area above it, and
// what lies above VMALLOC_END: vmemmap, PCI I/O and fixmap.
func (k *Kernel) trackedRegions() [][2]uint64 {
	im := [2]uint64{k.Image.VA, k.Image.VA + k.Image.End}
	return [][2]uint64{
		{k.Layout.PageOffset, k.Layout.PageEnd},
		{k.Layout.ModulesVaddr, k.Layout.ModulesEnd},
		{k.Layout.VmallocStart, im[0]},
		im,
		{im[1], k.Layout.VmallocEnd},
		{k.Layout.VmallocEnd, k.kernelOwnedEnd()},
	}
}

// kernelOwnedEnd is the end of the vmemmap/PCI I/O/fixmap region in either
// layout (fixmap on top since v6.5, vmemmap on top before).
func (k *Kernel) kernelOwnedEnd() uint64 { return max(k.Layout.FixaddrTop, k.Layout.VmemmapEnd) }

// trackRegions turns on the incremental census of the metric regions, so
// a metrics sample reads counters instead of walking every table. A layout
// whose regions are not disjoint and in order keeps the full census.
func (k *Kernel) trackRegions(c CPU) {
	if err := k.PT.Track(c, k.trackedRegions()); err != nil {
		k.warnOnce("metrics-track", "metrics: regions not tracked, every sample takes a census: %v", err)
	}
}

// regionCensus is what maps region i of trackedRegions: the tracked
// counters, or a full census when tracking is off or census is set.
func (k *Kernel) regionCensus(c CPU, i int, census bool) (pgtable.Census, error) {
	if k.PT.IsTracking() && !census {
		return k.PT.Tracked(i), nil
	}
	r := k.trackedRegions()[i]
	if r[0] == r[1] {
		return pgtable.Census{}, nil
	}
	return k.PT.TakeCensus(c, r[0], r[1])
}

// Metrics takes a snapshot: per region (linear map, modules, vmalloc, the
// kernel image) bytes at each leaf size and table pages by level; splits;
// TLB invalidations by kind; free memory. The region figures come from the
// counters the table operations keep (pgtable.Track), not from a walk.
func (k *Kernel) Metrics(c CPU) (Metrics, error) {
	return k.metrics(c, false)
}

// metrics is Metrics; with census set the region figures come from a full
// census (the oracle of the counters).
func (k *Kernel) metrics(c CPU, census bool) (Metrics, error) {
	g := &k.G
	m := Metrics{Machine: k.Cfg.Name, Owned: map[string]uint64{}}
	m.LeafSizes = [5]string{sizeName(g.Size(arm64.LevelPUD)), sizeName(g.ContSize(arm64.LevelPMD)), sizeName(g.Size(arm64.LevelPMD)), sizeName(g.ContSize(arm64.LevelPTE)), sizeName(g.Size(arm64.LevelPTE))}
	im := [2]uint64{k.Image.VA, k.Image.VA + k.Image.End}
	regions := []struct {
		name       string
		start, end uint64
		parts      []int // indexes into trackedRegions
	}{
		{"linear map", k.Layout.PageOffset, k.Layout.PageEnd, []int{0}},
		{"modules", k.Layout.ModulesVaddr, k.Layout.ModulesEnd, []int{1}},
		{"vmalloc", k.Layout.VmallocStart, k.Layout.VmallocEnd, []int{2, 4}}, // without the image inside it
		{"kernel image", im[0], im[1], []int{3}},
		{"vmemmap, PCI I/O, fixmap", k.Layout.VmallocEnd, k.kernelOwnedEnd(), []int{5}},
	}
	for _, r := range regions {
		var cs pgtable.Census
		for _, i := range r.parts {
			pc, err := k.regionCensus(c, i, census)
			if err != nil {
				return m, err
			}
			cs.Add(pc)
		}
		rm := RegionMetrics{Name: r.name, Start: r.start, End: r.end, Invalid: cs.Invalid}
		for l := g.StartLevel; l <= arm64.LastLevel; l++ {
			rm.TablePages[g.KLevel(l)] = cs.Tables.Get(l)
		}
		pud, pmd, pte := cs.Leaf.Get(arm64.LevelPUD), cs.Leaf.Get(arm64.LevelPMD), cs.Leaf.Get(arm64.LevelPTE)
		rm.LeafBytes = [5]uint64{pud[0] + pud[1], pmd[1], pmd[0], pte[1], pte[0]}
		if g.StartLevel > arm64.LevelPUD { // no level-1 tables in 2-level geometries
			rm.LeafBytes[0] = 0
		}
		m.Regions = append(m.Regions, rm)
	}
	m.TablePages = k.PT.TotalTablePages()
	m.TableKiB = uint64(m.TablePages) * g.PageSize() >> 10
	m.Splits = k.Stats.Split
	m.TLBI = k.TLB.Count
	m.TLBIInsns = k.TLB.Insns
	m.MemFreeKiB = k.Mem.FreePages() * g.PageSize() >> 10
	for o := physmem.Owner(1); o < physmem.NumOwners; o++ {
		m.Owned[o.String()] = k.Mem.OwnedPages(o)
	}
	m.SetMemoryCalls = k.Stats.SetMemoryCalls.Load()
	m.VmallocAreas = k.VM.busy.spans
	m.Warnings = k.Stats.Warnings
	return m, nil
}

// HumanBytes formats a byte count compactly for tables ("-" for zero).
func HumanBytes(b uint64) string {
	switch {
	case b == 0:
		return "-"
	case b >= 1<<30:
		return fmt.Sprintf("%.2fG", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(b)/(1<<20))
	default:
		return fmt.Sprintf("%dK", b>>10)
	}
}

// WriteText prints the metrics as aligned tables.
func (m *Metrics) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "region\t%s\tinvalid\ttables (PGD P4D PUD PMD PTE)\t\n", strings.Join(m.LeafSizes[:], "\t"))
	for _, r := range m.Regions {
		fmt.Fprintf(tw, "%s\t", r.Name)
		for _, b := range r.LeafBytes {
			fmt.Fprintf(tw, "%s\t", HumanBytes(b))
		}
		fmt.Fprintf(tw, "%s\t%d %d %d %d %d\t\n", HumanBytes(r.Invalid), r.TablePages[0], r.TablePages[1], r.TablePages[2], r.TablePages[3], r.TablePages[4])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	s := m.Splits
	fmt.Fprintf(w, "page-table pages: %d (%d KiB)   MemFree: %d KiB\n", m.TablePages, m.TableKiB, m.MemFreeKiB)
	fmt.Fprintf(w, "splits: PUD->PMD %d, contPMD %d, PMD->PTE %d, contPTE %d\n", s.Blocks.Get(arm64.LevelPUD), s.ContRun.Get(arm64.LevelPMD), s.Blocks.Get(arm64.LevelPMD), s.ContRun.Get(arm64.LevelPTE))
	fmt.Fprintf(w, "TLBI broadcasts: vaale1is %d (%d insns), rvaale1is %d (%d insns), vmalle1is %d, vaae1is %d\n",
		m.TLBI[TLBIVAALE1IS], m.TLBIInsns[TLBIVAALE1IS], m.TLBI[TLBIRVAALE1IS], m.TLBIInsns[TLBIRVAALE1IS], m.TLBI[TLBIVMALLE1IS], m.TLBI[TLBIVAAE1IS])
	fmt.Fprintf(w, "set_memory calls: %d   vmalloc areas: %d\n", m.SetMemoryCalls, m.VmallocAreas)
	for _, wn := range m.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", wn)
	}
	return nil
}
