package main

import "github.com/spf13/cobra"

func addTraceRecord(parent *cobra.Command) {}
