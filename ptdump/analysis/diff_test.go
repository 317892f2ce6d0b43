package analysis

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/ptdump/internal/dumptest"
)

func TestDiffIdentity(t *testing.T) {
	for _, path := range samples(t) {
		d := parseFile(t, path, ptdump.ParseOptions{})
		res := Diff(d, d)
		if len(res.Changes) != 0 || len(res.Buckets) != 0 || len(res.Notes) != 0 {
			t.Errorf("%s: self-diff %+v", path, res)
		}
	}
}

// TestDiffMode3Edits edits the real mode-3 dump the way the kernel would
// change it and checks that Diff names exactly that change.
func TestDiffMode3Edits(t *testing.T) {
	path := "../testdata/002-ryan-roberts-bbml2-v7-ampereone-mode3-ptes.txt"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	orig := string(raw)
	pmd := "0xffff000000400000-0xffff000002400000          32M PMD       ro NX SHD AF        BLK UXN    MEM/NORMAL"
	if !strings.Contains(orig, pmd) {
		t.Fatal("sample changed")
	}
	split := strings.Replace(orig, pmd, "0xffff000000400000-0xffff000002400000          32M PTE       ro NX SHD AF            UXN    MEM/NORMAL", 1)
	roLine := "0xffff000143a61000-0xffff000143c61000           2M PTE       ro NX SHD AF            UXN    MEM/NORMAL-TAGGED"
	perm := strings.Replace(orig, roLine, strings.Replace(roLine, " ro ", " RW ", 1), 1)
	a, _ := parseString(orig, ptdump.ParseOptions{})
	for _, c := range []struct {
		name, text   string
		reverse      bool
		kind, from   string
		to           string
		start, bytes uint64
	}{
		{"split", split, false, DiffSplit, "PMD 2M", "PTE 4K", 0xffff000000400000, 32 << 20},
		{"merge", split, true, DiffMerged, "PTE 4K", "PMD 2M", 0xffff000000400000, 32 << 20},
		{"set_memory_rw", perm, false, DiffPermission, "PTE 4K", "PTE 4K", 0xffff000143a61000, 2 << 20},
	} {
		b, err := parseString(c.text, ptdump.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		x, y := a, b
		if c.reverse {
			x, y = b, a
		}
		res := Diff(x, y)
		if len(res.Changes) != 1 || len(res.Buckets) != 1 || len(res.Totals) != 1 {
			t.Fatalf("%s: %+v", c.name, res)
		}
		ch, bk := res.Changes[0], res.Buckets[0]
		if ch.Kind != c.kind || ch.From != c.from || ch.To != c.to || ch.Start != c.start ||
			ch.End-ch.Start != c.bytes || ch.Region != "linear" || bk.Bytes != c.bytes || res.Totals[0].Bytes != c.bytes {
			t.Errorf("%s: change %+v bucket %+v", c.name, ch, bk)
		}
		var buf bytes.Buffer
		if err := res.WriteText(&buf, 0); err != nil || !strings.Contains(buf.String(), c.kind) {
			t.Errorf("%s: text %v\n%s", c.name, err, buf.String())
		}
		if _, err := json.Marshal(res); err != nil {
			t.Error(err)
		}
	}
}

// diffKindOf classifies one page the way the Diff doc comment says.
func diffKindOf(a, b *ptdump.Dump, ra, rb *ptdump.Range) string {
	ma, mb := ra != nil && ra.Mapped(), rb != nil && rb.Mapped()
	switch {
	case !ma && !mb:
		return ""
	case !ma:
		return DiffMapped
	case !mb:
		return DiffUnmapped
	}
	la, lb := a.Geometry.LeafSize(ra), b.Geometry.LeafSize(rb)
	switch {
	case la > lb:
		return DiffSplit
	case la < lb:
		return DiffMerged
	case ra.Attrs.Perm != rb.Attrs.Perm:
		return DiffPermission
	case ra.Level != rb.Level:
		return DiffLevel
	}
	return ""
}

// TestDiffBruteForce compares Diff with a page-by-page comparison of two
// random dumps of the same window.
func TestDiffBruteForce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const base, span = 0xffff000000000000, 64 << 20
		a, err := parseString(dumptest.Format(t, dumptest.Gen(t, base, span, 1, false)), ptdump.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := parseString(dumptest.Format(t, dumptest.Gen(t, base, span, 1, false)), ptdump.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		res := Diff(a, b)
		want := map[string]uint64{}
		oa, ob := pageOracle{a}, pageOracle{b}
		for p := uint64(base); p < base+span+4<<20; p += 4096 {
			if k := diffKindOf(a, b, oa.at(p), ob.at(p)); k != "" {
				want[k] += 4096
			}
		}
		got := map[string]uint64{}
		for _, tot := range res.Totals {
			got[tot.Kind] = tot.Bytes
		}
		if len(got) != len(want) {
			t.Fatalf("totals %v want %v", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%s: %d want %d", k, got[k], v)
			}
		}
		var sum uint64
		for i, c := range res.Changes {
			sum += c.End - c.Start
			if c.End <= c.Start {
				t.Fatalf("change %d empty", i)
			}
			if i == 0 {
				continue
			}
			p := res.Changes[i-1]
			if c.Start < p.End {
				t.Fatalf("changes %d and %d overlap", i-1, i)
			}
			if c.Start == p.End && c.Kind == p.Kind && c.From == p.From && c.To == p.To &&
				c.FromAttrs == p.FromAttrs && c.ToAttrs == p.ToAttrs && c.PermChanged == p.PermChanged && c.Region == p.Region {
				t.Fatalf("changes %d and %d not coalesced", i-1, i)
			}
		}
		var bsum uint64
		for _, bk := range res.Buckets {
			bsum += bk.Bytes
		}
		if sum != bsum {
			t.Fatalf("changes sum %d, buckets %d", sum, bsum)
		}
	})
}

// TestDiffFormats: a 4.x dump (holes not printed) against the same mappings
// printed with holes shows no change but says how it read the gaps.
func TestDiffFormats(t *testing.T) {
	cols := dumptest.Cols{SHD: true, AF: true, UXN: true, Mem: "MEM/NORMAL"}.Text()
	m := dumptest.Line(0xffffffc000000000, 0xffffffc000010000, "PTE", cols) + "\n"
	old, err := parseString("---[ Linear Mapping ]---\n"+m, ptdump.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := parseString("---[ Linear Mapping start ]---\n"+m+dumptest.Line(0xffffffc000010000, 0xffffffc000200000, "PTE", "")+"\n", ptdump.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := Diff(old, cur)
	if len(res.Changes) != 0 || len(res.Notes) != 1 {
		t.Errorf("%+v", res)
	}
}
