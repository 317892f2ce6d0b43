package tlb

import (
	"errors"
	"math/bits"
	"slices"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
)

// Errors.
var (
	ErrModel    = errors.New("tlb: bad CPU model")
	ErrReadOnly = errors.New("tlb: the cost model never changes tables")
)

// Kind is an instruction fetch or a data access.
type Kind uint8

const (
	Data Kind = iota
	Instr
	numKinds
)

func (k Kind) String() string {
	if k == Instr {
		return "instr"
	}
	return "data"
}

// Counts are what a stream of accesses cost.
type Counts struct {
	Accesses uint64  `json:"accesses"`
	L1Misses uint64  `json:"l1_misses"` // missed the L1 (i or d) TLB
	L2Misses uint64  `json:"l2_misses"` // missed the L2 TLB too: one walk each
	Reads    uint64  `json:"reads"`     // descriptors read by walks
	Faults   uint64  `json:"faults"`    // walks that found no valid leaf
	Cycles   float64 `json:"cycles"`    // walk cycles
}

// Add accumulates o into c.
func (c *Counts) Add(o Counts) {
	c.Accesses += o.Accesses
	c.L1Misses += o.L1Misses
	c.L2Misses += o.L2Misses
	c.Reads += o.Reads
	c.Faults += o.Faults
	c.Cycles += o.Cycles
}

// readDoor reads descriptors and nothing else. It is not one of pgtable's
// single-threaded doors, so walks through it leave the Tables' own walk
// cache untouched: the cost model observes the tables without changing them.
type readDoor struct{}

func (readDoor) Load(_ uint64, p *uint64) uint64 { return *p }
func (readDoor) Store(uint64, *uint64, uint64)   {} // never called by Lookup
func (readDoor) TableAlloc(arm64.Level) error    { return ErrReadOnly }
func (readDoor) TableFree(uint64, arm64.Level)   {}
func (readDoor) String() string                  { return "tlb.readDoor" }
func (readDoor) PageTableLock(*pgtable.Tables)   {}
func (readDoor) PageTableUnlock(*pgtable.Tables) {}
func holdsDesc(h []uint8) []uint8                { s := slices.Clone(h); slices.Sort(s); slices.Reverse(s); return s }
func largestHeld(desc []uint8, span uint8) uint8 {
	for _, s := range desc {
		if s <= span {
			return s
		}
	}
	return 0
}

// TLB is one core's translation hardware in front of one tree of tables.
type TLB struct {
	M         *Model
	pt        *pgtable.Tables
	g         arm64.Geometry
	l1        [numKinds]*cache
	l1Holds   [numKinds][]uint8 // descending
	l2        *cache
	l2Holds   []uint8
	coal      bool
	coalShift uint8
	walk      []*cache
	walkAt    [8]*cache // by level+1: the structure caching pointers to level-l tables
	C         [numKinds]Counts

	anyBuf, walkBuf, tmpBuf []Span // InvalidateBatch scratch
	last                    [numKinds]lastHit
	l1Mask                  [numKinds]uint64 // bit s: the L1 holds span 2^s
	l2Mask                  uint64

	// shadow remembers, per 2M region (4K granule; a PMD entry's span in
	// general), the PTE table the last walk of this window reached, so that
	// the simulator reads the leaf descriptor without walking pgtable's tree
	// again. It speeds the simulation only: the modelled walk's reads come
	// from the walk caches above. Valid while the tables do not change.
	shadow    [shadowSize]shadowEntry
	shadowGen uint64 // entries of older generations are empty (< 2^20)
}

const shadowSize = 1024

type shadowEntry struct {
	key uint64 // va >> Shift(level 2), plus 1, | shadowGen<<44 when filled (0 = empty)
	tpa uint64
	tbl []uint64
}

