package report_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/report"
	"github.com/ptlab/ptlab/workload"
)

// fake builds a result whose final sample has the given linear-map 4K bytes
// and set_memory calls.
func fake(preset string, pte4k, calls uint64) *workload.Result {
	p, _ := kernel.Preset(preset)
	m := kernel.Metrics{LeafSizes: [5]string{"1G", "32M", "2M", "64K", "4K"},
		Regions: []kernel.RegionMetrics{{Name: "linear map", LeafBytes: [5]uint64{0, 0, 1 << 30, 0, pte4k}}}, SetMemoryCalls: calls}
	r := &workload.Result{Preset: preset, Config: kernel.Config{Name: "box", Policy: p}, Final: m}
	r.Series = []workload.Sample{{Metrics: m}}
	return r
}

// The verdict is computed from the numbers: the moves it names, with their
// values, in the right lists; the invariant no-alias-split relaxes.
func TestVerdictFromNumbers(t *testing.T) {
	res := []*workload.Result{fake("mainline", 40<<20, 100), fake("collapse", 4<<20, 300), fake("no-alias-split", 40<<20, 100)}
	v := report.ComputeVerdict(res)
	if v.Baseline != "mainline" || len(v.Presets) != 2 {
		t.Fatalf("verdict %+v", v)
	}
	c := v.Presets[0]
	if len(c.Recovers) != 1 || c.Recovers[0].Key != "linear_pte_bytes" || len(c.Costs) != 1 || c.Costs[0].Key != "set_memory_calls" {
		t.Errorf("collapse: recovers %+v costs %+v", c.Recovers, c.Costs)
	}
	text := strings.Join(c.Sentences, " ")
	for _, want := range []string{"linear map 4K 40.0M → 4.0M (-90%)", "set_memory calls 100 → 300 (+200%)", "keeps every invariant"} {
		if !strings.Contains(text, want) {
			t.Errorf("collapse verdict %q lacks %q", text, want)
		}
	}
	n := v.Presets[1]
	if !strings.Contains(strings.Join(n.Sentences, " "), "no measurable difference") || len(n.Relaxes) != 1 {
		t.Errorf("no-alias-split: %q relaxes %v", n.Sentences, n.Relaxes)
	}
	if !strings.Contains(strings.Join(v.Summary, " "), "Best linear map 4K (4.0M)") {
		t.Errorf("summary %q", v.Summary)
	}
	var buf bytes.Buffer
	if err := report.WriteJSON(&buf, report.BuildJSON(&workload.Scenario{Name: "x"}, 0, res, v, false)); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
}

// Every row, CSV column and JSON field has an explanation.
func TestEveryRowExplained(t *testing.T) {
	if m := report.MissingExplanations(nil); len(m) != 0 {
		t.Errorf("without explanation: %v", m)
	}
	var buf bytes.Buffer
	if err := report.WriteExplain(&buf, nil); err != nil {
		t.Fatal(err)
	}
	for _, m := range report.Metrics() {
		if !strings.Contains(buf.String(), "["+m.Key+",") {
			t.Errorf("explain lacks %s", m.Key)
		}
	}
	b, err := json.Marshal(report.Schema())
	if err != nil || !strings.Contains(string(b), `"linear_pte_bytes"`) || !strings.Contains(string(b), "draft/2020-12") {
		t.Errorf("schema: %v", err)
	}
}

// A registered row without an explanation is refused.
func TestRegisterNeedsExplanation(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("a metric without explanation was registered")
		}
	}()
	report.Register(report.Metric{Key: "unexplained_test_metric", Final: func(*workload.Result) float64 { return 0 }})
}

// Rows a provider computes from the runs reach the table, the CSV, the
// JSON and the verdict without any other change.
func TestProviderRows(t *testing.T) {
	report.RegisterProvider(func(results []*workload.Result) []report.Metric {
		if results == nil {
			return nil
		}
		return []report.Metric{{Key: "test_provider_walks", Label: "test walks", Group: "test", Unit: report.UnitCount, Better: report.Lower,
			Explain: "A test row.", Final: func(r *workload.Result) float64 { return float64(r.Final.SetMemoryCalls) * 2 }}}
	})
	res := []*workload.Result{fake("mainline", 1<<20, 100), fake("collapse", 1<<20, 50)}
	var buf bytes.Buffer
	if err := report.CompareText(&buf, res, false); err != nil || !strings.Contains(buf.String(), "test walks") {
		t.Errorf("table lacks the provider row: %v", err)
	}
	v := report.ComputeVerdict(res)
	if !strings.Contains(strings.Join(v.Sentences, " "), "test walks 200 → 100") {
		t.Errorf("verdict lacks the provider row: %q", v.Sentences)
	}
	if m := report.MissingExplanations(res); len(m) != 0 {
		t.Errorf("without explanation: %v", m)
	}
}
