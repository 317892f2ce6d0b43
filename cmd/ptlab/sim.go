package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/workload"
	"github.com/spf13/cobra"
)

type simFlags struct {
	machine  string
	config   string
	rodata   string
	kernel   string
	bootOnly bool
	tables   bool
	noDump   bool
	json     bool
	pa       bool
	imp      string
	preset   string
	modules  string
	cpus     string
}

func init() {
	var f simFlags
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Boot a modelled arm64 kernel, load a module set, print its ptdump and metrics",
		Long: `sim boots a configured machine with the mainline arm64 rules (map_kernel, map_mem,
rodata, BBML2_NOABORT, KFENCE) and a policy preset, loads a real module set (by default the
Debian arm64 server set) with the module loader's STRICT_MODULE_RWX sequence, then runs a short
sequence of operations (module-like vmalloc areas made read-only and executable, a huge vmalloc,
a vfree). It prints the resulting kernel_page_tables dump on standard output, alone, so
"ptlab sim | ptlab dump stats -" reads it back, and the metrics (leaf sizes per region,
page-table pages, splits, TLB invalidations, MemFree) on standard error; with --no-dump or
--json the metrics go to standard output.

Machines: ` + strings.Join(machineNames(), ", ") + `. --config takes a YAML or JSON file whose fields
override the machine (see README).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSim(cmd.OutOrStdout(), cmd.ErrOrStderr(), f) },
	}
	cmd.Flags().StringVar(&f.machine, "machine", "qemu-virt", "machine preset")
	cmd.Flags().StringVar(&f.config, "config", "", "YAML or JSON machine configuration decoded over --machine and --preset (policy: fields override the preset's knobs)")
	cmd.Flags().StringVar(&f.rodata, "rodata", "", "rodata= boot option as the kernel release reads it: on, noalias, off (7.x); full, on, off (6.x)")
	cmd.Flags().StringVar(&f.kernel, "kernel", "", "kernel release to model: "+strings.Join(kernel.VersionNames(), ", ")+" (default "+kernel.DefaultVersion+"; --import of a capture picks its own)")
	cmd.Flags().BoolVar(&f.noDump, "no-dump", false, "print only the metrics, on standard output")
	cmd.Flags().BoolVar(&f.bootOnly, "boot-only", false, "stop after the boot: no modules, no built-in sequence (compare with a real kernel's capture)")
	cmd.Flags().BoolVar(&f.tables, "tables", false, "print a TBL line for every table descriptor in the dump (as ptlab capture --tables)")
	cmd.Flags().BoolVar(&f.json, "json", false, "print the metrics as JSON (no dump)")
	cmd.Flags().BoolVar(&f.pa, "pa", false, "print physical addresses in the dump")
	cmd.Flags().StringVar(&f.imp, "import", "", "build the linear map from this kernel_page_tables dump instead of the boot rules")
	cmd.Flags().StringVar(&f.preset, "preset", "mainline", "policy preset ("+strings.Join(kernel.PresetNames(), ", ")+")")
	cmd.Flags().StringVar(&f.cpus, "cpus", "", "CPUs instead of the machine's: MODEL[:COUNT],... (e.g. ampere1:15,neoverse-n1:1)")
	cmd.Flags().StringVar(&f.modules, "modules", "server", "module set to load after boot: server, all, none, or a comma-separated list")
	rootCmd.AddCommand(cmd)
}

func machineNames() []string {
	var n []string
	for k := range kernel.Machines {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// loadMachine is the one way the CLI builds a configuration: the machine
// preset, the policy preset, a --config file decoded over both
// (kernel.DecodeConfig, as a scenario's config:), then --kernel and --rodata.
func loadMachine(name, preset, config, rodata, cpus, kver string) (kernel.Config, error) {
	cfg, err := kernel.Machine(name)
	if err != nil {
		return cfg, fmt.Errorf("--machine: %w (machines: %s)", err, strings.Join(machineNames(), ", "))
	}
	if cfg.Policy, err = kernel.Preset(preset); err != nil {
		return cfg, fmt.Errorf("--preset: %w", err)
	}
	if config != "" {
		if cfg, err = kernel.LoadConfig(config, cfg); err != nil {
			return cfg, err
		}
	}
	if cpus != "" {
		y, err := cpusYAML(cpus)
		if err != nil {
			return cfg, err
		}
		if cfg, err = kernel.DecodeConfig([]byte(y), "--cpus", cfg); err != nil {
			return cfg, err
		}
	}
	if kver != "" {
		cfg.Kernel = kver
		if err := cfg.Validate(); err != nil {
			return cfg, fmt.Errorf("--kernel: %w", err)
		}
	}
	if rodata != "" {
		cfg.Rodata = kernel.Rodata(rodata)
		if err := cfg.Validate(); err != nil {
			return cfg, fmt.Errorf("--rodata: %w", err)
		}
	}
	return cfg, cfg.Validate()
}

func runSim(out, errw io.Writer, f simFlags) error {
	cfg, err := loadMachine(f.machine, f.preset, f.config, f.rodata, f.cpus, f.kernel)
	if err != nil {
		return err
	}
	var im *kernel.Imported
	if f.imp != "" {
		if cfg, im, err = kernel.ImportFile(cfg, f.imp); err != nil {
			return err
		}
	}
	k, err := kernel.BootImported(cfg, im)
	if err != nil {
		return err
	}
	c := kernel.NewPlainCPU(0)
	var mods []kernel.ModuleSpec
	if !f.bootOnly {
		if mods, err = workload.ScenarioModules(&workload.Scenario{Work: workload.Workload{Modules: f.modules}}); err != nil {
			return err
		}
		for _, spec := range mods {
			if _, err := k.LoadModule(c, spec); err != nil {
				return fmt.Errorf("loading %s: %w", spec.Name, err)
			}
		}
		if err := builtinSequence(k, c); err != nil {
			return err
		}
	}
	m, err := k.Metrics(c)
	if err != nil {
		return err
	}
	if f.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(m)
	}
	mw := errw
	if f.noDump {
		mw = out
	} else {
		w := ptdump.NewWriter(out, k.G, ptdump.KernelMarkers(k.Layout), ptdump.Options{PA: f.pa, Tables: f.tables})
		if err := ptdump.Walk(k.PT, c, k.G, k.PT.Root(), k.Layout.PageOffset, w); err != nil {
			return err
		}
	}
	fmt.Fprintf(mw, "machine %s: kernel %s, %s, %d CPUs, BBML2_NOABORT %v, rodata_full %v, linear map requires BBML2 %v; preset %s, %d modules loaded\n",
		cfg.Name, k.V.Name, k.G, len(k.MIDRs), k.BBML2, k.RodataFull, k.LinearMapRequiresBBML2, cfg.Policy.Name, len(mods))
	return m.WriteText(mw)
}

// builtinSequence exercises the kernel the way a module load and unload does:
// text made read-only then executable, rodata read-only, a huge vmalloc, and
// a vfree that resets the linear alias.
func builtinSequence(k *kernel.Kernel, c kernel.CPU) error {
	text, err := k.VmallocNodeRange(c, kernel.VmallocRequest{Size: 24 << 12, Flags: kernel.VMFlushResetPerms, Caller: "module text"})
	if err != nil {
		return err
	}
	ro, err := k.VmallocNodeRange(c, kernel.VmallocRequest{Size: 6 << 12, Flags: kernel.VMFlushResetPerms, Caller: "module rodata"})
	if err != nil {
		return err
	}
	if err := k.SetMemoryROX(c, text.Addr, text.NrPages); err != nil {
		return err
	}
	if err := k.SetMemoryRO(c, ro.Addr, ro.NrPages); err != nil {
		return err
	}
	if _, err := k.VmallocHuge(c, 4<<20); err != nil {
		return err
	}
	tmp, err := k.VmallocNodeRange(c, kernel.VmallocRequest{Size: 8 << 12, Flags: kernel.VMFlushResetPerms, Caller: "unloaded module"})
	if err != nil {
		return err
	}
	if err := k.SetMemoryRO(c, tmp.Addr, tmp.NrPages); err != nil {
		return err
	}
	return k.Vfree(c, tmp.Addr)
}
