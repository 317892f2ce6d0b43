package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// compare --check --html puts the checker's per-preset result on the page
// next to the comparison, and a page without --check has no checker section.
func TestCompareCheckHTML(t *testing.T) {
	dir := t.TempDir()
	scen := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(scen, []byte(`name: check-html
seed: 1
machine: bbml2-server
config: {ram: [{base: 0x80000000, size: 2G}]}
presets: [mainline, collapse]
workload:
  modules: none
  duration: 10m
  bpf: {per_hour: 360, lifetime: 5m}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "c.html")
	out, err := run(t, "compare", "--quiet", "--check", "--scenario", scen, "--html", page)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"mainline", "collapse"} {
		if !strings.Contains(out, p+" ") || !strings.Contains(string(b), "no violation") {
			t.Errorf("preset %s: check result missing (stdout %q)", p, out)
		}
	}
	plain := filepath.Join(dir, "p.html")
	if _, err := run(t, "compare", "--quiet", "--scenario", scen, "--html", plain); err != nil {
		t.Fatal(err)
	}
	if b, err = os.ReadFile(plain); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "steps checked") {
		t.Error("a page without --check shows a checker result")
	}
}

// compare --check does not run recorded traces yet: it must say so instead
// of checking the scenario's generated timeline in their place.
func TestCompareCheckTraceRefused(t *testing.T) {
	_, err := run(t, "compare", "--quiet", "--check", "--preset", "mainline", "--trace", "../../trace/testdata/qemu-6.12/recording.txt.xz")
	if err == nil || !strings.Contains(err.Error(), "recorded trace cannot run under hooks") {
		t.Fatalf("got %v", err)
	}
}
