package analysis

import (
	"bytes"
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
	"github.com/ptlab/ptlab/ptdump"
)

// TestStatsTableEstimateMatchesPrinted: for a model tree written with TBL
// lines, the table count Stats estimates from leaves and holes equals the
// count of table pages the dump prints.
func TestStatsTableEstimateMatchesPrinted(t *testing.T) {
	g := arm64.Geometry4K48
	mem, err := physmem.New(12, []physmem.Region{{Base: 0x40000000, Size: 4 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := pgtable.New(g, mem)
	if err != nil {
		t.Fatal(err)
	}
	lay := arm64.KernelLayout(g, 0)
	var door pgtable.Direct
	if err := tb.Map(door, lay.PageOffset, 0x40000000, 1<<30+34<<20+76<<10, arm64.Tagged(arm64.PageKernel), pgtable.NoExecMappings); err != nil {
		t.Fatal(err)
	}
	if err := tb.Map(door, lay.VmallocStart, 0x100000000, 16<<10, arm64.PageKernelROX, 0); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := ptdump.NewWriter(&buf, g, ptdump.KernelMarkers(lay), ptdump.Options{PA: true, Tables: true})
	if err := ptdump.Walk(tb, nil, g, tb.Root(), lay.PageOffset, w); err != nil {
		t.Fatal(err)
	}
	d, err := ptdump.Parse(&buf, "writer", ptdump.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := Stats(d)
	if len(s.TablesPrinted) == 0 {
		t.Fatal("no printed tables")
	}
	for i, ts := range s.TablesPrinted {
		if est := s.Total.Tables[i]; est.Tables != ts.Tables || est.Level != ts.Level {
			t.Errorf("%s tables: estimated %d, printed %d", ts.Level, est.Tables, ts.Tables)
		}
	}
}
