// Command ptlab models the Linux arm64 kernel's own mappings (linear map, vmalloc,
// set_memory_*, block splitting and collapsing, the execmem ROX cache) on real
// translation-table descriptors, and reads, analyzes and captures real
// kernel_page_tables dumps.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// rootCmd is the ptlab command. Subcommands register themselves from their own
// files with rootCmd.AddCommand in an init function, so each concern stays in
// one file.
var rootCmd = &cobra.Command{
	Use:           "ptlab",
	Short:         "Model and inspect arm64 kernel page tables",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ptlab:", err)
		os.Exit(1)
	}
}
