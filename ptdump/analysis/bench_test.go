package analysis

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/ptdump/internal/dumptest"
)

// BenchmarkParseStats100k parses and summarizes a generated 100,000-line
// dump; lines/s is the figure to watch.
func BenchmarkParseStats100k(b *testing.B) {
	const lines = 100_000
	text := dumptest.Text(lines)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := ptdump.Parse(bytes.NewReader(text), "bench", ptdump.ParseOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if s := Stats(d); s.LinearMap == nil {
			b.Fatal("no linear map")
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkDiff100k diffs two generated 100k-line dumps that differ in
// where their small ranges fall.
func BenchmarkDiff100k(b *testing.B) {
	a, err := ptdump.Parse(bytes.NewReader(dumptest.Text(100_000)), "a", ptdump.ParseOptions{})
	if err != nil {
		b.Fatal(err)
	}
	c, err := ptdump.Parse(bytes.NewReader(dumptest.Text(99_000)), "b", ptdump.ParseOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Diff(a, c)
	}
	b.ReportMetric(float64(len(a.Ranges)+len(c.Ranges))*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func samples(t testing.TB) []string { return dumptest.Samples(t, "../testdata") }

func parseFile(t testing.TB, path string, opt ptdump.ParseOptions) *ptdump.Dump {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := ptdump.Parse(f, filepath.Base(path), opt)
	if err != nil {
		t.Fatalf("Parse(%s): %v", path, err)
	}
	return d
}

func parseString(s string, opt ptdump.ParseOptions) (*ptdump.Dump, error) {
	return ptdump.Parse(strings.NewReader(s), "test", opt)
}
