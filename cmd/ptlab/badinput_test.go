package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every bad input a new user met (issue: "a CLI that never lies", "limits
// instead of crashes") exits non-zero with a message that names the problem.
func TestBadInputs(t *testing.T) {
	dir := t.TempDir()
	file := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	scenario := func(name, work string) string {
		return file(name+".yaml", "name: "+name+"\npresets: [mainline]\nworkload:\n  modules: none\n  duration: 10m\n"+work)
	}
	cfg := func(name, text string) string { return file(name+".yaml", text) }
	dumpA := "../../ptdump/testdata/hand-arm64-6x-kpti-bti-mte.txt"
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown dump subcommand", []string{"dump", "stat", "x"}, 2, `unknown command "stat" for "ptlab dump"`},
		{"unknown modules subcommand", []string{"modules", "bogus"}, 2, `unknown command "bogus" for "ptlab modules"`},
		{"unknown top-level command", []string{"bogus"}, 2, `unknown command "bogus"`},
		{"unknown flag", []string{"compare", "--bogus"}, 2, "unknown flag: --bogus (ptlab compare --help)"},
		{"missing argument", []string{"dump", "stats"}, 2, "ptlab dump stats: requires at least 1 arg(s), only received 0"},
		{"extra argument", []string{"compare", "extra"}, 2, `unknown command "extra" for "ptlab compare"`},
		{"check without schedules", []string{"check", "--bound", "-1"}, 2, "--bound -1"},
		{"json and csv on stdout", []string{"compare", "--json", "--csv", "-"}, 2, "--json and --csv -"},
		{"negative lifetime", []string{"compare", "--scenario", scenario("life", "  bpf: {per_hour: 10, lifetime: -5m}\n")}, 1, "workload.bpf.lifetime"},
		{"negative rate", []string{"compare", "--scenario", scenario("rate", "  kprobes: {per_hour: -1}\n")}, 1, "workload.kprobes.per_hour"},
		{"sample_every too small", []string{"compare", "--scenario", scenario("sample", "  sample_every: 1ms\n")}, 1, "workload.sample_every"},
		{"512 MiB BPF programs", []string{"compare", "--scenario", scenario("bpf", "  bpf_size: {median: 512M, max: 512M}\n")}, 1, "workload.bpf_size.median"},
		{"unknown scenario field", []string{"compare", "--scenario", scenario("field", "  bfp: {per_hour: 1}\n")}, 1, "field bfp not found"},
		{"scenario config field", []string{"compare", "--scenario", file("cfgfield.yaml", "presets: [mainline]\nconfig: {kpti: maybe}\n")}, 1, "config:"},
		{"scenario policy of unknown base", []string{"compare", "--scenario", file("pol.yaml", "presets: [mine]\npolicies: {mine: {base: nope}}\n")}, 1, "policies.mine: base"},
		{"unknown preset", []string{"compare", "--preset", "nope"}, 2, `--preset: kernel: bad configuration: no preset "nope"`},
		{"unknown machine", []string{"compare", "--machine", "nope"}, 2, `--machine`},
		{"sim unknown machine", []string{"sim", "--machine", "nope"}, 1, `--machine`},
		{"bad cpus count", []string{"compare", "--cpus", "ampere1:x"}, 2, `--cpus "ampere1:x"`},
		{"ram 100T mapped with PTEs", []string{"sim", "--machine", "n1-server", "--config", cfg("ram", "ram: [{base: 0x80000000, size: 100T}]\n")}, 1, "ram 102400 GiB mapped with base pages"},
		{"too many CPUs", []string{"sim", "--config", cfg("cpus", "cpus: [{model: ampere1, count: 100000000}]\n")}, 1, "NR_CPUS"},
		{"VA size no Kconfig offers", []string{"sim", "--config", cfg("va", "granule: 4K\nva_bits: 47\n")}, 1, "config_va_bits 47 with 4K pages"},
		{"runtime VA above the configured", []string{"sim", "--config", cfg("va2", "granule: 16K\nva_bits: 48\nconfig_va_bits: 47\n")}, 1, "va_bits 48 on a kernel built with CONFIG_ARM64_VA_BITS=47"},
		{"lpa2 with 64K", []string{"sim", "--config", cfg("lpa2", "granule: 64K\nlpa2: true\n")}, 1, "LPA2 descriptors are for the 4K and 16K granules"},
		{"huge heatmap", []string{"dump", "stats", dumpA, "--heatmap", filepath.Join(dir, "h.png"), "--heatmap-width", "100000000"}, 2, "--heatmap-width 100000000"},
		{"bad page size", []string{"dump", "stats", dumpA, "--page-size", "8K"}, 1, `--page-size "8K"`},
		{"dump diff of a missing file", []string{"dump", "diff", dumpA, filepath.Join(dir, "missing.txt")}, 2, "missing.txt"},
		{"rodata value", []string{"sim", "--rodata", "maybe"}, 1, `--rodata`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, tc.args...)
			if got := exitCode(err); got != tc.code {
				t.Errorf("ptlab %s: exit %d, want %d (err %v)", strings.Join(tc.args, " "), got, tc.code, err)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ptlab %s: error %v, want it to name %q\n%s", strings.Join(tc.args, " "), err, tc.want, out)
			}
		})
	}
}

