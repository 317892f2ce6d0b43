package trace

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/ptdump"
)

// vmDump is a dump of the vmalloc area 0xffff800080000000-...+64K where the
// 16K stacks at the given 64K-slot indexes are mapped.
func vmDump(t *testing.T, mapped ...int) *ptdump.Dump {
	t.Helper()
	const base uint64 = 0xffff800080000000
	var b strings.Builder
	b.WriteString("---[ vmalloc() area ]---\n")
	for i := 0; i < 4; i++ {
		s := base + uint64(i)*0x4000
		attrs := ""
		for _, m := range mapped {
			if m == i {
				attrs = "       RW NX     AF            UXN    MEM/NORMAL"
			}
		}
		fmt.Fprintf(&b, "%#x-%#x          16K PTE%s\n", s, s+0x4000, attrs)
	}
	b.WriteString("---[ vmalloc() end ]---\n")
	d, err := ptdump.Parse(strings.NewReader(b.String()), "t", ptdump.ParseOptions{PageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestExplainLate: a page whose real and modelled state differ only because
// the capture walked it after an alloc or free that followed the "after" mark
// is explained; the same difference with the event on another area, inside
// the window, or after the workload's "capture-end" mark, is not.
func TestExplainLate(t *testing.T) {
	const base uint64 = 0xffff800080000000
	rec := func(slot int, where string) *Recording {
		ev := fmt.Sprintf("              sh-1       [000] .....    10.000300: alloc_vmap_area: va_start: %d size=16384 align=32768 vstart=0xffff800080000000 vend=0xffffc1ffbf800000 failed=0\n", base+uint64(slot)*0x4000)
		before := "              sh-1       [000] .....    10.000100: tracing_mark_write: ptlab-mark before\n"
		after := "              sh-1       [000] .....    10.000200: tracing_mark_write: ptlab-mark after\n"
		body := before + after + ev
		if where == "window" {
			body = before + strings.Replace(ev, "10.000300", "10.000150", 1) + after
		}
		if where == "past the capture" {
			body += "              sh-1       [000] .....    10.000250: tracing_mark_write: ptlab-mark capture-end\n"
		}
		r, err := Parse(strings.NewReader("# ptlab-trace 1\n=== ptlab-trace trace\n"+body), "t")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// The real kernel shows slot 1 mapped at the end; the model (whose
	// window ends at the mark) does not.
	d := Dumps{RealBefore: vmDump(t), RealAfter: vmDump(t, 1), ModelBefore: vmDump(t), ModelAfter: vmDump(t)}
	mm := ComparePages(ChangedPages(d.RealBefore, d.RealAfter, "modules+vmalloc", 4096), ChangedPages(d.ModelBefore, d.ModelAfter, "modules+vmalloc", 4096), 4096)
	if len(mm) != 1 {
		t.Fatalf("mismatches %v", mm)
	}
	for _, c := range []struct {
		slot    int
		where   string
		explain bool
	}{{1, "after", true}, {2, "after", false}, {1, "window", false}, {1, "past the capture", false}} {
		ex, rest := ExplainLate(rec(c.slot, c.where), "before", "after", mm, d)
		if got := len(ex) == 1 && len(rest) == 0; got != c.explain {
			t.Errorf("alloc of slot %d %s the mark: explained %v, want %v (%v; rest %v)", c.slot, c.where, got, c.explain, ex, rest)
		}
		if c.explain {
			if r := ExplainedResidual(ex, d, 4096); r["perm RW NX AF UXN MEM/NORMAL"] != -0x4000 || r["leaf PTE 4K"] != -0x4000 {
				t.Errorf("residual %v, want -16K of RW NX PTE 4K", r)
			}
		}
	}
}

// pmdDump is a dump of the same 2M block without a PTE table.
func pmdDump(t *testing.T) *ptdump.Dump {
	t.Helper()
	d, err := ptdump.Parse(strings.NewReader("---[ vmalloc() area ]---\n0xffff800080000000-0xffff800080200000           2M PMD\n---[ vmalloc() end ]---\n"), "t", ptdump.ParseOptions{PageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestExplainTables: a PTE table the "before" capture shows empty and the
// model's start state lacks (vunmap leaves tables behind) explains one more
// table in the model's change; a table only the model gained does not.
func TestExplainTables(t *testing.T) {
	diffs := func(d Dumps) []TableDiff {
		return CompareTableSets(estimatedTables(d.RealBefore), estimatedTables(d.RealAfter), estimatedTables(d.ModelBefore), estimatedTables(d.ModelAfter))
	}
	d := Dumps{RealBefore: vmDump(t), RealAfter: vmDump(t, 1), ModelBefore: pmdDump(t), ModelAfter: vmDump(t, 1)}
	res, why, rest := ExplainTables(diffs(d), nil)
	if res["PTE"] != 1 || len(why) != 1 || len(rest) != 0 {
		t.Errorf("left-behind table: residual %v, why %v, rest %v; want +1 explained", res, why, rest)
	}
	d = Dumps{RealBefore: pmdDump(t), RealAfter: pmdDump(t), ModelBefore: pmdDump(t), ModelAfter: vmDump(t, 1)}
	if res, why, rest := ExplainTables(diffs(d), nil); res["PTE"] != 0 || len(why) != 0 || len(rest) != 1 {
		t.Errorf("a table only the model gained: residual %v, why %v, rest %v; want it unexplained", res, why, rest)
	}
}
