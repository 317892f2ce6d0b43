package tlb

import (
	"syscall"
	"testing"
	"time"

	"github.com/ptlab/ptlab/pgtable"
)

// cpuTime is this process's user+system CPU time: on a shared machine the
// benchmark's wall time measures the other tenants too.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// gups: uniform random 8-byte reads over a 4K-mapped region far larger than
// any TLB's reach, the stream behind the Altra measurement the walk cost is
// calibrated to (median ≈39 cycles per dTLB walk).
func gups(t testing.TB, m *Model, size uint64, n int) Counts {
	pt := tables(t, size, ptes)
	tb := New(m, pt)
	st := &Stream{Name: "gups", Kind: Data, Pattern: Uniform, Rate: 1}
	sim := NewSim(tb, 1, st)
	st.SetRanges([]Range{{Start: linBase, Size: size}})
	sim.Window(n / 4) // warm up
	return sim.Window(n)[Data]
}

func TestCalibrationAltra(t *testing.T) {
	if testing.Short() {
		t.Skip("maps 8 GiB of PTEs")
	}
	m, _ := LookupModel("n1")
	c := gups(t, m, 8*gib, 400000)
	perWalk := c.Cycles / float64(c.L2Misses)
	t.Logf("n1 gups 8 GiB: %.3f walks/access, %.2f reads/walk, %.1f cycles/walk",
		float64(c.L2Misses)/float64(c.Accesses), float64(c.Reads)/float64(c.L2Misses), perWalk)
	if perWalk < 35 || perWalk > 43 {
		t.Errorf("N1 cycles per walk on gups = %.1f, calibrated to the Altra's median 39 ± 4", perWalk)
	}
}

// BenchmarkAccess measures simulated accesses per second on one core: a
// mixed stream (Zipf data, code fetch) against a 1 GiB PTE-mapped region.
func BenchmarkAccess(b *testing.B) {
	for _, pat := range []Pattern{Uniform, Zipf, PageCache, Code} {
		b.Run(pat.String(), func(b *testing.B) {
			m, _ := LookupModel("n1")
			pt := tables(b, gib, ptes)
			tb := New(m, pt)
			k := Data
			if pat == Code {
				k = Instr
			}
			st := &Stream{Name: "s", Kind: k, Pattern: pat, Rate: 1, RunLines: 8, ZipfS: 1.1}
			r := &RNG{}
			r.Seed(1)
			st.SetRanges([]Range{{Start: linBase, Size: gib}})
			b.ReportAllocs()
			b.ResetTimer()
			c0 := cpuTime()
			for i := 0; i < b.N; i++ {
				tb.Access(st.Next(r), k)
			}
			cpu := cpuTime() - c0
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Maccess/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkWindowServerMix measures the simulator on the default comparison's
// mix: module-text fetch (100M/s) over 32 MiB of 4K-mapped text, Zipf and
// page-cache reads (100M/s each) over a 16 GiB block-mapped linear map,
// on every built-in CPU model.
func BenchmarkWindowServerMix(b *testing.B) {
	const textVA = linBase + 32*gib
	pt := tables(b, 16*gib, 0)
	if err := pt.Map(pgtable.Direct{}, textVA, 80*gib, 32*mib, prot, ptes); err != nil {
		b.Fatal(err)
	}
	for _, m := range models {
		b.Run(m.Key, func(b *testing.B) {
			text := &Stream{Kind: Instr, Pattern: Code, Rate: 100e6, RunLines: 8}
			kv := &Stream{Kind: Data, Pattern: Zipf, Rate: 100e6, ZipfS: 1.01}
			pc := &Stream{Kind: Data, Pattern: PageCache, Rate: 100e6, RunLines: 64, ZipfS: 1.01}
			text.SetRanges([]Range{{Start: textVA, Size: 32 * mib, Weight: 1}})
			kv.SetRanges([]Range{{Start: linBase, Size: 16 * gib, Weight: 1}})
			pc.SetRanges([]Range{{Start: linBase, Size: 14 * gib, Weight: 1}})
			sim := NewSim(New(m, pt), 1, text, kv, pc)
			sim.Window(100000)
			b.ReportAllocs()
			b.ResetTimer()
			c0 := cpuTime()
			sim.Window(b.N)
			cpu := cpuTime() - c0
			b.ReportMetric(float64(b.N)/cpu.Seconds()/1e6, "Maccess/cpu-s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
