package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// runFresh is run with slice flags emptied too: resetFlags' Set of "[]"
// leaves a slice flag holding "[]" and appending what comes next.
func runFresh(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var empty func(c *cobra.Command)
	empty = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				_ = sv.Replace(nil)
			}
		})
		for _, sub := range c.Commands() {
			empty(sub)
		}
	}
	resetFlags(rootCmd)
	empty(rootCmd)
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&out)
	rootCmd.SetArgs(args)
	err := rootCmd.Execute()
	return out.String(), err
}

// --cpuprofile and --memprofile work on any command and are written also
// when the command fails; the files are gzip'd pprof protobufs.
func TestProfileFlags(t *testing.T) {
	dir := t.TempDir()
	for i, args := range [][]string{
		{"sim", "--machine", "qemu-virt"},
		{"dump", "stats", filepath.Join(dir, "missing.txt")},
	} {
		cpu, mem := filepath.Join(dir, "cpu"+string(rune('0'+i))), filepath.Join(dir, "mem"+string(rune('0'+i)))
		_, err := run(t, append(args, "--cpuprofile", cpu, "--memprofile", mem)...)
		if (err != nil) != (i == 1) {
			t.Fatalf("%v: %v", args, err)
		}
		for _, p := range []string{cpu, mem} {
			b, err := os.ReadFile(p)
			if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
				t.Errorf("%v: %s: %d bytes, %v", args, p, len(b), err)
			}
		}
	}
}

// compare prints the same thing with its presets run one at a time or all
// at once, byte for byte.
func TestCompareJobsSameOutput(t *testing.T) {
	sc := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(sc, []byte(`name: jobs
seed: 5
machine: qemu-virt
presets: [mainline, rox-cache, collapse]
workload:
  modules: none
  duration: 20m
  bpf: {per_hour: 3600, lifetime: 5m}
  bpf_size: {median: 4K, sigma: 1.0, min: 256, max: 512K}
  sample_every: 5m
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var outs [2]string
	for i, jobs := range []string{"1", "3"} {
		out, err := runFresh(t, "compare", "--scenario", sc, "--preset", "mainline,rox-cache,collapse", "--jobs", jobs, "--json")
		if err != nil {
			t.Fatal(err)
		}
		outs[i] = out
	}
	if !bytes.Equal([]byte(outs[0]), []byte(outs[1])) || len(outs[0]) < 1000 {
		t.Fatalf("--jobs 1 and --jobs 3 differ (%d vs %d bytes)", len(outs[0]), len(outs[1]))
	}
}
