// The race detector's pointer checks turn parquet-go's unchecked unsafe.Slice
// on some corrupt footers into a fatal error that no recover catches; this
// test runs without it.

//go:build !race

package fleet

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// Corrupt Parquet results (bytes overwritten at random, deterministically)
// are errors, never panics; parquet-go itself panics on many of them. (The
// page CRCs catch corrupt values; corrupt metadata makes it panic.)
func TestReadParquetCorrupt(t *testing.T) {
	r, _ := DumpStats([]string{"a", "b", "c"}, Shard{1, 2}, DumpOptions{})
	var p bytes.Buffer
	if err := WriteParquet(&p, r); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	failed := 0
	for range 1000 {
		d := bytes.Clone(p.Bytes())
		for range 1 + rng.IntN(4) {
			d[rng.IntN(len(d))] = byte(rng.IntN(256))
		}
		if _, err := ReadParquet(d, "corrupt"); err != nil {
			if !errors.Is(err, ErrResult) {
				t.Fatalf("%v does not wrap ErrResult", err)
			}
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("no corruption detected")
	}
}
