package workload

import (
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
	"github.com/ptlab/ptlab/tlb"
)

// addSpan merges a TLBI into the previous span only where the union is the
// same: a warm TLB invalidated by the merged spans ends where one
// invalidated by every span one by one does, and reports the same refills.
// The spans run page by page (as pageattr flushes a range), overlap, leave
// gaps, jump elsewhere, and some reach the top of the address space.
func TestAddSpanSameUnion(t *testing.T) {
	const lin uint64 = 0xffff000000000000
	mem, err := physmem.New(12, []physmem.Region{{Base: 0x40000000, Size: 64 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	pt, err := pgtable.New(arm64.Geometry4K48, mem)
	if err != nil {
		t.Fatal(err)
	}
	if err := pt.Map(pgtable.Direct{}, lin, 1<<36, 32<<20, arm64.Tagged(arm64.PageKernel), pgtable.NoBlockMappings|pgtable.NoContMappings); err != nil {
		t.Fatal(err)
	}
	m, _ := tlb.LookupModel("ampereone")
	x := uint64(5)
	next := func() uint64 { x = x*6364136223846793005 + 1442695040888963407; return x >> 11 }
	merged := 0
	for round := 0; round < 30; round++ {
		a, b := tlb.New(m, pt), tlb.New(m, pt)
		for i := 0; i < 4000; i++ {
			va := lin + next()%(4<<20)
			a.Access(va, tlb.Kind(i%2))
			b.Access(va, tlb.Kind(i%2))
		}
		var rawLast, rawAll, last, all []tlb.Span
		va := lin + next()%(4<<20)&^4095
		for i := 0; i < 60; i++ {
			switch next() % 8 {
			case 0:
				va = lin + next()%(4<<20)&^4095 // elsewhere
			case 1:
				va -= 4096 * (next() % 4) // back, overlapping
			case 2:
				va += 4096 * (1 + next()%2) // a gap of a page or two
			}
			s := tlb.Span{Start: va, End: va + 4096*(1+next()%3)}
			if next()%16 == 0 {
				s.End = 0 // to the top
			}
			va = s.End
			if next()%3 == 0 {
				rawAll, all = append(rawAll, s), addSpan(all, s)
			} else {
				rawLast, last = append(rawLast, s), addSpan(last, s)
			}
		}
		merged += len(rawLast) + len(rawAll) - len(last) - len(all)
		got := a.InvalidateBatch(last, all)
		want := b.InvalidateBatch(rawLast, rawAll)
		if got != want {
			t.Fatalf("round %d: merged spans removed %d translations, the spans one by one %d", round, got, want)
		}
		// The same state: the same accesses now miss alike.
		for i := 0; i < 2000; i++ {
			va := lin + next()%(4<<20)
			a.Access(va, tlb.Data)
			b.Access(va, tlb.Data)
		}
		if a.C != b.C {
			t.Fatalf("round %d: after the batch, counts %+v and %+v", round, a.C, b.C)
		}
	}
	if merged == 0 {
		t.Fatal("no span was merged: the test tests nothing")
	}
}
