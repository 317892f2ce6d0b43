package tlb

import "math/bits"

// A key names one cached translation: the VA tag at the entry's span, the
// span (log2 bytes) and two flag bits. Leaf entries, coalesced entries and
// walk-cache entries (table pointers) of the same span never collide.
//
//	key = tag<<8 | flags<<6 | shift      (tag = va >> shift, shift < 64)
//
// 0 is the empty key; a tag never fills the top 8 bits because the shift is
// at least 12 and kernel VAs are taken modulo 2^56 (see vaBits).
const (
	flagCoal uint64 = 1 << 6 // an A76-style coalesced entry of four pages
	flagWalk uint64 = 1 << 7 // a walk-cache entry: the table serving a region
	vaMask   uint64 = 1<<56 - 1
)

func mkKey(va uint64, shift uint8, flags uint64) uint64 {
	return ((va&vaMask)>>shift)<<8 | flags | uint64(shift)
}

// cache is one TLB structure: sets × ways of keys with true LRU per set. The
// set of a key is its tag modulo the number of sets, the usual low-order VA
// indexing. Structures with many ways (the fully associative L1s) find keys
// through a small open-addressed index instead of scanning every way.
type cache struct {
	// The fields every look-up reads come first, in one cache line.
	keys []uint64
	// ways > scanWays: an open-addressed index, linear probing, of the
	// keys (idxKey, 0 empty) and their slots (idx): a probe compares keys
	// without reading the slot first.
	idxKey     []uint64
	idx        []int32
	idxMask    uint64
	setMask    uint64 // sets-1 when sets is a power of two (every built-in model), else 0
	sets, ways int
	present    [4]uint64 // bitmap of the classes with count > 0
	// Fully associative structures keep their LRU order as a circular list
	// (O(1) victim choice) through a sentinel at index len(keys): its next
	// is the most recently used slot, its prev the least. The sentinel
	// spares every branch on the list's ends, so moving a slot to the front
	// costs the same whether or not it is there already.
	link []link // nil unless the list is used
	// Sets of up to 16 ways keep their LRU order in one word per set
	// (lruWays), and which ways hold a key in occ: no time stamps to scan
	// for a victim.
	lru  []uint64
	occ  []uint16
	divM uint64 // slot / ways as the high word of slot × divM (see slotSet)
	// Sets of more ways stamp each slot with a clock: larger is more recent.
	stamp []uint64
	clock uint64
	mask  []uint8 // coalesced entries: which of the four pages are valid
	used  int     // slots [0, used) have been filled at least once (list only)
	live  int     // entries present
	// gen counts, per span, the inserts of larger spans (L1s only; see
	// lastHit).
	gen   [64]uint64
	count [256]int32 // live entries per (flags|shift), so lookups probe only classes present
}

// lruWays: a set's LRU order as nibbles, way numbers from the most recently
// used (nibble 0) to the least (nibble ways-1); unused nibbles hold 15,
// never a way of a set of fewer than 16.
const (
	lruWays  = 16
	nibbles  = 0x1111111111111111
	nibbleHi = 0x8888888888888888
)

// lruTouch moves way w to the front of the order x.
func lruTouch(x, w uint64) uint64 {
	// The lowest nibble of x equal to w: t has a zero nibble there, and the
	// lowest nibble the zero-nibble test flags is exact.
	t := x ^ w*nibbles
	p := uint(bits.TrailingZeros64((t-nibbles)&^t&nibbleHi)) &^ 3
	below := x & (1<<p - 1)
	return x&^(1<<(p+4)-1) | below<<4 | w
}

// slotSet splits slot s into its set and way without a division: divM is
// ⌈2^64/ways⌉, exact for every 32-bit s (Lemire, Kaser and Kurz, "Faster
// remainder by direct computation", 2019).
func (c *cache) slotSet(s int) (set, way int) {
	q, _ := bits.Mul64(uint64(s), c.divM)
	return int(q), s - int(q)*c.ways
}

// link is a slot's neighbours in the LRU list: one load fetches both.
type link struct{ prev, next int32 }

const scanWays = 8

func newCache(entries, ways int) *cache {
	if ways <= 0 || ways > entries {
		ways = entries
	}
	c := &cache{sets: entries / ways, ways: ways}
	if c.sets&(c.sets-1) == 0 {
		c.setMask = uint64(c.sets - 1)
	}
	n := c.sets * c.ways
	c.keys = make([]uint64, n)
	c.mask = make([]uint8, n)
	switch {
	case c.sets == 1 && ways > scanWays: // the list, below
	case ways <= lruWays:
		c.lru = make([]uint64, c.sets)
		c.occ = make([]uint16, c.sets)
		c.divM = ^uint64(0)/uint64(ways) + 1
		c.resetLRU()
	default:
		c.stamp = make([]uint64, n)
	}
	if ways > scanWays {
		sz := 1
		for sz < 4*n {
			sz <<= 1
		}
		c.idx = make([]int32, sz)
		c.idxKey = make([]uint64, sz)
		c.idxMask = uint64(sz - 1)
	}
	if c.sets == 1 && ways > scanWays {
		c.link = make([]link, n+1)
		c.link[n] = link{int32(n), int32(n)}
	}
	return c
}

