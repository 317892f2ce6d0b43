package cpu

import (
	"github.com/ptlab/ptlab/arm64"
)

// Path is where a CPU's current table walk stands — a software walk in kernel
// code (a lockless walker such as ptdump or a pageattr walk) or its hardware
// walker: per level, the table page it reads and the entry it followed down.
// A table page on the path is one the walker can still reach, so the checker
// can tell when a page is freed under a walker and when a store lands in a
// table no longer reachable from the root.
//
// The path moves with the CPU's descriptor accesses: reading or writing at
// level l drops everything below l; following a table descriptor adds the
// next level. Lock, rwsem and TLBI calls and operation boundaries end the
// walk (no walker holds a table pointer across them).
type Path struct {
	slot [5]PathSlot // indexed by level + 1
}

// PathSlot is the walker's position at one level.
type PathSlot struct {
	Table  uint64 // table page (0: none)
	Index  int32  // entry followed to the next level (-1: none)
	Linked bool   // reached by following the previous level's entry (or the root)
}

func pathIndex(l arm64.Level) int { return int(l) + 1 }

// Clear forgets the walk.
func (p *Path) Clear() { p.slot = [5]PathSlot{} }

// Slot returns the walker's position at level l.
func (p *Path) Slot(l arm64.Level) PathSlot {
	i := pathIndex(l)
	if i < 0 || i >= len(p.slot) {
		return PathSlot{}
	}
	return p.slot[i]
}

// Contains reports whether the walker can reach table page pa, and at which
// level.
func (p *Path) Contains(pa uint64) (arm64.Level, bool) {
	for i := range p.slot {
		if p.slot[i].Table == pa && pa != 0 {
			return arm64.Level(i - 1), true
		}
	}
	return 0, false
}

// enter positions the walker in the table holding descriptor pa (level l)
// before it reads or writes there.
func (p *Path) enter(m *Machine, pa uint64, l arm64.Level) {
	if l == LevelUnknown {
		p.Clear()
		return
	}
	t := pa &^ m.pageMask
	i := pathIndex(l)
	if t == m.root {
		p.Clear()
		p.slot[i] = PathSlot{Table: t, Index: -1, Linked: true}
		return
	}
	if p.slot[i].Table != t {
		p.slot[i] = PathSlot{Table: t, Index: -1}
	}
	for j := i + 1; j < len(p.slot); j++ {
		p.slot[j] = PathSlot{}
	}
}

// follow records the descriptor value v read or written at pa: a table
// descriptor leads the walker one level down.
func (p *Path) follow(m *Machine, pa uint64, l arm64.Level, v uint64) {
	if l == LevelUnknown {
		return
	}
	i := pathIndex(l)
	if l < arm64.LastLevel && m.g.IsTable(v, l) {
		p.slot[i].Index = int32((pa & m.pageMask) / 8)
		p.slot[i+1] = PathSlot{Table: m.g.OutputAddress(v), Index: -1, Linked: true}
		return
	}
	p.slot[i].Index = -1
}

// Chain reports whether the walker reached the table at level l through
// recorded links from the root, returning the levels' tables and followed
// entries so a checker can re-read them.
func (p *Path) Chain(start, l arm64.Level) bool {
	for lv := start; lv <= l; lv++ {
		s := p.Slot(lv)
		if s.Table == 0 || !s.Linked || (lv < l && s.Index < 0) {
			return false
		}
	}
	return true
}

// VA is the virtual address of entry idx of the level-l table the walker is
// in, when its path from the root is known (TTBR1: the upper bits are ones).
func (p *Path) VA(g *arm64.Geometry, l arm64.Level, idx int) (uint64, bool) {
	if !p.Chain(g.StartLevel, l) {
		return 0, false
	}
	va := ^uint64(0) << uint(g.VABits)
	for lv := g.StartLevel; lv < l; lv++ {
		va |= uint64(p.Slot(lv).Index) << g.Shift(lv)
	}
	return va | uint64(idx)<<g.Shift(l), true
}
