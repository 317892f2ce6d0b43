package ptdump

import (
	"bytes"
	"fmt"
	"testing"
)

// genText100k prints a realistic large dump: a PTE-mapped linear map (the
// rodata=full / mode-3 shape) broken by small read-only and present-invalid
// ranges every few pages, with PMD blocks in between, then a hole line.
func genText(lines int) []byte {
	var b bytes.Buffer
	b.WriteString("---[ Linear Mapping start ]---\n")
	rw := armCols{shd: true, af: true, uxn: true, mem: "MEM/NORMAL-TAGGED"}.text()
	ro := armCols{ro: true, shd: true, af: true, uxn: true, mem: "MEM/NORMAL-TAGGED"}.text()
	inv := armCols{invalid: true, shd: true, af: true, ng: true, uxn: true, mem: "MEM/NORMAL-TAGGED"}.text()
	blk := armCols{shd: true, af: true, blk: true, uxn: true, mem: "MEM/NORMAL-TAGGED"}.text()
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
		b.WriteString(kernelLine(cur, cur+size, level, cols))
		b.WriteByte('\n')
		cur += size
	}
	b.WriteString(kernelLine(cur, 0xffff800000000000, "PTE", ""))
	b.WriteString("\n---[ Linear Mapping end ]---\n")
	return b.Bytes()
}

// BenchmarkParseStats100k parses and summarizes a generated 100,000-line
// dump; lines/s is the figure to watch.
func BenchmarkParseStats100k(b *testing.B) {
	const lines = 100_000
	text := genText(lines)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := Parse(bytes.NewReader(text), "bench", ParseOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if s := Stats(d); s.LinearMap == nil {
			b.Fatal("no linear map")
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkParse100k is the parser alone.
func BenchmarkParse100k(b *testing.B) {
	const lines = 100_000
	text := genText(lines)
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

// BenchmarkDiff100k diffs two generated 100k-line dumps that differ in
// where their small ranges fall.
func BenchmarkDiff100k(b *testing.B) {
	a, err := Parse(bytes.NewReader(genText(100_000)), "a", ParseOptions{})
	if err != nil {
		b.Fatal(err)
	}
	c, err := Parse(bytes.NewReader(genText(99_000)), "b", ParseOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Diff(a, c)
	}
	b.ReportMetric(float64(len(a.Ranges)+len(c.Ranges))*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func TestGenTextParses(t *testing.T) {
	d, err := Parse(bytes.NewReader(genText(1000)), "gen", ParseOptions{})
	if err != nil || len(d.Ranges) != 998 || len(d.Warnings) != 0 {
		t.Fatalf("%v %d %v", err, len(d.Ranges), d.Warnings)
	}
	_ = fmt.Sprint(d.Geometry)
}
