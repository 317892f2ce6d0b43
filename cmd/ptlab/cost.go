package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/tlb"
	"github.com/ptlab/ptlab/workload"
)

var dumpCostFlags struct {
	cpus     string
	patterns string
	accesses int
	rate     float64
	seed     uint64
	json     bool
}

var dumpCostCmd = &cobra.Command{
	Use:   "cost DUMP",
	Short: "What the dump's linear map costs in TLB misses and walk cycles, against block- and PTE-mapped",
	Long: `cost rebuilds the linear map of a real kernel_page_tables dump (every range at the leaf
size and attributes the dump shows), then drives the TLB cost model of each CPU model with
data-access streams over the linear map of its RAM, and prints, next to the dump's shape, the
same RAM block-mapped (what a BBML2_NOABORT kernel builds with rodata=on) and PTE-mapped
(rodata=full without BBML2_NOABORT): dTLB misses per 1,000 accesses (L1 and L2), descriptor
reads per walk, walk cycles per 1,000 accesses and per second at --rate.

Streams: zipf (a key-value store: objects picked by a Zipf law, spread over RAM), pagecache
(64 KiB reads from file chunks over 90% of RAM), uniform (gups: the worst case).`,
	Args: cobra.ExactArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return runDumpCost(cmd, args[0])
	},
}

func init() {
	f := dumpCostCmd.Flags()
	f.StringVar(&dumpCostFlags.cpus, "cpu", "", "CPU models, comma-separated ("+strings.Join(tlb.ModelKeys(), ", ")+"); default all")
	f.StringVar(&dumpCostFlags.patterns, "stream", "zipf,pagecache,uniform", "data-access streams over the linear map, comma-separated")
	f.IntVar(&dumpCostFlags.accesses, "accesses", 400000, "accesses simulated per CPU model, stream and shape (after as many to warm up)")
	f.Float64Var(&dumpCostFlags.rate, "rate", 100e6, "accesses per second the stream stands for (walk cycles /s)")
	f.Uint64Var(&dumpCostFlags.seed, "seed", 1, "random seed")
	f.BoolVar(&dumpCostFlags.json, "json", false, "print JSON")
	f.BoolVar(&dumpFlags.lenient, "lenient", false, "turn malformed lines into warnings instead of failing")
	dumpCmd.AddCommand(dumpCostCmd)
}

// costShape is one linear-map shape measured.
type costShape struct {
	Name string `json:"name"`
	k    *kernel.Kernel
}

type costCell struct {
	CPU    string     `json:"cpu"`
	Stream string     `json:"stream"`
	Shape  string     `json:"shape"`
	Counts tlb.Counts `json:"counts"`
	L1MPKA float64    `json:"l1_mpka"`
	L2MPKA float64    `json:"l2_mpka"`
	// ReadsPerWalk and CyclesPer1k: descriptors read per walk, walk cycles
	// per 1,000 accesses; CyclesPerSec at the --rate.
	ReadsPerWalk float64 `json:"reads_per_walk"`
	CyclesPer1k  float64 `json:"walk_cycles_per_1k"`
	CyclesPerSec float64 `json:"walk_cycles_per_s"`
}

func runDumpCost(cmd *cobra.Command, path string) error {
	d, err := readDump(cmd, path)
	if err != nil {
		return err
	}
	base, err := kernel.Machine("bbml2-server")
	if err != nil {
		return err
	}
	cfg, im, err := kernel.ImportDump(base, d)
	if err != nil {
		return err
	}
	var models []*tlb.Model
	for _, n := range splitList(dumpCostFlags.cpus) {
		m, err := tlb.LookupModel(n)
		if err != nil {
			return err
		}
		models = append(models, m)
	}
	if len(models) == 0 {
		models = tlb.Models()
	}
	var pats []tlb.Pattern
	for _, p := range splitList(dumpCostFlags.patterns) {
		pt, err := tlb.ParsePattern(p)
		if err != nil {
			return err
		}
		pats = append(pats, pt)
	}
	if dumpCostFlags.accesses <= 0 {
		return fmt.Errorf("--accesses %d: want > 0", dumpCostFlags.accesses)
	}
	shapes := []costShape{{Name: "as dumped"}, {Name: "block-mapped"}, {Name: "PTE-mapped"}}
	if shapes[0].k, err = kernel.BootImported(cfg, im); err != nil {
		return err
	}
	if shapes[1].k, err = kernel.Boot(cfg); err != nil {
		return err
	}
	pteCfg := cfg
	pteCfg.CPUs = []kernel.CPUGroup{{Model: "neoverse-n1", Count: 1}}
	pteCfg.Rodata = kernel.RodataOn
	if shapes[2].k, err = kernel.Boot(pteCfg); err != nil {
		return err
	}
	var cells []costCell
	for _, m := range models {
		for _, p := range pats {
			for _, sh := range shapes {
				st := &tlb.Stream{Name: p.String(), Kind: tlb.Data, Pattern: p, Rate: dumpCostFlags.rate, RunLines: 64, ZipfS: 1.01}
				frac := 1.0
				if p == tlb.PageCache {
					frac = 0.9
				}
				c := tlb.Measure(m, sh.k.PT, st, linearRanges(sh.k, frac), dumpCostFlags.seed, dumpCostFlags.accesses, dumpCostFlags.accesses)
				cells = append(cells, newCostCell(m.Key, p.String(), sh.Name, c))
			}
		}
	}
	out := cmd.OutOrStdout()
	if dumpCostFlags.json {
		return writeJSON(out, map[string]any{"dump": path, "ram": cfg.RAM, "cells": cells, "assumed": assumedOf(models)})
	}
	return printCost(out, path, shapes, models, pats, cells)
}

