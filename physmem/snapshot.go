package physmem

import (
	"fmt"
	"slices"
)

// Snapshots. A checker that runs thousands of short schedules on one booted
// machine takes a Snapshot once and Restores it before every schedule
// instead of building the machine again. From a Snapshot on, every change
// to page metadata is journalled (the page's old metadata, or the old
// private slot); Restore undoes the journal backwards, so it costs what the
// schedule touched, never the RAM size. Model-only: the kernel has no
// counterpart.

// pageUndo is a page's metadata (page i of section s) before a change.
type pageUndo struct {
	s   *section
	i   uint64
	old pageMeta
}

// privUndo is a private slot (page i of section s) before a change.
type privUndo struct {
	s   *section
	i   uint64
	old uint64
}

// journal is the undo log since a Snapshot.
type journal struct {
	pages   []pageUndo
	private []privUndo
	// privAlloc are sections whose private slots were allocated since.
	privAlloc []*section
	// spare keeps the zeroed slots Restore took from those sections, for
	// the next allocation (a schedule's setup allocates them again).
	spare map[*section][]uint64
}

// Snapshot is the state of a Memory at one moment.
type Snapshot struct {
	m        *Memory
	area     [MaxOrderLimit + 1]freeArea
	nrFree   uint64
	owned    [NumOwners]uint64
	touched  int
	restores int
}

// Snapshot records the memory's state and starts journalling changes; it
// replaces any earlier snapshot of m. m must not be in use by another
// goroutine.
func (m *Memory) Snapshot() *Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jr = &journal{}
	return &Snapshot{m: m, area: m.area, nrFree: m.nrFree, owned: m.owned, touched: len(m.touched)}
}

// Restore returns m to snapshot s, which must be m's latest. Its cost is
// proportional to the changes since the snapshot (or the last Restore).
func (m *Memory) Restore(s *Snapshot) error {
	if s.m != m {
		return fmt.Errorf("restore: snapshot of another memory: %w", ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.jr == nil {
		return fmt.Errorf("restore: no snapshot: %w", ErrInvalid)
	}
	jr := m.jr
	// Undoing is a change too: Check verifies the frames again.
	for i := len(jr.pages) - 1; i >= 0; i-- {
		u := &jr.pages[i]
		u.s.pages[u.i] = u.old
		u.s.dirty |= 1 << (u.i >> m.frameShift)
	}
	for i := len(jr.private) - 1; i >= 0; i-- {
		u := &jr.private[i]
		u.s.private[u.i] = u.old
		u.s.dirty |= 1 << (u.i >> m.frameShift)
	}
	for _, sec := range jr.privAlloc {
		if jr.spare == nil {
			jr.spare = map[*section][]uint64{}
		}
		jr.spare[sec] = sec.private // all zero again: the journal restored every slot
		sec.private = nil
	}
	for _, sn := range m.touched[s.touched:] {
		m.root[sn>>chunkShift][sn&chunkMask] = nil
	}
	m.touched = m.touched[:s.touched]
	m.area, m.nrFree, m.owned = s.area, s.nrFree, s.owned
	jr.pages, jr.private, jr.privAlloc = jr.pages[:0], jr.private[:0], jr.privAlloc[:0]
	s.restores++
	return nil
}

// save is called before every change to the metadata of page pfn, whose
// section must exist: it journals the page for Restore and marks its frame
// for Check (check.go). Every change goes through it (or savePrivate).
func (m *Memory) save(pfn uint64) {
	m.saved(pfn)
}

// saved is save returning the page's metadata, for one-line updates.
func (m *Memory) saved(pfn uint64) *pageMeta {
	s := m.sectionOf(pfn)
	i := pfn - s.base
	s.dirty |= 1 << (i >> m.frameShift)
	pm := &s.pages[i]
	if m.jr != nil {
		m.jr.pages = append(m.jr.pages, pageUndo{s, i, *pm})
	}
	return pm
}

// savePrivate journals the private slots [i, i+n) of s before a change and
// marks their frames for Check. n is at most a block, so one frame.
func (m *Memory) savePrivate(s *section, i, n uint64) {
	s.dirty |= 1 << (i >> m.frameShift)
	if m.jr == nil {
		return
	}
	for j := i; j < i+n; j++ {
		if s.private[j] != 0 || n == 1 {
			m.jr.private = append(m.jr.private, privUndo{s, j, s.private[j]})
		}
	}
}

// allocPrivate gives s its private slots.
func (m *Memory) allocPrivate(s *section) {
	if m.jr == nil {
		s.private = make([]uint64, len(s.pages))
		return
	}
	if p := m.jr.spare[s]; p != nil {
		s.private = p
		delete(m.jr.spare, s)
	} else {
		s.private = make([]uint64, len(s.pages))
	}
	m.jr.privAlloc = append(m.jr.privAlloc, s)
}

// Diff describes how m's allocator state differs from o's (the same RAM):
// counters, free lists and the metadata of every touched page; "" when
// they are equal. Model-only, for tests of Restore.
func (m *Memory) Diff(o *Memory) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case !slices.Equal(m.regions, o.regions):
		return "regions differ"
	case m.nrFree != o.nrFree || m.owned != o.owned:
		return fmt.Sprintf("free pages %d vs %d, owned %v vs %v", m.nrFree, o.nrFree, m.owned, o.owned)
	case !slices.Equal(m.touched, o.touched):
		return fmt.Sprintf("touched sections %v vs %v", m.touched, o.touched)
	}
	for ord := range m.area {
		a, b := &m.area[ord], &o.area[ord]
		if a.head != b.head || a.tail != b.tail || a.nrBoot != b.nrBoot || a.run != b.run || a.runIdx != b.runIdx {
			return fmt.Sprintf("free_area[%d] differs: %+v vs %+v", ord, *a, *b)
		}
	}
	for _, sn := range m.touched {
		a, b := m.sectionByNumber(sn), o.sectionByNumber(sn)
		for i := range a.pages {
			if a.pages[i] != b.pages[i] {
				return fmt.Sprintf("page %#x: %+v vs %+v", (a.base+uint64(i))<<m.pageShift, a.pages[i], b.pages[i])
			}
		}
		if (a.private == nil) != (b.private == nil) || !slices.Equal(a.private, b.private) {
			return fmt.Sprintf("section %d: private slots differ", sn)
		}
	}
	return ""
}
