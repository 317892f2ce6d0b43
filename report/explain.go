package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/ptlab/ptlab/workload"
)

// WriteExplain documents every row of the comparison table, every CSV
// column and every JSON field; with results, also the rows only runs know.
func WriteExplain(w io.Writer, results []*workload.Result) error {
	ew := &errWriter{w: w}
	ew.printf("Rows of the comparison (ptlab compare), by group. Leaf sizes are for 4K pages; 16K and 64K\n")
	ew.printf("granules have their own (contPTE 2M and PMD 32M with 16K; contPTE 2M and PMD 512M with 64K).\n")
	group := ""
	for _, m := range MetricsTimed(results) {
		if m.Group != group {
			group = m.Group
			ew.printf("\n%s\n", group)
		}
		better := ""
		switch m.Better {
		case Lower:
			better = "; lower is better"
		case Higher:
			better = "; higher is better"
		}
		series := ""
		if m.Sample == nil {
			series = "; end of run only"
		}
		ew.printf("  %s  [%s, %s%s%s]\n", strings.TrimSpace(m.LabelFor(leafSizes(nil))), m.Key, m.Unit, better, series)
		ew.printf("    %s\n", wrap(m.Explain, 96, "    "))
	}
	ew.printf("\nCSV columns (compare --csv): one row per preset and sample\n")
	ew.printf("  preset     the policy preset\n  t_seconds  simulated time of the sample\n")
	ew.printf("  then one column per metric with a time series, named by its key above:\n    %s\n",
		wrap(strings.Join(CSVHeader(results)[2:], " "), 96, "    "))
	ew.printf("\nJSON fields (compare --json; the JSON Schema: ptlab explain --schema)\n")
	for _, p := range JSONPaths() {
		ew.printf("  %s\n    %s\n", p, wrap(JSONFieldDocs[p], 96, "    "))
	}
	ew.printf("  presets[].values.<key>, presets[].series[].values.<key>\n    %s\n", JSONFieldDocs["presets[].values.<metric key>"])
	ew.printf("\nThe verdict compares every preset with %s on each metric that has a better direction,\n", Baseline)
	ew.printf("lists moves of at least %.0f%% in table order, and names the invariants a policy relaxes.\n", significant*100)
	return ew.err
}

// MissingExplanations lists rows, CSV columns and JSON fields without an
// explanation (a test keeps it empty), for these results' rows.
func MissingExplanations(results []*workload.Result) []string {
	var out []string
	for _, m := range MetricsTimed(results) {
		if strings.TrimSpace(m.Explain) == "" {
			out = append(out, "metric "+m.Key)
		}
	}
	for _, p := range JSONPaths() {
		if JSONFieldDocs[p] == "" {
			out = append(out, "JSON field "+p)
		}
	}
	keys := map[string]bool{"preset": true, "t_seconds": true}
	for _, m := range MetricsFor(results) {
		keys[m.Key] = true
	}
	for _, c := range CSVHeader(results) {
		if !keys[c] {
			out = append(out, fmt.Sprintf("CSV column %s", c))
		}
	}
	return out
}
