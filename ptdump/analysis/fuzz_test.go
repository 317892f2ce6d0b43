package analysis

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"testing"

	"github.com/ptlab/ptlab/ptdump"
)

// FuzzAnalyze: no dump the parser accepts makes Stats, Diff or Heatmap
// panic; Stats' summary prints and marshals; a dump diffed with itself shows
// no change.
func FuzzAnalyze(f *testing.F) {
	for _, path := range samples(f) {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("---[ Linear Mapping start ]---\n0xffff000000000000-0xffff000000200000           2M PMD       RW NX SHD AF        BLK UXN    MEM/NORMAL-TAGGED\n"))
	f.Add([]byte("---[ Modules start ]---\n0xffff800000000000-0xffff800000001000 4K PTE ro x SHD AF UXN MEM/NORMAL\n0xffff800000001000-0xffff800000100000 1020K PTE\n---[ Modules end ]---\n---[ vmalloc() area ]---\n0xffff800000100000-0xffff800000101000 4K PTE RW NX SHD AF UXN MEM/NORMAL\n"))
	f.Add([]byte("0xffff000000000000-0xffff000040000000           1G PUD TBL PA=0x0000000040001000 PXNTable UXNTable\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ptdump.Parse(bytes.NewReader(data), "fuzz", ptdump.ParseOptions{Lenient: true})
		if err != nil {
			t.Fatalf("lenient parse failed: %v", err)
		}
		s := Stats(d)
		if err := s.WriteText(io.Discard); err != nil {
			t.Fatal(err)
		}
		if _, err := json.Marshal(s); err != nil {
			t.Fatal(err)
		}
		// A table serving two regions counts in one of them only.
		var sum uint64
		for _, r := range s.Regions {
			sum += r.TablePages
		}
		if sum != s.Total.TablePages {
			t.Fatalf("regions count %d table pages, the dump %d", sum, s.Total.TablePages)
		}
		if res := Diff(d, d); len(res.Changes) != 0 {
			t.Fatalf("self-diff: %+v", res.Changes)
		}
		Heatmap(d, HeatmapOptions{Width: 16, MaxRows: 16}) // only a panic fails
	})
}
