package main

import (
	"github.com/spf13/cobra"

	"github.com/ptlab/ptlab/fleet"
)

func init() {
	cmd := &cobra.Command{
		Use:   "merge [-o OUT] RESULT...",
		Short: "Combine the shard results of a sharded run into the unsharded result",
		Long: `merge reads the N shard results of one sharded run (ptlab dump stats --shard i/N; JSON
Lines or Parquet, in any order; RESULT may be a glob, a directory or @LIST) and writes the
result the unsharded run would have written. It refuses results that do not belong together
— another schema version, kind, ptlab version, shard count, input list or options — and a
missing or repeated shard, naming the files.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fleet.Version = rootCmd.Version
			paths, err := fleet.ResolveInputs(args)
			if err != nil {
				return err
			}
			var rs []*fleet.Result
			for _, p := range paths {
				r, err := fleet.ReadResult(p)
				if err != nil {
					return err
				}
				rs = append(rs, r)
			}
			m, err := fleet.Merge(rs)
			if err != nil {
				return err
			}
			return writeResult(cmd, m)
		},
	}
	cmd.Flags().StringVarP(&fleetFlags.output, "output", "o", "", `write the merged result here: FILE.parquet for Parquet, any other name for JSON Lines (default: JSON Lines on stdout)`)
	rootCmd.AddCommand(cmd)
}
