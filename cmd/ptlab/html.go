package main

import (
	"fmt"
	"os"

	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/report"
	"github.com/ptlab/ptlab/workload"
)

// writeHTMLFile writes a page through write, removing a half-written file.
func writeHTMLFile(path string, write func(f *os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// compareCheckText is the checker's result for the page; compare --check
// (cmd/ptlab/check.go) sets it.
var compareCheckText string

func writeCompareHTML(path string, s *workload.Scenario, modules int, results []*workload.Result, v *report.Verdict) error {
	return writeHTMLFile(path, func(f *os.File) error {
		return report.WriteCompareHTML(f, report.CompareHTML{Scenario: s, Modules: modules, Results: results, Verdict: v, Check: compareCheckText})
	})
}

func writeDumpHTML(path string, d *ptdump.Dump) error {
	return writeHTMLFile(path, func(f *os.File) error { return report.WriteDumpHTML(f, d) })
}
