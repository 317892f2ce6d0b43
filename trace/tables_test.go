package trace

import (
	"maps"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/kernel"
	"pgregory.net/rapid"
)

// The table pages a --tables dump of the model names (DumpTables) are the
// ones the census of its own tables counts (ModelTables), in the
// module/vmalloc region and in the whole tree, after any sequence of
// vmalloc, vmalloc_huge and vfree; and the set changes exactly where the
// census says: a table appears only where a mapping needed one, and the
// kernel's vunmap never frees one (a vfree leaves every table in place).
func TestModelTablesMatchDumpProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg, err := kernel.Machine("qemu-virt")
		if err != nil {
			rt.Fatal(err)
		}
		cfg.Kernel = rapid.SampledFrom([]string{"6.1", "6.12", "7.3"}).Draw(rt, "release")
		cfg.Granule = rapid.SampledFrom([]string{"4K", "16K", "64K"}).Draw(rt, "granule")
		cfg.RAM = []kernel.RAMRegion{{Base: 0x40000000, Size: 512 << 20}}
		cfg.BootThreads = rapid.IntRange(0, 8).Draw(rt, "threads")
		k, err := kernel.Boot(cfg)
		if err != nil {
			rt.Fatal(err)
		}
		c := &kernel.PlainCPU{}
		var live []uint64
		prev, _ := tableDump(k, c, "start")
		for i, n := 0, rapid.IntRange(1, 30).Draw(rt, "ops"); i < n; i++ {
			freed := false
			if len(live) > 0 && rapid.Bool().Draw(rt, "free") {
				j := rapid.IntRange(0, len(live)-1).Draw(rt, "which")
				if err := k.Vfree(c, live[j]); err != nil {
					rt.Fatal(err)
				}
				live = append(live[:j], live[j+1:]...)
				freed = true
			} else {
				size := uint64(rapid.IntRange(1, 1024).Draw(rt, "pages")) * k.G.PageSize()
				alloc := k.Vmalloc
				if rapid.Bool().Draw(rt, "huge") {
					alloc = k.VmallocHuge
				}
				a, err := alloc(c, size)
				if err != nil {
					rt.Fatal(err)
				}
				live = append(live, a.Addr)
			}
			d, err := tableDump(k, c, "model")
			if err != nil {
				rt.Fatal(err)
			}
			tc, err := ModelTables(k, c)
			if err != nil {
				rt.Fatal(err)
			}
			region, ok := DumpTables(d, "modules+vmalloc")
			whole, _ := DumpTables(d, "")
			if !ok {
				rt.Fatal("a --tables dump of the model has no table lines")
			}
			if got, want := region.Count(), nonZero(tc.Region); !maps.Equal(got, want) {
				rt.Fatalf("op %d: the dump names %v tables in modules+vmalloc, the census counts %v", i, got, want)
			}
			if got, want := whole.Count(), nonZero(tc.Whole); !maps.Equal(got, want) {
				rt.Fatalf("op %d: the dump names %v tables, the census counts %v", i, got, want)
			}
			if freed {
				pw, _ := DumpTables(prev, "")
				if diffs := CompareTableSets(pw, whole, pw, pw); len(diffs) != 0 {
					rt.Fatalf("op %d: a vfree changed the tables: %v", i, diffs[0])
				}
			}
			prev = d
		}
	})
}

