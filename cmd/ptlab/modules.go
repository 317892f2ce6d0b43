package main

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ptlab/ptlab/modscan"
)

// modulesCmd groups the commands that build and read kernel module datasets.
var modulesCmd = &cobra.Command{
	Use:   "modules",
	Short: "Scan kernel modules into a dataset and inspect module sets",
	Long: `Kernel module datasets: per module the size of each module memory region
(text, data, rodata, ro_after_init, init_text, init_data, init_rodata) as the
kernel's loader lays it out, plus its dependencies. ptlab embeds the dataset of
Debian's arm64 6.12 kernel package and a realistic server set drawn from it.`,
}

var modulesScanCmd = &cobra.Command{
	Use:   "scan PATH",
	Short: "Lay out every module of a directory, module file or .deb into a dataset",
	Long: `Read .ko, .ko.xz, .ko.zst and .ko.gz files from a directory tree, a single file,
or a Debian package (.deb: data.tar.{xz,zst,gz}), lay each out as the kernel's
module loader does (layout_sections, layout_symtab, arm64 PLT sizing), and write
the dataset as JSON (gzip-compressed when -o ends in .gz). A .deb's
boot/config-* sets the kernel options the layout depends on.`,
	Args: cobra.ExactArgs(1),
	RunE: runModulesScan,
}

var modulesListCmd = &cobra.Command{
	Use:   "list",
	Short: "List the modules of a dataset, or the server set, in load order",
	Args:  cobra.NoArgs,
	RunE:  runModulesList,
}

var modulesInfoCmd = &cobra.Command{
	Use:   "info NAME",
	Short: "Show one module's region sizes and dependencies",
	Args:  cobra.ExactArgs(1),
	RunE:  runModulesInfo,
}

var modulesLayoutCmd = &cobra.Command{
	Use:   "layout FILE",
	Short: "Show where the loader places each section of one module file",
	Args:  cobra.ExactArgs(1),
	RunE:  runModulesLayout,
}

var modulesFlags struct {
	out          string
	kconfig      string
	ignoreKconf  bool
	skipRejected bool
	workers      int
	erratum      bool
	dataset      string
	server       bool
	all          bool
	json         bool
	sortBy       string
}

func init() {
	f := modulesScanCmd.Flags()
	f.StringVarP(&modulesFlags.out, "output", "o", "-", "dataset file to write (\"-\" for standard output; .gz to compress)")
	f.StringVar(&modulesFlags.kconfig, "kconfig", "", "kernel .config to take layout options from")
	f.BoolVar(&modulesFlags.ignoreKconf, "ignore-package-kconfig", false, "do not use the .deb's boot/config-*")
	f.BoolVar(&modulesFlags.skipRejected, "skip-rejected", false, "list modules the kernel would refuse instead of failing")
	f.IntVar(&modulesFlags.workers, "workers", 0, "files processed in parallel (default: GOMAXPROCS)")
	f.BoolVar(&modulesFlags.erratum, "erratum-843419", false, "lay out for a CPU needing the Cortex-A53 erratum 843419 workaround")

	for _, c := range []*cobra.Command{modulesListCmd, modulesInfoCmd} {
		c.Flags().StringVar(&modulesFlags.dataset, "dataset", "", "dataset file (default: the embedded Debian arm64 dataset)")
		c.Flags().BoolVar(&modulesFlags.json, "json", false, "print JSON")
	}
	modulesListCmd.Flags().BoolVar(&modulesFlags.server, "server", false, "list the realistic server set in load order")
	modulesListCmd.Flags().BoolVar(&modulesFlags.all, "all", false, "list every module in load order")
	modulesListCmd.Flags().StringVar(&modulesFlags.sortBy, "sort", "name", "order when neither --server nor --all: name or size")
	modulesLayoutCmd.Flags().BoolVar(&modulesFlags.json, "json", false, "print JSON")
	modulesLayoutCmd.Flags().StringVar(&modulesFlags.kconfig, "kconfig", "", "kernel .config to take layout options from")

	modulesCmd.AddCommand(modulesScanCmd, modulesListCmd, modulesInfoCmd, modulesLayoutCmd)
	rootCmd.AddCommand(modulesCmd)
}

