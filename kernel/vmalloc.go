package kernel

import (
	"fmt"
	"io"
	"math/bits"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
)

// VMFlags are vm_struct flags (include/linux/vmalloc.h values).
type VMFlags uint32

const (
	VMIoremap         VMFlags = 0x1
	VMAlloc           VMFlags = 0x2
	VMMap             VMFlags = 0x4
	VMNoGuard         VMFlags = 0x40
	VMFlushResetPerms VMFlags = 0x100
	VMAllowHugeVmap   VMFlags = 0x400
)

// VMArea is a vm_struct: one vmalloc area.
type VMArea struct {
	Addr      uint64 // start VA
	Size      uint64 // VA span, including the guard page unless VMNoGuard
	Flags     VMFlags
	PageOrder int      // order of the physically contiguous chunks backing it
	NrPages   int      // small pages
	Blocks    []uint64 // PA of each 1<<PageOrder chunk (area->pages, grouped)
	Prot      uint64
	Owner     physmem.Owner
	Caller    string

	pageShift uint
	// noAliasUpdates: set_memory_ro/rw leave this area's linear alias alone
	// (the no-alias-split policy, for ROX cache chunks).
	noAliasUpdates bool
}

// PagePA is page_to_phys(area->pages[i]).
func (a *VMArea) PagePA(i int) uint64 {
	return a.Blocks[i>>a.PageOrder] + uint64(i&(1<<a.PageOrder-1))<<a.pageShift
}

// MappedSize is get_vm_area_size: the size without the guard page.
func (a *VMArea) MappedSize() uint64 {
	if a.Flags&VMNoGuard != 0 {
		return a.Size
	}
	return a.Size - 1<<a.pageShift
}

// End is the first VA after the mapped part.
func (a *VMArea) End() uint64 { return a.Addr + a.MappedSize() }

type vaSpan struct{ start, end uint64 }

// Vmalloc is the vmalloc address space: busy areas, free VA, and areas freed
// lazily whose VA and TLB entries are reclaimed together later
// (free_vmap_area_noflush / __purge_vmap_area_lazy).
type Vmalloc struct {
	free *vmapTree // free_vmap_area_root
	busy *vmapTree // vmap_area_root
	// areasCache is Areas' address-ordered copy of busy, valid unless
	// areasDirty.
	areasCache []*VMArea
	areasDirty bool
	lazy       []vaSpan
	lazyPages  uint64
	lazyMax    uint64
	// TracedPurges: lazily freed VA is released only by PurgeTraced, at the
	// purges a recording shows (vmalloc_traced.go); the model's own purge
	// points still flush but keep the areas queued.
	TracedPurges bool

	Allocs, Frees, HugeFallbacks, Purges uint64
}

func newVmalloc(k *Kernel, reserved []vaSpan) *Vmalloc {
	// The vmap allocator's free space spans the modules region and the
	// vmalloc range (vmap_init_free_space starts from the whole address
	// space); callers pick their window.
	v := &Vmalloc{free: newVmapTree(k.Layout.ModulesVaddr, k.Layout.VmallocEnd), busy: newVmapTree(0, 0)}
	for _, r := range reserved {
		v.carve(r.start, r.end)
	}
	// lazy_max_pages: fls(num_online_cpus()) * (32 MiB / PAGE_SIZE).
	v.lazyMax = uint64(bits.Len(uint(len(k.MIDRs)))) * (32 << 20 >> k.G.PageShift)
	return v
}

// carve removes [s, e) from the free space.
func (v *Vmalloc) carve(s, e uint64) { v.free.carve(s, e) }

// release returns [s, e) to the free space, merging neighbours.
func (v *Vmalloc) release(s, e uint64) { v.free.release(s, e) }

// allocVA is alloc_vmap_area's lowest-address fit of size bytes aligned to
// align inside [vstart, vend).
func (v *Vmalloc) allocVA(size, align, vstart, vend uint64) (uint64, bool) {
	return v.free.alloc(size, align, vstart, vend)
}

// FindVMArea is find_vm_area: the area whose VA span holds addr.
func (k *Kernel) FindVMArea(addr uint64) *VMArea {
	k.shared(sharedVmap)
	k.bookMu.Lock()
	defer k.bookMu.Unlock()
	return k.findVMAreaLocked(addr)
}

func (k *Kernel) findVMAreaLocked(addr uint64) *VMArea { return k.VM.busy.areaAt(addr) }

