package ptdump

import (
	"bytes"
	"testing"

	"github.com/ptlab/ptlab/ptdump/internal/dumptest"
)

// BenchmarkParse100k is the parser alone on a generated 100,000-line dump;
// lines/s is the figure to watch.
func BenchmarkParse100k(b *testing.B) {
	const lines = 100_000
	text := dumptest.Text(lines)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(bytes.NewReader(text), "bench", ParseOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func TestGenTextParses(t *testing.T) {
	d, err := Parse(bytes.NewReader(dumptest.Text(1000)), "gen", ParseOptions{})
	if err != nil || len(d.Ranges) != 998 || len(d.Warnings) != 0 {
		t.Fatalf("%v %d %v", err, len(d.Ranges), d.Warnings)
	}
}
