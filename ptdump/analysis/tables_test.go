package analysis

import (
	"bytes"
	"testing"

	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/ptdump/internal/dumptest"
)

// TestStatsTableEstimateMatchesPrinted: for a model tree written with TBL
// lines, the table count Stats estimates from leaves and holes equals the
// count of table pages the dump prints.
func TestStatsTableEstimateMatchesPrinted(t *testing.T) {
	tb, lay := dumptest.SmallTree(t)
	g := tb.Geometry()
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