// Areas returns the busy areas in address order (not safe against
// concurrent vmalloc/vfree; for reports and checks). The slice is rebuilt
// only after the areas changed, and a returned slice is never modified.
func (v *Vmalloc) Areas() []*VMArea {
	if v.areasDirty {
		v.areasCache = make([]*VMArea, 0, v.busy.spans)
		v.busy.eachArea(func(a *VMArea) { v.areasCache = append(v.areasCache, a) })
		v.areasDirty = false
	}
	return v.areasCache
}

func (v *Vmalloc) insert(a *VMArea) {
	v.busy.addArea(a)
	v.areasDirty = true
}

func (v *Vmalloc) remove(a *VMArea) {
	if v.busy.areaAt(a.Addr) == a {
		v.busy.removeArea(a.Addr)
		v.areasDirty = true
	}
}

// VmallocRequest is the argument list of __vmalloc_node_range.
type VmallocRequest struct {
	Size, Align uint64
	Start, End  uint64 // VA window; zero means [VMALLOC_START, VMALLOC_END)
	Prot        uint64 // zero means PAGE_KERNEL
	Flags       VMFlags
	Owner       physmem.Owner // whose pages these are; zero means OwnerVmalloc
	Caller      string
}

// VmallocNodeRange is __vmalloc_node_range: reserve VA (with a guard page),
// allocate pages and map them. With VM_ALLOW_HUGE_VMAP the area is backed by
// PMD-sized pages when the size allows (else CONT_PTE-sized ones) and mapped
// with blocks or contiguous PTEs; if physmem cannot supply such pages it
// falls back to small pages and the caller's alignment.
func (k *Kernel) VmallocNodeRange(c CPU, r VmallocRequest) (*VMArea, error) {
	ps := k.G.PageSize()
	if r.Size == 0 || r.Size > k.Mem.TotalPages()*ps {
		return nil, fmt.Errorf("vmalloc of %#x bytes: %w", r.Size, ErrInvalid)
	}
	if r.Start == 0 && r.End == 0 {
		r.Start, r.End = k.Layout.VmallocStart, k.Layout.VmallocEnd
	}
	if r.Prot == 0 {
		r.Prot = k.Feat.Prot(arm64.PageKernel)
	}
	if r.Owner == physmem.OwnerFree {
		r.Owner = physmem.OwnerVmalloc
	}
	if r.Align == 0 {
		r.Align = ps
	}
	shift := k.G.PageShift
	if r.Flags&VMAllowHugeVmap != 0 {
		if r.Size >= k.G.Size(arm64.LevelPMD) {
			shift = k.G.Shift(arm64.LevelPMD) // PMD_SHIFT (arch_vmap_pmd_supported)
		} else if r.Size >= k.G.ContSize(arm64.LastLevel) {
			shift = k.G.PageShift + uint(bits.TrailingZeros(uint(k.G.ContEntries(arm64.LastLevel)))) // CONT_PTE_SHIFT
		}
	}
	for {
		a, err := k.vmallocArea(c, r, shift)
		if err == nil || shift == k.G.PageShift {
			return a, err
		}
		k.VM.HugeFallbacks++
		shift = k.G.PageShift // fallback: small pages, caller's alignment
	}
}

func (k *Kernel) vmallocArea(c CPU, r VmallocRequest, shift uint) (*VMArea, error) {
	ps := k.G.PageSize()
	chunk := uint64(1) << shift
	size := (r.Size + chunk - 1) &^ (chunk - 1)
	align := max(r.Align, chunk)
	span := size
	if r.Flags&VMNoGuard == 0 {
		span += ps
	}
	k.shared(sharedVmap)
	k.bookMu.Lock()
	addr, ok := k.VM.allocVA(span, align, r.Start, r.End)
	k.bookMu.Unlock()
	if !ok {
		k.purgeVmapAreaLazy(c)
		k.shared(sharedVmap)
		k.bookMu.Lock()
		addr, ok = k.VM.allocVA(span, align, r.Start, r.End)
		k.bookMu.Unlock()
		if !ok {
			return nil, fmt.Errorf("vmalloc: allocation of %#x bytes in [%#x, %#x): %w", size, r.Start, r.End, ErrNoMem)
		}
	}
	order := int(shift - k.G.PageShift)
	a := &VMArea{Addr: addr, Size: span, Flags: r.Flags | VMAlloc, PageOrder: order, NrPages: int(size / ps),
		Prot: r.Prot, Owner: r.Owner, Caller: r.Caller, pageShift: k.G.PageShift}
	for n := a.NrPages >> order; len(a.Blocks) < n; {
		k.shared(SharedPages)
		pa, err := k.Mem.Alloc(order, r.Owner)
		if err != nil {
			k.freeAreaPages(a)
			k.releaseVA(addr, addr+span)
			return nil, fmt.Errorf("vmalloc: %d pages of order %d: %w", n, order, ErrNoMem)
		}
		a.Blocks = append(a.Blocks, pa)
	}
	if err := k.vmapPagesRange(c, a, shift); err != nil {
		k.freeAreaPages(a)
		k.releaseVA(addr, addr+span)
		return nil, err
	}
	k.shared(sharedVmap)
	k.bookMu.Lock()
	k.VM.insert(a)
	k.VM.Allocs++
	k.bookMu.Unlock()
	return a, nil
}

