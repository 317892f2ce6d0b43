package tlb

import (
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
)

const (
	ramBase uint64 = 0x40000000
	linBase uint64 = 0xffff000000000000 // PAGE_OFFSET, 4K pages, 48-bit VA
	kib            = 1 << 10
	mib            = 1 << 20
	gib            = 1 << 30
)

var prot = arm64.Tagged(arm64.PageKernel)

// tables maps [linBase, linBase+size) to [ramBase+..) with the given flags.
func tables(t testing.TB, size uint64, flags pgtable.Flags) *pgtable.Tables {
	t.Helper()
	mem, err := physmem.New(12, []physmem.Region{{Base: ramBase, Size: 256 * mib}})
	if err != nil {
		t.Fatal(err)
	}
	pt, err := pgtable.New(arm64.Geometry4K48, mem)
	if err != nil {
		t.Fatal(err)
	}
	if err := pt.Map(pgtable.Direct{}, linBase, 64*gib, size, prot, flags); err != nil {
		t.Fatal(err)
	}
	return pt
}

const ptes = pgtable.NoBlockMappings | pgtable.NoContMappings

func want(t *testing.T, what string, got Counts, accesses, l1, l2, reads uint64) {
	t.Helper()
	if got.Accesses != accesses || got.L1Misses != l1 || got.L2Misses != l2 || got.Reads != reads {
		t.Errorf("%s: got accesses %d, L1 misses %d, L2 misses %d, reads %d; want %d, %d, %d, %d",
			what, got.Accesses, got.L1Misses, got.L2Misses, got.Reads, accesses, l1, l2, reads)
	}
}

// tiny: a 2-entry fully associative L1D and a 4-entry 2-way L2 (2 sets),
// 4K entries only, no walk cache.
var tiny = &Model{Key: "tiny", Name: "tiny",
	L1I: Structure{Entries: 2, Ways: 2, Holds: []uint8{s4K}},
	L1D: Structure{Entries: 2, Ways: 2, Holds: []uint8{s4K}},
	L2:  Structure{Entries: 4, Ways: 2, Holds: []uint8{s4K}},
}

// Associativity and LRU, derived by hand. The L2 set of a page is its tag
// (VA>>12 modulo 2^44) modulo 2; linBase's tag is even, so page i lands in
// set i%2. L1 = fully associative, 2 entries.
//
//	page  L1 before  L1?   L2 set0 before  L2?   walk  L1 after  set0 after
//	 0    {}         miss  {}              miss  yes   {0}       {0}
//	 2    {0}        miss  {0}             miss  yes   {0,2}     {0,2}
//	 4    {0,2}      miss  {0,2}           miss  yes   {2,4}     {2,4}    (LRU 0 out of both)
//	 0    {2,4}      miss  {2,4}           miss  yes   {4,0}     {4,0}    (LRU 2 out of both)
//	 4    {4,0}      hit                                {0,4}              (L2 not touched)
//	 2    {0,4}      miss  {4,0}           miss  yes   {4,2}     {0,2}    (L2 LRU is 4: set at step 4's fill of 0 came later)
//	 4    {4,2}      hit                                {2,4}
//	 0    {2,4}      miss  {0,2}           hit         {4,0}
//	 1    {4,0}      miss  set1 {}         miss  yes
//
// 9 accesses, 7 L1 misses, 6 walks of 4 descriptors each (no walk cache).
func TestAssociativityLRU(t *testing.T) {
	tb := New(tiny, tables(t, 4*mib, ptes))
	for _, p := range []uint64{0, 2, 4, 0, 4, 2, 4, 0, 1} {
		tb.Access(linBase+p*4*kib+8, Data)
	}
	want(t, "sequence", tb.C[Data], 9, 7, 6, 24)
}

