package pgtable

import (
	"errors"
	"testing"

	"github.com/ptlab/ptlab/arm64"
)

// TestMapBlockOverCachedPageTable maps a PMD block where a PTE table is in
// the way, with that PTE table in the walk cache but not the PMD table
// above it (a later walk elsewhere replaced it). The kernel's init_pmd
// (arch/arm64/mm/mmu.c) would put a block over the table and stop at the
// BUG_ON (pgattr_change_is_safe); the model refuses with ErrUnsafe and
// changes nothing, whatever the door. Through the walk cache Map once started in
// the cached PTE table and wrote contiguous PTEs there.
func TestMapBlockOverCachedPageTable(t *testing.T) {
	const va, vb = 0xffff800080000000, 0xffff8000c0000000 // two PUD entries
	var want string
	for _, d := range []Door{Atomic{}, Direct{WalkCache: true}} {
		tb := newTables(t, arm64.Geometry4K48, 64<<20)
		for _, v := range []uint64{va, vb} {
			if err := tb.Map(Direct{}, v, 0x100000000, 4096, arm64.PageKernel, NoBlockMappings|NoContMappings); err != nil {
				t.Fatal(err)
			}
		}
		cd := Direct{WalkCache: true}
		tb.Translate(cd, va)       // caches va's PMD and PTE tables
		tb.Translate(cd, vb+2<<20) // vb's PMD table (the entry there is empty)
		_, before, _ := tb.Translate(Atomic{}, va)
		err := tb.Map(d, va, 0x100000000, 2<<20, arm64.PageKernel, 0)
		if !errors.Is(err, ErrUnsafe) {
			t.Fatalf("%T: block over a PTE table: %v, want ErrUnsafe", d, err)
		}
		if want == "" {
			want = err.Error()
		} else if err.Error() != want {
			t.Errorf("%T: %v; Atomic{}: %s", d, err, want)
		}
		if _, after, _ := tb.Translate(Atomic{}, va); after != before {
			t.Errorf("%T: the refused Map changed %+v to %+v", d, before, after)
		}
	}
}
