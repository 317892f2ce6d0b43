package kernel

// Bookkeeping the CPUs share outside the door calls: the page allocator,
// the vmalloc and
// percpu areas and lazy lists (bookMu), execmem's object numbers and
// allocations (objMu), and the arm64_ptdump_lock_key static key. In the
// kernel these are under spinlocks or are static-key reads; the model
// keeps them under Go mutexes, invisible to a scheduler, which is right
// for the interleavings (nothing else runs inside them) but hides from a
// checker that two CPUs' steps depend on each other through them.
const (
	// SharedPages is the page allocator, for the pages behind vmalloc
	// areas and boot mappings (table pages come and go through the door
	// calls' alloc and free).
	SharedPages     = "page allocator"
	sharedVmap      = "vmap bookkeeping"
	sharedExecmem   = "execmem objects"
	sharedPtdumpKey = "arm64_ptdump_lock_key"
)

// SetSharedHook makes the kernel tell f, by name, of every access a CPU
// makes to that bookkeeping, just before it makes it, on the CPU making
// it (the explorer's state caching orders such accesses: hb.go); nil
// stops it. Only for a cooperative machine, where one CPU runs at a time.
func (k *Kernel) SetSharedHook(f func(what string)) {
	k.onShared = f
	k.Exec.onShared = f
}

func (k *Kernel) shared(what string) {
	if k.onShared != nil {
		k.onShared(what)
	}
}

func (e *Execmem) shared() {
	if e.onShared != nil {
		e.onShared(sharedExecmem)
	}
}
