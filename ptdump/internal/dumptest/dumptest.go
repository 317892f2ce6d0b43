// Package dumptest serves the tests of ptdump and its analysis: it prints
// kernel_page_tables text (hand-built lines, rapid-generated dumps, a large
// deterministic dump for benchmarks) and builds small model table trees for
// the writer. It does not import ptdump, so the parser's own tests can use
// it.
package dumptest

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
)

// Cols are the attribute columns arm64's dump_prot prints
// (arch/arm64/mm/ptdump.c, pte_bits): each entry is " " + the set or clear
// string; BLK is printed only for block entries.
type Cols struct {
	Invalid, User, RO, X, SHD, AF, NG, Cont, Blk, UXN, GP bool
	Mem                                                   string
}

// Text is the columns as the kernel prints them.
func (c Cols) Text() string {
	pick := func(b bool, set, clear string) string {
		if b {
			return " " + set
		}
		return " " + clear
	}
	s := pick(!c.Invalid, " ", "F") + pick(c.User, "USR", "   ") + pick(c.RO, "ro", "RW") +
		pick(!c.X, "NX", "x ") + pick(c.SHD, "SHD", "   ") + pick(c.AF, "AF", "  ") +
		pick(c.NG, "NG", "  ") + pick(c.Cont, "CON", "   ") + pick(c.Blk, "BLK", "   ") +
		pick(c.UXN, "UXN", "   ") + pick(c.GP, "GP", "  ")
	if c.Mem != "" {
		s += " " + c.Mem
	}
	return s
}

// Line prints one range the way note_page (mm/ptdump.c via
// arch/arm64/mm/ptdump.c) does: addresses, size in the largest whole unit,
// level name, columns.
func Line(start, end uint64, level, cols string) string {
	delta := (end - start) >> 10
	u := 0
	for delta != 0 && delta%1024 == 0 && u < 5 {
		delta >>= 10
		u++
	}
	return fmt.Sprintf("0x%016x-0x%016x   %9d%c %s%s", start, end, delta, "KMGTPE"[u], level, cols)
}

// Range is one generated range: what a dump line should parse to.
type Range struct {
	Start, End uint64
	Level      string
	Cols       *Cols // nil: an unmapped range
}

// genLevels are the 4K/48 levels the generator uses, with entry sizes.
var genLevels = []struct {
	name string
	size uint64
}{{"PUD", 1 << 30}, {"PMD", 2 << 20}, {"PTE", 4 << 10}}

// Gen draws an ascending list of arm64 4K ranges in [base, base+span),
// each aligned to its level, with few distinct attribute sets so that
// neighbours often share one. minLevel is the index of the largest level
// used (0 PUD, 1 PMD, 2 PTE); holesOnly draws only unmapped ranges.
func Gen(t *rapid.T, base, span uint64, minLevel int, holesOnly bool) []Range {
	var out []Range
	cur := base
	n := rapid.IntRange(1, 40).Draw(t, "n")
	perms := []Cols{
		{SHD: true, AF: true, UXN: true, Mem: "MEM/NORMAL-TAGGED"},
		{RO: true, SHD: true, AF: true, UXN: true, Mem: "MEM/NORMAL"},
		{RO: true, X: true, SHD: true, AF: true, UXN: true, Mem: "MEM/NORMAL"},
	}
	for i := 0; i < n; i++ {
		li := rapid.IntRange(minLevel, len(genLevels)-1).Draw(t, "level")
		lv := genLevels[li]
		if rapid.IntRange(0, 3).Draw(t, "gap") == 0 {
			cur += uint64(rapid.IntRange(1, 64).Draw(t, "gapPages")) << 12
		}
		cur = (cur + lv.size - 1) &^ (lv.size - 1)
		cnt := uint64(rapid.IntRange(1, 600).Draw(t, "count"))
		if lv.name != "PTE" {
			cnt = uint64(rapid.IntRange(1, 3).Draw(t, "bigCount"))
		}
		end := cur + cnt*lv.size
		if end > base+span || end <= cur {
			break
		}
		g := Range{Start: cur, End: end, Level: lv.name}
		if !holesOnly && rapid.IntRange(0, 4).Draw(t, "mapped") > 0 {
			c := perms[rapid.IntRange(0, len(perms)-1).Draw(t, "perm")]
			c.Invalid = rapid.IntRange(0, 9).Draw(t, "invalid") == 0
			if c.Invalid {
				c.NG = true
			}
			cont := rapid.Bool().Draw(t, "cont")
			// CON runs as the kernel makes them: whole aligned groups.
			if cont && lv.name == "PTE" && cur%(64<<10) == 0 && (end-cur)%(64<<10) == 0 {
				c.Cont = true
			}
			if cont && lv.name == "PMD" && cur%(32<<20) == 0 && (end-cur)%(32<<20) == 0 {
				c.Cont = true
			}
			c.Blk = lv.name != "PTE" && !c.Invalid
			g.Cols = &c
		}
		out = append(out, g)
		cur = end
	}
	return out
}

