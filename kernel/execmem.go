package kernel

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
)

// ExecmemType is enum execmem_type.
type ExecmemType int

const (
	ExecmemModuleText ExecmemType = iota // EXECMEM_DEFAULT
	ExecmemKprobes
	ExecmemFtrace
	ExecmemBPF
	ExecmemModuleData
	NumExecmemTypes
)

var execmemTypeNames = [NumExecmemTypes]string{"module-text", "kprobes", "ftrace", "bpf", "module-data"}

func (t ExecmemType) String() string {
	if t >= 0 && t < NumExecmemTypes {
		return execmemTypeNames[t]
	}
	return fmt.Sprintf("execmem(%d)", int(t))
}

// Execmem range flags (enum execmem_range_flags).
const (
	ExecmemKasanShadow  = 1 << 0
	ExecmemROXCacheFlag = 1 << 1
)

// ExecmemRange is struct execmem_range; End is exclusive here.
type ExecmemRange struct {
	Start, End                 uint64
	FallbackStart, FallbackEnd uint64
	Prot                       uint64
	Alignment                  uint64
	Flags                      int
}

// Page contents, kept in the physmem private slot of every execmem page so
// tests can prove what an executable page holds.
const (
	ContentZero uint64 = 0 // fresh (zeroed) memory
	ContentTrap uint64 = 1 // AARCH64_BREAK_FAULT words
	// Values from contentObjectBase up name the object whose text is there.
	contentObjectBase uint64 = 2
)

// Execmem is the execmem allocator: ranges per type and, when enabled, the
// ROX cache of PMD-sized chunks (mm/execmem.c).
type Execmem struct {
	Ranges [NumExecmemTypes]ExecmemRange
	// ArchHasROX is CONFIG_ARCH_HAS_EXECMEM_ROX: execmem_force_rw is real.
	ArchHasROX bool
	onShared   func(what string) // Kernel.SetSharedHook

	Mutex  *Mutex            // execmem_cache.mutex
	free   []vaSpan          // free_areas, sorted and merged
	busy   map[uint64]uint64 // busy_areas: start -> size
	chunks map[uint64]*VMArea
	objMu  sync.Mutex      // guards live, nextObject and Allocs (a Go lock, no door)
	live   map[uint64]bool // objects whose text is live

	nextObject                         uint64
	Populates, Releases, Allocs, Frees uint64
}

