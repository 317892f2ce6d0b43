package tlb

import "math/bits"

// RNG is wyrand (Wang Yi's generator from wyhash, also the Go runtime's
// cheap random source): a Weyl sequence mixed by one 64×64→128-bit multiply,
// small, fast, inlinable and good enough to draw access addresses (it
// replaced SplitMix64, whose mixing is three dependent multiplies). Every
// stream's draws come from one seeded RNG, so results are reproducible from
// the scenario seed.
type RNG struct{ s uint64 }

// Seed restarts the sequence.
func (r *RNG) Seed(s uint64) { r.s = s }

// Uint64 returns 64 random bits.
func (r *RNG) Uint64() uint64 {
	r.s += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(r.s, r.s^0xe7037ed1a0b428db)
	return hi ^ lo
}

// Float64 returns a number in [0, 1).
func (r *RNG) Float64() float64 { return float64(r.Uint64()>>11) / (1 << 53) }

// Uint64N returns a number in [0, n) (Lemire's multiply-shift, n > 0).
func (r *RNG) Uint64N(n uint64) uint64 {
	hi, _ := bits.Mul64(r.Uint64(), n)
	return hi
}
