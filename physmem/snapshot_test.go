package physmem

import (
	"testing"

	"pgregory.net/rapid"
)

// memOp is one allocator call of a random history.
type memOp struct {
	kind  int // 0 alloc, 1 free, 2 reserve, 3 unreserve, 4 set private
	order int
	pick  int
	val   uint64
}

// apply runs ops on m, choosing what to free among the blocks it holds.
func apply(m *Memory, ops []memOp, held *[][2]uint64, reserved *[][2]uint64) {
	ps := m.PageSize()
	for _, op := range ops {
		switch op.kind {
		case 0:
			if pa, err := m.Alloc(op.order, OwnerVmalloc); err == nil {
				*held = append(*held, [2]uint64{pa, uint64(op.order)})
			}
		case 1:
			if len(*held) > 0 {
				i := op.pick % len(*held)
				b := (*held)[i]
				_ = m.Free(b[0], int(b[1]))
				*held = append((*held)[:i], (*held)[i+1:]...)
			}
		case 2:
			base := m.Regions()[0].Base + uint64(op.pick%4096)*ps
			if m.Reserve(base, ps<<uint(op.order%3), OwnerReserved) == nil {
				*reserved = append(*reserved, [2]uint64{base, ps << uint(op.order%3)})
			}
		case 3:
			if len(*reserved) > 0 {
				i := op.pick % len(*reserved)
				r := (*reserved)[i]
				_ = m.Unreserve(r[0], r[1])
				*reserved = append((*reserved)[:i], (*reserved)[i+1:]...)
			}
		case 4:
			if len(*held) > 0 {
				_ = m.SetPrivate((*held)[op.pick%len(*held)][0], op.val)
			}
		}
	}
}

func opsGen() *rapid.Generator[[]memOp] {
	return rapid.SliceOfN(rapid.Custom(func(t *rapid.T) memOp {
		return memOp{kind: rapid.IntRange(0, 4).Draw(t, "kind"), order: rapid.IntRange(0, MaxOrder).Draw(t, "order"),
			pick: rapid.IntRange(0, 1<<20).Draw(t, "pick"), val: rapid.Uint64Range(0, 3).Draw(t, "val")}
	}), 0, 80)
}

// After any history, a snapshot, any further history and a restore, the
// memory equals one that saw only the first history — page metadata, free
// lists, counters and private slots — and behaves like it from then on;
// a second round from the same snapshot works too.
func TestSnapshotRestore(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		regions := []Region{{0x40000000, 64 << 20}, {0x48000000 + uint64(rapid.IntRange(0, 3).Draw(t, "gap"))<<20, 200 << 20}}
		before, after, later := opsGen().Draw(t, "before"), opsGen().Draw(t, "after"), opsGen().Draw(t, "later")
		m, _ := New(12, regions)
		ref, _ := New(12, regions)
		var h1, r1, h2, r2 [][2]uint64
		apply(m, before, &h1, &r1)
		apply(ref, before, &h2, &r2)
		snap := m.Snapshot()
		for round := 0; round < 2; round++ {
			hh, rr := append([][2]uint64(nil), h1...), append([][2]uint64(nil), r1...)
			apply(m, after, &hh, &rr)
			if err := m.Restore(snap); err != nil {
				t.Fatal(err)
			}
			if d := m.Diff(ref); d != "" {
				t.Fatalf("round %d: restored memory differs from the reference: %s", round, d)
			}
			if err := m.Check(); err != nil {
				t.Fatal(err)
			}
		}
		apply(m, later, &h1, &r1)
		apply(ref, later, &h2, &r2)
		if d := m.Diff(ref); d != "" {
			t.Fatalf("after the restore, the same calls diverge: %s", d)
		}
	})
}