// TablesChanged must be called when the tables may have changed since the
// last access (Sim.Window calls it at the start of every window).
// It empties the shadow by moving to a new generation, not by clearing it.
// The generation lives in a key's top 20 bits: at 2^20 the shadow is
// cleared once and the count restarts.
func (t *TLB) TablesChanged() {
	if t.shadowGen++; t.shadowGen == 1<<20 {
		t.shadow = [shadowSize]shadowEntry{}
		t.shadowGen = 1
	}
}

// leaf returns the leaf entry for va: from the shadow when its PTE table is
// known, else by pgtable's walk.
func (t *TLB) leaf(va uint64) (pgtable.Entry, error) {
	g := &t.g
	tag := va>>g.Shift(arm64.LastLevel-1) + 1
	sh := &t.shadow[tag%shadowSize]
	key := tag | t.shadowGen<<44 // tag < 2^44: VA bits above a PMD entry's span
	if sh.key == key {
		idx := g.Index(va, arm64.LastLevel)
		return pgtable.Entry{VA: va &^ (g.PageSize() - 1), Level: arm64.LastLevel,
			Desc: readDoor{}.Load(0, &sh.tbl[idx]), DescPA: sh.tpa + uint64(idx)*8}, nil
	}
	e, err := t.pt.Lookup(readDoor{}, va)
	if err == nil && e.Level == arm64.LastLevel {
		tpa := e.DescPA &^ (g.PageSize() - 1)
		if tbl, err := t.pt.Table(tpa); err == nil {
			sh.key, sh.tpa, sh.tbl = key, tpa, tbl
		}
	}
	return e, err
}

// New builds m's TLBs, empty, in front of pt.
func New(m *Model, pt *pgtable.Tables) *TLB {
	t := &TLB{M: m, pt: pt, g: pt.Geometry()}
	t.l1[Data] = newCache(m.L1D.Entries, m.L1D.Ways)
	t.l1[Instr] = newCache(m.L1I.Entries, m.L1I.Ways)
	t.l1Holds[Data] = holdsDesc(m.L1D.Holds)
	t.l1Holds[Instr] = holdsDesc(m.L1I.Holds)
	t.l2 = newCache(m.L2.Entries, m.L2.Ways)
	t.l2Holds = holdsDesc(m.L2.Holds)
	for k := range t.l1Holds {
		t.l1Mask[k] = spanMask(t.l1Holds[k])
	}
	t.l2Mask = spanMask(t.l2Holds)
	t.coal = m.L2.Coalesce4
	t.coalShift = uint8(t.g.PageShift + 2)
	for _, l := range m.L2.WalkLevels {
		t.walkAt[l+1] = t.l2
	}
	for _, w := range m.Walk {
		c := newCache(w.Entries, w.Ways)
		t.walk = append(t.walk, c)
		for _, l := range w.WalkLevels {
			t.walkAt[l+1] = c
		}
	}
	return t
}

// SetTables points the TLB at another tree (a fresh kernel) and empties it.
func (t *TLB) SetTables(pt *pgtable.Tables) {
	t.pt, t.g = pt, pt.Geometry()
	t.TablesChanged()
	t.coalShift = uint8(t.g.PageShift + 2)
	t.Flush()
}

// Flush empties every structure (TLBI VMALLE1IS) and returns the number of
// leaf translations the L2 TLB held: each is a walk when next used.
func (t *TLB) Flush() int {
	n := 0
	for class := range t.l2.count {
		if uint64(class)&flagWalk == 0 {
			n += int(t.l2.count[class])
		}
	}
	t.forget()
	t.l1[Data].flush()
	t.l1[Instr].flush()
	t.l2.flush()
	for _, w := range t.walk {
		w.flush()
	}
	return n
}

