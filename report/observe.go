package report

import (
	"fmt"
	"io"
	"strconv"

	"github.com/ptlab/ptlab/workload"
)

// The run's observers (the TLB cost model) declare typed columns; a
// provider turns each into a row like any other, so the table, CSV, JSON,
// verdict, explain and HTML list them without knowing the observer.
func init() {
	RegisterProvider(observedMetrics)
}

// observedMetrics are one row per column the results' observers declared;
// without results, the columns the default scenario's observers declare
// (what "ptlab explain" documents).
func observedMetrics(results []*workload.Result) []Metric {
	var cols []workload.Column
	if len(results) > 0 {
		cols = results[0].ObservedColumns
	} else if s, err := workload.DefaultScenario(); err == nil {
		if obs, err := workload.ScenarioObservers(s); err == nil {
			for _, o := range obs {
				cols = append(cols, o.Columns()...)
			}
		}
	}
	var ms []Metric
	for i, c := range cols {
		i, c := i, c
		better := Neutral
		switch c.Better {
		case "lower":
			better = Lower
		case "higher":
			better = Higher
		}
		unit := Unit(c.Unit)
		if unit == "" {
			unit = UnitCount
		}
		ms = append(ms, Metric{
			Key: c.Key, Label: c.Label, Qualifier: c.Group, Group: c.Group + " (TLB cost model)", Unit: unit, Better: better,
			Explain: c.Explain,
			Text: func(v float64) string {
				if c.Digits < 0 {
					return workload.SI(v)
				}
				return strconv.FormatFloat(v, 'f', c.Digits, 64)
			},
			Sample: func(s *workload.Sample) float64 {
				if i < len(s.Observed) {
					return s.Observed[i]
				}
				return 0
			},
			Final: func(r *workload.Result) float64 {
				if i < len(r.ObservedFinal) {
					return r.ObservedFinal[i]
				}
				return 0
			},
		})
	}
	return ms
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