// execmemArchSetup is arm64's execmem_arch_setup with module_init_limits:
// module text goes in a 128 MiB window holding the whole kernel image (for
// direct branches) with a 2 GiB window as fallback (PLTs). With KASLR and
// CONFIG_RANDOMIZE_MODULE_REGION_FULL (Debian's setting) there is no 128 MiB
// window: the 2 GiB region is placed at random around the image
// (random_bounding_box); without FULL the 128 MiB window is randomised first.
// Before v6.5 (Version.LegacyLayout) the region came from kaslr.c's
// module_alloc_base instead (moduleAllocBase61). KPROBES and BPF use the
// whole vmalloc range. With the RFC's ROX cache (patches 1 and 5),
// MODULE_TEXT, FTRACE, KPROBES and BPF are declared with EXECMEM_ROX_CACHE and
// PAGE_KERNEL_ROX, and MODULE_DATA explicitly without.
func (k *Kernel) execmemArchSetup() {
	e := &Execmem{Mutex: NewMutex("execmem_cache.mutex"), busy: map[uint64]uint64{}, chunks: map[uint64]*VMArea{},
		live: map[uint64]bool{}, nextObject: contentObjectBase, ArchHasROX: k.Cfg.Policy.ROXCache}
	kstart, kend := k.Image.VA, k.Image.VA+k.Image.End
	ksize := kend - kstart
	var direct, plt uint64
	switch {
	case k.V.LegacyLayout:
		direct = k.moduleAllocBase61()
		plt = direct
	case k.Cfg.KASLRSeed == 0:
		if ksize < 128<<20 {
			direct = kend - 128<<20
		}
		if ksize < 2<<30 {
			plt = kend - 2<<30
		}
	default:
		rng := rand.New(rand.NewPCG(k.Cfg.KASLRSeed, 0x6d6f64756c6573))
		box := func(size, start, end uint64) uint64 {
			if end-start >= size {
				return 0
			}
			maxPgoff := (size - (end - start)) / k.G.PageSize()
			return start - rng.Uint64N(maxPgoff+1)*k.G.PageSize()
		}
		lo, hi := kstart, kend
		if !k.V.ModuleRegionFull {
			if direct = box(128<<20, lo, hi); direct != 0 {
				lo, hi = direct, direct+128<<20
			}
		}
		plt = box(2<<30, lo, hi)
	}
	def := ExecmemRange{Prot: k.Feat.Prot(arm64.PageKernel), Alignment: 1}
	if direct != 0 {
		def.Start, def.End = direct, direct+128<<20
		if plt != 0 {
			def.FallbackStart, def.FallbackEnd = plt, plt+2<<30
		}
	} else {
		def.Start, def.End = plt, plt+2<<30
	}
	vm := ExecmemRange{Start: k.Layout.VmallocStart, End: k.Layout.VmallocEnd, Prot: k.Feat.Prot(arm64.PageKernel), Alignment: 1}
	kp := vm
	kp.Prot = k.Feat.Prot(arm64.PageKernelROX)
	e.Ranges[ExecmemModuleText] = def
	e.Ranges[ExecmemKprobes] = kp
	e.Ranges[ExecmemBPF] = vm
	e.Ranges[ExecmemFtrace] = def     // execmem_init_missing copies DEFAULT
	e.Ranges[ExecmemModuleData] = def // ... with PAGE_KERNEL
	if k.Cfg.Policy.ROXCache && k.BBML2 && k.V.Execmem {
		rox := k.Feat.Prot(arm64.PageKernelROX)
		for _, t := range []ExecmemType{ExecmemModuleText, ExecmemFtrace, ExecmemKprobes, ExecmemBPF} {
			e.Ranges[t].Flags |= ExecmemROXCacheFlag
			e.Ranges[t].Prot = rox
		}
	}
	k.Exec = e
}

// moduleAllocBase61 is module_alloc_base as kaslr_init (v6.1 kaslr.c) sets
// it: _etext - MODULES_VSIZE without KASLR; with KASLR and
// RANDOMIZE_MODULE_REGION_FULL, max(_end - 2G, MODULES_VADDR) plus a
// random part of the 2 GiB range the image leaves (21 bits of the seed),
// page aligned. module_alloc tries [base, base + 128M) first, then
// [base, base + 2G) with PLTs.
func (k *Kernel) moduleAllocBase61() uint64 {
	im := k.Image
	if k.Cfg.KASLRSeed == 0 {
		return im.VA + im.TextEnd - 128<<20
	}
	end := im.VA + im.End
	base := max(end-2<<30, k.Layout.ModulesVaddr)
	rng := rand.New(rand.NewPCG(k.Cfg.KASLRSeed, 0x6d6f64756c6573))
	seed := uint64(rng.Uint32())
	moduleRange := 2<<30 - (im.End - im.Stext)
	base += (moduleRange * (seed & (1<<21 - 1))) >> 21
	return base &^ (k.G.PageSize() - 1)
}

// IsROX is execmem_is_rox.
func (e *Execmem) IsROX(t ExecmemType) bool { return e.Ranges[t].Flags&ExecmemROXCacheFlag != 0 }

// NewObject names a new piece of text (a module section, a BPF program).
func (e *Execmem) NewObject() uint64 {
	e.shared()
	e.objMu.Lock()
	defer e.objMu.Unlock()
	o := e.nextObject
	e.nextObject++
	e.live[o] = true
	return o
}

// Retire marks an object's text dead (its owner freed or unloaded it).
func (e *Execmem) Retire(o uint64) {
	e.shared()
	e.objMu.Lock()
	delete(e.live, o)
	e.objMu.Unlock()
}

// Live reports whether a content value is trap fill, zero or live text.
func (e *Execmem) Live(content uint64) bool {
	if content < contentObjectBase {
		return true
	}
	e.shared()
	e.objMu.Lock()
	defer e.objMu.Unlock()
	return e.live[content]
}

