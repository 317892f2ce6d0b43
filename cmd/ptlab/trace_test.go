package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/workload"
)

// The recorder script is POSIX sh: dash and busybox (when installed) parse it.
func TestTraceScript(t *testing.T) {
	out, err := run(t, "trace", "script")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "#!/bin/sh") || !strings.Contains(out, "probe execmem_alloc_ret r execmem_alloc 'ret=$retval:x64'") ||
		strings.Contains(out, "@PROBES@") || strings.Contains(out, "@TRACEPOINTS@") {
		t.Fatalf("script:\n%s", out)
	}
	p := filepath.Join(t.TempDir(), "rec.sh")
	if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, sh := range [][]string{{"sh", "-n"}, {"dash", "-n"}, {"busybox", "sh", "-n"}} {
		if _, err := exec.LookPath(sh[0]); err != nil {
			continue
		}
		if b, err := exec.Command(sh[0], append(sh[1:], p)...).CombinedOutput(); err != nil {
			t.Errorf("%v: %v\n%s", sh, err, b)
		}
	}
}

// import writes a scenario that compare runs; compare --trace prints the
// comparison for every preset.
func TestTraceImportAndCompare(t *testing.T) {
	rec := filepath.Join("..", "..", "trace", "testdata", "small.txt")
	yml := filepath.Join(t.TempDir(), "s.yaml")
	out, err := run(t, "trace", "import", rec, "-o", yml, "--machine", "qemu-virt")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"unmapped events (5):", "line 50: frobnicate: unknown event", "line 53: truncated: no time stamp"} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	s, err := workload.LoadScenario(yml)
	if err != nil || s.Replay == nil || len(s.Replay.Ops) == 0 {
		t.Fatalf("scenario: %v %+v", err, s)
	}
	if _, err := run(t, "trace", "import", rec, "--strict"); err == nil || !strings.Contains(err.Error(), ":53:") {
		t.Errorf("--strict: %v, want an error naming line 53", err)
	}
	out, err = run(t, "compare", "--trace", rec, "--quiet")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"mainline", "rox-cache", "rfc-v1", "collapse", "no-alias-split", "38 events: 6 operations, 27 modelled, 5 unmapped"} {
		if !strings.Contains(out, p) {
			t.Errorf("compare --trace lacks %q:\n%s", p, out)
		}
	}
}
