// Command ptlab models the Linux arm64 kernel's own mappings (linear map, vmalloc,
// set_memory_*, block splitting and collapsing, the execmem ROX cache) on real
// translation-table descriptors, and reads, analyzes and captures real
// kernel_page_tables dumps.
package main

import (
	"os"

	"github.com/spf13/cobra"
)

// rootCmd is the ptlab command. Subcommands register themselves from their own
// files with rootCmd.AddCommand in an init function, so each concern stays in
// one file.
var rootCmd = &cobra.Command{
	Use:   "ptlab",
	Short: "Model and inspect arm64 kernel page tables",
	Long: `ptlab models the Linux arm64 kernel's own mappings (linear map, vmalloc, set_memory_*,
splits and collapses, the execmem ROX cache) on real translation-table descriptors, checks
concurrent designs for races, and reads, analyzes and captures real kernel_page_tables dumps.

Without a command it runs its main job: "ptlab compare" on the embedded default scenario
(a 16 GiB BBML2_NOABORT server, the Debian arm64 server module set, an hour of module and BPF
churn) under every policy preset, side by side.`,
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() { os.Exit(execute()) }