// Splintering on Neoverse N1 (Cortex-A76 TRM A5.2): the L1 dTLB holds no
// 32M entry, so a contPMD leaf is cached there as the 2M piece accessed; the
// L1 iTLB holds 32M; the L2 holds 32M.
//
//	data  +0       L1D miss, L2 miss, walk (3 reads: level 0,1,2; no walk
//	               cache fill for a block) -> L2 32M, L1D 2M [0,2M)
//	data  +2M+8    L1D miss (other 2M piece), L2 hit (32M)
//	data  +4K      L1D hit (2M piece [0,2M))
//	instr +16M     L1I miss, L2 hit (32M) -> L1I 32M
//	instr +30M     L1I hit
//
// data: 3 accesses, 2 L1 misses, 1 walk, 3 reads; instr: 2, 1, 0, 0.
func TestSplinterContPMD(t *testing.T) {
	m, _ := LookupModel("n1")
	tb := New(m, tables(t, 32*mib, 0))
	tb.Access(linBase, Data)
	tb.Access(linBase+2*mib+8, Data)
	tb.Access(linBase+4*kib, Data)
	tb.Access(linBase+16*mib, Instr)
	tb.Access(linBase+30*mib, Instr)
	want(t, "data", tb.C[Data], 3, 2, 1, 3)
	want(t, "instr", tb.C[Instr], 2, 1, 0, 0)
}

// A 1G PUD block in the N1 L1 dTLB is a 512M entry:
//
//	+0      miss, miss, walk of 2 reads (level 0, 1) -> L2 1G, L1D 512M [0,512M)
//	+600M   L1D miss, L2 hit -> L1D 512M [512M,1G)
//	+100M   L1D hit
func TestSplinterPUD(t *testing.T) {
	m, _ := LookupModel("n1")
	tb := New(m, tables(t, gib, 0))
	for _, off := range []uint64{0, 600 * mib, 100 * mib} {
		tb.Access(linBase+off, Data)
	}
	want(t, "pud", tb.C[Data], 3, 2, 1, 2)
}

// Contiguous entries: 16 pages of one 64K contPTE run are one entry in every
// structure of V2 (no coalescing): one walk (4 reads), one L1 miss. The same
// pages PTE-mapped without the contiguous bit cost 16 walks on V2; on N1 the
// L2 coalesces four pages per entry, so 4 walks: pages 0, 4, 8, 12 walk,
// the other 12 miss the L1 and hit the coalesced L2 entry. The first walk
// reads 4 descriptors and fills the level-3 table pointer; the next three
// read 1 each: 4+1+1+1 = 7 on N1, 4+15 = 19 on V2.
func TestContiguousAndCoalesced(t *testing.T) {
	v2, _ := LookupModel("v2")
	n1, _ := LookupModel("n1")
	cont := tables(t, 2*mib, pgtable.NoBlockMappings)
	plain := tables(t, 2*mib, ptes)
	run := func(m *Model, pt *pgtable.Tables) Counts {
		tb := New(m, pt)
		for p := uint64(0); p < 16; p++ {
			tb.Access(linBase+p*4*kib, Data)
		}
		return tb.C[Data]
	}
	want(t, "v2 contPTE", run(v2, cont), 16, 1, 1, 4)
	want(t, "v2 PTE", run(v2, plain), 16, 16, 16, 19)
	want(t, "n1 PTE coalesced", run(n1, plain), 16, 16, 4, 7)
}

// Walk-cache skipping on AmpereOne's separate walk cache (levels 1-3):
//
//	page +0     cold: 4 reads; fills pointers to the level-1, -2, -3 tables
//	page +2M    level-3 pointer misses (other PTE table), level-2 hits: 2 reads
//	page +2M+4K another page: L1 and L2 miss; the level-3 pointer the last
//	            walk filled hits: 1 read
//	page +1G    level-3 and level-2 pointers miss, the level-1 pointer hits
//	            (same level-0 entry): 3 reads
//
// Blocks fill no walk-cache entry (Cortex-A35 TRM A6.2): two 2M blocks in
// one 1G take 3 reads each, not 3 then 1.
func TestWalkCacheSkipping(t *testing.T) {
	a1, _ := LookupModel("ampereone")
	tb := New(a1, tables(t, 2*gib, ptes))
	for _, off := range []uint64{0, 2 * mib, 2*mib + 4*kib, gib} {
		tb.Access(linBase+off, Data)
	}
	want(t, "ptes", tb.C[Data], 4, 4, 4, 4+2+1+3)

	tb = New(a1, tables(t, 4*mib, pgtable.NoContMappings))
	tb.Access(linBase, Data)
	tb.Access(linBase+2*mib, Data)
	want(t, "blocks", tb.C[Data], 2, 2, 2, 6)
}