// dump diff follows diff(1): 0 when the same, 1 when different.
func TestDumpDiffExit(t *testing.T) {
	a := "../../ptdump/testdata/hand-arm64-6x-kpti-bti-mte.txt"
	b := "../../ptdump/testdata/hand-arm64-5x-bpf-devicegre.txt"
	if _, err := run(t, "dump", "diff", a, a); exitCode(err) != 0 {
		t.Errorf("same dump: exit %d (%v)", exitCode(err), err)
	}
	if _, err := run(t, "dump", "diff", a, b); exitCode(err) != 1 {
		t.Errorf("different dumps: exit %d (%v)", exitCode(err), err)
	}
}

// sim's standard output is a dump that dump stats reads back.
func TestSimOutputIsADump(t *testing.T) {
	out, err := runSplit(t, "sim", "--modules", "none")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "page-table pages") {
		t.Fatal("metrics on standard output")
	}
	p := filepath.Join(t.TempDir(), "sim.txt")
	if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "dump", "stats", p); err != nil {
		t.Fatalf("dump stats of sim's output: %v", err)
	}
}

func TestCompletion(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"__complete", "compare", "--preset", ""}, "no-alias-split"},
		{[]string{"__complete", "sim", "--machine", ""}, "mixed-server"},
		{[]string{"__complete", "compare", "--cpus", ""}, "neoverse-n1"},
		{[]string{"__complete", "check", "--scenario", ""}, "neighbours"},
	} {
		out, err := run(t, tc.args...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("%v: %q lacks %q (%v)", tc.args, out, tc.want, err)
		}
	}
}

// The header names the machine as booted: after --import, --cpus, --machine.
func TestCompareHeaderNamesBootedMachine(t *testing.T) {
	dir := t.TempDir()
	scen := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(scen, []byte("name: s\npresets: [mainline]\nworkload: {modules: none, duration: 1m}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--import", "../../ptdump/testdata/002-ryan-roberts-bbml2-v7-ampereone-mode3-ptes.txt"}, "machine imported:../../ptdump/testdata/002-ryan-roberts-bbml2-v7-ampereone-mode3-ptes.txt (12 GiB RAM"},
		{[]string{"--machine", "n1-server", "--cpus", "neoverse-n1:2"}, "machine n1-server (16 GiB RAM, 2 CPUs: 2×neoverse-n1"},
	} {
		out, err := run(t, append([]string{"compare", "--quiet", "--scenario", scen}, tc.args...)...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("%v: %v\n%s", tc.args, err, strings.SplitN(out, "\n", 2)[0])
		}
	}
}