// setContent records what the pages of [va, va+size) hold.
func (k *Kernel) setContent(va, size, content uint64) error {
	ps := k.G.PageSize()
	for p := va; p < va+size; p += ps {
		// Atomic, not PlainCPU: Direct-door walks share the tables' walk
		// cache, which is for single-threaded runs only.
		pa, _, ok := k.PT.Translate(pgtable.Atomic{}, p)
		if !ok {
			return fmt.Errorf("execmem: %#x is not mapped: %w", p, ErrInvalid)
		}
		if err := k.Mem.SetPrivate(pa&^(ps-1), content); err != nil {
			return fmt.Errorf("execmem: content of %#x: %w", p, err)
		}
	}
	return nil
}

// Content returns what the page mapped at va holds.
func (k *Kernel) Content(d pgtable.Door, va uint64) (uint64, bool) {
	pa, _, ok := k.PT.Translate(d, va)
	if !ok {
		return 0, false
	}
	return k.Mem.Private(pa &^ (k.G.PageSize() - 1)), true
}

// WriteText models the loader or JIT writing an object's code into execmem
// memory at [va, va+size) (through a writable mapping or text_poke).
func (k *Kernel) WriteText(va, size, object uint64) error {
	return k.setContent(va, (size+k.G.PageSize()-1)&^(k.G.PageSize()-1), object)
}

// execmemFillTrappingInsns is execmem_fill_trapping_insns (RFC patch 4):
// the range, writable at this point, is filled with BRK #0x100.
func (k *Kernel) execmemFillTrappingInsns(va, size uint64) error {
	return k.setContent(va, size, ContentTrap)
}

// execmemVmalloc is execmem_vmalloc: __vmalloc_node_range in the range's
// window, retried in the fallback window.
func (k *Kernel) execmemVmalloc(c CPU, r *ExecmemRange, size, prot uint64, flags VMFlags, caller string) (*VMArea, error) {
	req := VmallocRequest{Size: size, Align: max(r.Alignment, k.G.PageSize()), Start: r.Start, End: r.End, Prot: prot,
		Flags: flags, Owner: physmem.OwnerExecmem, Caller: caller}
	a, err := k.VmallocNodeRange(c, req)
	if err != nil && r.FallbackEnd != 0 {
		req.Start, req.End = r.FallbackStart, r.FallbackEnd
		a, err = k.VmallocNodeRange(c, req)
	}
	return a, err
}

// ExecmemAlloc is execmem_alloc: from the ROX cache for cached ranges,
// otherwise a fresh vmalloc with the range's pgprot and VM_FLUSH_RESET_PERMS.
func (k *Kernel) ExecmemAlloc(c CPU, t ExecmemType, size uint64) (uint64, error) {
	ps := k.G.PageSize()
	size = (size + ps - 1) &^ (ps - 1)
	if size == 0 || t < 0 || t >= NumExecmemTypes {
		return 0, fmt.Errorf("execmem_alloc(%v, %d): %w", t, size, ErrInvalid)
	}
	r := &k.Exec.Ranges[t]
	if r.Flags&ExecmemROXCacheFlag != 0 {
		return k.execmemCacheAlloc(c, r, size)
	}
	a, err := k.execmemVmalloc(c, r, size, r.Prot, VMFlushResetPerms, "execmem "+t.String())
	if err != nil {
		return 0, err
	}
	k.Exec.shared()
	k.Exec.objMu.Lock() // Allocs is shared with the cache path
	k.Exec.Allocs++
	k.Exec.objMu.Unlock()
	return a.Addr, nil
}

// ExecmemAllocRW is execmem_alloc_rw: allocate, then make the memory
// writable and non-executable (execmem_force_rw) — a no-op without
// ARCH_HAS_EXECMEM_ROX. On failure the allocation is freed.
func (k *Kernel) ExecmemAllocRW(c CPU, t ExecmemType, size uint64) (uint64, error) {
	p, err := k.ExecmemAlloc(c, t, size)
	if err != nil {
		return 0, err
	}
	unlock := k.execmemExclude(c, p)
	err = k.execmemForceRW(c, p, size)
	unlock()
	if err != nil {
		// execmem_alloc_rw's __free(execmem): the allocation goes back.
		return 0, errors.Join(err, k.ExecmemFree(c, p))
	}
	return p, nil
}

