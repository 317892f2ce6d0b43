// Package report renders results for people and scripts: side-by-side
// comparison tables, CSV time series, JSON, a verdict, explanations and an
// HTML page. Every row comes from a registered Metric descriptor.
package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/workload"
)

// Bytes formats a byte count compactly ("-" for zero).
func Bytes(b uint64) string { return kernel.HumanBytes(b) }

// Format prints a metric value for the text table.
func Format(m *Metric, v float64) string {
	if m.Text != nil {
		return m.Text(v)
	}
	switch m.Unit {
	case UnitBytes:
		return Bytes(uint64(v))
	case UnitNS:
		return time.Duration(v).Round(time.Millisecond).String()
	case UnitPercent:
		return strconv.FormatFloat(v, 'f', 1, 64) + "%"
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func leafSizes(results []*workload.Result) [5]string {
	if len(results) == 0 {
		return [5]string{"1G", "32M", "2M", "64K", "4K"}
	}
	return results[0].Final.LeafSizes
}

// CompareText prints one column per preset, one row per metric; with timed,
// also the volatile rows (wall time), which differ between identical runs.
func CompareText(w io.Writer, results []*workload.Result, timed bool) error {
	if len(results) == 0 {
		return nil
	}
	sizes := leafSizes(results)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t", r.Preset)
	}
	fmt.Fprintln(tw)
	group := ""
	ms := MetricsFor(results)
	if timed {
		ms = MetricsTimed(results)
	}
	for _, m := range ms {
		if m.Qualifier != "" && m.Group != group {
			fmt.Fprintf(tw, "%s\t%s\n", m.Group, strings.Repeat("\t", len(results)))
		}
		group = m.Group
		label := m.LabelFor(sizes)
		if m.Qualifier != "" {
			label = "  " + m.tableLabel(sizes)
		}
		fmt.Fprintf(tw, "%s\t", label)
		for _, r := range results {
			fmt.Fprintf(tw, "%s\t", Format(&m, m.Value(r)))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return observedNotes(w, results)
}

// CSVHeader are the columns of CompareCSV: the preset, the time, and every
// metric that has a time series, by key.
func CSVHeader(results []*workload.Result) []string {
	h := []string{"preset", "t_seconds"}
	for _, m := range MetricsFor(results) {
		if m.Sample != nil {
			h = append(h, m.Key)
		}
	}
	return h
}

func csvValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// CompareCSV writes the time series of every result, one row per sample.
func CompareCSV(w io.Writer, results []*workload.Result) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader(results)); err != nil {
		return err
	}
	ms := MetricsFor(results)
	for _, r := range results {
		for i := range r.Series {
			s := &r.Series[i]
			rec := []string{r.Preset, strconv.FormatFloat(s.At.Seconds(), 'f', 0, 64)}
			for _, m := range ms {
				if m.Sample != nil {
					rec = append(rec, csvValue(m.Sample(s)))
				}
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}
