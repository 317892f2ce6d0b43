package report_test

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/ptlab/ptlab/report"
	"github.com/ptlab/ptlab/workload"
)

func TestCompareTextAndCSV(t *testing.T) {
	s, _ := workload.DefaultScenario()
	s.Config = workload.NewConfigOverride([]byte("ram: [{base: 0x80000000, size: 2G}]"), "test.yaml")
	s.Work.Duration = workload.Duration(3 * time.Minute)
	s.Presets = []string{"mainline", "collapse"}
	var res []*workload.Result
	for _, p := range s.Presets {
		r, err := workload.Run(s, p, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		res = append(res, r)
	}
	var buf bytes.Buffer
	if err := report.CompareText(&buf, res, false); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"mainline", "collapse", "linear map 1G", "page-table pages", "TLBI vmalle1is", "execmem chunks"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	buf.Reset()
	if err := report.CompareCSV(&buf, res); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	// Header plus 4 samples (0, 1, 2, 3 minutes) per preset.
	if len(recs) != 1+2*4 || len(recs[1]) != len(report.CSVHeader(res)) {
		t.Errorf("%d records of %d fields", len(recs), len(recs[1]))
	}
}
