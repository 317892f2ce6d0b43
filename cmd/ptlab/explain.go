package main

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/ptlab/ptlab/report"
)

func init() {
	var schema bool
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "What every row, CSV column and JSON field of the comparison means",
		Long: `explain documents the comparison that "ptlab" and "ptlab compare" print: every row of the
table (what it counts, its unit, which direction is better), every column of --csv and every
field of --json. With --schema it prints the JSON Schema of compare --json instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if schema {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(report.Schema())
			}
			return report.WriteExplain(cmd.OutOrStdout(), nil)
		},
	}
	cmd.Flags().BoolVar(&schema, "schema", false, "print the JSON Schema of compare --json")
	rootCmd.AddCommand(cmd)
}