// Format prints generated ranges, with optional markers and line noise
// the parser must ignore.
func Format(t *rapid.T, rs []Range) string {
	var b strings.Builder
	prefix := rapid.SampledFrom([]string{"", "> ", "[    1.234567] ", "kernel: "}).Draw(t, "prefix")
	b.WriteString("# generated\n")
	b.WriteString(prefix + "---[ Linear Mapping start ]---\n")
	for _, r := range rs {
		cols := ""
		if r.Cols != nil {
			cols = r.Cols.Text()
		}
		line := Line(r.Start, r.End, r.Level, cols)
		if rapid.Bool().Draw(t, "squeeze") { // 4.x-style or hand-edited spacing
			line = strings.Join(strings.Fields(line), " ")
		}
		b.WriteString(prefix + line + "\n")
		if rapid.IntRange(0, 9).Draw(t, "blank") == 0 {
			b.WriteString("\n")
		}
	}
	b.WriteString(prefix + "---[ Linear Mapping end ]---\n")
	return b.String()
}

// Text prints a realistic large dump of the given number of lines: a
// PTE-mapped linear map (the rodata=full / mode-3 shape) broken by small
// read-only and present-invalid ranges every few pages, with PMD blocks in
// between, then a hole line. The same lines give the same text.
func Text(lines int) []byte {
	var b bytes.Buffer
	b.WriteString("---[ Linear Mapping start ]---\n")
	rw := Cols{SHD: true, AF: true, UXN: true, Mem: "MEM/NORMAL-TAGGED"}.Text()
	ro := Cols{RO: true, SHD: true, AF: true, UXN: true, Mem: "MEM/NORMAL-TAGGED"}.Text()
	inv := Cols{Invalid: true, SHD: true, AF: true, NG: true, UXN: true, Mem: "MEM/NORMAL-TAGGED"}.Text()
	blk := Cols{SHD: true, AF: true, Blk: true, UXN: true, Mem: "MEM/NORMAL-TAGGED"}.Text()
	cur := uint64(0xffff000000000000)
	x := uint64(12345)
	for n := 1; n < lines-2; n++ {
		x = x*6364136223846793005 + 1442695040888963407 // LCG: deterministic
		var level, cols string
		var size uint64
		switch {
		case n%50 == 0 && cur%(2<<20) == 0:
			level, cols, size = "PMD", blk, (1+x>>60)*(2<<20)
		case n%2 == 0:
			level, cols, size = "PTE", ro, (1+x>>62)*4096
		case n%7 == 0:
			level, cols, size = "PTE", inv, 4096
		default:
			level, cols, size = "PTE", rw, (1+x>>54)*4096
		}
		b.WriteString(Line(cur, cur+size, level, cols))
		b.WriteByte('\n')
		cur += size
	}
	b.WriteString(Line(cur, 0xffff800000000000, "PTE", ""))
	b.WriteString("\n---[ Linear Mapping end ]---\n")
	return b.Bytes()
}

// Samples returns the dump files in dir (a testdata directory): the real
// dumps and hand-made variants every parser test reads.
func Samples(t testing.TB, dir string) []string {
	t.Helper()
	fs, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil || len(fs) == 0 {
		t.Fatalf("no samples in %s: %v", dir, err)
	}
	return fs
}

// Tables returns an empty 4K, 48-bit VA translation-table tree over ram
// bytes of simulated DRAM at base, and the kernel layout of that geometry.
func Tables(t testing.TB, base, ram uint64) (*pgtable.Tables, arm64.Layout) {
	t.Helper()
	g := arm64.Geometry4K48
	mem, err := physmem.New(g.PageShift, []physmem.Region{{Base: base, Size: ram}})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := pgtable.New(g, mem)
	if err != nil {
		t.Fatal(err)
	}
	return tb, arm64.KernelLayout(g, 0)
}

// SmallTree maps, in a tree over 4 GiB at SmallTreeRAM, the first
// SmallTreeLinear bytes of RAM into the linear map (tagged PAGE_KERNEL, so
// PUD, contPMD, PMD, contPTE and PTE leaves) and 16 KiB at 0x100000000 as
// PAGE_KERNEL_ROX at the start of vmalloc: a tree with every leaf size and a
// few table pages, for writer round trips.
func SmallTree(t testing.TB) (*pgtable.Tables, arm64.Layout) {
	t.Helper()
	tb, lay := Tables(t, SmallTreeRAM, 4<<30)
	var door pgtable.Direct
	if err := tb.Map(door, lay.PageOffset, SmallTreeRAM, SmallTreeLinear, arm64.Tagged(arm64.PageKernel), pgtable.NoExecMappings); err != nil {
		t.Fatal(err)
	}
	if err := tb.Map(door, lay.VmallocStart, 0x100000000, SmallTreeVmalloc, arm64.PageKernelROX, 0); err != nil {
		t.Fatal(err)
	}
	return tb, lay
}

// What SmallTree maps.
const (
	SmallTreeRAM     = 0x40000000              // PA of RAM, mapped at PAGE_OFFSET
	SmallTreeLinear  = 1<<30 + 34<<20 + 76<<10 // linear-map bytes
	SmallTreeVmalloc = 16 << 10                // vmalloc bytes
)
