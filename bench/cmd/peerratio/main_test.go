package main

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

const sample = `goos: linux
BenchmarkPeer/Map4K/impl=ptlab-2         	 6005985	        30.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkPeer/Map4K/impl=gvisor-2        	10523196	        40.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkPeer/Map4K/impl=ptlab-2         	 6005985	        10.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkPeer/Map4K/impl=gvisor-2        	10523196	        20.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkPeer/Map4K/impl=ptlab-2         	 6005985	        20.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkPeer/Lookup/impl=gvisor-2       	10523196	        50.0 ns/op	       8 B/op	       1 allocs/op
BenchmarkPeer/Lookup/impl=ptlab-2        	10523196	        75.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkPeer/Unmap/impl=gvisor-2        	10523196	        50.0 ns/op
BenchmarkRAMIndependence/Split2M/16GiB-2 	   37873	     29450 ns/op
BenchmarkRAMIndependence/Split2M/1TiB-2  	   40204	     27487 ns/op
    bench_test.go:87: Split2M: ratio 1TiB/16GiB = 0.93
PASS
`

func TestRatios(t *testing.T) {
	rows, err := ratios(strings.NewReader(sample), "impl=ptlab", "impl=gvisor", "ns/op")
	if err != nil {
		t.Fatal(err)
	}
	// Unmap has no ptlab run and must be left out; order is first appearance.
	if len(rows) != 2 || rows[0].name != "BenchmarkPeer/Map4K" || rows[1].name != "BenchmarkPeer/Lookup" {
		t.Fatalf("rows %+v", rows)
	}
	// Medians: ptlab {10,20,30} -> 20, gvisor {20,40} -> 30.
	if r := rows[0]; r.num != 20 || r.den != 30 || r.n != [2]int{3, 2} || math.Abs(r.Ratio()-2.0/3) > 1e-12 {
		t.Errorf("Map4K %+v", r)
	}
	if r := rows[1]; r.Ratio() != 1.5 || r.numAllocs != 0 || r.denAllocs != 1 {
		t.Errorf("Lookup %+v", r)
	}
	var out bytes.Buffer
	if err := write(&out, rows, "impl=ptlab", "impl=gvisor", "ns/op"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "1.50 (slower)") || !strings.Contains(out.String(), "0.67") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestRatiosOtherPair(t *testing.T) {
	rows, err := ratios(strings.NewReader(sample), "1TiB", "16GiB", "ns/op")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].name != "BenchmarkRAMIndependence/Split2M" || rows[0].num != 27487 || rows[0].den != 29450 {
		t.Fatalf("rows %+v", rows)
	}
}

func TestRatiosNone(t *testing.T) {
	_, err := ratios(strings.NewReader(sample), "impl=a", "impl=b", "ns/op")
	if !errors.Is(err, errNoPairs) {
		t.Fatalf("err %v, want errNoPairs", err)
	}
	if _, err := ratios(strings.NewReader("BenchmarkX/impl=a-2 10 x1 ns/op\n"), "impl=a", "impl=b", "ns/op"); err == nil {
		t.Fatal("bad value accepted")
	}
}

func TestTrimProcs(t *testing.T) {
	for in, want := range map[string]string{"BenchmarkA/b-16": "BenchmarkA/b", "BenchmarkA/x-y": "BenchmarkA/x-y", "BenchmarkA-": "BenchmarkA-", "BenchmarkA": "BenchmarkA"} {
		if got := trimProcs(in); got != want {
			t.Errorf("trimProcs(%q) = %q, want %q", in, got, want)
		}
	}
}
