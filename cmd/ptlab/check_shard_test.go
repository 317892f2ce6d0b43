package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// N shards of ptlab check, merged by ptlab merge, are byte for byte the
// unsharded result (--shard 0/1), and ptlab check --from prints from it
// exactly what the plain search prints — with violations (rfc-v1, every
// scenario) and without (collapse, with random walks).
func TestCheckShardsMerge(t *testing.T) {
	for ci, args := range [][]string{
		{"check", "--preset", "rfc-v1", "--bound", "1"},
		{"check", "--preset", "collapse", "--scenario", "neighbours", "--bound", "1", "--random", "6"},
	} {
		dir := t.TempDir()
		for i := range 3 {
			if _, err := run(t, append(args, "--shard", fmt.Sprintf("%d/3", i), "-o", filepath.Join(dir, fmt.Sprintf("shard-%d.jsonl", i)))...); err != nil {
				t.Fatal(err)
			}
		}
		merged := filepath.Join(dir, "merged.jsonl")
		if out, err := run(t, "merge", filepath.Join(dir, "shard-*.jsonl"), "-o", merged); err != nil {
			t.Fatalf("merge: %v\n%s", err, out)
		}
		one := filepath.Join(t.TempDir(), "one.jsonl")
		if _, err := run(t, append(args, "--shard", "0/1", "-o", one)...); err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(merged)
		b, _ := os.ReadFile(one)
		if string(a) != string(b) || len(a) == 0 {
			t.Errorf("case %d: merged shards differ from the unsharded result:\n%s\n%s", ci, a, b)
		}
		plain, perr := run(t, append(args, "--reduce=false")...)
		from, ferr := run(t, "check", "--from", merged)
		if plain != from || (perr == nil) != (ferr == nil) || (perr != nil && !errors.Is(ferr, errViolations)) {
			t.Errorf("case %d: --from the merged result (%v):\n%s\nplain search (%v):\n%s", ci, ferr, from, perr, plain)
		}
		// A missing shard is refused.
		os.Remove(filepath.Join(dir, "shard-1.jsonl"))
		if _, err := run(t, "merge", filepath.Join(dir, "shard-*.jsonl"), "-o", merged); err == nil {
			t.Errorf("case %d: merge without shard 1 succeeded", ci)
		}
	}
}
