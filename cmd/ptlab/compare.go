package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/ptlab/ptlab/report"
	"github.com/ptlab/ptlab/workload"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

type compareFlags struct {
	scenario string
	presets  []string
	json     bool
	csv      string
	quiet    bool
	imp      string
	check    bool // run the invariants instead (check.go)
	jobs     int
}

func init() {
	var f compareFlags
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Run one scenario under several policies and compare them side by side",
		Long: `compare replays a scenario — a machine, a module set loaded at boot, then module
reloads, BPF programs, ftrace trampolines and kprobes over simulated time, all from one seed —
on a fresh kernel per policy preset, and prints one column per preset: linear-map, modules and
vmalloc bytes at each leaf size, page-table pages, splits and collapses, TLB invalidations by
kind, ROX cache chunks and fragmentation, and wall time. Without --scenario it runs the
embedded default (a 16 GiB BBML2_NOABORT server, the Debian arm64 server module set, an hour
of typical churn).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCompare(cmd.OutOrStdout(), cmd.ErrOrStderr(), f) },
	}
	cmd.Flags().StringVar(&f.scenario, "scenario", "", "scenario file (YAML or JSON); default: the embedded default scenario")
	cmd.Flags().StringSliceVar(&f.presets, "preset", nil, "presets to run (default: the scenario's)")
	cmd.Flags().BoolVar(&f.json, "json", false, "print results as JSON (final metrics and time series)")
	cmd.Flags().StringVar(&f.csv, "csv", "", "write the metric time series as CSV to this file ('-' for stdout)")
	cmd.Flags().BoolVar(&f.quiet, "quiet", false, "no progress bar")
	cmd.Flags().BoolVar(&f.check, "check", false, "check the invariants at every step of each preset's run (one simulated CPU) and report per preset")
	cmd.Flags().StringVar(&f.imp, "import", "", "start from the linear map of this kernel_page_tables dump (what would each policy do on my machine)")
	cmd.Flags().IntVar(&f.jobs, "jobs", runtime.GOMAXPROCS(0), "presets run at once (each on its own kernel; the output is the same for any value)")
	rootCmd.AddCommand(cmd)
	// ptlab's main job: compare the policies on the embedded default scenario.
	rootCmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runCompare(cmd.OutOrStdout(), cmd.ErrOrStderr(), compareFlags{jobs: runtime.GOMAXPROCS(0)})
	}
}

func loadScenario(path string) (*workload.Scenario, error) {
	if path == "" {
		return workload.DefaultScenario()
	}
	return workload.LoadScenario(path)
}

// progressAfter shows a progress bar on stderr only once a run has taken
// more than a second, and only on a terminal.
func progressAfter(errw io.Writer, label string, quiet bool) (workload.Progress, func()) {
	f, ok := errw.(*os.File)
	if quiet || !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, func() {}
	}
	start := time.Now()
	var bar *progressbar.ProgressBar
	return func(done, total int) {
			if bar == nil {
				if time.Since(start) < time.Second {
					return
				}
				bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(f), progressbar.OptionSetDescription(label),
					progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
			}
			_ = bar.Set(done)
		}, func() {
			if bar != nil {
				_ = bar.Finish()
			}
		}
}

func runCompare(out, errw io.Writer, f compareFlags) error {
	s, err := loadScenario(f.scenario)
	if err != nil {
		return err
	}
	if len(f.presets) > 0 {
		s.Presets = f.presets
	}
	if f.imp != "" {
		s.Import = f.imp
	}
	mods, err := workload.ScenarioModules(s)
	if err != nil {
		return err
	}
	if f.check {
		return compareCheck(out, errw, f, s, mods)
	}
	// Presets run in parallel (RunPresets) unless the scenario has
	// observers (a cost section), which run with each preset serially.
	var results []*workload.Result
	obs, err := workload.ScenarioObservers(s)
	if err != nil {
		return err
	}
	if len(obs) == 0 {
		prog, done := progressAfter(errw, strings.Join(s.Presets, ","), f.quiet)
		results, err = workload.RunPresets(s, s.Presets, mods, f.jobs, prog)
		done()
		if err != nil {
			return err
		}
	}
	for _, p := range s.Presets {
		if len(obs) == 0 {
			break
		}
		prog, done := progressAfter(errw, p, f.quiet)
		obs, err := workload.ScenarioObservers(s)
		if err != nil {
			return err
		}
		r, err := workload.RunObserved(s, p, mods, prog, obs...)
		done()
		if err != nil {
			return fmt.Errorf("preset %s: %w", p, err)
		}
		results = append(results, r)
	}
	if f.csv != "" {
		w := out
		if f.csv != "-" {
			file, err := os.Create(f.csv)
			if err != nil {
				return err
			}
			defer file.Close()
			w = file
		}
		if err := report.CompareCSV(w, results); err != nil {
			return err
		}
		if f.csv == "-" {
			return nil
		}
	}
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	fmt.Fprintf(out, "scenario %s: machine %s, %d modules, %v, seed %d\n\n", s.Name, s.Machine, len(mods), time.Duration(s.Work.Duration), s.Seed)
	return report.CompareText(out, results)
}
