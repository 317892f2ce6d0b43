package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ptlab/ptlab/kernel"

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
	trace    string // a recording to replay instead of the scenario's timeline (trace.go)
	jobs     int
	machine  string
	config   string
	kernel   string
	cpus     string
	html     string
	time     bool // print the host time of each preset's run (differs between runs)
	explain  bool
	check    bool // run the invariants instead (check.go)
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
kind, ROX cache chunks and fragmentation (and with --time the host time each preset took).
The output is byte-identical for the same scenario and seed. Without --scenario it runs the
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
	cmd.Flags().StringVar(&f.trace, "trace", "", "replay this recording (ptlab trace script/record) instead of the scenario's timeline")
	cmd.Flags().IntVar(&f.jobs, "jobs", runtime.GOMAXPROCS(0), "presets run at once (each on its own kernel; the output is the same for any value)")
	cmd.Flags().StringVar(&f.machine, "machine", "", "machine preset instead of the scenario's ("+strings.Join(machineNames(), ", ")+")")
	cmd.Flags().StringVar(&f.config, "config", "", "YAML or JSON machine configuration decoded over the scenario's machine, as sim --config")
	cmd.Flags().StringVar(&f.kernel, "kernel", "", "kernel version to model (the configuration's kernel: field)")
	cmd.Flags().StringVar(&f.cpus, "cpus", "", "CPUs instead of the machine's: MODEL[:COUNT],... (e.g. ampere1:63,neoverse-n1:1)")
	cmd.Flags().StringVar(&f.html, "html", "", "also write a self-contained HTML report (charts, verdict, heat maps, dump diffs) to this file")
	cmd.Flags().BoolVar(&f.explain, "explain", false, "after the table, explain every row")
	cmd.Flags().BoolVar(&f.time, "time", false, "also print the wall time each preset took (differs between identical runs)")
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

// applyCompareFlags puts the command line's machine choices on the
// scenario, through the same override path as its config: section.
func applyCompareFlags(s *workload.Scenario, f compareFlags) error {
	if f.json && f.csv == "-" {
		return usageError("--json and --csv - both write to standard output; give --csv a file name")
	}
	if len(f.presets) > 0 {
		for _, p := range f.presets {
			if _, err := s.Policy(p); err != nil {
				return usageError("--preset: %w", err)
			}
		}
		s.Presets = f.presets
	}
	if f.imp != "" {
		s.Import = f.imp
	}
	if f.machine != "" {
		if _, err := kernel.Machine(f.machine); err != nil {
			return usageError("--machine: %w (machines: %s)", err, strings.Join(machineNames(), ", "))
		}
		s.Machine = f.machine
	}
	if f.config != "" {
		b, err := os.ReadFile(f.config)
		if err != nil {
			return err
		}
		s.Override(workload.NewConfigOverride(b, f.config))
	}
	if f.kernel != "" {
		s.Override(workload.NewConfigOverride([]byte("kernel: "+strconv.Quote(f.kernel)), "--kernel.yaml"))
	}
	if f.cpus != "" {
		o, err := cpusOverride(f.cpus)
		if err != nil {
			return err
		}
		s.Override(o)
	}
	if _, err := s.MachineConfig(s.Presets[0]); err != nil {
		return err
	}
	return nil
}

// cpusOverride turns --cpus MODEL[:COUNT],... into a configuration override.
func cpusOverride(v string) (*workload.ConfigOverride, error) {
	y, err := cpusYAML(v)
	if err != nil {
		return nil, err
	}
	return workload.NewConfigOverride([]byte(y), "--cpus.yaml"), nil
}

// cpusYAML is --cpus MODEL[:COUNT],... as a configuration's cpus: field.
func cpusYAML(v string) (string, error) {
	var groups []string
	for _, g := range strings.Split(v, ",") {
		model, count, ok := strings.Cut(strings.TrimSpace(g), ":")
		n := 1
		if ok {
			var err error
			if n, err = strconv.Atoi(count); err != nil || n < 1 {
				return "", usageError("--cpus %q: count %q of %s is not a positive number", v, count, model)
			}
		}
		groups = append(groups, fmt.Sprintf("{model: %s, count: %d}", strconv.Quote(model), n))
	}
	return "cpus: [" + strings.Join(groups, ", ") + "]", nil
}

func runCompare(out, errw io.Writer, f compareFlags) error {
	s, err := loadScenario(f.scenario)
	if f.trace != "" {
		s, err = compareTraceScenario(errw, f, s)
	}
	if err != nil {
		return err
	}
	if err := applyCompareFlags(s, f); err != nil {
		return err
	}
	s.CaptureDump = f.html != ""
	mods, err := workload.ScenarioModules(s)
	if err != nil {
		return err
	}
	if f.check {
		// With --html the page shows the checker's result beside the
		// comparison; without it the check is the whole output.
		var text strings.Builder
		cerr := compareCheck(io.MultiWriter(out, &text), errw, f, s, mods)
		if f.html == "" || (cerr != nil && !errors.Is(cerr, errViolations)) {
			return cerr
		}
		if err := writeCompareHTMLRun(errw, f, s, mods, text.String()); err != nil {
			return err
		}
		return cerr
	}
	prog, done := progressAfter(errw, strings.Join(s.Presets, ","), f.quiet)
	results, err := workload.RunPresets(s, s.Presets, mods, f.jobs, prog)
	done()
	if err != nil {
		return err
	}
	if f.csv != "" {
		if err := writeCSV(out, f.csv, results); err != nil {
			return err
		}
	}
	v := report.ComputeVerdict(results)
	if f.html != "" {
		if err := writeCompareHTML(f.html, s, len(mods), results, v, ""); err != nil {
			return err
		}
		fmt.Fprintf(errw, "ptlab: report written to %s\n", f.html)
	}
	if f.json {
		return report.WriteJSON(out, report.BuildJSON(s, len(mods), results, v, f.time))
	}
	if f.csv == "-" {
		return nil
	}
	fmt.Fprintf(out, "scenario %s: machine %s; %d modules, %v, seed %d\n\n", s.Name, report.Machine(results[0].Config), len(mods), time.Duration(s.Work.Duration), s.Seed)
	if err := report.CompareText(out, results, f.time); err != nil {
		return err
	}
	if f.explain {
		fmt.Fprintln(out)
		if err := report.WriteExplain(out, results); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(out, "\n(ptlab explain: what every row means)")
	}
	return report.WriteVerdict(out, v)
}

// writeCompareHTMLRun runs the comparison for the page alone (compare --check
// --html: the text output is the checker's).
func writeCompareHTMLRun(errw io.Writer, f compareFlags, s *workload.Scenario, mods []kernel.ModuleSpec, check string) error {
	prog, done := progressAfter(errw, strings.Join(s.Presets, ","), f.quiet)
	results, err := workload.RunPresets(s, s.Presets, mods, f.jobs, prog)
	done()
	if err != nil {
		return err
	}
	if err := writeCompareHTML(f.html, s, len(mods), results, report.ComputeVerdict(results), check); err != nil {
		return err
	}
	fmt.Fprintf(errw, "ptlab: report written to %s\n", f.html)
	return nil
}

func writeCSV(out io.Writer, path string, results []*workload.Result) error {
	if path == "-" {
		return report.CompareCSV(out, results)
	}
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := report.CompareCSV(file, results); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}