func runModulesScan(cmd *cobra.Command, args []string) error {
	cfg := modscan.DefaultLayoutConfig()
	cfg.Erratum843419 = modulesFlags.erratum
	d, err := modscan.ScanModules(args[0], modscan.ScanOptions{
		Layout:               &cfg,
		Kconfig:              modulesFlags.kconfig,
		IgnorePackageKconfig: modulesFlags.ignoreKconf,
		SkipRejected:         modulesFlags.skipRejected,
		Workers:              modulesFlags.workers,
		Generator:            "ptlab modules scan",
	})
	if err != nil {
		return err
	}
	if err := modulesWriteDataset(cmd, d, modulesFlags.out); err != nil {
		return err
	}
	t := d.Totals()
	fmt.Fprintf(cmd.ErrOrStderr(), "%d modules (%d skipped), kernel %s; text %d bytes, data %d bytes\n",
		t.Modules, len(d.Skipped), d.KernelVersion, t.Bytes[modscan.ModText],
		t.Bytes[modscan.ModData]+t.Bytes[modscan.ModRodata]+t.Bytes[modscan.ModROAfterInit])
	return nil
}

func modulesWriteDataset(cmd *cobra.Command, d *modscan.ModuleDataset, out string) error {
	var w io.Writer = cmd.OutOrStdout()
	var f *os.File
	if out != "-" {
		var err error
		if f, err = os.Create(out); err != nil {
			return err
		}
		w = f
	}
	var zw *gzip.Writer
	if strings.HasSuffix(out, ".gz") {
		// No name or time in the header: same dataset, same bytes.
		zw, _ = gzip.NewWriterLevel(w, gzip.BestCompression)
		w = zw
	}
	err := d.WriteJSON(w)
	if zw != nil {
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
	}
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

func modulesLoadDataset() (*modscan.ModuleDataset, error) {
	if modulesFlags.dataset == "" {
		return modscan.DebianModules()
	}
	f, err := os.Open(modulesFlags.dataset)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, err := modscan.ReadModuleDataset(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", modulesFlags.dataset, err)
	}
	return d, nil
}

func runModulesList(cmd *cobra.Command, _ []string) error {
	d, err := modulesLoadDataset()
	if err != nil {
		return err
	}
	var names []string
	var order *modscan.LoadOrder
	switch {
	case modulesFlags.server && modulesFlags.all:
		return fmt.Errorf("--server and --all exclude each other")
	case modulesFlags.server:
		set, err := modscan.ServerModules()
		if err != nil {
			return err
		}
		lo := d.LoadOrder(set.Names, true)
		order, names = &lo, lo.Order
	case modulesFlags.all:
		lo := d.AllInDependencyOrder(true)
		order, names = &lo, lo.Order
	default:
		for i := range d.Modules {
			names = append(names, d.Modules[i].Name)
		}
		if modulesFlags.sortBy == "size" {
			sort.SliceStable(names, func(i, j int) bool {
				a, _ := d.Lookup(names[i])
				b, _ := d.Lookup(names[j])
				return a.CoreSize(d.Layout.PageSize) > b.CoreSize(d.Layout.PageSize)
			})
		} else if modulesFlags.sortBy != "name" {
			return fmt.Errorf("--sort %q: want name or size", modulesFlags.sortBy)
		}
	}
	w := cmd.OutOrStdout()
	if modulesFlags.json {
		mods := make([]modscan.Module, 0, len(names))
		for _, n := range names {
			m, _ := d.Lookup(n)
			mods = append(mods, *m)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Order   *modscan.LoadOrder `json:"order,omitempty"`
			Modules []modscan.Module   `json:"modules"`
		}{order, mods})
	}
	fmt.Fprintf(w, "# %s %s (kernel %s), %d modules\n", d.Package, d.Version, d.KernelVersion, len(names))
	fmt.Fprintf(w, "%-28s %9s %9s %9s %9s %9s %9s %9s\n", "module", "text", "rodata", "ro_a_i", "data", "i_text", "i_data", "i_rodata")
	for _, n := range names {
		m, _ := d.Lookup(n)
		fmt.Fprintf(w, "%-28s %9d %9d %9d %9d %9d %9d %9d\n", m.Name,
			m.Size[modscan.ModText], m.Size[modscan.ModRodata], m.Size[modscan.ModROAfterInit],
			m.Size[modscan.ModData], m.Size[modscan.ModInitText], m.Size[modscan.ModInitData],
			m.Size[modscan.ModInitRodata])
	}
	if order != nil {
		fmt.Fprintf(w, "# requested %d, added as dependencies %d\n", order.Requested, len(order.Added))
		fmt.Fprintf(w, "# requested but built in: %v\n# requested but absent: %v\n", order.BuiltinRequested, order.MissingRequested)
		fmt.Fprintf(w, "# dependencies built in: %v\n# dependencies absent: %v\n", order.BuiltinDeps, order.MissingDeps)
		if len(order.Cycles) > 0 {
			fmt.Fprintf(w, "# dependency cycles broken at: %v\n", order.Cycles)
		}
	}
	return nil
}