// linearRanges is the linear map of the first frac of k's RAM.
func linearRanges(k *kernel.Kernel, frac float64) []tlb.Range {
	regs := k.Mem.Regions()
	var total uint64
	for _, r := range regs {
		total += r.Size
	}
	want := uint64(float64(total) * frac)
	var rs []tlb.Range
	for _, r := range regs {
		sz := min(r.Size, want)
		if sz == 0 {
			break
		}
		rs = append(rs, tlb.Range{Start: k.Lin(r.Base), Size: sz, Weight: 1})
		want -= sz
	}
	return rs
}

func newCostCell(cpu, stream, shape string, c tlb.Counts) costCell {
	x := costCell{CPU: cpu, Stream: stream, Shape: shape, Counts: c}
	if c.Accesses > 0 {
		x.L1MPKA = 1000 * float64(c.L1Misses) / float64(c.Accesses)
		x.L2MPKA = 1000 * float64(c.L2Misses) / float64(c.Accesses)
		x.CyclesPer1k = 1000 * c.Cycles / float64(c.Accesses)
		x.CyclesPerSec = c.Cycles / float64(c.Accesses) * dumpCostFlags.rate
	}
	if c.L2Misses > 0 {
		x.ReadsPerWalk = float64(c.Reads) / float64(c.L2Misses)
	}
	return x
}

func assumedOf(models []*tlb.Model) map[string][]string {
	a := map[string][]string{}
	for _, m := range models {
		a[m.Key] = m.Assumed
	}
	return a
}

func printCost(w io.Writer, path string, shapes []costShape, models []*tlb.Model, pats []tlb.Pattern, cells []costCell) error {
	fmt.Fprintf(w, "%s: linear map of %s RAM; %d accesses per cell (after as many to warm up), data streams at %s/s\n\n",
		path, kernel.HumanBytes(shapes[0].k.Mem.TotalPages()*shapes[0].k.Mem.PageSize()), dumpCostFlags.accesses, workload.SI(dumpCostFlags.rate))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// Labels are padded to one width, so the right-aligned table reads
	// them left-aligned.
	width := len("  descriptor reads /walk")
	for _, m := range models {
		for _, p := range pats {
			width = max(width, len(m.Name)+2+len(p.String()))
		}
	}
	label := func(s string) string { return fmt.Sprintf("%-*s", width, s) }
	fmt.Fprintf(tw, "%s\t", label(""))
	for _, sh := range shapes {
		fmt.Fprintf(tw, "%s\t", sh.Name)
	}
	fmt.Fprintln(tw)
	i := 0
	for _, m := range models {
		for _, p := range pats {
			row := cells[i : i+len(shapes)]
			i += len(shapes)
			fmt.Fprintf(tw, "%s\t%s\n", label(m.Name+", "+p.String()), strings.Repeat("\t", len(shapes)))
			line := func(name string, f func(costCell) string) {
				fmt.Fprintf(tw, "%s\t", label("  "+name))
				for _, c := range row {
					fmt.Fprintf(tw, "%s\t", f(c))
				}
				fmt.Fprintln(tw)
			}
			line("dTLB L1 misses /1k", func(c costCell) string { return strconv.FormatFloat(c.L1MPKA, 'f', 2, 64) })
			line("dTLB L2 misses /1k", func(c costCell) string { return strconv.FormatFloat(c.L2MPKA, 'f', 2, 64) })
			line("descriptor reads /walk", func(c costCell) string { return strconv.FormatFloat(c.ReadsPerWalk, 'f', 2, 64) })
			line("walk cycles /1k", func(c costCell) string { return strconv.FormatFloat(c.CyclesPer1k, 'f', 0, 64) })
			line("walk cycles /s", func(c costCell) string { return workload.SI(c.CyclesPerSec) })
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nblock-mapped: the same RAM as a BBML2_NOABORT kernel maps it with rodata=on; PTE-mapped: rodata=on without BBML2_NOABORT.")
	for _, m := range models {
		fmt.Fprintf(w, "%s assumed: %s\n", m.Name, strings.Join(m.Assumed, "; "))
	}
	return nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
