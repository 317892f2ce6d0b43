package report

import (
	"fmt"
	"io"
	"strconv"

	"github.com/ptlab/ptlab/workload"
)

// Rows, CSV columns and notes of the run's observers (the TLB cost model),
// generated from the typed columns the observers declare.

func formatObserved(c workload.Column, v float64) string {
	if c.Digits < 0 {
		return workload.SI(v)
	}
	return strconv.FormatFloat(v, 'f', c.Digits, 64)
}

// observedRows are one row per observed column, headed by its group.
func observedRows(results []*workload.Result) []row {
	cols := results[0].ObservedColumns
	var rows []row
	group := ""
	for i, c := range cols {
		if c.Group != group {
			group = c.Group
			rows = append(rows, row{group + " (TLB cost model)", func(*workload.Result) string { return "" }})
		}
		i, c := i, c
		rows = append(rows, row{"  " + c.Label, func(r *workload.Result) string {
			if i >= len(r.ObservedFinal) {
				return "-"
			}
			return formatObserved(c, r.ObservedFinal[i])
		}})
	}
	return rows
}

// observedNotes prints the observers' notes (assumptions, scaling) once.
func observedNotes(w io.Writer, results []*workload.Result) error {
	if len(results) == 0 || len(results[0].ObservedNotes) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	for _, n := range results[0].ObservedNotes {
		if _, err := fmt.Fprintln(w, n); err != nil {
			return err
		}
	}
	return nil
}

// observedHeader are the CSV columns of the observed values.
func observedHeader(results []*workload.Result) []string {
	if len(results) == 0 {
		return nil
	}
	var h []string
	for _, c := range results[0].ObservedColumns {
		h = append(h, c.Key)
	}
	return h
}

// observedCSV are one sample's observed values, full precision.
func observedCSV(s *workload.Sample, n int) []string {
	rec := make([]string, n)
	for i := range rec {
		if i < len(s.Observed) {
			rec[i] = strconv.FormatFloat(s.Observed[i], 'g', -1, 64)
		}
	}
	return rec
}
