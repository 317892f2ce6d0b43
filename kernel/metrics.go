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
	TLBI           map[string]uint64  `json:"tlbi"`       // broadcasts by instruction
	TLBIInsns      map[string]uint64  `json:"tlbi_insns"` // instructions by kind
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

// Metrics takes a snapshot: per region (linear map, modules, vmalloc, the
// kernel image) bytes at each leaf size and table pages by level; splits;
// TLB invalidations by kind; free memory.
func (k *Kernel) Metrics(c CPU) (Metrics, error) {
	g := &k.G
	m := Metrics{Machine: k.Cfg.Name, TLBI: map[string]uint64{}, TLBIInsns: map[string]uint64{}, Owned: map[string]uint64{}}
	m.LeafSizes = [5]string{sizeName(g.Size(1)), sizeName(g.ContSize(2)), sizeName(g.Size(2)), sizeName(g.ContSize(3)), sizeName(g.Size(3))}
	im := [2]uint64{k.Image.VA, k.Image.VA + k.Image.End}
	regions := []struct {
		name       string
		start, end uint64
	}{
		{"linear map", k.Layout.PageOffset, k.Layout.PageEnd},
		{"modules", k.Layout.ModulesVaddr, k.Layout.ModulesEnd},
		{"vmalloc", k.Layout.VmallocStart, k.Layout.VmallocEnd},
		{"kernel image", im[0], im[1]},
	}
	for _, r := range regions {
		cs, err := k.PT.TakeCensus(c, r.start, r.end)
		if err != nil {
			return m, err
		}
		if r.name == "vmalloc" { // the image lies inside the vmalloc range
			ics, err := k.PT.TakeCensus(c, im[0], im[1])
			if err != nil {
				return m, err
			}
			cs.Sub(ics)
		}
		rm := RegionMetrics{Name: r.name, Start: r.start, End: r.end, Invalid: cs.Invalid}
		for l := g.StartLevel; l <= arm64.LastLevel; l++ {
			rm.TablePages[g.KLevel(l)] = cs.Tables[l+1]
		}
		rm.LeafBytes = [5]uint64{cs.Leaf[1][0] + cs.Leaf[1][1], cs.Leaf[2][1], cs.Leaf[2][0], cs.Leaf[3][1], cs.Leaf[3][0]}
		if g.StartLevel > 1 { // no level-1 tables in 2-level geometries
			rm.LeafBytes[0] = 0
		}
		m.Regions = append(m.Regions, rm)
	}
	m.TablePages = k.PT.TotalTablePages()
	m.TableKiB = uint64(m.TablePages) * g.PageSize() >> 10
	m.Splits = k.Stats.Split
	for i := TLBIKind(0); i < numTLBIKinds; i++ {
		m.TLBI[i.String()] = k.TLB.Count[i]
		m.TLBIInsns[i.String()] = k.TLB.Insns[i]
	}
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
	fmt.Fprintf(w, "splits: PUD->PMD %d, contPMD %d, PMD->PTE %d, contPTE %d\n", s.Blocks[1], s.ContRun[2], s.Blocks[2], s.ContRun[3])
	fmt.Fprintf(w, "TLBI broadcasts: vaale1is %d (%d insns), rvaale1is %d (%d insns), vmalle1is %d, vaae1is %d\n",
		m.TLBI["vaale1is"], m.TLBIInsns["vaale1is"], m.TLBI["rvaale1is"], m.TLBIInsns["rvaale1is"], m.TLBI["vmalle1is"], m.TLBI["vaae1is"])
	fmt.Fprintf(w, "set_memory calls: %d   vmalloc areas: %d\n", m.SetMemoryCalls, m.VmallocAreas)
	for _, wn := range m.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", wn)
	}
	return nil
}