// TLBIs: a last-level invalidation keeps walk-cache entries, VAAE1IS drops
// them, a full flush drops everything and reports the L2 translations lost.
//
//	warm: page 0 and page 512 (+2M) on AmpereOne: 4 + 2 reads
//	Invalidate(page 0, last level)  -> page 0 again: L1, L2 miss; walk: the
//	    level-3 pointer is still cached: 1 read
//	Invalidate(page 0, all levels)  -> page 0: pointers for level 3 dropped;
//	    the level-2 pointer covers [0,1G), which overlaps: dropped too;
//	    level-1 pointer (512G) dropped too: 4 reads
//	Flush -> 2 L2 leaf entries lost (page 0 and page 512)
func TestInvalidate(t *testing.T) {
	a1, _ := LookupModel("ampereone")
	tb := New(a1, tables(t, 4*mib, ptes))
	tb.Access(linBase, Data)
	tb.Access(linBase+2*mib, Data)
	if n := tb.Invalidate(linBase, linBase+4*kib, true); n != 1 {
		t.Errorf("last-level TLBI removed %d L2 entries, want 1", n)
	}
	tb.Access(linBase, Data)
	if n := tb.Invalidate(linBase, linBase+4*kib, false); n != 1 {
		t.Errorf("all-level TLBI removed %d L2 entries, want 1", n)
	}
	tb.Access(linBase, Data)
	want(t, "after TLBIs", tb.C[Data], 4, 4, 4, 4+2+1+4)
	if n := tb.Flush(); n != 2 {
		t.Errorf("flush lost %d L2 translations, want 2", n)
	}
}

// The cache's index (fully associative structures) survives many inserts and
// removals: every present key is found, every absent key is not.
func TestCacheIndex(t *testing.T) {
	c := newCache(48, 48)
	present := map[uint64]bool{}
	x := uint64(1)
	for i := 0; i < 20000; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		key := mkKey(x>>8, 12, 0)
		if x&1 == 0 {
			_, ev := c.insert(key, 0)
			delete(present, ev)
			present[key] = true
		} else if s := c.find(key); s >= 0 {
			c.remove(s)
			delete(present, key)
		}
		if len(present) > 48 {
			t.Fatalf("%d keys present in a 48-entry cache", len(present))
		}
	}
	for k := range present {
		if c.find(k) < 0 {
			t.Fatalf("key %#x lost", k)
		}
	}
	n := 0
	for _, k := range c.keys {
		if k != 0 {
			n++
		}
	}
	if n != len(present) {
		t.Fatalf("%d slots used, %d keys present", n, len(present))
	}
}

// Range invalidation by probing the covered tags removes exactly what a scan
// of every entry removes.
func TestInvalidateRangeMatchesScan(t *testing.T) {
	x := uint64(7)
	next := func() uint64 { x = x*6364136223846793005 + 1442695040888963407; return x >> 11 }
	for round := 0; round < 200; round++ {
		a, b := newCache(64, 4), newCache(64, 4)
		for i := 0; i < 100; i++ {
			shift := []uint8{12, 14, 16, 21, 25}[next()%5]
			flags := []uint64{0, flagWalk, flagCoal}[next()%3]
			key := mkKey(linBase+next()%(64*mib), shift, flags)
			a.insert(key, 1)
			b.insert(key, 1)
		}
		s := (linBase + next()%(64*mib)) & vaMask
		e := s + 1 + next()%(8*mib)
		walks := next()%2 == 0
		got := a.invalidateRange(s, e, walks)
		want := b.invalidate(func(key uint64) bool {
			ks, ke := keySpan(key)
			return (walks || key&flagWalk == 0) && ks < e && s < ke
		}, true)
		if got != want {
			t.Fatalf("round %d: probing removed %d leaves, scanning %d", round, got, want)
		}
		for i := range a.keys {
			if a.keys[i] != b.keys[i] {
				t.Fatalf("round %d: slot %d: %#x vs %#x", round, i, a.keys[i], b.keys[i])
			}
		}
	}
}

