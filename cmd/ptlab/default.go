package main

import (
	"fmt"
	"os"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
	"github.com/ptlab/ptlab/ptdump"
	"github.com/spf13/cobra"
)

func init() {
	rootCmd.RunE = runDefault
}

// runDefault maps the linear map of a small QEMU-virt-like machine (2 GiB of
// RAM at 0x40000000, 4K pages, 48-bit VA) with the largest leaves alignment
// allows, as map_mem does on a BBML2_NOABORT system, and prints its ptdump.
func runDefault(cmd *cobra.Command, _ []string) error {
	g := arm64.Geometry4K48
	mem, err := physmem.New(g.PageShift, []physmem.Region{{Base: 0x40000000, Size: 2 << 30}})
	if err != nil {
		return err
	}
	tb, err := pgtable.New(g, mem)
	if err != nil {
		return err
	}
	lay := arm64.KernelLayout(g, 0)
	var d pgtable.Direct
	if err := tb.Map(d, lay.PageOffset, 0x40000000, 2<<30, arm64.Tagged(arm64.PageKernel), pgtable.NoExecMappings); err != nil {
		return err
	}
	w := ptdump.NewWriter(cmd.OutOrStdout(), g, ptdump.KernelMarkers(lay), ptdump.Options{})
	if err := ptdump.Walk(tb, d, g, tb.Root(), lay.PageOffset, w); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "page-table pages: %d (%d KiB)\n", tb.TotalTablePages(), tb.TotalTablePages()*int(g.PageSize())>>10)
	return nil
}