// Invalidate drops the entries translating any VA in [start, end): leaf
// entries always, walk-cache entries too unless lastLevel. The kernel's
// flush_tlb_kernel_range issues last-level TLBI VAALE1IS (or RVAALE1IS),
// and __flush_tlb_kernel_pgtable TLBI VAAE1IS so that walk-cache entries go
// too, before a table page is freed (arch/arm64/include/asm/tlbflush.h).
// It returns the number of L2 leaf translations removed.
func (t *TLB) Invalidate(start, end uint64, lastLevel bool) int {
	s, e := start&vaMask, end&vaMask
	if e <= s {
		e = vaMask + 1
	}
	t.forget()
	n := t.l2.invalidateRange(s, e, !lastLevel)
	t.l1[Data].invalidateRange(s, e, !lastLevel)
	t.l1[Instr].invalidateRange(s, e, !lastLevel)
	for _, w := range t.walk {
		w.invalidateRange(s, e, !lastLevel)
	}
	return n
}

// spanMask has bit s set for each span 2^s in holds.
func spanMask(holds []uint8) uint64 {
	var m uint64
	for _, s := range holds {
		m |= 1 << (s & 63)
	}
	return m
}

// probe looks va up in c among the spans it holds (mask, see spanMask) and
// returns the span of the entry that hit, or 0.
func (t *TLB) probe(c *cache, mask uint64, va uint64) uint8 {
	s, _ := t.probeSlot(c, mask, va)
	return s
}

// probeSlot is probe that also returns the slot that hit. It tries the
// spans held and present, largest first: the leaf classes (flags 0) are the
// first word of the present bitmap, bit s for span 2^s.
func (t *TLB) probeSlot(c *cache, mask uint64, va uint64) (uint8, int) {
	for m := c.present[0] & mask; m != 0; {
		s := uint8(63 - bits.LeadingZeros64(m))
		m &^= 1 << s
		if slot := c.find(mkKey(va, s, 0)); slot >= 0 {
			c.touch(slot)
			return s, slot
		}
	}
	if c != t.l2 {
		return 0, -1
	}
	if t.coal && c.count[uint64(t.coalShift)|flagCoal] != 0 {
		if slot := c.find(mkKey(va, t.coalShift, flagCoal)); slot >= 0 && c.mask[slot]&(1<<(va>>t.g.PageShift&3)) != 0 {
			c.touch(slot)
			return uint8(t.g.PageShift), slot
		}
	}
	return 0, -1
}

// lastHit remembers the L1 entry an earlier access used: a later access
// inside its span hits it again without a look-up (the same result, faster:
// consecutive fetches and reads mostly stay in one page). It holds while the
// slot still holds the key and no larger entry has entered the L1 since
// (gen): a look-up tries larger spans first, and the one remembered was the
// largest covering va when it was found.
type lastHit struct {
	lo, span uint64 // VA modulo 2^56
	key      uint64
	gen      uint64
	slot     int32
	shift    uint8
}

// covers reports whether the L1 entry m remembers still translates va.
func (m *lastHit) covers(l1 *cache, va uint64) bool {
	return (va&vaMask)-m.lo < m.span && l1.keys[m.slot] == m.key && l1.gen[m.shift] == m.gen
}

func (t *TLB) remember(m *lastHit, l1 *cache, va uint64, shift uint8, slot int) {
	// Field by field: a struct literal is built on the stack and copied
	// with 16-byte moves, which stall on the 8-byte stores just made.
	v := va & vaMask
	m.lo, m.span = v&^(1<<shift-1), 1<<shift
	m.key, m.gen = l1.keys[slot], l1.gen[shift]
	m.slot, m.shift = int32(slot), shift
}

// fillL1 puts the translation of va at span s in kind k's L1 and remembers
// it in m. Inserting a span invalidates what is remembered at smaller ones.
func (t *TLB) fillL1(k Kind, va uint64, s uint8, m *lastHit) {
	l1 := t.l1[k]
	slot, _ := l1.insertNew(mkKey(va, s, 0), 0) // the L1 look-up of va missed
	for _, h := range t.l1Holds[k] {
		if h < s {
			l1.gen[h]++
		}
	}
	t.remember(m, l1, va, s, slot)
}

