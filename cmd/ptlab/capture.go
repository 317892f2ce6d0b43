package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/ptlab/ptlab/capture"
)

var captureCmd = &cobra.Command{
	Use:   "capture",
	Short: "Dump the running arm64 kernel's page tables from /proc/kcore",
	Long: `Walk the live kernel's own translation tables (swapper_pg_dir) through /proc/kcore
and print them in /sys/kernel/debug/kernel_page_tables format, for kernels built without
CONFIG_PTDUMP_DEBUGFS (most distribution kernels). Run as root on the arm64 machine.

The granule, the VA size (48 or 52 bits, 3 to 5 levels, LPA2) and the linear-map offset
come from the VMCOREINFO note in /proc/kcore; swapper_pg_dir from /proc/kallsyms (or
VMCOREINFO). --pa adds each range's physical start address and --tables a line per table
descriptor, neither of which the kernel prints. The machine summary and the W+X verdict
(as the kernel's own check words it) go to standard error.`,
	Args: cobra.NoArgs,
	RunE: runCapture,
}

var captureFlags struct {
	kcore, kallsyms, out string
	pa, tables, json     bool
}

func init() {
	f := captureCmd.Flags()
	f.StringVar(&captureFlags.kcore, "kcore", "/proc/kcore", "ELF core of kernel memory")
	f.StringVar(&captureFlags.kallsyms, "kallsyms", "/proc/kallsyms", `kernel symbol list ("" to use VMCOREINFO only)`)
	f.StringVarP(&captureFlags.out, "output", "o", "", "write the dump to this file instead of standard output")
	f.BoolVar(&captureFlags.pa, "pa", false, "append PA=0x... (physical start) to every mapped range")
	f.BoolVar(&captureFlags.tables, "tables", false, "print a TBL line for every table descriptor")
	f.BoolVar(&captureFlags.json, "json", false, "write JSON: machine, W+X check and the parsed dump")
	rootCmd.AddCommand(captureCmd)
}

func runCapture(cmd *cobra.Command, _ []string) (err error) {
	k, err := capture.OpenKcore(captureFlags.kcore)
	if err != nil {
		return err
	}
	defer k.Close()
	var syms capture.Symbols
	if captureFlags.kallsyms != "" {
		syms, err = capture.ReadKallsymsFile(captureFlags.kallsyms, capture.KernelSymbols)
		if err != nil {
			// VMCOREINFO also names swapper_pg_dir; kallsyms is a cross-check.
			fmt.Fprintf(cmd.ErrOrStderr(), "ptlab capture: %v; using VMCOREINFO only\n", err)
			syms = nil
		}
	}
	var hints capture.MachineHints
	if captureFlags.kcore == "/proc/kcore" {
		hints.PageSize = os.Getpagesize()
	}
	m, err := capture.DetectMachine(k, syms, hints)
	if err != nil {
		return err
	}

	var w io.Writer = cmd.OutOrStdout()
	if captureFlags.out != "" {
		f, err := os.Create(captureFlags.out)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}()
		w = f
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	opt := capture.Options{PA: captureFlags.pa, Tables: captureFlags.tables}
	var r *capture.Result
	if captureFlags.json {
		r, err = capture.CaptureJSON(bw, k, m, opt)
	} else {
		r, err = capture.Capture(bw, k, m, opt)
	}
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "ptlab capture: %s %v; %d table pages read\nptlab capture: %s\n",
		m.OSRelease, m, r.TablesRead, r.WXVerdict)
	return nil
}