func runModulesInfo(cmd *cobra.Command, args []string) error {
	d, err := modulesLoadDataset()
	if err != nil {
		return err
	}
	m, ok := d.Lookup(modscan.NormalizeModuleName(args[0]))
	if !ok {
		return fmt.Errorf("%w: %s not in %s %s", modscan.ErrUnknownModule, args[0], d.Package, d.Version)
	}
	users := d.ReverseDependencies()[m.Name]
	w := cmd.OutOrStdout()
	if modulesFlags.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			modscan.Module
			Vermagic string   `json:"vermagic"`
			Alloc    []uint64 `json:"alloc"`
			UsedBy   []string `json:"used_by"`
		}{*m, d.VermagicOf(m), allocSlice(m, d.Layout.PageSize), users})
	}
	fmt.Fprintf(w, "name:      %s\npath:      %s\nvermagic:  %s\n", m.Name, m.Path, d.VermagicOf(m))
	fmt.Fprintf(w, "%-14s %10s %10s\n", "region", "bytes", "allocated")
	for t := modscan.ModMemType(0); t < modscan.NumModMemTypes; t++ {
		fmt.Fprintf(w, "%-14s %10d %10d\n", t, m.Size[t], m.AllocSize(t, d.Layout.PageSize))
	}
	fmt.Fprintf(w, "coresize:  %d\ninitsize:  %d\npercpu:    %d\nplts:      %d core, %d init\n",
		m.CoreSize(d.Layout.PageSize), m.InitSize(d.Layout.PageSize), m.Percpu, m.PLTs, m.InitPLTs)
	fmt.Fprintf(w, "depends:   %s\nsoftdep:   pre: %s post: %s\nused by:   %s\n",
		strings.Join(m.Depends, ","), strings.Join(m.SoftdepPre, " "), strings.Join(m.SoftdepPost, " "),
		strings.Join(users, ","))
	return nil
}

func allocSlice(m *modscan.Module, page uint64) []uint64 {
	a := m.AllocSizes(page)
	return a[:]
}

func runModulesLayout(cmd *cobra.Command, args []string) error {
	cfg := modscan.DefaultLayoutConfig()
	if modulesFlags.kconfig != "" {
		f, err := os.Open(modulesFlags.kconfig)
		if err != nil {
			return err
		}
		err = cfg.ApplyKconfig(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	l, err := modscan.LayoutModuleFile(args[0], cfg)
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if modulesFlags.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Module   modscan.Module          `json:"module"`
			Sections []modscan.PlacedSection `json:"sections"`
		}{l.Module, l.Sections})
	}
	fmt.Fprintf(w, "%s: %s\n", l.Module.Name, l.Module.Path)
	fmt.Fprintf(w, "%-14s %10s %10s %6s  %s\n", "region", "offset", "size", "align", "section")
	for _, s := range l.Sections {
		fmt.Fprintf(w, "%-14s %#10x %#10x %6d  %s\n", s.Type, s.Offset, s.Size, s.Align, s.Name)
	}
	for t := modscan.ModMemType(0); t < modscan.NumModMemTypes; t++ {
		fmt.Fprintf(w, "%-14s total %d bytes, %d allocated\n", t, l.Module.Size[t], l.Module.AllocSize(t, cfg.PageSize))
	}
	return nil
}
