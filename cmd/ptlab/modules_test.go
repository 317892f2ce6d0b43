package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestModulesInfoAndList(t *testing.T) {
	out, err := run(t, "modules", "info", "xfs")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name:      xfs", "kernel/fs/xfs/xfs.ko", "ro_after_init", "depends:   libcrc32c"} {
		if !strings.Contains(out, want) {
			t.Errorf("info lacks %q:\n%s", want, out)
		}
	}
	if _, err := run(t, "modules", "info", "no-such-module"); err == nil {
		t.Error("unknown module accepted")
	}
	out, err = run(t, "modules", "list", "--server", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Order   struct{ Order []string }
		Modules []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if n := len(res.Modules); n < 100 || n > 200 || n != len(res.Order.Order) {
		t.Errorf("server list: %d modules, order %d", n, len(res.Order.Order))
	}
	if _, err := run(t, "modules", "list", "--server", "--all"); err == nil {
		t.Error("--server with --all accepted")
	}
	out, err = run(t, "modules", "list", "--sort", "size")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	if len(lines) < 4000 || !strings.HasPrefix(lines[0], "# linux-image-6.12") {
		t.Errorf("list: %d lines, first %q", len(lines), lines[0])
	}
}

func TestModulesScanErrors(t *testing.T) {
	if _, err := run(t, "modules", "scan", filepath.Join(t.TempDir(), "missing.deb")); err == nil {
		t.Error("missing input accepted")
	}
	bad := filepath.Join(t.TempDir(), "bad.ko")
	os.WriteFile(bad, []byte("not an ELF file"), 0o644)
	_, err := run(t, "modules", "scan", bad, "-o", filepath.Join(t.TempDir(), "out.json"))
	if err == nil || !strings.Contains(err.Error(), "not an arm64 kernel module") {
		t.Errorf("bad module: %v", err)
	}
}
