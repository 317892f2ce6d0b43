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
	memo    []lastHit // per active stream
	thr     []uint64  // selection thresholds (see Window)
	draws   []uint64  // per active stream: jumpDraws
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
	s.memo = append(s.memo[:0], make([]lastHit, len(s.act))...)
	if total > 0 {
		r, t, act, memo := &s.Rand, s.T, s.act, s.memo
		// An access draws x = Float64()*total and goes to the first stream
		// whose cumulative rate exceeds x. x is a monotone function of the
		// draw's top 53 bits m, so "cum[j] <= x" is "m >= thr[j]": the
		// streams are chosen by integer comparisons, counted without a
		// branch (a branch on a random draw mispredicts every other time).
		s.thr, s.draws = s.thr[:0], s.draws[:0]
		for _, c := range s.cum[:len(s.cum)-1] {
			s.thr = append(s.thr, selectThreshold(c, total))
		}
		for _, st := range act {
			s.draws = append(s.draws, st.jumpDraws())
		}
		thr, draws := s.thr, s.draws
		sel := r.Uint64() >> 11
		for i := 0; i < n; i++ {
			k := 0
			for _, th := range thr {
				k += b2i(sel >= th)
			}
			st := act[k]
			d := draws[k]
			if st.left > 0 {
				d = 0
			}
			// The next access's selection draw comes after this access's d
			// draws; computing it now lets the processor choose the next
			// stream while this access is still being simulated.
			next := r.peek(d+1) >> 11
			var va uint64
			if st.left > 0 {
				// Within a run: the next line (Next's first case, inlined).
				st.left--
				st.pos += line
				if st.pos >= st.end {
					st.pos = st.end - line
				}
				va = st.pos
			} else {
				va = st.Next(r)
			}
			t.access(va, st.Kind, &memo[k])
			if i+1 < n {
				r.s += golden // the draw next was computed from
				sel = next
			}
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

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// selectThreshold returns the least m < 2^53 with
// float64(m)/2^53*total >= c (the selection draw of Window), or 2^53 if
// there is none. The product is monotone in m, so a binary search finds it.
func selectThreshold(c, total float64) uint64 {
	lo, hi := uint64(0), uint64(1)<<53
	for lo < hi {
		mid := lo + (hi-lo)/2
		if float64(mid)/(1<<53)*total >= c {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}
