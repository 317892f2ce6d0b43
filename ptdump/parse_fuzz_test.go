package ptdump

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// FuzzParse: no input makes Parse panic (analysis.FuzzAnalyze runs Stats,
// Diff and Heatmap on what it returns); errors always wrap ErrMalformed; lenient mode never fails;
// and an accepted dump keeps the invariants Parse promises.
func FuzzParse(f *testing.F) {
	for _, path := range samples(f) {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
	}
	for _, s := range []string{
		"---[ Linear Mapping start ]---\n0xffff000000000000-0xffff000000200000           2M PMD       RW NX SHD AF        BLK UXN    MEM/NORMAL-TAGGED\n",
		"0xffffffffffe00000-0x0000000000000000           2M PMD\n",
		"> [    0.011773] 0x00000007fc576000-0x00000007fc600000         552K                               pte\n... 3 entries skipped ... \n",
		"0xffff000000000000-0xffff000040000000           1G PUD TBL PA=0x0000000040001000 PXNTable UXNTable\n",
		"0xffff000000000000-0xffff000000001000           4K PTE F     RW NX SHD AF NG         UXN    MEM/NORMAL-TAGGED PA=0x0000000040000000\n",
		"kernel: 0xfff0000000000000-0xfff0000001000000   16M PTE RW NX SHD AF UXN GP XYZ\n",
		"~ # cat /sys/kernel/debug/kernel_page_tables\n---[ Modules start ]---\n0xffff800000000000-0xffff800000001000 4K PTE ro x SHD AF UXN MEM/NORMAL\n0xffff800000001000-0xffff800000200000 2044K PTE F RW x BLK DEVICE/nGnRnE\n---[ Modules end ]---\n0xffff800000200000-0xffff800000201000 4K PTE RW NX SHD AF UXN MEM/NORMAL\n~ #\n",
	} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, lenient bool) {
		d, err := Parse(bytes.NewReader(data), "fuzz", ParseOptions{Lenient: lenient})
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			if lenient {
				t.Fatalf("lenient parse failed: %v", err)
			}
			return
		}
		for i := range d.Ranges {
			r := &d.Ranges[i]
			if r.Start == r.End || r.Size != r.End-r.Start || (r.End != 0 && r.End < r.Start) {
				t.Fatalf("line %d: bad range %+v", r.Line, r)
			}
			if i > 0 {
				p := &d.Ranges[i-1]
				if p.End == 0 || r.Start < p.End || r.Line <= p.Line {
					t.Fatalf("line %d: out of order after line %d", r.Line, p.Line)
				}
			}
			if r.Marker >= len(d.Markers) {
				t.Fatalf("line %d: marker %d", r.Line, r.Marker)
			}
		}
		for i := range d.Ranges {
			if a := d.Ranges[i].Attrs; a != nil && d.Arch == ArchARM64 && a.Has(AttrInvalid) && !a.Has(AttrAF) {
				t.Fatalf("line %d: an empty descriptor (F without AF) counted as mapped", d.Ranges[i].Line)
			}
		}
	})
}