func (t *TLB) forget() { t.last = [numKinds]lastHit{} }

// Access translates one access of kind k at va, updating the structures and
// the counts. It allocates nothing. If the tables changed since the last
// access, call TablesChanged first.
func (t *TLB) Access(va uint64, k Kind) { t.access(va, k, &t.last[k]) }

// access is Access with the caller's memory of the last L1 entry hit (one
// per stream: streams interleave, each mostly staying in its own page).
func (t *TLB) access(va uint64, k Kind, m *lastHit) {
	c := &t.C[k]
	c.Accesses++
	l1 := t.l1[k]
	if m.covers(l1, va) {
		l1.touch(int(m.slot))
		return
	}
	if s, slot := t.probeSlot(l1, t.l1Mask[k], va); s != 0 {
		t.remember(m, l1, va, s, slot)
		return
	}
	c.L1Misses++
	if span := t.probe(t.l2, t.l2Mask, va); span != 0 {
		if s := largestHeld(t.l1Holds[k], span); s != 0 {
			t.fillL1(k, va, s, m)
		}
		return
	}
	c.L2Misses++
	span, reads, ok := t.walkFill(va)
	c.Reads += uint64(reads)
	c.Cycles += t.M.WalkCycles + float64(reads)*t.M.ReadCycles
	if !ok {
		c.Faults++
		return
	}
	if s := largestHeld(t.l1Holds[k], span); s != 0 {
		t.fillL1(k, va, s, m)
	}
}

// walkFill walks the tables for va starting below the deepest walk-cache
// hit, fills the walk cache and the L2 TLB, and returns the leaf's span, the
// descriptors read, and whether a valid leaf was found.
func (t *TLB) walkFill(va uint64) (span uint8, reads int, ok bool) {
	g := &t.g
	start := g.StartLevel
	restarted := false
	var hit *cache
	hitSlot := -1
	for l := arm64.LastLevel; l > g.StartLevel; l-- {
		w := t.walkAt[l+1]
		if w == nil {
			continue
		}
		key := mkKey(va, uint8(g.Shift(l-1)), flagWalk)
		if !w.has(key) {
			continue
		}
		if s := w.find(key); s >= 0 {
			start, hit, hitSlot = l, w, s
			break
		}
	}
	e, err := t.leaf(va)
	if err != nil {
		return 0, int(arm64.LastLevel-start) + 1, false
	}
	if e.Level < start {
		// The cached table is no longer in the tree at that level (a fold the
		// kernel invalidated with a last-level TLBI only): the walk restarts.
		hit.remove(hitSlot)
		hit, start, restarted = nil, g.StartLevel, true
	}
	if hit != nil {
		hit.touch(hitSlot)
	}
	reads = int(e.Level-start) + 1
	if !arm64.DescValid(e.Desc) {
		return 0, reads, false
	}
	if e.Level == arm64.LastLevel || t.M.WalkFillOnBlock {
		for l := start + 1; l <= e.Level; l++ {
			w := t.walkAt[l+1]
			if w == nil {
				continue
			}
			if key := mkKey(va, uint8(g.Shift(l-1)), flagWalk); restarted {
				w.insert(key, 0)
			} else {
				w.insertNew(key, 0) // the search above missed every level below start
			}
		}
	}
	span = uint8(g.Shift(e.Level))
	if arm64.DescCont(e.Desc) && g.ContEntries(e.Level) > 0 {
		span += uint8(bitsLen(uint64(g.ContEntries(e.Level))) - 1)
	}
	s2 := largestHeld(t.l2Holds, span)
	if t.coal && s2 == uint8(g.PageShift) && e.Level == arm64.LastLevel {
		if m := t.coalesceMask(e); m&(m-1) != 0 {
			t.l2.insert(mkKey(va, t.coalShift, flagCoal), m)
			return span, reads, true
		}
	}
	if s2 != 0 {
		t.l2.insertNew(mkKey(va, s2, 0), 0) // the L2 look-up of va missed
	}
	return span, reads, true
}

