package report

import (
	"fmt"
	"strings"
	"sync"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/workload"
)

// Unit is what a metric counts.
type Unit string

const (
	UnitBytes   Unit = "bytes"
	UnitCount   Unit = "count"
	UnitPages   Unit = "pages"
	UnitNS      Unit = "ns"
	UnitCycles  Unit = "cycles"
	UnitPercent Unit = "percent"
)

// Better says which direction of a metric is an improvement; the verdict
// compares presets only on metrics that have one.
type Better int

const (
	Neutral Better = iota // more or less is neither good nor bad by itself
	Lower
	Higher
)

func (b Better) String() string {
	return [...]string{"neutral", "lower", "higher"}[b]
}

// Metric describes one row of the comparison: the text table, a CSV column
// (when Sample is set), a JSON field, a chart series, a verdict term. Every
// consumer works from this descriptor alone, so a new row needs no edit
// anywhere else.
type Metric struct {
	Key     string // JSON field and CSV column: lower_snake_case, stable
	Label   string // row label; with Leaf > 0 the leaf size is appended ("linear map 4K")
	Leaf    int    // 1..5: index+1 into kernel.LeafKinds, labels take the granule's size
	Group   string // rows are grouped, and charted, by Group
	Unit    Unit
	Better  Better
	Explain string // what it is and why it matters; required
	// Qualifier names what a label repeated across groups belongs to (the
	// CPU model of a TLB cost row): the text table prints the group as a
	// heading row above such rows, everything else appends it to the label.
	Qualifier string
	// Text formats a value for the table; nil formats by Unit.
	Text     func(v float64) string
	Volatile bool // differs between identical runs (wall time): not compared, shown only on request (compare --time)
	// Sample is the value at one point of the time series; nil for metrics
	// known only at the end of a run.
	Sample func(s *workload.Sample) float64
	// Final is the value at the end of a run; nil means Sample of the last
	// sample.
	Final func(r *workload.Result) float64
}

// Value is the metric's value at the end of r.
func (m *Metric) Value(r *workload.Result) float64 {
	if m.Final != nil {
		return m.Final(r)
	}
	if m.Sample != nil && len(r.Series) > 0 {
		return m.Sample(&r.Series[len(r.Series)-1])
	}
	return 0
}

// LabelFor is the row label for results of a granule whose leaf sizes are
// sizes ("1G", "32M", "2M", "64K", "4K" for 4K pages), with its qualifier.
func (m *Metric) LabelFor(sizes [5]string) string {
	l := m.tableLabel(sizes)
	if m.Qualifier != "" {
		l = strings.TrimSpace(l) + " (" + m.Qualifier + ")"
	}
	return l
}

// tableLabel is the label under the group heading of the text table.
func (m *Metric) tableLabel(sizes [5]string) string {
	if m.Leaf > 0 && m.Leaf <= len(sizes) {
		return m.Label + " " + sizes[m.Leaf-1]
	}
	return m.Label
}

var (
	regMu    sync.Mutex
	registry []Metric
	regKeys  = map[string]bool{}
)

// Register adds rows to every comparison (table, CSV, JSON, HTML, verdict,
// explain), in order after the ones already there. Packages that measure
// something new (a TLB cost model, the checker) call it from an init
// function. A duplicate key or a missing explanation panics: both are
// programming errors a test run shows at once.
func Register(ms ...Metric) {
	regMu.Lock()
	defer regMu.Unlock()
	for _, m := range ms {
		if m.Key == "" || regKeys[m.Key] {
			panic(fmt.Sprintf("report: metric key %q empty or registered twice", m.Key))
		}
		if m.Explain == "" {
			panic(fmt.Sprintf("report: metric %q has no explanation", m.Key))
		}
		if m.Sample == nil && m.Final == nil {
			panic(fmt.Sprintf("report: metric %q has no value", m.Key))
		}
		regKeys[m.Key] = true
		registry = append(registry, m)
	}
}

// Metrics returns every registered row in order.
func Metrics() []Metric {
	regMu.Lock()
	defer regMu.Unlock()
	return append([]Metric(nil), registry...)
}

// Provider describes rows known only from the runs themselves (columns an
// observer of the run declares, which depend on the machine's CPU models).
// With nil results it returns the rows it can describe without a run.
type Provider func(results []*workload.Result) []Metric

var providers []Provider

// RegisterProvider adds rows computed from the results to every
// comparison, after the registered ones.
func RegisterProvider(p Provider) {
	regMu.Lock()
	defer regMu.Unlock()
	providers = append(providers, p)
}

