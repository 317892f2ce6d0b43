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