func bitsLen(x uint64) int {
	n := 0
	for ; x != 0; x >>= 1 {
		n++
	}
	return n
}

// coalesceMask reads the four aligned PTEs around leaf e (one cache line the
// walker has already fetched) and returns which of them translate to the
// matching pages of one contiguous output range with identical attributes.
func (t *TLB) coalesceMask(e pgtable.Entry) uint8 {
	g := &t.g
	ps := g.PageSize()
	tbl, err := t.pt.Table(e.DescPA &^ (ps - 1))
	if err != nil {
		return 0
	}
	idx := int(e.DescPA&(ps-1)) / 8
	first := idx &^ 3
	base := g.OutputAddress(e.Desc) - uint64(idx-first)*ps
	attr := e.Desc &^ g.AddressMask()
	var m uint8
	var d readDoor
	for i := 0; i < 4; i++ {
		desc := d.Load(0, &tbl[first+i])
		if arm64.DescValid(desc) && !arm64.DescCont(desc) && desc&^g.AddressMask() == attr &&
			g.OutputAddress(desc) == base+uint64(i)*ps {
			m |= 1 << i
		}
	}
	return m
}

// Span is a VA range [Start, End); End 0 means the top of the address space.
type Span struct{ Start, End uint64 }

// mergeSpans sorts and merges spans (VAs taken modulo 2^56) into dst.
func mergeSpans(dst, src []Span) []Span {
	dst = dst[:0]
	for _, s := range src {
		a, b := s.Start&vaMask, s.End&vaMask
		if b <= a {
			b = vaMask + 1
		}
		dst = append(dst, Span{a, b})
	}
	slices.SortFunc(dst, func(x, y Span) int {
		switch {
		case x.Start < y.Start:
			return -1
		case x.Start > y.Start:
			return 1
		}
		return 0
	})
	out := dst[:0]
	for _, s := range dst {
		if n := len(out); n > 0 && s.Start <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, s.End)
			continue
		}
		out = append(out, s)
	}
	return out
}

// overlaps reports whether [s, e) meets one of the merged spans.
func overlaps(spans []Span, s, e uint64) bool {
	i, _ := slices.BinarySearchFunc(spans, s, func(x Span, v uint64) int {
		if x.End <= v {
			return -1
		}
		return 1
	})
	return i < len(spans) && spans[i].Start < e
}

// InvalidateBatch applies many invalidations at once — the TLBIs the kernel
// broadcast between two windows, when no access ran in between, so their
// order does not matter: lastLevel spans drop leaf entries, allLevels spans
// leaf and walk-cache entries. A few spans are probed, many are matched in
// one scan of each structure. It returns the L2 leaf translations removed.
func (t *TLB) InvalidateBatch(lastLevel, allLevels []Span) int {
	if len(lastLevel)+len(allLevels) <= 16 {
		n := 0
		for _, s := range lastLevel {
			n += t.Invalidate(s.Start, s.End, true)
		}
		for _, s := range allLevels {
			n += t.Invalidate(s.Start, s.End, false)
		}
		return n
	}
	t.anyBuf = mergeSpans(t.anyBuf, append(append(t.tmpBuf[:0], lastLevel...), allLevels...))
	t.walkBuf = mergeSpans(t.walkBuf, allLevels)
	drop := func(key uint64) bool {
		ks, ke := keySpan(key)
		if key&flagWalk != 0 {
			return overlaps(t.walkBuf, ks, ke)
		}
		return overlaps(t.anyBuf, ks, ke)
	}
	t.forget()
	n := t.l2.invalidate(drop, true)
	t.l1[Data].invalidate(drop, true)
	t.l1[Instr].invalidate(drop, true)
	for _, w := range t.walk {
		w.invalidate(drop, true)
	}
	return n
}
