package tlb

import "github.com/ptlab/ptlab/pgtable"

// Sim drives one core's TLB with a mix of streams, each drawn in proportion
// to its rate. Real rates are billions of accesses per second, so a caller
// simulates a window of accesses against the tables of one moment and
// scales the per-access costs up by the rates (Window, Cost).
type Sim struct {
	T       *TLB
	Streams []*Stream
	Rand    RNG
	cum     []float64
	act     []*Stream
	seed    uint64
}

// NewSim returns a simulator for t with the given streams, seeded.
func NewSim(t *TLB, seed uint64, streams ...*Stream) *Sim {
	s := &Sim{T: t, Streams: streams, seed: seed}
	s.Rand.Seed(seed)
	return s
}

// Reseed makes the next window's draws depend only on the seed and n (the
// window's index), so results do not depend on how many accesses earlier
// windows made.
func (s *Sim) Reseed(n uint64) { s.Rand.Seed(s.seed ^ (n+1)*0xD1B54A32D192ED03) }

// Window runs n accesses and returns what they cost, per kind. Streams with
// nothing to access (no BPF program loaded) are skipped and the others keep
// their relative rates.
func (s *Sim) Window(n int) [numKinds]Counts {
	s.cum, s.act = s.cum[:0], s.act[:0]
	total := 0.0
	for _, st := range s.Streams {
		if !st.Empty() && st.Rate > 0 {
			total += st.Rate
			s.cum = append(s.cum, total)
			s.act = append(s.act, st)
		}
	}
	before := s.T.C
	s.T.TablesChanged()
	if total > 0 {
		r := &s.Rand
		for i := 0; i < n; i++ {
			x := r.Float64() * total
			k := 0
			for k < len(s.cum)-1 && s.cum[k] <= x {
				k++
			}
			st := s.act[k]
			s.T.Access(st.Next(r), st.Kind)
		}
	}
	var d [numKinds]Counts
	for k := range d {
		a, b := s.T.C[k], before[k]
		d[k] = Counts{Accesses: a.Accesses - b.Accesses, L1Misses: a.L1Misses - b.L1Misses, L2Misses: a.L2Misses - b.L2Misses,
			Reads: a.Reads - b.Reads, Faults: a.Faults - b.Faults, Cycles: a.Cycles - b.Cycles}
	}
	return d
}

// Rate is the accesses per second the non-empty streams of kind k stand for.
func (s *Sim) Rate(k Kind) float64 {
	r := 0.0
	for _, st := range s.Streams {
		if st.Kind == k && !st.Empty() {
			r += st.Rate
		}
	}
	return r
}

// Measure builds m's TLBs in front of pt, runs warm accesses of stream st
// over ranges to fill them, then n accesses, and returns what the n cost.
func Measure(m *Model, pt *pgtable.Tables, st *Stream, ranges []Range, seed uint64, warm, n int) Counts {
	t := New(m, pt)
	s := NewSim(t, seed, st)
	st.SetRanges(ranges)
	s.Window(warm)
	return s.Window(n)[st.Kind]
}
