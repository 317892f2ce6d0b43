package tlb

import (
	"math"
	"testing"
)

// TestGeometricTable: the table gives the logarithm's run length for every
// draw, checked at both ends of every bucket (where a wrong table entry
// shows first) and over random draws, for short and long mean runs.
func TestGeometricTable(t *testing.T) {
	for _, mean := range []float64{1.5, 8, 64, 1000} {
		lg := math.Log(1 - 1/mean)
		q := geoTable(lg)
		check := func(m uint64) {
			if v := q[m>>(53-geoBits)]; v != 0 && int(v) != geoLength(m, lg) {
				t.Fatalf("mean %v, draw %#x: table %d, logarithm %d", mean, m, v, geoLength(m, lg))
			}
		}
		const w = 1 << (53 - geoBits)
		for b := uint64(0); b < 1<<geoBits; b++ {
			check(b * w)
			check(b*w + w - 1)
		}
		var r RNG
		r.Seed(3)
		for i := 0; i < 200000; i++ {
			check(r.Uint64() >> 11)
		}
	}
}

// TestStreamSharesFollowRates: streams take turns run by run, chosen with
// probability rate / mean run length, so each stream's share of the
// accesses is its share of the rates. Code runs 8 lines on average, Zipf
// reads are single accesses, page-cache runs 64 lines: rates 100:100:200
// give the instruction stream a quarter of the accesses (a choice by rate
// alone would give it 2 of 34.25: about 6%). Windows of 1,000 accesses
// cut runs off (the rest continues in the next window). Over 24 independent
// seeds the mean share is within 4 standard errors of 1/4.
func TestStreamSharesFollowRates(t *testing.T) {
	pt := tables(t, gib, 0)
	data := []Range{{Start: linBase, Size: gib, Weight: 1}}
	const seeds = 24
	var sum, sum2 float64
	for seed := uint64(1); seed <= seeds; seed++ {
		text := &Stream{Kind: Instr, Pattern: Code, Rate: 100, RunLines: 8}
		kv := &Stream{Kind: Data, Pattern: Zipf, Rate: 100, ZipfS: 1.01}
		pc := &Stream{Kind: Data, Pattern: PageCache, Rate: 200, RunLines: 64, ZipfS: 1.01}
		for _, st := range []*Stream{text, kv, pc} {
			st.SetRanges(data)
		}
		sim := NewSim(New(models[0], pt), seed, text, kv, pc)
		var in, all uint64
		for w := uint64(0); w < 100; w++ {
			sim.Reseed(w)
			c := sim.Window(1000)
			in += c[Instr].Accesses
			all += c[Instr].Accesses + c[Data].Accesses
		}
		if all != 100*1000 {
			t.Fatalf("seed %d: %d accesses, want %d", seed, all, 100*1000)
		}
		f := float64(in) / float64(all)
		sum += f
		sum2 += f * f
	}
	mean := sum / seeds
	se := math.Sqrt((sum2/seeds - mean*mean) / (seeds - 1))
	t.Logf("instruction share %.4f ± %.4f (want 0.25)", mean, se)
	if se > 0.01 || math.Abs(mean-0.25) > 4*se {
		t.Errorf("instruction share %.4f ± %.4f, want 0.25", mean, se)
	}
}

// TestZipfOffsetUniform: the offset inside the page comes from the low bits
// of the rank's draw; it must be uniform over the page's 512 words and not
// tied to the rank. A chi-square test over the 512 words, for all reads and
// for the reads of the hottest page alone (rank 0, about 65% of the draws
// at exponent 2.5): each statistic stays below the 0.9999 quantile of
// chi-square with 511 degrees of freedom (≈ 640).
func TestZipfOffsetUniform(t *testing.T) {
	st := &Stream{Kind: Data, Pattern: Zipf, Rate: 1, ZipfS: 2.5}
	st.SetRanges([]Range{{Start: linBase, Size: gib, Weight: 1}})
	hot := st.scramble(0)
	var r RNG
	r.Seed(11)
	var all, head [512]float64
	var nh float64
	const n = 1 << 21
	for i := 0; i < n; i++ {
		va := st.Next(&r) - linBase
		w := va % 4096 / 8
		all[w]++
		if va/4096 == hot {
			head[w]++
			nh++
		}
	}
	chi := func(c *[512]float64, n float64) float64 {
		x, e := 0.0, n/512
		for _, v := range c {
			x += (v - e) * (v - e) / e
		}
		return x
	}
	if nh < n/10 {
		t.Fatalf("hottest page drew %v of %v reads", nh, n)
	}
	for _, c := range []struct {
		name string
		x    float64
	}{{"all reads", chi(&all, n)}, {"hottest page", chi(&head, nh)}} {
		t.Logf("%s: chi-square %.1f (511 df)", c.name, c.x)
		if c.x > 640 {
			t.Errorf("%s: offsets not uniform, chi-square %.1f > 640", c.name, c.x)
		}
	}
}

// TestRNGUniform: chi-square tests of the generator over 2^20 draws with a
// fixed seed — the top byte, the low byte (the Zipf offsets' bits) and pairs
// of consecutive draws (top 4 bits of each, 256 cells: catches a sequence
// whose next value follows from the last) — each between the 0.0001 and
// 0.9999 quantiles of chi-square with 255 degrees of freedom (≈ 175 and
// 350: a counter is too even to be random).
func TestRNGUniform(t *testing.T) {
	var r RNG
	r.Seed(12345)
	var top, low, pair [256]float64
	const n = 1 << 20
	prev := r.Uint64()
	for i := 0; i < n; i++ {
		v := r.Uint64()
		top[v>>56]++
		low[v&255]++
		pair[prev>>60<<4|v>>60]++
		prev = v
	}
	for _, c := range []struct {
		name string
		c    *[256]float64
	}{{"top byte", &top}, {"low byte", &low}, {"pairs", &pair}} {
		x, e := 0.0, float64(n)/256
		for _, v := range c.c {
			x += (v - e) * (v - e) / e
		}
		t.Logf("%s: chi-square %.1f (255 df)", c.name, x)
		if x < 175 || x > 350 {
			t.Errorf("%s: not uniform, chi-square %.1f outside [175, 350]", c.name, x)
		}
	}
}