func (k *Kernel) pages(size uint64) int { return int((size + k.G.PageSize() - 1) >> k.G.PageShift) }

// execmemForceRW is execmem_force_rw: set_memory_nx then set_memory_rw.
func (k *Kernel) execmemForceRW(c CPU, p, size uint64) error {
	if !k.Exec.ArchHasROX {
		return nil
	}
	if err := k.SetMemoryNX(c, p, k.pages(size)); err != nil {
		return err
	}
	return k.SetMemoryRW(c, p, k.pages(size))
}

// ExecmemRestoreROX is execmem_restore_rox: set_memory_rox.
func (k *Kernel) ExecmemRestoreROX(c CPU, p, size uint64) error {
	if !k.Exec.ArchHasROX {
		return nil
	}
	unlock := k.execmemExclude(c, p)
	defer unlock()
	return k.SetMemoryROX(c, p, k.pages(size))
}

// execmemExclude gives the general collapse policy its exclusion at the
// owner level: permission changes of ROX-cache memory (and the collapse that
// follows them) run under the cache mutex, so no other object in the same
// chunk changes permissions while its tables are folded. Mainline and the
// RFC take no such lock.
func (k *Kernel) execmemExclude(c CPU, p uint64) func() {
	if k.Cfg.Policy.Collapse != CollapseGeneral {
		return func() {}
	}
	e := k.Exec
	c.Lock(e.Mutex)
	if _, cached := e.busy[p]; !cached {
		c.Unlock(e.Mutex)
		return func() {}
	}
	return func() { c.Unlock(e.Mutex) }
}

// withinRange is within_range: the allocation fits the primary or the
// fallback window.
func withinRange(r *ExecmemRange, addr, size uint64) bool {
	if addr >= r.Start && addr+size < r.End {
		return true
	}
	return r.FallbackEnd != 0 && addr >= r.FallbackStart && addr+size < r.FallbackEnd
}

// execmemCacheAllocLocked is execmem_cache_alloc_locked: the first free
// range, in address order, large enough and inside the range's windows.
func (k *Kernel) execmemCacheAllocLocked(r *ExecmemRange, size uint64) (uint64, bool) {
	e := k.Exec
	for i, f := range e.free {
		if f.end-f.start < size || !withinRange(r, f.start, size) {
			continue
		}
		e.busy[f.start] = size
		if f.end-f.start == size {
			e.free = append(e.free[:i], e.free[i+1:]...)
		} else {
			e.free[i].start += size
		}
		e.shared()
		e.objMu.Lock()
		e.Allocs++
		e.objMu.Unlock()
		return f.start, true
	}
	return 0, false
}

// execmemCacheAddLocked is execmem_cache_add_locked: insert a free range,
// merging with the ranges that end at its start and begin at its end.
func (k *Kernel) execmemCacheAddLocked(s, e uint64) {
	x := k.Exec
	i := sort.Search(len(x.free), func(i int) bool { return x.free[i].start >= e })
	if i > 0 && x.free[i-1].end == s {
		x.free[i-1].end = e
		if i < len(x.free) && x.free[i].start == e {
			x.free[i-1].end = x.free[i].end
			x.free = append(x.free[:i], x.free[i+1:]...)
		}
		return
	}
	if i < len(x.free) && x.free[i].start == e {
		x.free[i].start = s
		return
	}
	x.free = append(x.free, vaSpan{})
	copy(x.free[i+1:], x.free[i:])
	x.free[i] = vaSpan{s, e}
}

