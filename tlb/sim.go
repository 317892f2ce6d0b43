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
	cum     []float64 // cumulative run rate (rate / mean run length)
	act     []*Stream
	memo    []lastHit // per active stream
	thr     []uint64  // selection thresholds (see runs)
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
//
// The streams take turns run by run: one draw picks the stream of the next
// run (a jump and the sequential lines after it, see Stream.Next), with
// probability proportional to its rate divided by its mean run length, so
// each stream's share of the accesses is its share of the rates (in
// expectation: a renewal process's accesses per unit of its run count). A run
// cut off by the end of a window continues at the start of the next.
func (s *Sim) Window(n int) [numKinds]Counts {
	s.cum, s.act = s.cum[:0], s.act[:0]
	total := 0.0
	for _, st := range s.Streams {
		if !st.Empty() && st.Rate > 0 {
			total += st.Rate / max(st.RunLines, 1)
			s.cum = append(s.cum, total)
			s.act = append(s.act, st)
		}
	}
	before := s.T.C
	s.T.TablesChanged()
	s.memo = append(s.memo[:0], make([]lastHit, len(s.act))...)
	if total > 0 {
		s.runs(n)
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

// runs simulates n accesses over the active streams, run by run.
func (s *Sim) runs(n int) {
	r, t, act, memo := &s.Rand, s.T, s.act, s.memo
	total := s.cum[len(s.cum)-1]
	// A run draws x = Float64()*total and goes to the first stream whose
	// cumulative run rate exceeds x. x is a monotone function of the draw's
	// top 53 bits m, so "cum[j] <= x" is "m >= thr[j]": the stream is chosen
	// by integer comparisons, counted without a branch.
	s.thr = s.thr[:0]
	for _, c := range s.cum[:len(s.cum)-1] {
		s.thr = append(s.thr, selectThreshold(c, total))
	}
	thr := s.thr
	i := 0
	for k, st := range act {
		// The rest of a run the previous window cut off.
		if st.left > 0 && i < n {
			i += s.rest(st, &memo[k], n-i)
		}
	}
	for i < n {
		m := r.Uint64() >> 11
		k := 0
		for _, th := range thr {
			k += b2i(m >= th)
		}
		st, mk := act[k], &memo[k]
		st.left = 0
		t.access(st.Next(r), st.Kind, mk)
		i++
		if st.left > 0 {
			i += s.rest(st, mk, n-i)
		}
	}
}

// rest runs up to max of the sequential lines left in st's run and returns
// how many it ran.
//
// Once an access leaves the L1 entry it used remembered (mk) and most
// recently used, the lines after it that stay inside that entry's span hit
// it through the memory and touch it again, which changes nothing: they are
// counted at once instead of one by one, so a run costs a look-up per page
// crossed, not per line.
func (s *Sim) rest(st *Stream, mk *lastHit, max int) int {
	run := min(st.left, max)
	t, k, pos, end := s.T, st.Kind, st.pos, st.end
	l1, c := t.l1[k], &t.C[k]
	for j := 0; j < run; {
		pos += line
		if pos >= end {
			pos = end - line
		}
		t.access(pos, k, mk)
		j++
		if j == run || !mk.covers(l1, pos) {
			continue
		}
		// The lines ahead are below end, then end-line once they reach it
		// (end need not be line-aligned to the run, so end-line may lie
		// before the span): all of them stay in the span if end-1 and
		// end-line do, else those below both the span's end and end.
		n := run - j
		endm := (end-1)&vaMask + 1 // end modulo 2^56; 2^56 for the top of the address space
		if endm-1-mk.lo >= mk.span || (end-line)&vaMask-mk.lo >= mk.span {
			n = min(n, int((min(mk.lo+mk.span, endm)-1-pos&vaMask)/line))
		}
		if pos += uint64(n) * line; pos >= end {
			pos = end - line
		}
		c.Accesses += uint64(n)
		j += n
	}
	st.pos = pos
	st.left -= run
	return run
}
