package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ptlab/ptlab/trace"
)

func addTraceRecord(parent *cobra.Command) {
	var out string
	var bufKB int
	cmd := &cobra.Command{
		Use:   "record [-o FILE] [-- COMMAND [ARG...]]",
		Short: "Record kernel-mapping events from this binary (arm64 host, root, tracefs)",
		Long: `record does what the script of "ptlab trace script" does, from Go: it defines the kprobes,
enables the vmalloc and module tracepoints, snapshots the start state, streams trace_pipe until
COMMAND exits (or, without one, until SIGINT/SIGTERM), snapshots the end state and removes its
probes. The file is the same format; "ptlab trace import" reads it.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Create(out)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			rctx, done := context.WithCancel(ctx)
			errc := make(chan error, 1)
			ready := make(chan struct{})
			go func() {
				errc <- trace.Record(rctx, f, trace.RecordOptions{BufferKB: bufKB, Log: cmd.ErrOrStderr(), Ready: ready})
			}()
			// The command runs once the probes are set and the start
			// snapshot is taken, so all it does is recorded.
			select {
			case <-ready:
			case err := <-errc:
				done()
				f.Close()
				if err == nil {
					err = fmt.Errorf("trace record: stopped before recording")
				}
				return err
			}
			var runErr error
			if len(args) > 0 {
				c := exec.CommandContext(ctx, args[0], args[1:]...)
				c.Stdin, c.Stdout, c.Stderr = os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr()
				if tf := tracefsDir(); tf != "" {
					c.Env = append(os.Environ(), "PTLAB_TRACEFS="+tf)
				}
				runErr = c.Run()
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "ptlab trace record: recording to %s; stop with SIGINT or SIGTERM\n", out)
				<-ctx.Done()
			}
			done()
			err = <-errc
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "ptlab trace record: wrote %s\n", out)
			return runErr
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "ptlab-trace.txt", "recording file")
	cmd.Flags().IntVarP(&bufKB, "buffer-kb", "b", 8192, "per-CPU ring buffer size in KiB")
	parent.AddCommand(cmd)
}

func tracefsDir() string {
	for _, d := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(d + "/kprobe_events"); err == nil {
			return d
		}
	}
	return ""
}
