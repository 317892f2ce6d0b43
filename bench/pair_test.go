package bench

import (
	"testing"
	"time"
)

// BenchmarkPair runs each operation on both peers in alternation, round by
// round (ptlab then gVisor, then gVisor then ptlab, ...), so that load on a
// shared machine falls on both alike, and reports each peer's ns per unit
// and their ratio (ptlab/gvisor). ns/op is the pair's combined time per unit.
func BenchmarkPair(b *testing.B) {
	for _, o := range peerOps {
		b.Run(o.name, func(b *testing.B) {
			pt, gv := o.ptlab(b), o.gvisor(b)
			var tPt, tGv time.Duration
			timed := func(c peerCase, n int, acc *time.Duration) {
				t0 := time.Now()
				if err := c.op(n); err != nil {
					b.Fatal(err)
				}
				*acc += time.Since(t0)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for done, round := 0, 0; done < b.N; round++ {
				n := min(o.round, b.N-done)
				if round%2 == 0 {
					timed(pt, n, &tPt)
					timed(gv, n, &tGv)
				} else {
					timed(gv, n, &tGv)
					timed(pt, n, &tPt)
				}
				done += n
				b.StopTimer()
				for _, c := range []peerCase{pt, gv} {
					if c.reset != nil {
						c.reset()
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(tPt.Nanoseconds())/float64(b.N), "ptlab-ns/op")
			b.ReportMetric(float64(tGv.Nanoseconds())/float64(b.N), "gvisor-ns/op")
			b.ReportMetric(float64(tPt)/float64(tGv), "ptlab/gvisor")
		})
	}
}
