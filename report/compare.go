// Package report renders results for people and scripts: side-by-side
// comparison tables, CSV time series, JSON.
package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/workload"
)

// Bytes formats a byte count compactly ("-" for zero).
func Bytes(b uint64) string { return kernel.HumanBytes(b) }

type row struct {
	label string
	val   func(r *workload.Result) string
}

func region(r *workload.Result, name string) kernel.RegionMetrics {
	for _, g := range r.Final.Regions {
		if g.Name == name {
			return g
		}
	}
	return kernel.RegionMetrics{}
}

func u(v uint64) string { return strconv.FormatUint(v, 10) }

func compareRows(results []*workload.Result) []row {
	var rows []row
	sizes := results[0].Final.LeafSizes
	for _, reg := range []string{"linear map", "modules", "vmalloc"} {
		for i, sz := range sizes {
			reg, i := reg, i
			rows = append(rows, row{fmt.Sprintf("%s %s", reg, sz), func(r *workload.Result) string { return Bytes(region(r, reg).LeafBytes[i]) }})
		}
	}
	rows = append(rows,
		row{"page-table pages", func(r *workload.Result) string {
			return fmt.Sprintf("%d (%d KiB)", r.Final.TablePages, r.Final.TableKiB)
		}},
		row{"  linear map PTE tables", func(r *workload.Result) string { return strconv.Itoa(region(r, "linear map").TablePages[4]) }},
		row{"splits PUD->PMD", func(r *workload.Result) string { return strconv.Itoa(r.Final.Splits.Blocks[1]) }},
		row{"splits contPMD", func(r *workload.Result) string { return strconv.Itoa(r.Final.Splits.ContRun[2]) }},
		row{"splits PMD->PTE", func(r *workload.Result) string { return strconv.Itoa(r.Final.Splits.Blocks[2]) }},
		row{"splits contPTE", func(r *workload.Result) string { return strconv.Itoa(r.Final.Splits.ContRun[3]) }},
		row{"collapses PMD linear", func(r *workload.Result) string { return u(r.Collapse.PMDLinear) }},
		row{"collapses PMD vmalloc", func(r *workload.Result) string { return u(r.Collapse.PMDVmalloc) }},
		row{"collapses contPTE/contPMD/PUD", func(r *workload.Result) string {
			return fmt.Sprintf("%d/%d/%d", r.Collapse.ContPTE, r.Collapse.ContPMD, r.Collapse.PUD)
		}},
		row{"collapse refused/warned", func(r *workload.Result) string { return fmt.Sprintf("%d/%d", r.Collapse.Refused, r.Collapse.Warned) }},
		row{"TLBI vaale1is", func(r *workload.Result) string { return u(r.Final.TLBI["vaale1is"]) }},
		row{"TLBI rvaale1is (insns)", func(r *workload.Result) string {
			return fmt.Sprintf("%d (%d)", r.Final.TLBI["rvaale1is"], r.Final.TLBIInsns["rvaale1is"])
		}},
		row{"TLBI vmalle1is", func(r *workload.Result) string { return u(r.Final.TLBI["vmalle1is"]) }},
		row{"TLBI vaae1is", func(r *workload.Result) string { return u(r.Final.TLBI["vaae1is"]) }},
		row{"set_memory calls", func(r *workload.Result) string { return u(r.Final.SetMemoryCalls) }},
		row{"page updates", func(r *workload.Result) string { return u(r.PageUpdates) }},
		row{"execmem chunks", func(r *workload.Result) string { return strconv.Itoa(r.Cache.Chunks) }},
		row{"  busy / free in chunks", func(r *workload.Result) string {
			return fmt.Sprintf("%s / %s", Bytes(r.Cache.BusyBytes), Bytes(r.Cache.FreeBytes))
		}},
		row{"  free ranges, largest", func(r *workload.Result) string {
			return fmt.Sprintf("%d, %s", r.Cache.FreeRanges, Bytes(r.Cache.LargestFree))
		}},
		row{"  populated / released", func(r *workload.Result) string { return fmt.Sprintf("%d / %d", r.Cache.Populates, r.Cache.Releases) }},
		row{"MemFree", func(r *workload.Result) string { return Bytes(r.Final.MemFreeKiB << 10) }},
		row{"refused operations", func(r *workload.Result) string { return strconv.Itoa(len(r.Failed)) }},
	)
	rows = append(rows, observedRows(results)...)
	rows = append(rows,
		row{"wall time", func(r *workload.Result) string { return time.Duration(r.WallNS).Round(time.Millisecond).String() }},
	)
	return rows
}

// CompareText prints one column per preset, one row per metric.
func CompareText(w io.Writer, results []*workload.Result) error {
	if len(results) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t", r.Preset)
	}
	fmt.Fprintln(tw)
	for _, rw := range compareRows(results) {
		fmt.Fprintf(tw, "%s\t", rw.label)
		for _, r := range results {
			fmt.Fprintf(tw, "%s\t", rw.val(r))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return observedNotes(w, results)
}

// CSVHeader are the columns of CompareCSV.
var CSVHeader = []string{"preset", "t_seconds",
	"linear_pud_bytes", "linear_contpmd_bytes", "linear_pmd_bytes", "linear_contpte_bytes", "linear_pte_bytes",
	"vmalloc_pmd_bytes", "vmalloc_contpte_bytes", "vmalloc_pte_bytes",
	"modules_pmd_bytes", "modules_contpte_bytes", "modules_pte_bytes",
	"table_pages", "splits", "collapses", "tlbi_broadcasts", "tlbi_all", "set_memory_calls",
	"execmem_chunks", "cache_free_bytes", "memfree_kib"}

// CompareCSV writes the time series of every result, one row per sample.
func CompareCSV(w io.Writer, results []*workload.Result) error {
	cw := csv.NewWriter(w)
	obs := observedHeader(results)
	if err := cw.Write(append(append([]string(nil), CSVHeader...), obs...)); err != nil {
		return err
	}
	for _, r := range results {
		for _, s := range r.Series {
			m := &s.Metrics
			reg := func(name string) kernel.RegionMetrics {
				for _, g := range m.Regions {
					if g.Name == name {
						return g
					}
				}
				return kernel.RegionMetrics{}
			}
			lin, vm, mod := reg("linear map"), reg("vmalloc"), reg("modules")
			var tlbi uint64
			for _, v := range m.TLBI {
				tlbi += v
			}
			rec := []string{r.Preset, strconv.FormatFloat(s.At.Seconds(), 'f', 0, 64),
				u(lin.LeafBytes[0]), u(lin.LeafBytes[1]), u(lin.LeafBytes[2]), u(lin.LeafBytes[3]), u(lin.LeafBytes[4]),
				u(vm.LeafBytes[2]), u(vm.LeafBytes[3]), u(vm.LeafBytes[4]),
				u(mod.LeafBytes[2]), u(mod.LeafBytes[3]), u(mod.LeafBytes[4]),
				strconv.Itoa(m.TablePages), strconv.Itoa(m.Splits.Total()), u(s.Collapse.Total()), u(tlbi), u(m.TLBI["vmalle1is"]),
				u(m.SetMemoryCalls), strconv.Itoa(s.Cache.Chunks), u(s.Cache.FreeBytes), u(m.MemFreeKiB)}
			rec = append(rec, observedCSV(&s, len(obs))...)
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}