// execmemCacheAlloc is execmem_cache_alloc: carve from the cache, or
// populate a new chunk (execmem_cache_populate_alloc): a PMD-rounded huge
// vmalloc (or, failing that, exactly size), filled with traps while still
// writable, made ROX, added to the free set and carved atomically.
func (k *Kernel) execmemCacheAlloc(c CPU, r *ExecmemRange, size uint64) (uint64, error) {
	e := k.Exec
	c.Lock(e.Mutex)
	p, ok := k.execmemCacheAllocLocked(r, size)
	c.Unlock(e.Mutex)
	if ok {
		return p, nil
	}
	pmd := k.G.Size(arm64.LevelPMD)
	allocSize := (size + pmd - 1) &^ (pmd - 1)
	a, err := k.execmemVmalloc(c, r, allocSize, k.Feat.Prot(arm64.PageKernel), VMAllowHugeVmap, "execmem_cache_populate")
	if err != nil {
		allocSize = size
		if a, err = k.execmemVmalloc(c, r, size, k.Feat.Prot(arm64.PageKernel), VMAllowHugeVmap, "execmem_cache_populate"); err != nil {
			return 0, err
		}
	}
	if err := k.execmemFillTrappingInsns(a.Addr, allocSize); err != nil {
		return 0, err
	}
	if k.Cfg.Policy.Alias == AliasNoExecmemSplit {
		// The whole chunk's linear alias becomes read-only once, at the
		// granularity of its backing pages; later changes leave it alone.
		a.noAliasUpdates = true
		if err := k.aliasUpdate(c, a, 0, a.NrPages, arm64.PTERdonly, arm64.PTEWrite); err != nil {
			return 0, err
		}
	}
	if err := k.SetMemoryROX(c, a.Addr, a.NrPages); err != nil {
		// execmem_cache_populate_alloc's err_free_mem: vfree only. The area
		// has no VM_FLUSH_RESET_PERMS, so the alias of the pages the failed
		// set_memory_rox already made read-only stays so when they go back
		// to the page allocator (docs/findings.md).
		err = errors.Join(err, k.Vfree(c, a.Addr))
		return 0, fmt.Errorf("execmem cache populate: %w", err)
	}
	c.Lock(e.Mutex)
	defer c.Unlock(e.Mutex)
	e.chunks[a.Addr] = a
	e.Populates++
	k.execmemCacheAddLocked(a.Addr, a.Addr+allocSize)
	p, ok = k.execmemCacheAllocLocked(r, size)
	if !ok {
		return 0, fmt.Errorf("execmem cache: %#x bytes not allocatable from a fresh chunk: %w", size, ErrNoMem)
	}
	return p, nil
}

// ExecmemFree is execmem_free: for cache memory, make it writable, refill it
// with traps, make it ROX again and return it to the free set, then clean
// the cache (execmem_cache_free + execmem_cache_clean); otherwise vfree.
func (k *Kernel) ExecmemFree(c CPU, p uint64) error {
	e := k.Exec
	c.Lock(e.Mutex)
	size, ok := e.busy[p]
	if !ok {
		c.Unlock(e.Mutex)
		if a := k.FindVMArea(p); a != nil {
			for i := 0; i < a.NrPages; i++ {
				k.modelError("execmem_free: page contents", k.Mem.SetPrivate(a.PagePA(i), ContentZero))
			}
		}
		return k.Vfree(c, p)
	}
	err := k.execmemForceRW(c, p, size)
	if err == nil && !k.Mutations.FreeWithoutRefill {
		err = k.execmemFillTrappingInsns(p, size)
	}
	if err == nil && k.Exec.ArchHasROX {
		err = k.SetMemoryROX(c, p, k.pages(size)) // execmem_restore_rox, mutex held
	}
	if err != nil {
		c.Unlock(e.Mutex)
		return fmt.Errorf("execmem_cache_free(%#x): %w", p, err)
	}
	k.execmemCacheAddLocked(p, p+size)
	delete(e.busy, p)
	e.Frees++
	c.Unlock(e.Mutex)
	return k.execmemCacheClean(c)
}

