package main

import (
	"runtime/debug"
	"strings"
)

// version says which ptlab this is, from what the Go toolchain recorded in
// the binary: the module version for `go install ...@vX.Y.Z`, otherwise
// "(devel)" with the commit, its time and whether the tree was modified.
func version(info *debug.BuildInfo, ok bool) string {
	if !ok {
		return "unknown (no build information)"
	}
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, at string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	parts := []string{v}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if dirty {
			rev += "-dirty"
		}
		parts = append(parts, rev)
	}
	if at != "" {
		parts = append(parts, at)
	}
	if info.GoVersion != "" {
		parts = append(parts, info.GoVersion)
	}
	return strings.Join(parts, " ")
}

func init() {
	rootCmd.Version = version(debug.ReadBuildInfo())
	rootCmd.SetVersionTemplate("ptlab {{.Version}}\n")
}
