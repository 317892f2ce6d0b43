package physmem

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// incrMemory draws a memory for the incremental-check tests: any granule,
// any largest order (small ones make frames larger than a MaxOrder block),
// RAM in two regions that start and end inside sections and frames.
func incrMemory(t *rapid.T) *Memory {
	shift := rapid.SampledFrom([]uint{12, 14, 16}).Draw(t, "shift")
	maxOrder := rapid.IntRange(0, MaxOrderFor(shift)).Draw(t, "maxOrder")
	ps := uint64(1) << shift
	sec := uint64(1) << sectionSizeBits(shift)
	base := 8 * sec
	gap := uint64(rapid.IntRange(0, 300).Draw(t, "gap")) * ps
	regions := []Region{
		{base + uint64(rapid.IntRange(0, 300).Draw(t, "lead"))*ps, sec / 2},
		{base + sec + gap, sec + uint64(rapid.IntRange(1, 300).Draw(t, "tail"))*ps},
	}
	m, err := NewMaxOrder(shift, regions, maxOrder)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sameCheck fails unless the incremental Check and the full walk agree.
func sameCheck(t *rapid.T, m *Memory, when string) error {
	got, want := m.Check(), m.checkFull()
	if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
		t.Fatalf("%s: Check says %v, the full walk %v", when, got, want)
	}
	return got
}

// Whatever the history, with Checks anywhere in it and snapshots restored
// between them, the incremental Check finds what a walk of every touched
// page finds (nothing: the allocator keeps itself consistent).
func TestCheckIncrementalEqualsFull(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := incrMemory(t)
		var held, reserved [][2]uint64
		var snap *Snapshot
		var snapHeld, snapReserved [][2]uint64
		for round := range rapid.IntRange(1, 8).Draw(t, "rounds") {
			apply(m, opsGen().Draw(t, "ops"), &held, &reserved)
			switch rapid.IntRange(0, 2).Draw(t, "then") {
			case 1:
				snap = m.Snapshot()
				snapHeld, snapReserved = append([][2]uint64(nil), held...), append([][2]uint64(nil), reserved...)
			case 2:
				if snap != nil {
					if err := m.Restore(snap); err != nil {
						t.Fatal(err)
					}
					held, reserved = append([][2]uint64(nil), snapHeld...), append([][2]uint64(nil), snapReserved...)
				}
			}
			if err := sameCheck(t, m, fmt.Sprintf("round %d", round)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// A page corrupted after a Check (through save, as every change is made) is
// found by the next Check exactly as the full walk finds it, and again by
// the Check after that (a failing frame stays marked); a Restore undoing the
// corruption makes Check pass again.
func TestCheckIncrementalFindsCorruption(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := incrMemory(t)
		var held, reserved [][2]uint64
		apply(m, opsGen().Draw(t, "before"), &held, &reserved)
		if err := sameCheck(t, m, "before"); err != nil {
			t.Fatal(err)
		}
		snap := m.Snapshot()
		apply(m, opsGen().Draw(t, "after"), &held, &reserved)
		m.mu.Lock()
		if len(m.touched) == 0 {
			m.mu.Unlock()
			return
		}
		s := m.sectionByNumber(m.touched[rapid.IntRange(0, len(m.touched)-1).Draw(t, "section")])
		pfn := s.base + uint64(rapid.IntRange(0, len(s.pages)-1).Draw(t, "page"))
		pm := m.saved(pfn)
		switch rapid.IntRange(0, 3).Draw(t, "how") {
		case 0:
			pm.flags ^= 1 << rapid.IntRange(0, 5).Draw(t, "bit")
		case 1:
			pm.order ^= 1 << rapid.IntRange(0, 3).Draw(t, "obit")
		case 2:
			pm.owner = Owner(rapid.IntRange(0, int(NumOwners)).Draw(t, "owner"))
		case 3:
			if s.private == nil {
				m.allocPrivate(s)
			}
			m.savePrivate(s, pfn-s.base, 1)
			s.private[pfn-s.base] ^= 1
		}
		m.mu.Unlock()
		first := sameCheck(t, m, "corrupted")
		if again := sameCheck(t, m, "corrupted, again"); (first == nil) != (again == nil) {
			t.Fatalf("Check said %v, then %v", first, again)
		}
		if err := m.Restore(snap); err != nil {
			t.Fatal(err)
		}
		if err := sameCheck(t, m, "restored"); err != nil {
			t.Fatal(err)
		}
	})
}

// Corruptions Check must report after a warm Check, one per kind of page
// fault: an owner on a free block, a lost head, a private value on a free
// block.
func TestCheckFindsCorruptionAfterCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(m *Memory, pfn uint64)
	}{
		{"owner on a free block", func(m *Memory, pfn uint64) { m.saved(pfn).owner = OwnerVmalloc }},
		{"head flag lost", func(m *Memory, pfn uint64) { m.saved(pfn).flags &^= pgHead }},
		{"order grown", func(m *Memory, pfn uint64) { m.saved(pfn).order++ }},
		{"private value on a free block", func(m *Memory, pfn uint64) {
			s := m.sectionOf(pfn)
			m.allocPrivate(s)
			m.savePrivate(s, pfn-s.base, 1)
			s.private[pfn-s.base] = 7
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(12, []Region{{0x40000000, 256 << 20}})
			if err != nil {
				t.Fatal(err)
			}
			pa, err := m.Alloc(0, OwnerPageTable)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Check(); err != nil {
				t.Fatal(err)
			}
			// The buddy of the allocated page is a free order-0 block
			// (expand put it at the head of its list).
			free := pa>>12 ^ 1
			m.mu.Lock()
			tc.corrupt(m, free)
			m.mu.Unlock()
			if err := m.Check(); err == nil {
				t.Fatalf("Check passes a memory the full walk fails: %v", m.checkFull())
			}
		})
	}
}

// Owners answers what Owner answers, page by page, for any addresses in any
// order (inside blocks, across them, in holes and outside RAM).
func TestOwnersEqualsOwner(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := incrMemory(t)
		var held, reserved [][2]uint64
		apply(m, opsGen().Draw(t, "ops"), &held, &reserved)
		ps := m.PageSize()
		lo := m.Regions()[0].Base - 4*ps
		span := m.Regions()[1].End() + 4*ps - lo
		pas := rapid.SliceOf(rapid.Uint64Range(0, span/ps-1)).Draw(t, "pages")
		for i := range pas {
			pas[i] = lo + pas[i]*ps + uint64(i)%ps // any byte of the page
		}
		if len(held) > 0 {
			// Runs through allocated blocks, page by page.
			b := held[rapid.IntRange(0, len(held)-1).Draw(t, "block")]
			for p := b[0]; p < b[0]+ps<<b[1]+ps; p += ps {
				pas = append(pas, p)
			}
		}
		got := make([]Owner, len(pas))
		m.Owners(pas, got)
		for i, pa := range pas {
			if want := m.Owner(pa); got[i] != want {
				t.Fatalf("Owners: page %#x (item %d) is %v, Owner says %v", pa, i, got[i], want)
			}
		}
	})
}
