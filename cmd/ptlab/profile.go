package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/spf13/cobra"
)

// Profiling flags on every command: --cpuprofile starts the CPU profiler
// once the command's flags are parsed and stops it when the command returns,
// error or not; --memprofile writes a heap profile (after a GC, so it shows
// what is live) at the same point. Read them with "go tool pprof".
var profile struct {
	cpu, mem string
	cpuFile  *os.File
}

func init() {
	rootCmd.PersistentFlags().StringVar(&profile.cpu, "cpuprofile", "", "write a CPU profile of the command to this file (go tool pprof)")
	rootCmd.PersistentFlags().StringVar(&profile.mem, "memprofile", "", "write a heap profile at the end of the command to this file (go tool pprof)")
	cobra.OnInitialize(startProfiles)
	cobra.OnFinalize(stopProfiles)
}

func startProfiles() {
	if profile.cpu == "" {
		return
	}
	f, err := os.Create(profile.cpu)
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		// Nothing has run yet; a profile that cannot be written is a usage error.
		fmt.Fprintf(os.Stderr, "ptlab: --cpuprofile: %v\n", err)
		os.Exit(2)
	}
	profile.cpuFile = f
}

func stopProfiles() {
	if profile.cpuFile != nil {
		pprof.StopCPUProfile()
		if err := profile.cpuFile.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "ptlab: --cpuprofile: %v\n", err)
		}
		profile.cpuFile = nil
	}
	if profile.mem != "" {
		runtime.GC()
		if err := writeHeapProfile(profile.mem); err != nil {
			fmt.Fprintf(os.Stderr, "ptlab: --memprofile: %v\n", err)
		}
	}
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
