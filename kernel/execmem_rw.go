package kernel

// ExecmemForceRW is execmem_force_rw (mm/execmem.c): make an execmem
// allocation writable and non-executable again (set_memory_nx, then
// set_memory_rw) — what a module loader or JIT does before rewriting text it
// already sealed. Under the general collapse policy it runs under the
// owner-level exclusion, as ExecmemAllocRW's call does.
func (k *Kernel) ExecmemForceRW(c CPU, p, size uint64) error {
	unlock := k.execmemExclude(c, p)
	defer unlock()
	return k.execmemForceRW(c, p, size)
}