// MetricsFor returns the registered rows and the providers' rows for these
// results, in order; every consumer (table, CSV, JSON, verdict, HTML,
// explain) lists rows through it. A provider row without an explanation is
// reported by MissingExplanations. Volatile rows (host time) are left out,
// so the same scenario and seed give the same bytes; MetricsTimed adds them.
func MetricsFor(results []*workload.Result) []Metric { return metricsFor(results, false) }

// MetricsTimed is MetricsFor with the volatile rows last (compare --time).
func MetricsTimed(results []*workload.Result) []Metric { return metricsFor(results, true) }

func metricsFor(results []*workload.Result, timed bool) []Metric {
	var ms, volatile []Metric
	for _, m := range Metrics() {
		if m.Volatile {
			volatile = append(volatile, m) // wall time stays the last row
		} else {
			ms = append(ms, m)
		}
	}
	regMu.Lock()
	ps := append([]Provider(nil), providers...)
	regMu.Unlock()
	for _, p := range ps {
		ms = append(ms, p(results)...)
	}
	if !timed {
		return ms
	}
	return append(ms, volatile...)
}

func regionOf(m *kernel.Metrics, name string) *kernel.RegionMetrics {
	for i := range m.Regions {
		if m.Regions[i].Name == name {
			return &m.Regions[i]
		}
	}
	return &kernel.RegionMetrics{}
}

// leafExplain says what a leaf kind is, for a region's row.
var leafExplain = [5]string{
	"PUD block descriptors (1G with 4K pages): one TLB entry maps the whole block",
	"runs of 16 PMD blocks with the contiguous hint (contPMD, 32M with 4K pages): one TLB entry may cover the run",
	"PMD block descriptors (2M with 4K pages)",
	"runs of 16 PTEs with the contiguous hint (contPTE, 64K with 4K pages)",
	"single base-page PTEs (4K with 4K pages): the smallest leaf, one TLB entry per page, and a PTE table page per 2M",
}

var regionExplain = map[string]string{
	"linear map": "the linear map (the direct map of all RAM at PAGE_OFFSET); set_memory_* on vmalloc memory changes the linear alias of its pages too, splitting blocks",
	"modules":    "the modules region (module text and data, and the execmem ROX cache's chunks)",
	"vmalloc":    "the vmalloc range outside the kernel image (vmalloc, huge vmalloc, BPF and other execmem users placed there)",
}

