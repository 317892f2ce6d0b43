package ptdump

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/ptdump/internal/dumptest"
)

var door pgtable.Direct

// linearSection returns the lines from "Linear Mapping start" to "Linear
// Mapping end", inclusive.
func linearSection(t *testing.T, text string) []string {
	t.Helper()
	var out []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, "Linear Mapping start") {
			in = true
		}
		if in {
			out = append(out, l)
		}
		if strings.Contains(l, "Linear Mapping end") {
			break
		}
	}
	return out
}

// The model reproduces, byte for byte, the linear map of a real dump: Ryan
// Roberts' AmpereOne VM in "mode 3" (boot CPU with BBML2, secondaries
// without, so the linear map is repainted to PTEs), 12 GiB of RAM. The
// kernel alias [_text, __init_begin) keeps its blocks (no CONT in that
// version) and is read-only, untagged PAGE_KERNEL; two 2 MiB linear ranges
// are read-only.
func TestWriterMatchesRealMode3Dump(t *testing.T) {
	const ram = 12 << 30
	const base = 0x80000000
	tb, lay := dumptest.Tables(t, base, ram)
	g := tb.Geometry()
	lin := lay.PageOffset
	tagged := arm64.Tagged(arm64.PageKernel)
	force := pgtable.NoBlockMappings | pgtable.NoContMappings | pgtable.NoExecMappings
	aliasStart, aliasEnd := uint64(0x210000), uint64(0x2550000)
	mustMap := func(off, size, prot uint64, f pgtable.Flags) {
		t.Helper()
		if err := tb.Map(door, lin+off, base+off, size, prot, f); err != nil {
			t.Fatal(err)
		}
	}
	// map_mem: memblock ranges except the NOMAP alias, then the alias.
	mustMap(0, aliasStart, tagged, force)
	mustMap(aliasEnd, ram-aliasEnd, tagged, force)
	mustMap(aliasStart, aliasEnd-aliasStart, arm64.PageKernel, pgtable.NoContMappings)
	// mark_linear_text_alias_ro: update_mapping_prot(PAGE_KERNEL_RO, NO_CONT).
	mustMap(aliasStart, aliasEnd-aliasStart, arm64.PageKernelRO, pgtable.NoContMappings)
	for _, off := range []uint64{0x143a61000, 0x181b9a000} {
		if err := tb.Protect(door, lin+off, lin+off+2<<20, arm64.PTERdonly, arm64.PTEWrite); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	w := NewWriter(&buf, g, KernelMarkers(lay), Options{})
	if err := Walk(tb, door, g, tb.Root(), lay.PageOffset, w); err != nil {
		t.Fatal(err)
	}
	real, err := os.ReadFile("testdata/002-ryan-roberts-bbml2-v7-ampereone-mode3-ptes.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := linearSection(t, string(real))
	got := linearSection(t, buf.String())
	if len(want) == 0 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("model:\n%s\nreal:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Every leaf size and attribute column the writer prints, checked against
// lines formatted by hand from the rules of arch/arm64/mm/ptdump.c.
func TestWriterColumns(t *testing.T) {
	tb, lay := dumptest.Tables(t, 0x40000000, 4<<30)
	g := tb.Geometry()
	lin := lay.PageOffset
	tagged := arm64.Tagged(arm64.PageKernel)
	if err := tb.Map(door, lin, 0x40000000, 1<<30+32<<20+2<<20+64<<10+12<<10, tagged, pgtable.NoExecMappings); err != nil {
		t.Fatal(err)
	}
	// set_direct_map_invalid_noflush on the last page: present-invalid.
	last := lin + 1<<30 + 32<<20 + 2<<20 + 64<<10 + 8<<10
	if err := tb.Protect(door, last, last+4096, arm64.PTEPresentInvalid, arm64.PTEValid); err != nil {
		t.Fatal(err)
	}
	vm := lay.VmallocStart
	if err := tb.Map(door, vm, 0x100000000, 16<<10, arm64.PageKernelROX, 0); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := NewWriter(&buf, g, KernelMarkers(lay), Options{CheckWX: true})
	if err := Walk(tb, nil, g, tb.Root(), lay.PageOffset, w); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"---[ Linear Mapping start ]---",
		"0xffff000000000000-0xffff000040000000           1G PUD       RW NX SHD AF        BLK UXN    MEM/NORMAL-TAGGED",
		"0xffff000040000000-0xffff000042000000          32M PMD       RW NX SHD AF    CON BLK UXN    MEM/NORMAL-TAGGED",
		"0xffff000042000000-0xffff000042200000           2M PMD       RW NX SHD AF        BLK UXN    MEM/NORMAL-TAGGED",
		"0xffff000042200000-0xffff000042210000          64K PTE       RW NX SHD AF    CON     UXN    MEM/NORMAL-TAGGED",
		"0xffff000042210000-0xffff000042212000           8K PTE       RW NX SHD AF            UXN    MEM/NORMAL-TAGGED",
		"0xffff000042212000-0xffff000042213000           4K PTE F     RW NX SHD AF NG         UXN    MEM/NORMAL-TAGGED",
		"0xffff000042213000-0xffff000042400000        1972K PTE",
		"0xffff000042400000-0xffff000080000000         988M PMD",
		"0xffff000080000000-0xffff008000000000         510G PUD",
		"0xffff008000000000-0xffff800000000000      130560G PGD",
		"---[ Linear Mapping end ]---",
		"---[ Modules start ]---",
		"0xffff800000000000-0xffff800080000000           2G PUD",
		"---[ Modules end ]---",
		"---[ vmalloc() area ]---",
		"0xffff800080000000-0xffff800080004000          16K PTE       ro x  SHD AF            UXN    MEM/NORMAL",
	}
	got := strings.Split(buf.String(), "\n")
	for i, l := range want {
		if i >= len(got) || got[i] != l {
			t.Fatalf("line %d:\n got %q\nwant %q\nall:\n%s", i+1, got[min(i, len(got)-1)], l, buf.String())
		}
	}
	if !strings.HasSuffix(buf.String(), "-0x0000000000000000           2M PMD\n") &&
		!strings.Contains(buf.String(), "-0x0000000000000000 ") {
		t.Errorf("last line must end at 0x0000000000000000:\n%s", buf.String())
	}
	if wx, uxn := w.WX(); wx != 0 || uxn != 0 {
		t.Errorf("W+X %d non-UXN %d", wx, uxn)
	}
}

// With Options.Tables every table line follows the run it interrupts and
// the first marker header comes first.
func TestWriterTableLinesInOrder(t *testing.T) {
	tb, lay := dumptest.Tables(t, 0x40000000, 1<<30)
	g := tb.Geometry()
	if err := tb.Map(door, lay.PageOffset, 0x40000000, 6<<20, arm64.Tagged(arm64.PageKernel), pgtable.NoBlockMappings|pgtable.NoContMappings|pgtable.NoExecMappings); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := NewWriter(&buf, g, KernelMarkers(lay), Options{Tables: true, PA: true})
	if err := Walk(tb, nil, g, tb.Root(), lay.PageOffset, w); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(buf.String(), "\n")
	if lines[0] != "---[ Linear Mapping start ]---" {
		t.Fatalf("first line %q", lines[0])
	}
	var prevEnd string
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "0x") {
			continue
		}
		if prevEnd != "" && l[:18] != prevEnd {
			t.Fatalf("line does not start where the previous ended (%s):\n%s", prevEnd, buf.String())
		}
		if !strings.Contains(l, " TBL ") { // table lines nest: they precede what they cover
			prevEnd = l[19:37]
		}
	}
	if n := strings.Count(buf.String(), " TBL "); n != 1+1+3 { // PUD table, PMD table, 3 PTE tables
		t.Errorf("%d table lines:\n%s", n, buf.String())
	}
}
