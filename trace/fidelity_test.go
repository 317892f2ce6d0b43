package trace

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/workload"
)

// fidelityRegions are the regions whose change the replay must predict.
var fidelityRegions = []string{"modules+vmalloc", "linear"}

// checkRecording imports a QEMU recording between its "before" and "after"
// marks, replays it under mainline from the "before" capture's linear map,
// and compares how each region changed in the model with how it changed in
// the real kernel. Every event must be mapped or listed with a reason;
// every difference must be one explained in knownDifferences.
func checkRecording(t *testing.T, recPath, beforePath, afterPath string) []Difference {
	t.Helper()
	rec, err := Open(recPath)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := Build(rec, Options{From: "before", To: "after", Pinned: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.Mappings) != len(rec.Events) {
		t.Fatalf("%d mappings for %d events", len(tl.Mappings), len(rec.Events))
	}
	// The recorder and the importer know every event of these kernels.
	for _, m := range tl.Unmapped() {
		t.Errorf("line %d: %s unmapped: %s", m.Line, m.Event, m.Reason)
	}
	before, after := parseDumpFile(t, beforePath), parseDumpFile(t, afterPath)
	// The model boots the recorded release (uname -r of the meta block;
	// recordings older than the capture's OSRELEASE header would get the
	// newest profile) with its rodata= (qemu-virt's machine data says
	// "on", which 6.12 reads as no alias protection).
	s := &workload.Scenario{Name: "qemu", Machine: "qemu-virt", Presets: []string{"mainline"},
		Config: workload.NewConfigOverride(fmt.Appendf(nil, "rodata: %q\nkernel: %q\n", rec.Rodata(), rec.Meta["kernel"]), "recording.yaml"),
		Import: beforePath, Work: workload.Workload{Modules: "none"}, Replay: tl.Replay}
	run, _ := replayPinned(t, s, rec)
	mb, ma := run.Before, run.After
	// The module/vmalloc region, page by page.
	mm := ComparePages(ChangedPages(before, after, "modules+vmalloc", 4096), ChangedPages(mb, ma, "modules+vmalloc", 4096), 4096)
	explained, rest := ExplainLate(rec, "before", "after", mm, Dumps{before, after, mb, ma})
	for _, e := range explained {
		t.Logf("explained page difference: %s", e)
	}
	for _, m := range rest {
		t.Errorf("page difference: %v", m)
	}
	// The linear map (physical placement differs, so per permission and
	// leaf size) and the module/vmalloc region's totals: a difference of
	// the latter must be exactly what the explained pages add up to.
	diffs := CompareChanges(fidelityRegions, before, after, mb, ma)
	residual := ExplainedResidual(explained, Dumps{before, after, mb, ma}, 4096)
	checkTables(t, before, after, run, explained)
	for _, d := range diffs {
		if d.Region == "modules+vmalloc" && residual[d.What] == d.Model-d.Real && d.Model != d.Real {
			t.Logf("difference (the explained pages above): %v", d)
			delete(residual, d.What)
			continue
		}
		t.Errorf("difference: %v", d)
	}
	for k, v := range residual {
		total := int64(0)
		for _, d := range diffs {
			if d.Region == "modules+vmalloc" && d.What == k {
				total = d.Model - d.Real
			}
		}
		t.Errorf("the explained pages account for modules+vmalloc %s model - real %+d, the totals differ by %+d", k, v, total)
	}
	t.Logf("%d operations replayed; %d page ranges changed in the real module/vmalloc region; %d explained differences",
		len(tl.Replay.Ops), len(ChangedPages(before, after, "modules+vmalloc", 4096)), len(explained))
	return diffs
}

func parseDumpFile(t *testing.T, path string) *ptdump.Dump {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err = decompress(b, path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := ptdump.Parse(strings.NewReader(string(b)), filepath.Base(path), ptdump.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// replayPinned runs a pinned replay under mainline (ModelDump) and fails on
// every operation the model refused and on every module region its own
// lowest-fit search in the recorded module window placed elsewhere than the
// recording, unless ExplainMisplaced explains it from the recording.
func replayPinned(t *testing.T, s *workload.Scenario, rec *Recording) (run *ModelRun, explained []string) {
	t.Helper()
	run, err := ModelDump(s, "mainline")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range run.Result.Failed {
		t.Errorf("the model refused an operation: %s", f)
	}
	explained, bad := ExplainMisplaced(rec, run.Misplaced)
	for _, e := range explained {
		t.Logf("explained misplacement: %s", e)
	}
	for _, m := range bad {
		t.Errorf("misplaced: %v", m)
	}
	return run, explained
}

// tableRow is one level's table pages in one region ("modules+vmalloc" or
// "all" for the whole tree), real and model, before and after.
type tableRow struct {
	Region, Level  string
	RB, RA, MB, MA int64
}

func (r tableRow) String() string {
	return fmt.Sprintf("%s %s tables: real %d -> %d (%+d), ptlab %d -> %d (%+d)", r.Region, r.Level, r.RB, r.RA, r.RA-r.RB, r.MB, r.MA, r.MA-r.MB)
}

// checkTables compares the table pages the recorded window added, level by
// level, real against model, and every table page whose change differs:
// exactly when both captures carry table lines (capture --tables; the
// model's from the census of its own tables), else from the leaf estimate
// (PTE tables of the module/vmalloc region only). A difference must be one
// ExplainTables names, and the counts must differ by exactly what those add.
func checkTables(t *testing.T, before, after *ptdump.Dump, run *ModelRun, explained []Explained) (rows []tableRow, exact bool) {
	t.Helper()
	rb, exB := RegionTables(before)
	ra, exA := RegionTables(after)
	exact = exB && exA
	type counts struct{ rb, ra, mb, ma map[string]int64 }
	var region, whole counts
	var mb, ma TableSet
	if exact {
		mb, _ = DumpTables(run.Before, "modules+vmalloc")
		ma, _ = DumpTables(run.After, "modules+vmalloc")
		// The census and the table walk read the same tables.
		nz := func(m map[string]int64) map[string]int64 {
			return maps.Collect(func(yield func(string, int64) bool) {
				for k, v := range m {
					if v != 0 && !yield(k, v) {
						return
					}
				}
			})
		}
		if !maps.Equal(mb.Count(), nz(run.TablesBefore.Region)) || !maps.Equal(ma.Count(), nz(run.TablesAfter.Region)) {
			t.Errorf("the model's census %v -> %v and its table walk %v -> %v disagree", run.TablesBefore.Region, run.TablesAfter.Region, mb.Count(), ma.Count())
		}
		region = counts{rb.Count(), ra.Count(), run.TablesBefore.Region, run.TablesAfter.Region}
		wb, _ := DumpTables(before, "")
		wa, _ := DumpTables(after, "")
		whole = counts{wb.Count(), wa.Count(), run.TablesBefore.Whole, run.TablesAfter.Whole}
	} else {
		t.Logf("the captures carry no table lines (taken without --tables): falling back to the table pages estimated from the leaves (PTE tables of modules+vmalloc)")
		rb, ra = estimatedTables(before), estimatedTables(after)
		mb, ma = estimatedTables(run.Before), estimatedTables(run.After)
		est := func(d *ptdump.Dump) map[string]int64 {
			if s := RegionShapes(d)["modules+vmalloc"]; s != nil {
				return s.Tables
			}
			return map[string]int64{}
		}
		region = counts{est(before), est(after), est(run.Before), est(run.After)}
	}
	diffs := CompareTableSets(rb, ra, mb, ma)
	residual, why, rest := ExplainTables(diffs, explained)
	for _, w := range why {
		t.Logf("explained table difference: %s", w)
	}
	for _, d := range rest {
		t.Errorf("table difference: %v", d)
	}
	check := func(name string, c counts, residual map[string]int64) {
		for _, l := range levelOrder(sortedKeys(c.rb, c.ra, c.mb, c.ma)) {
			r := tableRow{name, l, c.rb[l], c.ra[l], c.mb[l], c.ma[l]}
			rows = append(rows, r)
			t.Logf("%v", r)
			if d := (r.MA - r.MB) - (r.RA - r.RB); d != residual[l] {
				t.Errorf("%s %s tables added: real %+d, ptlab %+d; the explained table differences account for %+d", name, l, r.RA-r.RB, r.MA-r.MB, residual[l])
			}
		}
	}
	check("modules+vmalloc", region, residual)
	if exact {
		// The whole tree: every table page outside the region must change
		// alike too.
		wb, _ := DumpTables(before, "")
		wa, _ := DumpTables(after, "")
		mwb, _ := DumpTables(run.Before, "")
		mwa, _ := DumpTables(run.After, "")
		wres, _, wrest := ExplainTables(CompareTableSets(wb, wa, mwb, mwa), explained)
		for _, d := range wrest {
			if regionKindAt(after, d.Key.VA) != "modules+vmalloc" {
				t.Errorf("table difference outside modules+vmalloc: %v", d)
			}
		}
		check("all", whole, wres)
	}
	return rows, exact
}

// levelOrder sorts level names from the root down (PGD, P4D, PUD, PMD, PTE).
func levelOrder(ls []string) []string {
	rank := map[string]int{"PGD": 0, "P4D": 1, "PUD": 2, "PMD": 3, "PTE": 4}
	slices.SortStableFunc(ls, func(a, b string) int { return rank[a] - rank[b] })
	return ls
}