// A batch of invalidations removes what applying them one by one removes.
func TestInvalidateBatchMatchesSingles(t *testing.T) {
	a1, _ := LookupModel("ampereone")
	pt := tables(t, 64*mib, ptes)
	x := uint64(11)
	next := func() uint64 { x = x*6364136223846793005 + 1442695040888963407; return x >> 11 }
	for round := 0; round < 20; round++ {
		a, b := New(a1, pt), New(a1, pt)
		for i := 0; i < 3000; i++ {
			va := linBase + next()%(64*mib)
			a.Access(va, Kind(i%2))
			b.Access(va, Kind(i%2))
		}
		var last, all []Span
		for i := 0; i < 40; i++ {
			s := linBase + next()%(64*mib)
			sp := Span{s, s + 4*kib*(1+next()%64)}
			if next()%3 == 0 {
				all = append(all, sp)
			} else {
				last = append(last, sp)
			}
		}
		got := a.InvalidateBatch(last, all)
		want := 0
		for _, s := range last {
			want += b.Invalidate(s.Start, s.End, true)
		}
		for _, s := range all {
			want += b.Invalidate(s.Start, s.End, false)
		}
		if got != want {
			t.Fatalf("round %d: batch removed %d, singles %d", round, got, want)
		}
		for i := range a.l2.keys {
			if a.l2.keys[i] != b.l2.keys[i] {
				t.Fatalf("round %d: L2 slot %d differs", round, i)
			}
		}
		for i := range a.walk[0].keys {
			if a.walk[0].keys[i] != b.walk[0].keys[i] {
				t.Fatalf("round %d: walk-cache slot %d differs", round, i)
			}
		}
	}
}

// The scrambling of Zipf ranks is a permutation of the units.
func TestScramblePermutes(t *testing.T) {
	for _, n := range []uint64{1, 2, 3, 7, 64, 1000, 4097, 65536, 100003} {
		s := &Stream{units: n, mult: scrambler(n)}
		seen := make([]bool, n)
		for i := uint64(0); i < n; i++ {
			j := s.scramble(i)
			if j >= n || seen[j] {
				t.Fatalf("n=%d: rank %d -> %d (out of range or twice)", n, i, j)
			}
			seen[j] = true
		}
	}
}

// N1 keeps its walk-cache entries in the L2 TLB: a last-level TLBI drops the
// leaf there but keeps the level-3 table pointer.
//
//	page 0   cold walk: 4 reads; L2 gets page 0's coalesced entry and the
//	         pointer to the PTE table of [0,2M)
//	page 4   another coalescing group: L1, L2 miss; pointer hit: 1 read
//	TLBI VAALE1IS page 0 -> removes page 0's L2 entry (1), keeps the pointer
//	page 0   L1 (invalidated) and L2 miss; pointer hit: 1 read
//
// 3 accesses, 3 walks, 4+1+1 reads.
func TestInvalidateKeepsL2WalkEntries(t *testing.T) {
	n1, _ := LookupModel("n1")
	tb := New(n1, tables(t, 4*mib, ptes))
	tb.Access(linBase, Data)
	tb.Access(linBase+4*4*kib, Data)
	if n := tb.Invalidate(linBase, linBase+4*kib, true); n != 1 {
		t.Errorf("last-level TLBI removed %d L2 leaf entries, want 1", n)
	}
	tb.Access(linBase, Data)
	want(t, "n1", tb.C[Data], 3, 3, 3, 6)
}
