package pgtable

import (
	"testing"

	"github.com/ptlab/ptlab/arm64"
)

// Allocating table pages copies the chunk directory a logarithmic number
// of times, not once per chunk: it grows by doubling. (A copy per new chunk
// made booting a PTE-mapped 4 TiB machine quadratic in its table pages.)
func TestAllocTableDirectoryAmortised(t *testing.T) {
	const chunks = 512
	g := arm64.Geometry4K48
	tb := newTables(t, g, (chunks+1)*tablesPerChunk*g.PageSize()*2)
	copies, backing := 0, (**chunk)(nil)
	for range chunks*tablesPerChunk - 1 { // the root holds the first slot
		if _, _, err := tb.allocTable(Direct{}, arm64.LastLevel); err != nil {
			t.Fatal(err)
		}
		if dir := *tb.dir.Load(); &dir[0] != backing {
			copies++
			backing = &dir[0]
		}
	}
	if n := len(*tb.dir.Load()); n != chunks {
		t.Fatalf("%d chunks, want %d", n, chunks)
	}
	if copies > 10 {
		t.Errorf("the directory was given %d backing arrays for %d chunks, want at most 10 (doubling)", copies, chunks)
	}
}

// A slot handed out again after a Restore that rewound the slot count
// (not through the free list) holds the descriptors written before the
// Restore: it must be cleared like a freed slot, although it lies at or
// above the restored count.
func TestAllocTableClearsRestoredSlot(t *testing.T) {
	g := arm64.Geometry4K48
	tb := newTables(t, g, 64<<20)
	snap := tb.Snapshot()
	_, tbl, err := tb.allocTable(Direct{}, arm64.LastLevel)
	if err != nil {
		t.Fatal(err)
	}
	for i := range tbl {
		tbl[i] = uint64(i)<<12 | 3
	}
	if err := tb.Restore(snap); err != nil {
		t.Fatal(err)
	}
	_, tbl, err = tb.allocTable(Direct{}, arm64.LastLevel)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range tbl {
		if d != 0 {
			t.Fatalf("new table page entry %d = %#x, want 0", i, d)
		}
	}
}