func init() {
	kinds := []string{"pud", "contpmd", "pmd", "contpte", "pte"}
	for _, reg := range []struct{ name, key string }{{"linear map", "linear"}, {"modules", "modules"}, {"vmalloc", "vmalloc"}} {
		for i := range kinds {
			reg, i := reg, i
			better := Neutral
			if i == 4 {
				better = Lower // base pages are what splitting leaves behind
			}
			Register(Metric{
				Key: fmt.Sprintf("%s_%s_bytes", reg.key, kinds[i]), Label: reg.name, Leaf: i + 1, Group: reg.name + " leaf sizes",
				Unit: UnitBytes, Better: better,
				Explain: fmt.Sprintf("Bytes of %s mapped by %s.", regionExplain[reg.name], leafExplain[i]),
				Sample:  func(s *workload.Sample) float64 { return float64(regionOf(&s.Metrics, reg.name).LeafBytes[i]) },
			})
		}
	}
	count := func(f func(s *workload.Sample) uint64) func(s *workload.Sample) float64 {
		return func(s *workload.Sample) float64 { return float64(f(s)) }
	}
	Register(
		Metric{Key: "table_pages", Label: "page-table pages", Group: "page tables", Unit: UnitPages, Better: Lower,
			Explain: "Translation-table pages of the kernel's page tables (all levels, all regions), each one base page of memory: what block mappings save and splits cost.",
			Sample:  count(func(s *workload.Sample) uint64 { return uint64(s.Metrics.TablePages) })},
		Metric{Key: "linear_pte_tables", Label: "  linear map PTE tables", Group: "page tables", Unit: UnitPages, Better: Lower,
			Explain: "PTE tables under the linear map: one per 2M (4K pages) that is mapped with PTEs instead of a PMD block.",
			Sample:  count(func(s *workload.Sample) uint64 { return uint64(regionOf(&s.Metrics, "linear map").TablePages[4]) })},
		Metric{Key: "splits_pud_pmd", Label: "splits PUD->PMD", Group: "splits", Unit: UnitCount, Better: Lower,
			Explain: "PUD blocks split into a table of PMD blocks (split_kernel_leaf_mapping / the pageattr walk), each with a TLB invalidation.",
			Sample:  count(func(s *workload.Sample) uint64 { return uint64(s.Metrics.Splits.Blocks.Get(arm64.LevelPUD)) })},
		Metric{Key: "splits_contpmd", Label: "splits contPMD", Group: "splits", Unit: UnitCount, Better: Lower,
			Explain: "Contiguous PMD runs (contPMD) broken into single PMD blocks.",
			Sample:  count(func(s *workload.Sample) uint64 { return uint64(s.Metrics.Splits.ContRun.Get(arm64.LevelPMD)) })},
		Metric{Key: "splits_pmd_pte", Label: "splits PMD->PTE", Group: "splits", Unit: UnitCount, Better: Lower,
			Explain: "PMD blocks split into a PTE table: a new table page and, in the linear map, 512 TLB entries where there was one.",
			Sample:  count(func(s *workload.Sample) uint64 { return uint64(s.Metrics.Splits.Blocks.Get(arm64.LevelPMD)) })},
		Metric{Key: "splits_contpte", Label: "splits contPTE", Group: "splits", Unit: UnitCount, Better: Lower,
			Explain: "Contiguous PTE runs (contPTE) broken into single PTEs.",
			Sample:  count(func(s *workload.Sample) uint64 { return uint64(s.Metrics.Splits.ContRun.Get(arm64.LevelPTE)) })},
		Metric{Key: "collapses_pmd_linear", Better: Lower, Label: "collapses PMD linear", Group: "collapses", Unit: UnitCount,
			Explain: "PTE tables of the linear map folded back into a PMD block (the RFC's patch 6 or ptlab's collapse); mainline never folds. Each fold is work (a break-before-make or BBML2 store, a TLBI, a freed table), so the verdict counts folds as a cost and their result (fewer small leaves, fewer tables) as the gain.",
			Sample:  count(func(s *workload.Sample) uint64 { return s.Collapse.PMDLinear })},
		Metric{Key: "collapses_pmd_vmalloc", Better: Lower, Label: "collapses PMD vmalloc", Group: "collapses", Unit: UnitCount,
			Explain: "PTE tables in the vmalloc and modules ranges folded into a PMD block (ptlab's collapse).",
			Sample:  count(func(s *workload.Sample) uint64 { return s.Collapse.PMDVmalloc })},
		Metric{Key: "collapses_contpte", Better: Lower, Label: "collapses contPTE", Group: "collapses", Unit: UnitCount,
			Explain: "Runs of 16 PTEs given the contiguous hint by a collapse.",
			Sample:  count(func(s *workload.Sample) uint64 { return s.Collapse.ContPTE })},
		Metric{Key: "collapses_contpmd", Better: Lower, Label: "collapses contPMD", Group: "collapses", Unit: UnitCount,
			Explain: "Runs of 16 PMD blocks given the contiguous hint by a collapse.",
			Sample:  count(func(s *workload.Sample) uint64 { return s.Collapse.ContPMD })},
		Metric{Key: "collapses_pud", Better: Lower, Label: "collapses PUD", Group: "collapses", Unit: UnitCount,
			Explain: "PMD tables folded into a PUD block by a collapse.",
			Sample:  count(func(s *workload.Sample) uint64 { return s.Collapse.PUD })},
		Metric{Key: "collapse_refused", Label: "collapse refused", Group: "collapses", Unit: UnitCount, Better: Lower,
			Explain: "Collapse attempts turned down by the checks (entries not all present with equal attributes, not physically contiguous, or the area still in use): work done for nothing.",
			Sample:  count(func(s *workload.Sample) uint64 { return s.Collapse.Refused })},
		Metric{Key: "collapse_warned", Label: "collapse warned", Group: "collapses", Unit: UnitCount, Better: Lower,
			Explain: "Collapse attempts refused with a kernel WARN (rfc-v1 folding an alias that is not PMD aligned): each is a splat in dmesg on a real kernel.",
			Sample:  count(func(s *workload.Sample) uint64 { return s.Collapse.Warned })},
	)
	tlbi := []struct {
		kind    kernel.TLBIKind
		explain string
	}{
		{kernel.TLBIVAALE1IS, "TLBI VAALE1IS broadcasts: invalidate the last-level entry of one page on every CPU (flush_tlb_kernel_range page by page)."},
		{kernel.TLBIRVAALE1IS, "TLBI RVAALE1IS broadcasts: range invalidation of last-level entries (FEAT_TLBIRANGE), one per flush of a range."},
		{kernel.TLBIVMALLE1IS, "TLBI VMALLE1IS broadcasts: invalidate every entry on every CPU, issued when a range exceeds MAX_DVM_OPS; all CPUs refill their TLBs afterwards."},
		{kernel.TLBIVAAE1IS, "TLBI VAAE1IS broadcasts: invalidate all levels of walk-cache entries for a page, needed when a table page is freed (after a fold)."},
	}
	for _, t := range tlbi {
		t := t
		Register(Metric{Key: "tlbi_" + t.kind.String(), Label: "TLBI " + t.kind.String(), Group: "TLB invalidations", Unit: UnitCount, Better: Lower,
			Explain: t.explain, Sample: count(func(s *workload.Sample) uint64 { return s.Metrics.TLBI[t.kind] })})
	}
	Register(
		Metric{Key: "tlbi_rvaale1is_insns", Label: "  rvaale1is instructions", Group: "TLB invalidations", Unit: UnitCount, Better: Lower,
			Explain: "TLBI RVAALE1IS instructions: one range flush may need several (each covers up to 32 << scale pages).",
			Sample:  count(func(s *workload.Sample) uint64 { return s.Metrics.TLBIInsns[kernel.TLBIRVAALE1IS] })},
		Metric{Key: "set_memory_calls", Label: "set_memory calls", Group: "permission changes", Unit: UnitCount, Better: Lower,
			Explain: "Calls of set_memory_ro/rw/x/nx/rox and set_direct_map_*: each walks the tables, may split, and flushes the TLB.",
			Sample:  count(func(s *workload.Sample) uint64 { return s.Metrics.SetMemoryCalls })},
		Metric{Key: "page_updates", Label: "page updates", Group: "permission changes", Unit: UnitCount, Better: Lower,
			Explain: "Page descriptors rewritten by the pageattr walk (one per base page or block whose permission changed): the work permission changes do.",
			Final:   func(r *workload.Result) float64 { return float64(r.PageUpdates) }},
		Metric{Key: "execmem_chunks", Label: "execmem chunks", Group: "ROX cache", Unit: UnitCount,
			Explain: "Chunks the execmem ROX cache holds (huge vmalloc areas of 2M and more whose text is shared by modules, BPF and trampolines); 0 without a ROX cache.",
			Sample:  count(func(s *workload.Sample) uint64 { return uint64(s.Cache.Chunks) })},
		Metric{Key: "cache_busy_bytes", Label: "  busy in chunks", Group: "ROX cache", Unit: UnitBytes,
			Explain: "Bytes of the ROX cache's chunks given out to text (modules, BPF programs, trampolines).",
			Sample:  count(func(s *workload.Sample) uint64 { return s.Cache.BusyBytes })},
		Metric{Key: "cache_free_bytes", Label: "  free in chunks", Group: "ROX cache", Unit: UnitBytes, Better: Lower,
			Explain: "Bytes of the ROX cache's chunks that are free: memory held and mapped but unused (filled with trapping instructions).",
			Sample:  count(func(s *workload.Sample) uint64 { return s.Cache.FreeBytes })},
		Metric{Key: "cache_free_ranges", Label: "  free ranges", Group: "ROX cache", Unit: UnitCount, Better: Lower,
			Explain: "Free ranges in the ROX cache: how fragmented its free space is.",
			Sample:  count(func(s *workload.Sample) uint64 { return uint64(s.Cache.FreeRanges) })},
		Metric{Key: "cache_largest_free", Label: "  largest free range", Group: "ROX cache", Unit: UnitBytes,
			Explain: "The largest free range in the ROX cache: the biggest allocation it can serve without a new chunk.",
			Sample:  count(func(s *workload.Sample) uint64 { return s.Cache.LargestFree })},
		Metric{Key: "cache_populates", Label: "  chunks populated", Group: "ROX cache", Unit: UnitCount,
			Explain: "Chunks the ROX cache allocated and mapped (each changes its linear alias's permissions once).",
			Sample:  count(func(s *workload.Sample) uint64 { return s.Cache.Populates })},
		Metric{Key: "cache_releases", Label: "  chunks released", Group: "ROX cache", Unit: UnitCount,
			Explain: "Chunks the ROX cache's shrinker gave back (their alias restored)",
			Sample:  count(func(s *workload.Sample) uint64 { return s.Cache.Releases })},
		Metric{Key: "memfree_bytes", Label: "MemFree", Group: "memory", Unit: UnitBytes, Better: Higher,
			Explain: "Free memory left to the page allocator (MemFree of /proc/meminfo): page tables and cache chunks come out of it.",
			Sample:  count(func(s *workload.Sample) uint64 { return s.Metrics.MemFreeKiB << 10 })},
		Metric{Key: "refused_operations", Label: "refused operations", Group: "errors", Unit: UnitCount, Better: Lower,
			Explain: "Operations of the workload the kernel refused (module loads or JIT allocations failing with -ENOMEM or -EINVAL): a policy that refuses work is not a fair win.",
			Final:   func(r *workload.Result) float64 { return float64(r.Refused) }},
		Metric{Key: "wall_ns", Label: "wall time", Group: "run", Unit: UnitNS, Volatile: true,
			Explain: "How long the model took to run the scenario under the preset (host time, not kernel time): varies between runs.",
			Final:   func(r *workload.Result) float64 { return float64(r.WallNS) }},
	)
}
