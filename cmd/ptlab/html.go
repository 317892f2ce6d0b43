package main

import (
	"errors"

	"github.com/ptlab/ptlab/report"
	"github.com/ptlab/ptlab/workload"
)

func writeCompareHTML(path string, s *workload.Scenario, modules int, results []*workload.Result, v *report.Verdict) error {
	return errors.New("--html: not yet")
}
