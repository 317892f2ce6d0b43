package tlb

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
)

// Pattern is the shape of an access stream.
type Pattern uint8

const (
	// Code stands for instruction fetch: a jump to a random line of a
	// weighted range (a function entry), then a run of sequential 64-byte
	// fetch blocks of geometric length (mean RunLines) — straight-line code
	// between taken branches.
	Code Pattern = iota
	// Uniform picks a byte uniformly over all ranges (weights are sizes):
	// the worst case for any TLB, gups-like.
	Uniform
	// Zipf picks a page by a Zipf-like power law (density ∝ rank^-ZipfS, the
	// continuous form of Zipf's law, which gives the head ranks somewhat less
	// weight than the discrete one) over the pages of all
	// ranges, the page order scrambled so hot pages are spread over memory:
	// a key-value store's object accesses (memcached-like).
	Zipf
	// PageCache reads a file-sized run (mean RunLines lines) from a 64 KiB
	// chunk picked by a Zipf law over most of RAM: the page cache serving
	// reads, whose pages the buddy allocator scattered over memory.
	PageCache
)

var patternNames = []string{"code", "uniform", "zipf", "pagecache"}

func (p Pattern) String() string { return patternNames[p] }

// ParsePattern reads a pattern name.
func ParsePattern(s string) (Pattern, error) {
	for i, n := range patternNames {
		if n == s {
			return Pattern(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown access pattern %q (code, uniform, zipf, pagecache)", ErrModel, s)
}

// Range is a VA range a stream draws from, with a relative weight per byte.
type Range struct {
	Start, Size uint64
	Weight      float64
}

const line = 64

// Stream generates the accesses of one kind of kernel work.
type Stream struct {
	Name     string
	Kind     Kind
	Pattern  Pattern
	Rate     float64 // accesses per second it stands for
	RunLines float64 // mean run length in 64-byte lines (Code, PageCache)
	ZipfS    float64 // Zipf exponent (> 1)

	ranges []Range
	cum    []float64 // cumulative weight (Code, Uniform) or pages (Zipf, PageCache)
	total  float64
	units  uint64    // pages or chunks for the Zipf patterns
	zq     []float64 // Zipf quantiles: rank+1 at u = i/zipfQ (shared, read only)
	zs     float64
	mult   uint64  // bits of the scrambling permutation (see scramble)
	lg     float64 // log(1 - 1/RunLines)
	gq     []int32 // run length per top 12 bits of the draw, 0: not one value (shared, read only)

	pos, end uint64 // current run
	left     int
}

// SetRanges replaces the ranges the stream draws from; it reuses the
// stream's slices, so a steady state allocates nothing.
func (s *Stream) SetRanges(rs []Range) {
	s.ranges = append(s.ranges[:0], rs...)
	s.cum = s.cum[:0]
	s.total = 0
	s.left = 0
	unit := uint64(1)
	switch s.Pattern {
	case Zipf:
		unit = 4096
	case PageCache:
		unit = 64 << 10
	}
	var n uint64
	for _, r := range s.ranges {
		switch s.Pattern {
		case Code, Uniform:
			w := r.Weight
			if w <= 0 {
				w = 1
			}
			s.total += float64(r.Size) * w
			s.cum = append(s.cum, s.total)
		default:
			n += r.Size / unit
			s.cum = append(s.cum, float64(n))
		}
	}
	if s.RunLines > 1 {
		if lg := math.Log(1 - 1/s.RunLines); lg != s.lg || s.gq == nil {
			s.lg = lg
			s.gq = geoTable(lg)
		}
	}
	if s.Pattern == Zipf || s.Pattern == PageCache {
		z := s.ZipfS
		if z <= 1 {
			z = 1.01
		}
		if s.units != n || s.zs != z {
			s.units, s.zs = n, z
			s.zq = zipfQuantiles(n, z)
			s.mult = scrambler(n)
		}
	}
}

const zipfQ = 4096

// zipfTable is a shared quantile table: streams of every CPU model and
// every run with the same unit count and exponent read the same one.
type zipfTable struct {
	n uint64
	z float64
	q []float64
}

var zipfTables struct {
	sync.Mutex
	t []zipfTable // the most recent last
}

// zipfQuantiles returns the quantile table for n units and exponent z,
// computed once and shared (read only): tabulating costs 4097 powers.
func zipfQuantiles(n uint64, z float64) []float64 {
	zt := &zipfTables
	zt.Lock()
	defer zt.Unlock()
	for _, t := range zt.t {
		if t.n == n && t.z == z {
			return t.q
		}
	}
	q := computeZipfQuantiles(n, z)
	if len(zt.t) == 16 {
		zt.t = slices.Delete(zt.t, 0, 1)
	}
	zt.t = append(zt.t, zipfTable{n, z, q})
	return q
}

// computeZipfQuantiles tabulates the inverse of the continuous Zipf law
// over ranks [1, n+1) with exponent z, P(x) ∝ x^-z: drawing a rank is then
// a table look-up and an interpolation, no logarithm or exponential per
// access. Narrow buckets at the head keep the hottest ranks exact; the tail
// is flat.
func computeZipfQuantiles(n uint64, z float64) []float64 {
	q := make([]float64, zipfQ+1)
	a := 1 - z
	top := math.Pow(float64(n)+1, a) - 1
	for i := range q {
		u := float64(i) / zipfQ
		q[i] = math.Pow(1+u*top, 1/a)
	}
	return q
}

// zipfRank draws a rank in [0, units) from the top 53 bits m of one draw
// and returns the draw's low 11 bits, independent of m, for the offset in the
// unit. The uniform draw u = m/2^53 scaled by zipfQ = 2^12 is m/2^41
// exactly, so its integer and fractional parts are bit fields of m: the same
// values a floating-point split gives, without the conversions.
func (s *Stream) zipfRank(r *RNG) (k, low uint64) {
	w := r.Uint64()
	low = w & (1<<11 - 1)
	m := w >> 11
	i := m >> 41
	frac := float64(m&(1<<41-1)) * (1.0 / (1 << 41))
	q := s.zq[i : i+2 : i+2]
	x := q[0] + frac*(q[1]-q[0])
	k = uint64(x) - 1
	if k >= s.units { // and one unit: the table's ranks are [1, 2]
		k = s.units - 1
	}
	return k, low
}

// scrambler returns the bit width of the smallest power of two holding n:
// scramble permutes [0, 2^bits) and walks the cycle until it lands below n,
// a permutation of [0, n) without a division per draw.
func scrambler(n uint64) uint64 {
	b := uint64(1)
	for b < 63 && 1<<b < n {
		b++
	}
	return b
}

// scramble maps rank i to a unit so that neighbouring ranks (hot objects)
// land far apart in memory: odd multiplications and xor-shifts are
// bijections on [0, 2^bits).
func (s *Stream) scramble(i uint64) uint64 {
	mask := uint64(1)<<s.mult - 1
	half := (s.mult + 1) / 2
	for {
		i = (i * 0x9E3779B97F4A7C15) & mask
		i ^= i >> half
		i = (i * 0xBF58476D1CE4E5B9) & mask
		if i < s.units {
			return i
		}
	}
}

// Empty reports whether the stream has nothing to access.
func (s *Stream) Empty() bool { return len(s.ranges) == 0 || (s.total == 0 && s.units == 0) }

// pick returns the index of the range holding cumulative position x.
func (s *Stream) pick(x float64) int {
	if len(s.cum) == 1 {
		return 0
	}
	i := sort.SearchFloat64s(s.cum, x)
	if i >= len(s.cum) {
		i = len(s.cum) - 1
	}
	for i > 0 && s.cum[i] == s.cum[i-1] {
		i--
	}
	return i
}

// geometric draws a run length with mean RunLines: the inverse transform
// 1 + ⌊log(1-u)/log(1-1/RunLines)⌋ of the draw u, exactly geometric. The
// table gives it without a logarithm for most draws (see geoTable).
func (s *Stream) geometric(r *RNG) int {
	if s.RunLines <= 1 {
		return 1
	}
	m := r.Uint64() >> 11
	if v := s.gq[m>>(53-geoBits)]; v != 0 {
		return int(v)
	}
	return geoLength(m, s.lg)
}

// geoLength is the inverse transform for the draw's top 53 bits m.
func geoLength(m uint64, lg float64) int {
	return 1 + int(math.Log(1-float64(m)/(1<<53))/lg)
}

const geoBits = 12

var geoTables struct {
	sync.Mutex
	t map[float64][]int32
}

// geoTable tabulates geoLength over the 2^geoBits buckets of the draw's top
// bits: where the law's inverse (nondecreasing in m) has the same value at
// both ends of a bucket, every draw in it has that value and the table holds
// it; elsewhere it holds 0 and the draw takes the logarithm. The result is
// the same as the logarithm's for every draw. Shared by all streams with the
// same mean run, read only.
func geoTable(lg float64) []int32 {
	gt := &geoTables
	gt.Lock()
	defer gt.Unlock()
	if q, ok := gt.t[lg]; ok {
		return q
	}
	q := make([]int32, 1<<geoBits)
	const w = 1 << (53 - geoBits)
	for b := range q {
		lo, hi := geoLength(uint64(b)*w, lg), geoLength(uint64(b+1)*w-1, lg)
		if lo == hi && lo < 1<<30 {
			q[b] = int32(lo)
		}
	}
	if gt.t == nil || len(gt.t) == 64 {
		gt.t = map[float64][]int32{}
	}
	gt.t[lg] = q
	return q
}

// unitVA maps the i-th page/chunk (in range order) to its VA, and returns
// the end of its range.
func (s *Stream) unitVA(i, unit uint64) (va, end uint64) {
	if len(s.ranges) == 1 {
		r := &s.ranges[0]
		return r.Start + i*unit, r.Start + r.Size
	}
	k := s.pick(float64(i) + 0.5)
	var before uint64
	if k > 0 {
		before = uint64(s.cum[k-1])
	}
	r := s.ranges[k]
	va = r.Start + (i-before)*unit
	return va, r.Start + r.Size
}

// Next returns the next address; the stream must not be Empty.
func (s *Stream) Next(r *RNG) uint64 {
	if s.left > 0 {
		s.left--
		s.pos += line
		if s.pos >= s.end {
			s.pos = s.end - line
		}
		return s.pos
	}
	switch s.Pattern {
	case Code:
		rg := s.ranges[s.pick(r.Float64()*s.total)]
		s.pos = rg.Start + (r.Uint64N(max(rg.Size/line, 1)))*line
		s.end = rg.Start + rg.Size
		s.left = s.geometric(r) - 1
		return s.pos
	case Uniform:
		rg := s.ranges[s.pick(r.Float64()*s.total)]
		return rg.Start + r.Uint64N(max(rg.Size, 1))&^7
	case Zipf:
		k, low := s.zipfRank(r)
		var va uint64
		if i := s.scramble(k); len(s.ranges) == 1 { // unitVA's first case, without the call
			va = s.ranges[0].Start + i*4096
		} else {
			va, _ = s.unitVA(i, 4096)
		}
		return va + low%(4096/8)*8
	default: // PageCache
		k, low := s.zipfRank(r)
		va, end := s.unitVA(s.scramble(k), 64<<10)
		s.pos, s.end = va+low%1024*line, min(end, va+64<<10)
		s.left = s.geometric(r) - 1
		return s.pos
	}
}
