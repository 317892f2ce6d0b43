package explore

import "github.com/ptlab/ptlab/cpu"

// touch makes CPU c access va to warm its TLB and walk cache. Its outcome —
// a translation, or a fault — is an event in the CPU's log, where the
// invariant monitor judges it; the scenario itself has no use for it.
func touch(c *cpu.CPU, kind cpu.AccessKind, va uint64) {
	if _, err := c.Access(kind, va); err != nil {
		return // recorded in c's event log
	}
}
