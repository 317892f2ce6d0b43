package tlb

import (
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// refCache is the obvious model of a set-associative LRU structure: per set,
// a list of keys from least to most recently used.
type refCache struct {
	sets, ways int
	lru        [][]uint64
}

func (r *refCache) set(key uint64) int { return int((key >> 8) % uint64(r.sets)) }

func (r *refCache) lookup(key uint64) bool {
	l := r.lru[r.set(key)]
	i := slices.Index(l, key)
	if i < 0 {
		return false
	}
	r.lru[r.set(key)] = append(slices.Delete(l, i, i+1), key)
	return true
}

func (r *refCache) insert(key uint64) (evicted uint64) {
	if r.lookup(key) {
		return 0
	}
	s := r.set(key)
	if len(r.lru[s]) == r.ways {
		evicted = r.lru[s][0]
		r.lru[s] = r.lru[s][1:]
	}
	r.lru[s] = append(r.lru[s], key)
	return evicted
}

func (r *refCache) drop(key uint64) bool {
	l := r.lru[r.set(key)]
	i := slices.Index(l, key)
	if i < 0 {
		return false
	}
	r.lru[r.set(key)] = slices.Delete(l, i, i+1)
	return true
}

// The cache (hash-indexed fully associative with a list LRU, sets of up to
// 16 ways with their order in a word, wider sets with time stamps) behaves exactly like the reference: same hits, same
// victims, same contents, through inserts, look-ups, removals, range
// invalidations and flushes.
func TestCacheMatchesReference(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		geo := rapid.SampledFrom([][2]int{{12, 12}, {16, 16}, {48, 48}, {16, 4}, {20, 5}, {48, 12}, {8, 2}, {4, 4}, {32, 16}, {80, 16}, {6, 3}, {64, 32}}).Draw(rt, "geometry")
		c := newCache(geo[0], geo[1])
		ref := &refCache{sets: geo[0] / geo[1], ways: geo[1], lru: make([][]uint64, geo[0]/geo[1])}
		// Keys from a small VA window so that sets fill and collide.
		keyGen := rapid.Custom(func(rt *rapid.T) uint64 {
			shift := rapid.SampledFrom([]uint8{12, 16, 21}).Draw(rt, "shift")
			flags := rapid.SampledFrom([]uint64{0, 0, flagWalk, flagCoal}).Draw(rt, "flags")
			return mkKey(linBase+rapid.Uint64Range(0, 256).Draw(rt, "page")<<12, shift, flags)
		})
		// Half the keys are ones seen before, so hits and LRU updates happen
		// in full sets.
		var seen []uint64
		pick := func() uint64 {
			if len(seen) > 0 && rapid.Bool().Draw(rt, "again") {
				return seen[rapid.IntRange(0, len(seen)-1).Draw(rt, "which")]
			}
			k := keyGen.Draw(rt, "key")
			seen = append(seen, k)
			return k
		}
		for i, n := 0, rapid.IntRange(50, 600).Draw(rt, "ops"); i < n; i++ {
			switch op := rapid.IntRange(0, 9).Draw(rt, "op"); {
			case op < 5:
				key := pick()
				_, ev := c.insert(key, 1)
				if want := ref.insert(key); ev != want {
					rt.Fatalf("insert %#x evicted %#x, reference %#x", key, ev, want)
				}
			case op < 8:
				key := pick()
				s := c.find(key)
				if s >= 0 {
					c.touch(s)
				}
				if want := ref.lookup(key); (s >= 0) != want {
					rt.Fatalf("find %#x: %v, reference %v", key, s >= 0, want)
				}
			case op == 8:
				start := (linBase + rapid.Uint64Range(0, 256).Draw(rt, "from")<<12) & vaMask
				end := start + rapid.Uint64Range(1, 64).Draw(rt, "pages")<<12
				walks := rapid.Bool().Draw(rt, "walks")
				got := c.invalidateRange(start, end, walks)
				want := 0
				var gone []uint64
				for _, l := range ref.lru {
					for _, k := range l {
						ks, ke := keySpan(k)
						if (walks || k&flagWalk == 0) && ks < end && start < ke {
							gone = append(gone, k)
							if k&flagWalk == 0 {
								want++
							}
						}
					}
				}
				for _, k := range gone {
					ref.drop(k)
				}
				if got != want {
					rt.Fatalf("invalidate [%#x,%#x) walks=%v removed %d leaves, reference %d", start, end, walks, got, want)
				}
			default:
				c.flush()
				for i := range ref.lru {
					ref.lru[i] = nil
				}
			}
			n := 0
			for _, l := range ref.lru {
				for _, k := range l {
					n++
					if c.find(k) < 0 {
						rt.Fatalf("key %#x lost", k)
					}
				}
			}
			if n != c.live {
				rt.Fatalf("%d entries, reference %d", c.live, n)
			}
		}
	})
}
