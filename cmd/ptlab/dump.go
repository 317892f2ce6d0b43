package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/ptdump/analysis"
)

// dumpCmd groups the commands that read kernel page-table dumps.
var dumpCmd = &cobra.Command{
	Use:   "dump",
	Short: "Analyze and compare kernel_page_tables dumps",
	Long: `Read /sys/kernel/debug/kernel_page_tables dumps (arm64 4.x to 6.x, x86 page_tables/*
and its dmesg form, also pasted out of logs or mail) and summarize or compare them.`,
}

var dumpStatsCmd = &cobra.Command{
	Use:   "stats FILE",
	Short: "Leaf sizes, attributes, page-table memory and collapse potential per region",
	Long: `Summarize a dump per region: bytes at each leaf size (PUD, contPMD, PMD, contPTE, PTE)
and attribute set, ranges, estimated page-table pages, the share of the linear map mapped
with base pages, and what collapsing PTE tables into PMD blocks would recover.
FILE may be "-" for standard input.`,
	Args: cobra.ExactArgs(1),
	RunE: runDumpStats,
}

var dumpDiffCmd = &cobra.Command{
	Use:   "diff A B",
	Short: "What was split, merged, changed permission, mapped or unmapped from dump A to dump B",
	Long: `List what changed from dump A to dump B: ranges split into smaller leaves, merged into
larger ones, changed permission, mapped or unmapped. Like diff(1), the exit status is 0 when
the dumps map the same, 1 when they differ and 2 on an error.`,
	Args: cobra.ExactArgs(2),
	RunE: func(cmd *cobra.Command, args []string) error {
		differ, err := runDumpDiff(cmd, args)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		if differ {
			return &exitError{code: 1}
		}
		return nil
	},
}

var dumpFlags struct {
	json    bool
	lenient bool
	heatmap string
	html    string
	width   int
	limit   int
	page    string
}

func init() {
	f := dumpStatsCmd.Flags()
	f.BoolVar(&dumpFlags.json, "json", false, "print JSON instead of text")
	f.BoolVar(&dumpFlags.lenient, "lenient", false, "turn malformed lines into warnings instead of failing")
	f.StringVar(&dumpFlags.heatmap, "heatmap", "", "also draw the linear map to this PNG file (one pixel per PMD block)")
	f.IntVar(&dumpFlags.width, "heatmap-width", 256, "heatmap pixels per row")
	f.StringVar(&dumpFlags.html, "html", "", "also write a self-contained HTML page (statistics, leaf-size chart, linear-map heat map) to this file")
	f.StringVar(&dumpFlags.page, "page-size", "", "arm64 granule (4K, 16K or 64K) instead of inferring it from the dump")
	f = dumpDiffCmd.Flags()
	f.BoolVar(&dumpFlags.json, "json", false, "print JSON instead of text")
	f.BoolVar(&dumpFlags.lenient, "lenient", false, "turn malformed lines into warnings instead of failing")
	f.IntVar(&dumpFlags.limit, "limit", 100, "changes to list in text output (0: all)")
	f.StringVar(&dumpFlags.page, "page-size", "", "arm64 granule (4K, 16K or 64K) instead of inferring it from the dumps")
	dumpCmd.AddCommand(dumpStatsCmd, dumpDiffCmd)
	rootCmd.AddCommand(dumpCmd)
}

// readDump parses a dump file ("-" for stdin) and prints its warnings to stderr.
func readDump(cmd *cobra.Command, path string) (*ptdump.Dump, error) {
	opt := ptdump.ParseOptions{Lenient: dumpFlags.lenient}
	switch dumpFlags.page {
	case "":
	case "4K", "4k", "4096":
		opt.PageSize = 4 << 10
	case "16K", "16k", "16384":
		opt.PageSize = 16 << 10
	case "64K", "64k", "65536":
		opt.PageSize = 64 << 10
	default:
		return nil, fmt.Errorf("--page-size %q: want 4K, 16K or 64K", dumpFlags.page)
	}
	var r io.Reader = cmd.InOrStdin()
	name := "<stdin>"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r, name = f, path
	}
	d, err := ptdump.Parse(r, name, opt)
	if err != nil {
		return nil, err
	}
	for _, w := range d.Warnings {
		fmt.Fprintf(cmd.ErrOrStderr(), "ptlab: warning: %s:%d: %s\n", name, w.Line, w.Msg)
	}
	return d, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runDumpStats(cmd *cobra.Command, args []string) error {
	d, err := readDump(cmd, args[0])
	if err != nil {
		return err
	}
	s := analysis.Stats(d)
	out := bufio.NewWriter(cmd.OutOrStdout())
	if dumpFlags.json {
		err = writeJSON(out, s)
	} else {
		err = s.WriteText(out)
	}
	if err != nil {
		return err
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if dumpFlags.html != "" {
		if err := writeDumpHTML(dumpFlags.html, d); err != nil {
			return err
		}
	}
	if dumpFlags.heatmap != "" {
		return writeHeatmap(cmd, d, dumpFlags.heatmap)
	}
	return nil
}

// maxHeatmapWidth bounds --heatmap-width: wider than any screen, and the
// image stays a few hundred MB at most even for a 52-bit address space.
const maxHeatmapWidth = 8192

func writeHeatmap(cmd *cobra.Command, d *ptdump.Dump, path string) error {
	if dumpFlags.width < 1 || dumpFlags.width > maxHeatmapWidth {
		return usageError("--heatmap-width %d: want 1 to %d pixels", dumpFlags.width, maxHeatmapWidth)
	}
	img, info, err := analysis.Heatmap(d, analysis.HeatmapOptions{Width: dumpFlags.width})
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "ptlab: heatmap %s: %dx%d, 1 px = %s from %#x\n",
		path, img.Bounds().Dx(), img.Bounds().Dy(), ptdump.FormatSize(info.PixelBytes), info.Base)
	return nil
}

// runDumpDiff prints the differences and reports whether there are any.
func runDumpDiff(cmd *cobra.Command, args []string) (bool, error) {
	a, err := readDump(cmd, args[0])
	if err != nil {
		return false, err
	}
	b, err := readDump(cmd, args[1])
	if err != nil {
		return false, err
	}
	res := analysis.Diff(a, b)
	out := bufio.NewWriter(cmd.OutOrStdout())
	if dumpFlags.json {
		err = writeJSON(out, res)
	} else {
		err = res.WriteText(out, dumpFlags.limit)
	}
	if err != nil {
		return false, err
	}
	return len(res.Changes) > 0, out.Flush()
}
