package kernel

// PurgeTraced is one __purge_vmap_area_lazy (mm/vmalloc.c) as a recording
// shows it (the purge_vmap_area_lazy tracepoint: start, end, num_purged):
// every lazily freed area inside [start, end) is flushed from the TLBs and
// its VA returned to the free space. The tracepoint fires after the purge
// with start and end widened to cover the areas it took, so an area queued
// outside that span was not part of it and stays queued. It returns the
// number of areas released. Only meaningful with VM.TracedPurges, where the
// model's own purge points leave the queue alone: a replay then releases VA
// exactly when the recorded kernel did, which decides where the next module
// lands (alloc_vmap_area's lowest fit).
func (k *Kernel) PurgeTraced(c CPU, start, end uint64) int {
	c.Lock(k.PurgeLock)
	defer c.Unlock(k.PurgeLock)
	k.shared(sharedVmap)
	k.bookMu.Lock()
	var take, keep []vaSpan
	for _, s := range k.VM.lazy {
		if start <= s.start && s.end <= end {
			take = append(take, s)
		} else {
			keep = append(keep, s)
		}
	}
	k.VM.lazy = keep
	k.VM.lazyPages = 0
	for _, s := range keep {
		k.VM.lazyPages += (s.end - s.start) >> k.G.PageShift
	}
	k.bookMu.Unlock()
	if len(take) == 0 {
		return 0
	}
	lo, hi := ^uint64(0), uint64(0)
	for _, s := range take {
		lo, hi = min(lo, s.start), max(hi, s.end)
	}
	if !k.Mutations.PurgeWithoutFlush {
		k.FlushTLBKernelRange(c, lo, hi)
	}
	k.shared(sharedVmap)
	k.bookMu.Lock()
	for _, s := range take {
		k.VM.release(s.start, s.end)
	}
	k.VM.Purges++
	k.bookMu.Unlock()
	return len(take)
}

// LazyAreas is the number of freed areas waiting for a purge.
func (k *Kernel) LazyAreas() int {
	k.shared(sharedVmap)
	k.bookMu.Lock()
	defer k.bookMu.Unlock()
	return len(k.VM.lazy)
}