func nonZero(m map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// A table present before and after at another page is a replacement: a
// difference when only one side replaced it, none when both did or neither.
func TestCompareTableSetsReplaced(t *testing.T) {
	k := TableKey{"PTE", 0xffff800080000000}
	at := func(pa uint64) TableSet { return TableSet{k: {End: k.VA + 2<<20, PA: pa}} }
	if d := CompareTableSets(at(1), at(1), at(7), at(7)); len(d) != 0 {
		t.Errorf("kept on both sides: %v", d)
	}
	d := CompareTableSets(at(1), at(1), at(7), at(8))
	if len(d) != 1 || d[0].RealReplaced || !d[0].ModelReplaced {
		t.Fatalf("replaced by the model only: %v", d)
	}
	if _, _, rest := ExplainTables(d, nil); len(rest) != 1 {
		t.Errorf("an unexplained replacement was explained: %v", rest)
	}
	if d := CompareTableSets(at(1), at(2), at(7), at(8)); len(d) != 0 {
		t.Errorf("replaced on both sides: %v", d)
	}
	if d := CompareTableSets(TableSet{}, at(1), TableSet{}, TableSet{}); len(d) != 1 || !d[0].RealAfter || d[0].ModelAfter {
		t.Errorf("added by the kernel only: %v", d)
	}
	// Added by both, hooked up with other attributes.
	uxn := TableSet{k: {End: k.VA + 2<<20, PA: 1, Attrs: "UXNTable"}}
	none := TableSet{k: {End: k.VA + 2<<20, PA: 7, Attrs: "-"}}
	if d := CompareTableSets(TableSet{}, uxn, TableSet{}, none); len(d) != 1 || d[0].RealAttrs != "UXNTable" || d[0].ModelAttrs != "-" {
		t.Errorf("added with other attributes: %v", d)
	}
	if d := CompareTableSets(TableSet{}, uxn, TableSet{}, uxn); len(d) != 0 {
		t.Errorf("added alike: %v", d)
	}
}

// Table lines name the next level's table, in the region of their start.
func TestDumpTables(t *testing.T) {
	const dump = `---[ Linear Mapping start ]---
0xfff0000000000000-0xfff0000000200000           2M PMD       RW NX     AF        BLK UXN    MEM/NORMAL PA=0x0000000040000000
---[ Linear Mapping end ]---
---[ vmalloc() area ]---
0xffff800080000000-0xffff8000c0000000           1G PUD TBL PA=0x0000000043000000
0xffff800080000000-0xffff800080200000           2M PMD TBL PA=0x0000000043001000
0xffff800080000000-0xffff800080004000          16K PTE       RW NX     AF            UXN    MEM/NORMAL PA=0x0000000044000000
0xffff800080004000-0xffff800080200000        2032K PTE
0xffff800080200000-0xffff8000c0000000        1022M PMD
---[ vmalloc() end ]---
`
	d := parseDump(t, []byte(dump), "t")
	s, ok := DumpTables(d, "modules+vmalloc")
	if !ok {
		t.Fatal("no table lines found")
	}
	want := map[string]int64{"PMD": 1, "PTE": 1}
	if got := s.Count(); !maps.Equal(got, want) {
		t.Errorf("counted %v, want %v", got, want)
	}
	if e := s[TableKey{"PTE", 0xffff800080000000}]; e.PA != 0x43001000 || e.End != 0xffff800080200000 {
		t.Errorf("PTE table %+v", e)
	}
	if s, _ := DumpTables(d, "linear"); len(s) != 0 {
		t.Errorf("tables in the linear region: %v", s)
	}
	var leaves []string
	for _, l := range strings.Split(dump, "\n") {
		if !strings.Contains(l, " TBL ") {
			leaves = append(leaves, l)
		}
	}
	if _, ok := DumpTables(parseDump(t, []byte(strings.Join(leaves, "\n")), "t"), ""); ok {
		t.Error("a dump without table lines reported table lines")
	}
}

// The recorded kernel's rodata= comes from the meta block's cmdline; the
// last occurrence counts; none means the release's default.
func TestRecordingRodata(t *testing.T) {
	for cmd, want := range map[string]kernel.Rodata{
		"console=ttyAMA0 panic=-1":                    "",
		"console=ttyAMA0 rodata=on":                   kernel.RodataOn,
		"rodata=full nokaslr rodata=off":              kernel.RodataOff,
		"console=ttyAMA0 rodata=noalias kfence.x=100": kernel.RodataNoAlias,
	} {
		r := &Recording{Meta: map[string]string{"cmdline": cmd}}
		if got := r.Rodata(); got != want {
			t.Errorf("%q: rodata %q, want %q", cmd, got, want)
		}
	}
}