func (c *cache) unlink(s int32) {
	l := c.link[s]
	c.link[l.prev].next = l.next
	c.link[l.next].prev = l.prev
}

func (c *cache) pushFront(s int32) {
	h := int32(len(c.keys))
	f := c.link[h].next
	c.link[s] = link{h, f}
	c.link[f].prev = s
	c.link[h].next = s
}

// set returns the set of key: a mask for a power-of-two number of sets,
// where a 64-bit division would cost more than the rest of a look-up.
func (c *cache) set(key uint64) int {
	if c.setMask != 0 || c.sets == 1 {
		return int(key >> 8 & c.setMask)
	}
	return int((key >> 8) % uint64(c.sets))
}

func hashKey(key uint64) uint64 { return (key * 0x9E3779B97F4A7C15) >> 20 }

// find returns the slot holding key, or -1.
func (c *cache) find(key uint64) int {
	if c.idx != nil {
		for h := hashKey(key) & c.idxMask; ; h = (h + 1) & c.idxMask {
			switch c.idxKey[h] {
			case key:
				return int(c.idx[h])
			case 0:
				return -1
			}
		}
	}
	base := c.set(key) * c.ways
	for i, k := range c.keys[base : base+c.ways] {
		if k == key {
			return base + i
		}
	}
	return -1
}

// has reports whether any entry of the class (flags|shift) is present.
func (c *cache) has(class uint64) bool { return c.count[class&0xff] != 0 }

// touch marks slot s most recently used.
func (c *cache) touch(s int) {
	if c.link != nil {
		if c.link[len(c.keys)].next != int32(s) { // not already the most recent
			c.unlink(int32(s))
			c.pushFront(int32(s))
		}
		return
	}
	if c.lru != nil {
		set, way := c.slotSet(s)
		c.lru[set] = lruTouch(c.lru[set], uint64(way))
		return
	}
	c.clock++
	c.stamp[s] = c.clock
}

// resetLRU empties the sets' orders: ways 0, 1, ... in order, the unused
// nibbles 15. Any order would do: every way is touched when filled, so
// once a set is full its order is the order of those touches.
func (c *cache) resetLRU() {
	var x uint64
	for w := lruWays - 1; w >= 0; w-- {
		v := uint64(15)
		if w < c.ways {
			v = uint64(w)
		}
		x = x<<4 | v
	}
	for i := range c.lru {
		c.lru[i] = x
		c.occ[i] = 0
	}
}

// insert puts key in its set, evicting the least recently used way (an empty
// way first), and returns the slot and the key it evicted (0 if none).
func (c *cache) insert(key uint64, mask uint8) (slot int, evicted uint64) {
	if s := c.find(key); s >= 0 {
		c.mask[s] |= mask
		c.touch(s)
		return s, 0
	}
	return c.insertNew(key, mask)
}

// victim returns the slot a new key of key's set takes: for a fully
// associative structure the next never-used slot, else an empty one, else
// the list's tail; for a set the first empty way, else the least recently
// used.
func (c *cache) victim(key uint64) int {
	if c.link != nil {
		switch {
		case c.used < len(c.keys):
			return c.used
		case c.live < len(c.keys):
			v := 0
			for c.keys[v] != 0 {
				v++
			}
			return v
		}
		return int(c.link[len(c.keys)].prev)
	}
	set := c.set(key)
	base := set * c.ways
	if c.lru != nil {
		if o := c.occ[set]; o != 1<<c.ways-1 {
			return base + bits.TrailingZeros16(^o)
		}
		return base + int(c.lru[set]>>(4*(c.ways-1))&15)
	}
	keys := c.keys[base : base+c.ways]
	stamp := c.stamp[base : base+len(keys)]
	v := 0
	for i, k := range keys {
		if k == 0 {
			return base + i
		}
		if stamp[i] < stamp[v] {
			v = i
		}
	}
	return base + v
}

