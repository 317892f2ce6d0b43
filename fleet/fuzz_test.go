package fleet

import (
	"bytes"
	"testing"
)

// Reading a result never panics, whatever the bytes; what it accepts it
// writes back as JSON Lines and reads again to the same result.
func FuzzReadResult(f *testing.F) {
	in := []string{"a", "b", "c"}
	r, _ := DumpStats(in, Shard{1, 2}, DumpOptions{})
	var j, p bytes.Buffer
	if err := WriteJSONL(&j, r); err != nil {
		f.Fatal(err)
	}
	if err := WriteParquet(&p, r); err != nil {
		f.Fatal(err)
	}
	f.Add(j.Bytes())
	f.Add(p.Bytes())
	f.Add([]byte(`{"record":"envelope"}` + "\n{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r *Result
		var err error
		if bytes.HasPrefix(data, []byte("PAR1")) {
			r, err = ReadParquet(data, "fuzz")
		} else {
			r, err = ReadJSONL(data, "fuzz")
		}
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := WriteJSONL(&b, r); err != nil {
			return
		}
		r2, err := ReadJSONL(b.Bytes(), "again")
		if err != nil || len(r2.Rows) != len(r.Rows) {
			t.Fatalf("round trip: %v, %d rows vs %d", err, len(r2.Rows), len(r.Rows))
		}
	})
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