// execmemCacheClean is execmem_cache_clean: every free range whose start and
// size are PMD aligned is a whole chunk's worth of free space; its vm area
// gets the linear alias restored and is vfree'd.
func (k *Kernel) execmemCacheClean(c CPU) error {
	e := k.Exec
	c.Lock(e.Mutex)
	defer c.Unlock(e.Mutex)
	pmd := k.G.Size(arm64.LevelPMD)
	for i := 0; i < len(e.free); i++ {
		f := e.free[i]
		if f.start&(pmd-1) != 0 || (f.end-f.start)&(pmd-1) != 0 {
			continue
		}
		a := k.FindVMArea(f.start)
		if a == nil || (k.Cfg.Policy.CleanWholeArea && (a.Addr != f.start || a.MappedSize() != f.end-f.start)) {
			continue
		}
		if !k.Mutations.CleanForgetsAlias {
			k.kernelIgnores("execmem_cache_clean: execmem_set_direct_map_valid", k.execmemSetDirectMapDefault(c, a))
		}
		e.free = append(e.free[:i], e.free[i+1:]...)
		i--
		delete(e.chunks, a.Addr)
		for j := 0; j < a.NrPages; j++ {
			k.modelError("execmem_cache_clean: page contents", k.Mem.SetPrivate(a.PagePA(j), ContentZero))
		}
		if err := k.Vfree(c, a.Addr); err != nil {
			return err
		}
		e.Releases++
	}
	return nil
}

// execmemSetDirectMapDefault restores the linear alias of a cache chunk:
// mainline makes it valid only (execmem_set_direct_map_valid in
// mm/execmem.c: set_direct_map_valid_noflush stepping by page_order), which
// on arm64 leaves it read-only; RFC patch 3 restores valid and writable. It
// stops at the first failure; mainline then makes the pages it had already
// updated invalid again (its err_restore loop) and returns the error.
func (k *Kernel) execmemSetDirectMapDefault(c CPU, a *VMArea) error {
	step := 1 << a.PageOrder
	pol := k.Cfg.Policy
	for i := 0; i < a.NrPages; i += step {
		if pol.CleanRestoresRW && pol.Alias != AliasPerPage && pol.Alias != "" && k.CanSetDirectMap() {
			// page_order aware: one update per backing page, no split,
			// then fold the linear map back around it.
			if err := k.updateRangeProt(c, k.Lin(a.PagePA(i)), k.G.PageSize()<<a.PageOrder,
				k.presentValidBits()|arm64.PTEWrite, k.presentInvalidBits()|arm64.PTERdonly); err != nil {
				return err
			}
			if pol.Collapse == CollapseGeneral {
				k.collapseLinear(c, a.PagePA(i), a.PageOrder)
			}
			continue
		}
		if pol.CleanRestoresRW {
			for j := i; j < i+step; j++ {
				if err := k.SetDirectMapDefaultNoflush(c, a.PagePA(j)); err != nil {
					return err
				}
			}
			continue
		}
		if err := k.SetDirectMapValidNoflush(c, a.PagePA(i), step, true); err != nil {
			for u := 0; u < i; u += step {
				k.kernelIgnores("execmem_set_direct_map_valid: restore", k.SetDirectMapValidNoflush(c, a.PagePA(u), step, false))
			}
			return err
		}
	}
	return nil
}

// CacheStats reports the ROX cache's size and fragmentation.
type CacheStats struct {
	Chunks      int    `json:"chunks"`
	ChunkBytes  uint64 `json:"chunk_bytes"`
	BusyBytes   uint64 `json:"busy_bytes"`
	FreeBytes   uint64 `json:"free_bytes"`
	FreeRanges  int    `json:"free_ranges"`
	LargestFree uint64 `json:"largest_free"`
	Populates   uint64 `json:"populates"`
	Releases    uint64 `json:"releases"`
}

// CacheStats summarises the ROX cache.
func (e *Execmem) CacheStats() CacheStats {
	var s CacheStats
	for _, a := range e.chunks {
		s.Chunks++
		s.ChunkBytes += a.MappedSize()
	}
	for _, sz := range e.busy {
		s.BusyBytes += sz
	}
	for _, f := range e.free {
		s.FreeBytes += f.end - f.start
		s.LargestFree = max(s.LargestFree, f.end-f.start)
	}
	s.FreeRanges = len(e.free)
	s.Populates, s.Releases = e.Populates, e.Releases
	return s
}

// Chunks returns the cache chunks in address order.
func (e *Execmem) Chunks() []*VMArea {
	out := make([]*VMArea, 0, len(e.chunks))
	for _, a := range e.chunks {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}
