package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// resetFlags puts every flag of every command back to its default, since
// cobra keeps values between in-process runs.
func resetFlags(c *cobra.Command) {
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			_ = sv.Replace(nil)
		} else {
			_ = f.Value.Set(f.DefValue)
		}
		f.Changed = false
	})
	for _, sub := range c.Commands() {
		resetFlags(sub)
	}
}

// run executes the ptlab command line in-process.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	setupCommands()
	resetFlags(rootCmd)
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&out)
	rootCmd.SetArgs(args)
	err := usageStatus(rootCmd.Execute())
	return out.String(), err
}

// runSplit executes the command line and returns standard output alone.
func runSplit(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	setupCommands()
	resetFlags(rootCmd)
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&errw)
	rootCmd.SetArgs(args)
	err := usageStatus(rootCmd.Execute())
	return out.String(), err
}

// The README's first command: ptlab on its embedded default.
func TestDefaultRun(t *testing.T) {
	out, err := run(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"scenario default", "mainline", "rox-cache", "rfc-v1", "collapse", "no-alias-split", "linear map 4K", "page-table pages", "execmem chunks", "Verdict"} {
		if !strings.Contains(out, want) {
			t.Errorf("default output lacks %q", want)
		}
	}
	// The default output ends with the verdict.
	if i := strings.LastIndex(out, "\nVerdict"); i < 0 || !strings.Contains(out[i:], "against mainline") || strings.Contains(out[i:], "page-table pages  ") {
		t.Error("default output does not end with the verdict")
	}
	// Same scenario and seed, the same bytes: host time only with --time.
	again, _ := run(t)
	if again != out {
		t.Error("two runs of the default differ")
	}
	if strings.Contains(out, "wall time") {
		t.Error("the default output shows the wall time (it differs between runs; --time asks for it)")
	}
	timed, err := run(t, "compare", "--time")
	if err != nil || !strings.Contains(timed, "wall time") {
		t.Errorf("compare --time shows no wall time: %v", err)
	}
}

func TestSimErrors(t *testing.T) {
	if _, err := run(t, "sim", "--machine", "nope"); err == nil || !strings.Contains(err.Error(), "qemu-virt") {
		t.Errorf("unknown machine: %v", err)
	}
	if _, err := run(t, "sim", "--rodata", "maybe"); err == nil {
		t.Error("bad rodata accepted")
	}
	out, err := run(t, "sim", "--machine", "qemu-virt", "--modules", "none")
	if err != nil || !strings.Contains(out, "---[ Linear Mapping start ]---") || !strings.Contains(out, "MEM/NORMAL-TAGGED") {
		t.Errorf("sim: %v", err)
	}
	out, err = run(t, "sim", "--machine", "bbml2-server", "--preset", "rox-cache", "--json")
	if err != nil || !strings.Contains(out, `"leaf_bytes"`) {
		t.Errorf("json: %v", err)
	}
}
