package cpu

// MachineState is what a machine's CPUs carry from one run to the next:
// TLBs and walk caches, walker positions, lock overrides, counters. A
// checker that builds a scenario once saves it after the build and restores
// it before every run, with the kernel's snapshot. Model-only.
type MachineState struct {
	cpus      []cpuState
	performed uint64
	stepped   uint64
}

type cpuState struct {
	tlb         tlbState
	path        Path
	ignoreLocks bool
	othersRan   bool
	counts      [NumEventKinds]uint64
}

// tlbState is a TLB without its mutex.
type tlbState struct {
	leaves                                   [LeafCap]Entry
	nLeaf                                    int
	walks                                    [WalkCap]WalkEntry
	nWalk                                    int
	fills, walkFills, evictions, invalidated uint64
}

// SaveState records the state of m's CPUs. No CPU may be running.
func (m *Machine) SaveState() *MachineState {
	s := &MachineState{cpus: make([]cpuState, len(m.CPUs)), performed: m.performed.Load(), stepped: m.stepped}
	for i, c := range m.CPUs {
		t := &c.TLB
		t.mu.Lock()
		s.cpus[i] = cpuState{
			tlb: tlbState{leaves: t.leaves, nLeaf: t.nLeaf, walks: t.walks, nWalk: t.nWalk,
				fills: t.Fills, walkFills: t.WalkFills, evictions: t.Evictions, invalidated: t.Invalidated},
			path: c.Path, ignoreLocks: c.IgnoreLocks, othersRan: c.othersRan, counts: c.Counts,
		}
		t.mu.Unlock()
	}
	return s
}

// RestoreState returns m's CPUs to s, saved from m. No CPU may be running;
// hooks are left as they are.
func (m *Machine) RestoreState(s *MachineState) {
	m.performed.Store(s.performed)
	m.stepped = s.stepped
	for i, c := range m.CPUs {
		cs := &s.cpus[i]
		t := &c.TLB
		t.mu.Lock()
		t.leaves, t.nLeaf, t.walks, t.nWalk = cs.tlb.leaves, cs.tlb.nLeaf, cs.tlb.walks, cs.tlb.nWalk
		t.Fills, t.WalkFills, t.Evictions, t.Invalidated = cs.tlb.fills, cs.tlb.walkFills, cs.tlb.evictions, cs.tlb.invalidated
		t.mu.Unlock()
		c.Path, c.IgnoreLocks, c.othersRan, c.Counts = cs.path, cs.ignoreLocks, cs.othersRan, cs.counts
		c.walking.Store(false)
	}
}
