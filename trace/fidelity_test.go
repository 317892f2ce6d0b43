package trace

import (
	"os"
	"path/filepath"
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
	s := &workload.Scenario{Name: "qemu", Machine: "qemu-virt", Presets: []string{"mainline"},
		Import: beforePath, Work: workload.Workload{Modules: "none"}, Replay: tl.Replay}
	mb, ma, _, _ := replayPinned(t, s, rec)
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
	tres, twhy, trest := ExplainTables(Dumps{before, after, mb, ma}, explained)
	if tres != 0 {
		residual["tables PTE"] = tres
	}
	for _, w := range twhy {
		t.Logf("explained table difference: %s", w)
	}
	for _, b := range trest {
		t.Errorf("PTE table difference at %#x", b)
	}
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
func replayPinned(t *testing.T, s *workload.Scenario, rec *Recording) (before, after *ptdump.Dump, misplaced []workload.Misplaced, explained []string) {
	t.Helper()
	before, after, res, misplaced, err := ModelDump(s, "mainline")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Failed {
		t.Errorf("the model refused an operation: %s", f)
	}
	explained, bad := ExplainMisplaced(rec, misplaced)
	for _, e := range explained {
		t.Logf("explained misplacement: %s", e)
	}
	for _, m := range bad {
		t.Errorf("misplaced: %v", m)
	}
	return before, after, misplaced, explained
}
