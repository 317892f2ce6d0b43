package fleet

import (
	"bytes"
	"testing"
)

// Reading a JSON Lines result never panics, whatever the bytes; what it
// accepts it writes back and reads again to the same result. (Parquet is
// parquet-go's parser: on adversarial files it can panic, which
// ReadParquet recovers, or exhaust memory, which nothing can; shards travel
// as JSON Lines for that reason.)
func FuzzReadResult(f *testing.F) {
	r, _ := DumpStats([]string{"a", "b", "c"}, Shard{1, 2}, DumpOptions{})
	var j bytes.Buffer
	if err := WriteJSONL(&j, r); err != nil {
		f.Fatal(err)
	}
	f.Add(j.Bytes())
	f.Add([]byte(`{"record":"envelope"}` + "\n{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ReadJSONL(data, "fuzz")
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := WriteJSONL(&b, r); err != nil {
			return
		}
		r2, err := ReadJSONL(b.Bytes(), "again")
		if err != nil || len(r2.Rows) != len(r.Rows) || !bytes.Equal(b.Bytes(), jsonlOf(t, r2)) {
			t.Fatalf("round trip: %v, %d rows vs %d", err, len(r2.Rows), len(r.Rows))
		}
	})
}

func jsonlOf(t *testing.T, r *Result) []byte {
	var b bytes.Buffer
	if err := WriteJSONL(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func FuzzParseShard(f *testing.F) {
	for _, s := range []string{"0/1", "3/4", "x/y", "-1/0", "9999999999999999999/1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sh, err := ParseShard(s)
		if err != nil {
			return
		}
		if sh.Index < 0 || sh.Index >= sh.Count {
			t.Fatalf("%q: %v", s, sh)
		}
		if lo, hi := sh.Range(1000); lo < 0 || hi > 1000 || lo > hi {
			t.Fatalf("%q: range [%d, %d)", s, lo, hi)
		}
	})
}