func (k *Kernel) releaseVA(s, e uint64) {
	k.shared(sharedVmap)
	k.bookMu.Lock()
	k.VM.release(s, e)
	k.bookMu.Unlock()
}

func (k *Kernel) freeAreaPages(a *VMArea) {
	for _, pa := range a.Blocks {
		k.shared(SharedPages)
		k.modelError("vfree: free of an area's page", k.Mem.Free(pa, a.PageOrder))
	}
	a.Blocks = nil
}

// vmapPagesRange is __vmap_pages_range: small pages one PTE each; chunks of
// 1<<shift as contiguous PTEs (arch_vmap_pte_range_map_size) or PMD blocks
// (vmap_try_huge_pmd, which first frees a PTE table left in the slot by an
// earlier mapping: pmd_free_pte_page).
func (k *Kernel) vmapPagesRange(c CPU, a *VMArea, shift uint) error {
	ps := k.G.PageSize()
	chunk := uint64(1) << shift
	pmd := k.G.Size(arm64.LevelPMD)
	for i, pa := range a.Blocks {
		va := a.Addr + uint64(i)*chunk
		var err error
		switch {
		case shift == k.G.PageShift:
			err = k.PT.Map(c, va, pa, ps, a.Prot, pgtable.NoBlockMappings|pgtable.NoContMappings)
		case chunk == pmd:
			if err = k.pmdFreePTEPage(c, va); err == nil {
				err = k.PT.Map(c, va, pa, pmd, a.Prot, pgtable.NoContMappings)
			}
		default:
			err = k.PT.Map(c, va, pa, chunk, a.Prot, pgtable.NoBlockMappings)
		}
		if err != nil {
			return fmt.Errorf("vmap %#x: %w", va, err)
		}
	}
	return nil
}

// pmdFreePTEPage is pmd_free_pte_page: unhook the PTE table under a PMD slot
// about to become a block, invalidate walk caches for it, wait for a running
// ptdump walk (init_mm's mmap lock taken and released for reading when the
// arm64_ptdump_lock_key static key is on), and free it.
func (k *Kernel) pmdFreePTEPage(c CPU, va uint64) error {
	tpa, ok, err := k.PT.UnhookTable(c, va, arm64.LevelPMD)
	if err != nil || !ok {
		return err
	}
	return k.freeFoldedTable(c, va, tpa)
}

// Vmalloc is vmalloc(size): PAGE_KERNEL small pages.
func (k *Kernel) Vmalloc(c CPU, size uint64) (*VMArea, error) {
	return k.VmallocNodeRange(c, VmallocRequest{Size: size, Caller: "vmalloc"})
}

// VmallocHuge is vmalloc_huge(size): huge mappings allowed.
func (k *Kernel) VmallocHuge(c CPU, size uint64) (*VMArea, error) {
	return k.VmallocNodeRange(c, VmallocRequest{Size: size, Flags: VMAllowHugeVmap, Caller: "vmalloc_huge"})
}

// Vfree is vfree: remove the area, unmap it (TLB invalidation deferred to the
// lazy purge), reset the linear alias if VM_FLUSH_RESET_PERMS (vm_reset_perms,
// which flushes), and free the pages.
func (k *Kernel) Vfree(c CPU, addr uint64) error {
	k.shared(sharedVmap)
	k.bookMu.Lock()
	a := k.findVMAreaLocked(addr)
	if a == nil || a.Addr != addr {
		k.bookMu.Unlock()
		return fmt.Errorf("vfree(%#x): not a vmalloc area: %w", addr, ErrInvalid)
	}
	k.VM.remove(a)
	k.VM.Frees++
	k.bookMu.Unlock()
	if err := k.PT.Unmap(c, a.Addr, a.End()); err != nil {
		return fmt.Errorf("vfree(%#x): %w", addr, err)
	}
	k.freeVmapAreaNoflush(c, vaSpan{a.Addr, a.Addr + a.Size})
	if a.Flags&VMFlushResetPerms != 0 {
		if err := k.vmResetPerms(c, a); err != nil {
			return err
		}
	}
	k.freeAreaPages(a)
	return nil
}