// insertNew is insert for a key the caller knows is absent (its look-up
// just missed), sparing a second look-up.
func (c *cache) insertNew(key uint64, mask uint8) (slot int, evicted uint64) {
	victim := c.victim(key)
	evicted = c.keys[victim]
	if evicted != 0 {
		c.remove(victim)
	}
	c.keys[victim] = key
	c.mask[victim] = mask
	if c.count[key&0xff]++; c.count[key&0xff] == 1 {
		c.present[key>>6&3] |= 1 << (key & 63)
	}
	c.live++
	if c.lru != nil {
		set, way := c.slotSet(victim)
		c.occ[set] |= 1 << way
	}
	if c.link != nil {
		if victim >= c.used {
			c.used = victim + 1
		}
		c.pushFront(int32(victim))
	}
	if c.idx != nil {
		h := hashKey(key) & c.idxMask
		for c.idxKey[h] != 0 {
			h = (h + 1) & c.idxMask
		}
		c.idx[h], c.idxKey[h] = int32(victim), key
	}
	c.touch(victim)
	return victim, evicted
}

// remove empties slot s.
func (c *cache) remove(s int) {
	key := c.keys[s]
	if key == 0 {
		return
	}
	if c.count[key&0xff]--; c.count[key&0xff] == 0 {
		c.present[key>>6&3] &^= 1 << (key & 63)
	}
	c.live--
	c.keys[s] = 0
	c.mask[s] = 0
	switch {
	case c.lru != nil:
		set, way := c.slotSet(s)
		c.occ[set] &^= 1 << way
	case c.stamp != nil:
		c.stamp[s] = 0
	}
	if c.link != nil {
		c.unlink(int32(s))
	}
	if c.idx == nil {
		return
	}
	// Backward-shift deletion keeps linear probing correct without tombstones.
	h := hashKey(key) & c.idxMask
	for c.idxKey[h] != key {
		h = (h + 1) & c.idxMask
	}
	for {
		c.idxKey[h] = 0
		j := h
		for {
			j = (j + 1) & c.idxMask
			if c.idxKey[j] == 0 {
				return
			}
			home := hashKey(c.idxKey[j]) & c.idxMask
			// Move idx[j] into the hole at h unless its home lies cyclically in (h, j].
			if (j > h && (home <= h || home > j)) || (j < h && home <= h && home > j) {
				break
			}
		}
		c.idx[h], c.idxKey[h] = c.idx[j], c.idxKey[j]
		h = j
	}
}

// flush empties the structure and returns how many entries it held.
func (c *cache) flush() int {
	n := 0
	for s, k := range c.keys {
		if k != 0 {
			n++
			c.keys[s], c.mask[s] = 0, 0
		}
	}
	c.count = [256]int32{}
	c.present = [4]uint64{}
	clear(c.stamp)
	if c.lru != nil {
		c.resetLRU()
	}
	clear(c.idxKey)
	if c.link != nil {
		n := len(c.keys)
		c.link[n] = link{int32(n), int32(n)}
	}
	c.used, c.live = 0, 0
	return n
}

// invalidate removes the entries for which drop returns true and returns how
// many it removed (only leaf entries if leavesOnly).
func (c *cache) invalidate(drop func(key uint64) bool, leavesOnly bool) int {
	n := 0
	for s, k := range c.keys {
		if k != 0 && drop(k) {
			c.remove(s)
			if !leavesOnly || k&flagWalk == 0 {
				n++
			}
		}
	}
	return n
}

// keySpan returns the VA range [start, end) a key covers (VA modulo 2^56).
func keySpan(key uint64) (start, end uint64) {
	shift := uint8(key & 0x3f)
	start = (key >> 8) << shift
	return start, start + 1<<shift
}

// invalidateRange removes the entries whose span overlaps [s, e) (VAs
// modulo 2^56), walk-cache entries only if walks, and returns how many leaf
// entries it removed. Small ranges probe the few tags they cover in each
// class present; large ones scan the structure.
func (c *cache) invalidateRange(s, e uint64, walks bool) (leaves int) {
	if c.live == 0 {
		return 0
	}
	words := 2 // leaf and coalesced classes: flags 0 and flagCoal
	if walks {
		words = 4
	}
	probes := 0
	for w := 0; w < words; w++ {
		for m := c.present[w]; m != 0; m &= m - 1 {
			shift := uint8(bits.TrailingZeros64(m))
			probes += int((e-1)>>shift - s>>shift + 1)
		}
	}
	if probes > len(c.keys)/2 {
		return c.invalidate(func(key uint64) bool {
			if key&flagWalk != 0 && !walks {
				return false
			}
			ks, ke := keySpan(key)
			return ks < e && s < ke
		}, true)
	}
	for w := 0; w < words; w++ {
		for m := c.present[w]; m != 0; m &= m - 1 {
			shift := uint8(bits.TrailingZeros64(m))
			class := uint64(w)<<6 | uint64(shift)
			for tag := s >> shift; tag <= (e-1)>>shift; tag++ {
				if slot := c.find(tag<<8 | class); slot >= 0 {
					c.remove(slot)
					if class&flagWalk == 0 {
						leaves++
					}
				}
			}
		}
	}
	return leaves
}
