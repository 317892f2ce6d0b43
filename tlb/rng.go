package tlb

import "math/bits"

// RNG is SplitMix64: small, fast, inlinable and good enough to draw access
// addresses; every stream's draws come from one seeded RNG, so results are
// reproducible from the scenario seed.
type RNG struct{ s uint64 }

// Seed restarts the sequence.
func (r *RNG) Seed(s uint64) { r.s = s }

const golden = 0x9E3779B97F4A7C15

// Uint64 returns 64 random bits.
func (r *RNG) Uint64() uint64 {
	r.s += golden
	return mix64(r.s)
}

func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	return z ^ z>>31
}

// peek returns what the j-th next Uint64 will return (j ≥ 1), without
// drawing: SplitMix64's state is a counter, so any later draw can be
// computed ahead.
func (r *RNG) peek(j uint64) uint64 { return mix64(r.s + j*golden) }

// Float64 returns a number in [0, 1).
func (r *RNG) Float64() float64 { return float64(r.Uint64()>>11) / (1 << 53) }

// Uint64N returns a number in [0, n) (Lemire's multiply-shift, n > 0).
func (r *RNG) Uint64N(n uint64) uint64 {
	hi, _ := bits.Mul64(r.Uint64(), n)
	return hi
}
