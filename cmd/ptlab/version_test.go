package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionString(t *testing.T) {
	cases := []struct {
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{nil, false, "unknown (no build information)"},
		{&debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v0.3.0"}}, true, "v0.3.0 go1.26.0"},
		{&debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "61f5e62c0ffee0123456789abcdef0123456789a"},
			{Key: "vcs.time", Value: "2026-11-29T18:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		}}, true, "(devel) 61f5e62c0ffe-dirty 2026-11-29T18:00:00Z go1.26.0"},
	}
	for _, c := range cases {
		if got := version(c.info, c.ok); got != c.want {
			t.Errorf("version = %q, want %q", got, c.want)
		}
	}
}

// TestVersionFlag: `ptlab --version` prints one line naming ptlab and the Go
// toolchain that built it, and runs nothing else.
func TestVersionFlag(t *testing.T) {
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetArgs([]string{"--version"})
	defer func() { // flags keep their values between Execute calls
		rootCmd.SetOut(nil)
		rootCmd.SetArgs(nil)
		if err := rootCmd.Flags().Set("version", "false"); err != nil {
			t.Error(err)
		}
	}()
	if err := rootCmd.Execute(); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.HasPrefix(s, "ptlab ") || !strings.Contains(s, "go1.") || strings.Count(s, "\n") != 1 {
		t.Errorf("--version printed %q", s)
	}
}
