package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ptlab/ptlab/fleet"
)

// Fleet mode of "dump stats": many dumps (directories, globs, @lists), one
// flat row per dump, optionally one shard of them, written as a
// self-describing result (see package fleet) in JSON Lines or Parquet. It
// hooks into the dump stats command from here, so dump.go keeps the
// one-dump analysis: with one plain file and none of these flags, dump stats
// behaves as before.
var fleetFlags struct {
	shard  string
	output string
	jobs   int
}

func init() {
	f := dumpStatsCmd.Flags()
	f.StringVar(&fleetFlags.shard, "shard", "", `analyse only shard i of N of the inputs ("i/N", i from 0 as JOB_COMPLETION_INDEX) and write a shard result for "ptlab merge"`)
	f.StringVarP(&fleetFlags.output, "output", "o", "", `write the result here: FILE.parquet for Parquet, any other name for JSON Lines (default: JSON Lines on stdout)`)
	f.IntVar(&fleetFlags.jobs, "jobs", runtime.GOMAXPROCS(0), "dumps analysed at once in fleet mode")
	dumpStatsCmd.Use = "stats FILE | stats [--shard i/N] [-o OUT] DIR|GLOB|@LIST|FILE..."
	dumpStatsCmd.Long += `

Fleet mode — several inputs, a directory (every file under it), a glob, or @LIST (a file of
paths, one a line), or --shard / -o — writes one flat row per dump (leaf bytes, table pages,
linear-map PTE share, collapse potential; a dump that cannot be read has its error in the row)
as JSON Lines or Parquet, after an envelope naming the whole input list (its SHA-256), the
shard, the options and the ptlab version. "ptlab merge" joins the N shard results into what
the unsharded run writes.`
	dumpStatsCmd.Args = cobra.MinimumNArgs(1)
	single := dumpStatsCmd.RunE
	dumpStatsCmd.RunE = func(cmd *cobra.Command, args []string) error {
		if !fleetMode(cmd, args) {
			return single(cmd, args)
		}
		return runFleetStats(cmd, args)
	}
}

// fleetMode: more than one input, an input that stands for many, or a
// fleet flag.
func fleetMode(cmd *cobra.Command, args []string) bool {
	if len(args) != 1 || cmd.Flags().Changed("shard") || cmd.Flags().Changed("output") {
		return true
	}
	a := args[0]
	if strings.HasPrefix(a, "@") || strings.ContainsAny(a, "*?[") {
		return true
	}
	st, err := os.Stat(a)
	return err == nil && st.IsDir()
}

func runFleetStats(cmd *cobra.Command, args []string) error {
	fleet.Version = rootCmd.Version
	if dumpFlags.heatmap != "" || dumpFlags.json {
		return fmt.Errorf("--heatmap and --json are for one dump; fleet mode writes JSON Lines or Parquet (-o)")
	}
	shard := fleet.Shard{Index: 0, Count: 1}
	if fleetFlags.shard != "" {
		var err error
		if shard, err = fleet.ParseShard(fleetFlags.shard); err != nil {
			return err
		}
	}
	var ps uint64
	switch dumpFlags.page {
	case "":
	case "4K", "4k", "4096":
		ps = 4 << 10
	case "16K", "16k", "16384":
		ps = 16 << 10
	case "64K", "64k", "65536":
		ps = 64 << 10
	default:
		return fmt.Errorf("--page-size %q: want 4K, 16K or 64K", dumpFlags.page)
	}
	inputs, err := fleet.ResolveInputs(args)
	if err != nil {
		return err
	}
	res, err := fleet.DumpStats(inputs, shard, fleet.DumpOptions{Lenient: dumpFlags.lenient, PageSize: ps, Jobs: fleetFlags.jobs})
	if err != nil {
		return err
	}
	return writeResult(cmd, res)
}

// writeResult writes a fleet result to --output, or as JSON Lines to stdout.
func writeResult(cmd *cobra.Command, res *fleet.Result) error {
	if fleetFlags.output == "" || fleetFlags.output == "-" {
		return fleet.WriteJSONL(cmd.OutOrStdout(), res)
	}
	return fleet.WriteResult(fleetFlags.output, res)
}
