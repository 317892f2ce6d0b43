package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fleetDir copies ptdump's test dumps into a directory under several names,
// adds a file that is not a dump, and returns the directory and the number
// of files.
func fleetDir(t *testing.T) (string, int) {
	t.Helper()
	src, err := filepath.Glob("../ptdump/testdata/*.txt")
	if err != nil || len(src) < 5 {
		t.Fatalf("test dumps: %v %v", src, err)
	}
	dir := t.TempDir()
	n := 0
	for copyNo := range 3 {
		for _, s := range src {
			b, err := os.ReadFile(s)
			if err != nil {
				t.Fatal(err)
			}
			sub := filepath.Join(dir, fmt.Sprintf("host%d", copyNo))
			if err := os.MkdirAll(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(sub, filepath.Base(s)), b, 0o644); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "not-a-dump.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, n + 1
}

func jsonl(t *testing.T, r *Result) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteJSONL(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// N shards merged, through JSON Lines and through Parquet, give exactly the
// unsharded result, for N from 1 to more shards than inputs.
func TestShardsMergeToUnsharded(t *testing.T) {
	dir, n := fleetDir(t)
	inputs, err := ResolveInputs([]string{dir})
	if err != nil || len(inputs) != n {
		t.Fatalf("%d inputs, want %d: %v", len(inputs), n, err)
	}
	whole, err := DumpStats(inputs, Shard{0, 1}, DumpOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := jsonl(t, whole)
	errs := 0
	for _, row := range whole.Rows {
		var r DumpRow
		if err := json.Unmarshal(row, &r); err != nil {
			t.Fatal(err)
		}
		if bad := strings.HasSuffix(r.Path, "not-a-dump.txt"); bad != (r.Error != "") || (!bad && r.Ranges == 0) {
			t.Errorf("row %s: error %q, %d ranges", r.Path, r.Error, r.Ranges)
		}
		if r.Error != "" {
			errs++
		}
	}
	if whole.Envelope.Rows != n || errs != 1 {
		t.Fatalf("unsharded result: %d rows, %d with errors; want %d and 1", whole.Envelope.Rows, errs, n)
	}
	for _, count := range []int{1, 2, 3, 7, n + 3} {
		for _, format := range []string{"jsonl", "parquet"} {
			var shards []*Result
			for i := range count {
				r, err := DumpStats(inputs, Shard{i, count}, DumpOptions{Jobs: 2})
				if err != nil {
					t.Fatal(err)
				}
				// through the file format and back
				p := filepath.Join(t.TempDir(), fmt.Sprintf("s%d.%s", i, format))
				if err := WriteResult(p, r); err != nil {
					t.Fatal(err)
				}
				if r, err = ReadResult(p); err != nil {
					t.Fatal(err)
				}
				shards = append(shards, r)
			}
			// any order
			shards[0], shards[len(shards)-1] = shards[len(shards)-1], shards[0]
			m, err := Merge(shards)
			if err != nil {
				t.Fatalf("%d shards (%s): %v", count, format, err)
			}
			if got := jsonl(t, m); !bytes.Equal(got, want) {
				t.Fatalf("%d shards (%s): merged result differs from the unsharded one", count, format)
			}
		}
	}
}

// Merge refuses a missing or repeated shard and results of different runs,
// naming what is wrong.
func TestMergeRefuses(t *testing.T) {
	dir, _ := fleetDir(t)
	inputs, _ := ResolveInputs([]string{dir})
	shard := func(i, n int, opt DumpOptions, in []string) *Result {
		r, err := DumpStats(in, Shard{i, n}, opt)
		if err != nil {
			t.Fatal(err)
		}
		r.Name = fmt.Sprintf("s%d-of-%d", i, n)
		return r
	}
	s0, s1, s2 := shard(0, 3, DumpOptions{}, inputs), shard(1, 3, DumpOptions{}, inputs), shard(2, 3, DumpOptions{}, inputs)
	lenient1 := shard(1, 3, DumpOptions{Lenient: true}, inputs)
	other1 := shard(1, 3, DumpOptions{}, inputs[1:])
	four1 := shard(1, 4, DumpOptions{}, inputs)
	newer := shard(1, 3, DumpOptions{}, inputs)
	newer.Envelope.Tool.Version = "v9.9.9"
	v2 := shard(1, 3, DumpOptions{}, inputs)
	v2.Envelope.SchemaVersion = 2
	short := shard(1, 3, DumpOptions{}, inputs)
	short.Rows = short.Rows[1:]
	for _, c := range []struct {
		name string
		rs   []*Result
		err  error
		msg  string
	}{
		{"missing", []*Result{s0, s2}, ErrShard, "missing shard(s) 1 of 3"},
		{"duplicate", []*Result{s0, s1, s1, s2}, ErrShard, "shard 1/3 twice"},
		{"options", []*Result{s0, lenient1, s2}, ErrMismatch, "options"},
		{"inputs", []*Result{s0, other1, s2}, ErrMismatch, "input lists differ"},
		{"count", []*Result{s0, four1, s2}, ErrMismatch, "different shard counts"},
		{"tool", []*Result{s0, newer, s2}, ErrMismatch, "v9.9.9"},
		{"schema", []*Result{s0, v2, s2}, ErrMismatch, "schema version 2"},
		{"truncated", []*Result{s0, short, s2}, ErrResult, "truncated"},
		{"none", nil, ErrShard, "no results"},
	} {
		_, err := Merge(c.rs)
		if !errors.Is(err, c.err) || !strings.Contains(fmt.Sprint(err), c.msg) {
			t.Errorf("%s: %v, want %v mentioning %q", c.name, err, c.err, c.msg)
		}
	}
	if _, err := Merge([]*Result{s2, s0, s1}); err != nil {
		t.Errorf("the three shards: %v", err)
	}
}

func TestParseShard(t *testing.T) {
	for s, ok := range map[string]bool{"0/1": true, "3/4": true, "4/4": false, "-1/2": false, "1": false, "a/b": false, "0/0": false, "1/2/3": false} {
		if _, err := ParseShard(s); (err == nil) != ok || (err != nil && !errors.Is(err, ErrShard)) {
			t.Errorf("%q: %v", s, err)
		}
	}
}

// Directories, globs and @lists resolve to one sorted list without
// duplicates; a list's relative paths are relative to the list.
func TestResolveInputs(t *testing.T) {
	dir, n := fleetDir(t)
	list := filepath.Join(dir, "host1", "fleet.list")
	if err := os.WriteFile(list, []byte("# the fleet\n../host0/hand-arm64-64k-48bit.txt\n\nmissing.txt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ResolveInputs([]string{filepath.Join(dir, "host0", "*.txt"), "@" + list, filepath.Join(dir, "host0")})
	if err != nil {
		t.Fatal(err)
	}
	want := (n-1)/3 + 1 // host0's dumps, plus the list's missing file
	if len(got) != want || !strings.HasSuffix(got[len(got)-1], filepath.Join("host1", "missing.txt")) {
		t.Fatalf("%d inputs %v, want %d", len(got), got, want)
	}
	for _, bad := range []string{filepath.Join(dir, "*.nothing"), filepath.Join(dir, "absent"), "@" + filepath.Join(dir, "absent.list")} {
		if _, err := ResolveInputs([]string{bad}); !errors.Is(err, ErrInputs) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	if HashInputs(got) == HashInputs(got[1:]) || HashInputs(got) != HashInputs(append([]string(nil), got...)) {
		t.Error("input hash does not identify the list")
	}
}