// freeVmapAreaNoflush queues a freed VA range for the lazy purge, which runs
// once more than lazy_max_pages are waiting.
func (k *Kernel) freeVmapAreaNoflush(c CPU, s vaSpan) {
	k.shared(sharedVmap)
	k.bookMu.Lock()
	k.VM.lazy = append(k.VM.lazy, s)
	k.VM.lazyPages += (s.end - s.start) >> k.G.PageShift
	purge := k.VM.lazyPages > k.VM.lazyMax && !k.VM.TracedPurges
	k.bookMu.Unlock()
	if purge {
		k.purgeVmapAreaLazy(c)
	}
}

// purgeVmapAreaLazy is __purge_vmap_area_lazy: one flush over the span of all
// lazily freed areas, then their VA becomes free.
func (k *Kernel) purgeVmapAreaLazy(c CPU) { k.vmUnmapAliases(c, ^uint64(0), 0, false) }

// vmUnmapAliases is _vm_unmap_aliases: purge the lazy areas and flush
// [min(start, theirs), max(end, theirs)) if there was anything to purge or
// the caller asked to flush.
func (k *Kernel) vmUnmapAliases(c CPU, start, end uint64, flush bool) {
	// vmap_purge_lock serialises purges: a second purger waits until the
	// first has flushed and released its areas, then finds them free.
	c.Lock(k.PurgeLock)
	defer c.Unlock(k.PurgeLock)
	k.shared(sharedVmap)
	k.bookMu.Lock()
	var lazy []vaSpan
	if !k.VM.TracedPurges {
		lazy = k.VM.lazy
		k.VM.lazy, k.VM.lazyPages = nil, 0
	}
	k.bookMu.Unlock()
	for _, s := range lazy {
		start = min(start, s.start)
		end = max(end, s.end)
	}
	if (len(lazy) > 0 && !k.Mutations.PurgeWithoutFlush) || flush {
		k.FlushTLBKernelRange(c, start, end)
	}
	// The VA becomes reusable only after the flush.
	k.shared(sharedVmap)
	k.bookMu.Lock()
	for _, s := range lazy {
		k.VM.release(s.start, s.end)
	}
	if len(lazy) > 0 {
		k.VM.Purges++
	}
	k.bookMu.Unlock()
}

// VmUnmapAliases is vm_unmap_aliases.
func (k *Kernel) VmUnmapAliases(c CPU) { k.vmUnmapAliases(c, ^uint64(0), 0, false) }

// vmResetPerms is vm_reset_perms: the direct-map span of the area's pages
// (stepping by page_order) is made invalid page by page, flushed together
// with any lazily freed areas, then reset to the default (valid, writable).
func (k *Kernel) vmResetPerms(c CPU, a *VMArea) error {
	start, end := ^uint64(0), uint64(0)
	ps := k.G.PageSize()
	for _, pa := range a.Blocks {
		lin := k.Lin(pa)
		start = min(start, lin)
		end = max(end, lin+ps<<a.PageOrder)
	}
	for i := 0; i < a.NrPages; i++ {
		if err := k.SetDirectMapInvalidNoflush(c, a.PagePA(i)); err != nil {
			return err
		}
	}
	k.vmUnmapAliases(c, start, end, len(a.Blocks) > 0)
	for i := 0; i < a.NrPages; i++ {
		if err := k.SetDirectMapDefaultNoflush(c, a.PagePA(i)); err != nil {
			return err
		}
	}
	return nil
}

// VmallocInfo writes /proc/vmallocinfo-style lines for the busy areas.
func (k *Kernel) VmallocInfo(w io.Writer) error {
	for _, a := range k.VM.Areas() {
		kind := "vmalloc"
		if a.Flags&VMAllowHugeVmap != 0 && a.PageOrder > 0 {
			kind = "vmalloc huge"
		}
		if _, err := fmt.Fprintf(w, "0x%016x-0x%016x %8d %s pages=%d %s order=%d\n",
			a.Addr, a.Addr+a.Size, a.Size, a.Caller, a.NrPages, kind, a.PageOrder); err != nil {
			return err
		}
	}
	return nil
}
