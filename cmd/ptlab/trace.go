package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/ptlab/ptlab/trace"
	"github.com/ptlab/ptlab/workload"
)

var traceCmd = &cobra.Command{
	Use:   "trace",
	Short: "Record a real kernel's kernel-mapping events and replay them under every policy",
	Long: `trace records what a real arm64 kernel did to its own mappings (module loads and unloads,
execmem and BPF allocations, set_memory_* and set_direct_map_* calls, vmalloc areas) and turns
the recording into a timeline ptlab replays under every policy preset:

  ptlab trace script > rec.sh; sh rec.sh -o rec.txt CMD...   # on the machine, as root
  ptlab trace record -o rec.txt -- CMD...                     # the same from this binary (arm64)
  ptlab trace import rec.txt -o scenario.yaml                 # anywhere
  ptlab compare --trace rec.txt [--import machine-dump.txt]   # "your machine, your hour, five policies"`,
}

type traceImportFlags struct {
	out, from, to, machine, imp string
	json, strict, quiet, pinned bool
	presets                     []string
	presetList                  string
}

func init() {
	traceCmd.AddCommand(&cobra.Command{
		Use:   "script",
		Short: "Print a POSIX-sh recorder script (busybox ash, no bpftrace or compiler)",
		Long: `script prints a shell script that records the kernel-mapping events of the machine it runs
on (root, tracefs): kprobes on set_memory_ro/rw/x/nx/valid, set_direct_map_*_noflush,
execmem_alloc/free, bpf_prog_pack_alloc/free and split_kernel_leaf_mapping (each only if
the kernel has the symbol; missing ones are listed in the recording), the vmalloc and module
tracepoints, and snapshots of the loaded modules (with section addresses), vmallocinfo and
BPF symbols at the start and the end. Usage on the machine:

  ptlab trace script > ptlab-trace.sh
  sh ptlab-trace.sh -o rec.txt                 # until Ctrl-C / SIGTERM
  sh ptlab-trace.sh -o rec.txt sh -c 'modprobe xfs; modprobe -r xfs'

The command sees PTLAB_TRACEFS; "echo ptlab-mark NAME > $PTLAB_TRACEFS/trace_marker" puts a
named mark in the trace for "ptlab trace import --from NAME --to NAME".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), trace.Script())
			return err
		},
	})
	var f traceImportFlags
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Turn a recording into a replay scenario and report every event it could not map",
		Long: `import reads a recording (the recorder's file, or bare ftrace text; .gz/.xz/.zst too) and
turns it into a timeline of model operations: module loads and unloads with the sizes of their
memory regions, execmem (BPF, kprobes, ftrace) allocations and frees, other vmalloc areas.
Events that are part of an operation the model performs itself (the set_memory_* calls of a
module load, the vmalloc area of an execmem allocation) are "modelled"; events without a model
counterpart are listed with the reason. Lines it cannot read are warnings with their line
number (--strict: errors). -o writes a scenario that "ptlab compare --scenario" runs.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.presets = nil
			if f.presetList != "" {
				f.presets = strings.Split(f.presetList, ",")
			}
			return runTraceImport(cmd.OutOrStdout(), args[0], f)
		},
	}
	fl := imp.Flags()
	fl.StringVarP(&f.out, "output", "o", "", "write the replay scenario (YAML, or JSON by extension) to this file")
	fl.StringVar(&f.from, "from", "", "start the timeline at this trace mark (earlier operations form the start state)")
	fl.StringVar(&f.to, "to", "", "end the timeline at this trace mark")
	fl.StringVar(&f.machine, "machine", "bbml2-server", "machine of the scenario")
	fl.StringVar(&f.imp, "import", "", "start from the linear map of this kernel_page_tables dump (the recorded machine's)")
	fl.StringVar(&f.presetList, "preset", "", "comma-separated presets of the scenario (default: all)")
	fl.BoolVar(&f.json, "json", false, "print the mapping report as JSON")
	fl.BoolVar(&f.strict, "strict", false, "fail on any unreadable line")
	fl.BoolVar(&f.quiet, "quiet", false, "print only the summary, not every unmapped event")
	fl.BoolVar(&f.pinned, "pinned", false, "replay every area at its recorded address (checking the model against the machine)")
	traceCmd.AddCommand(imp)
	addTraceRecord(traceCmd)
	rootCmd.AddCommand(traceCmd)
}

// traceScenario reads a recording and builds the scenario that replays it.
func traceScenario(path string, f traceImportFlags) (*workload.Scenario, *trace.Timeline, error) {
	rec, err := trace.Open(path)
	if err != nil {
		return nil, nil, err
	}
	if f.strict && len(rec.Warnings) > 0 {
		return nil, nil, fmt.Errorf("%s:%d: %w: %s", path, rec.Warnings[0].Line, trace.ErrFormat, rec.Warnings[0].Msg)
	}
	tl, err := trace.Build(rec, trace.Options{From: f.from, To: f.to, Pinned: f.pinned})
	if err != nil {
		return nil, nil, err
	}
	var end time.Duration
	if n := len(tl.Replay.Ops); n > 0 {
		end = time.Duration(tl.Replay.Ops[n-1].At)
	}
	s := &workload.Scenario{
		Name:    "trace:" + filepath.Base(path),
		Seed:    1,
		Machine: f.machine,
		Presets: f.presets,
		Import:  f.imp,
		Work: workload.Workload{Modules: "none", Duration: workload.Duration(end),
			SampleEvery: workload.Duration(max(end/60, time.Millisecond))},
		Replay: tl.Replay,
	}
	b, err := yaml.Marshal(s)
	if err != nil {
		return nil, nil, err
	}
	s, err = workload.ParseScenario(b, s.Name+".yaml") // validates and fills defaults
	if err != nil {
		return nil, nil, err
	}
	return s, tl, nil
}

type importReport struct {
	Recording string                    `json:"recording"`
	Ops       int                       `json:"ops"`
	Modules   int                       `json:"modules"`
	Summary   map[string]map[string]int `json:"summary"`
	Unmapped  []trace.Mapping           `json:"unmapped"`
	Notes     []trace.Issue             `json:"notes"`
}

var dispNames = [...]string{"op", "modelled", "unmapped", "outside"}

func runTraceImport(out io.Writer, path string, f traceImportFlags) error {
	s, tl, err := traceScenario(path, f)
	if err != nil {
		return err
	}
	if f.out != "" {
		var b []byte
		if filepath.Ext(f.out) == ".json" {
			b, err = json.MarshalIndent(s, "", "  ")
		} else {
			b, err = yaml.Marshal(s)
		}
		if err != nil {
			return err
		}
		if err := os.WriteFile(f.out, b, 0o644); err != nil {
			return err
		}
	}
	rep := importReport{Recording: path, Ops: len(tl.Replay.Ops), Modules: len(tl.Replay.Modules),
		Summary: map[string]map[string]int{}, Unmapped: tl.Unmapped(), Notes: tl.Notes}
	for ev, c := range tl.Summary() {
		m := map[string]int{}
		for d, n := range c {
			if n > 0 {
				m[dispNames[d]] = n
			}
		}
		rep.Summary[ev] = m
	}
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	writeImportReport(out, tl, f.quiet)
	if f.out != "" {
		fmt.Fprintf(out, "\nwrote %s: run it with ptlab compare --scenario %s\n", f.out, f.out)
	}
	return nil
}

func writeImportReport(out io.Writer, tl *trace.Timeline, quiet bool) {
	sum := tl.Summary()
	names := make([]string, 0, len(sum))
	for n := range sum {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(out, "%d operations, %d module records, %d events\n\n", len(tl.Replay.Ops), len(tl.Replay.Modules), len(tl.Mappings))
	fmt.Fprintf(out, "%-28s %8s %9s %9s %8s\n", "event", "op", "modelled", "unmapped", "outside")
	for _, n := range names {
		c := sum[n]
		fmt.Fprintf(out, "%-28s %8d %9d %9d %8d\n", n, c[0], c[1], c[2], c[3])
	}
	if len(tl.Notes) > 0 {
		fmt.Fprintf(out, "\nnotes:\n")
		for _, n := range tl.Notes {
			fmt.Fprintf(out, "  %v\n", n)
		}
	}
	un := tl.Unmapped()
	if len(un) > 0 {
		fmt.Fprintf(out, "\nunmapped events (%d):\n", len(un))
		if quiet {
			fmt.Fprintf(out, "  (--quiet: not listed)\n")
			return
		}
		for _, m := range un {
			fmt.Fprintf(out, "  line %d: %s: %s\n", m.Line, m.Event, m.Reason)
		}
	}
}

// compareTraceScenario is compare --trace: the recording's replay on the
// scenario's machine (or the default one), with a one-line mapping summary
// on stderr.
func compareTraceScenario(errw io.Writer, f compareFlags, base *workload.Scenario) (*workload.Scenario, error) {
	tf := traceImportFlags{machine: "bbml2-server"}
	if base != nil {
		tf.machine = base.Machine
		if f.scenario != "" {
			tf.presets = base.Presets
		}
	}
	s, tl, err := traceScenario(f.trace, tf)
	if err != nil {
		return nil, err
	}
	if base != nil && f.scenario != "" {
		s.Config, s.Import = base.Config, base.Import
	}
	var c [4]int
	for _, m := range tl.Mappings {
		c[m.Disp]++
	}
	fmt.Fprintf(errw, "trace %s: %d events: %d operations, %d modelled, %d unmapped, %d outside (ptlab trace import lists them)\n",
		f.trace, len(tl.Mappings), c[0], c[1], c[2], c[3])
	return s, nil
}
