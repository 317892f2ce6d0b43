package kernel

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
)

// segmentAlign is SEGMENT_ALIGN: kernel image segments start on 64K.
const segmentAlign = 64 << 10

// kfencePoolSize is KFENCE_POOL_SIZE with the default 255 objects:
// (255 + 1) * 2 pages.
func (k *Kernel) kfencePoolSize() uint64 { return 256 * 2 * k.G.PageSize() }

// allocKFENCEPool takes the pool from the page allocator (memblock at boot)
// and records where it is.
func (k *Kernel) allocKFENCEPool() (uint64, error) {
	order := 0
	for uint64(1)<<order*k.G.PageSize() < k.kfencePoolSize() {
		order++
	}
	k.shared(SharedPages)
	pa, err := k.Mem.Alloc(order, physmem.OwnerReserved)
	if err != nil {
		return 0, fmt.Errorf("KFENCE pool: %w", err)
	}
	k.kfencePool = [2]uint64{pa, pa + k.kfencePoolSize()}
	return pa, nil
}

// memstartAlign is ARM64_MEMSTART_ALIGN: PUD_SIZE with 4K pages, CONT_PMD_SIZE
// with 16K, PMD_SIZE with 64K (never below the 128 MiB section size).
func memstartAlign(g arm64.Geometry) uint64 {
	var a uint64
	switch g.PageShift {
	case arm64.PageShift4K:
		a = g.Size(arm64.LevelPUD)
	case arm64.PageShift16K:
		a = g.ContSize(arm64.LevelPMD)
	default:
		a = g.Size(arm64.LevelPMD)
	}
	return max(a, 128<<20)
}

func alignUp(x, a uint64) uint64 { return (x + a - 1) &^ (a - 1) }

// memstartAddr is memstart_addr as arm64_memblock_init sets it: the first
// RAM address rounded down to ARM64_MEMSTART_ALIGN, then, under KASLR, moved
// down by a random multiple of it when the linear region is larger than the
// CPU's physical address space by at least that much (memstart_offset_seed,
// 16 bits of the KASLR seed). A configured MemstartAddr wins.
func (k *Kernel) memstartAddr(firstRAM uint64) uint64 {
	if k.Cfg.MemstartAddr != 0 {
		return uint64(k.Cfg.MemstartAddr)
	}
	align := memstartAlign(k.G)
	addr := firstRAM &^ (align - 1)
	if k.Cfg.KASLRSeed == 0 {
		return addr
	}
	pa := k.Cfg.PABits
	if pa == 0 && len(k.Cfg.CPUs) > 0 {
		pa = CPUPABits[strings.ToLower(k.Cfg.CPUs[0].Model)]
	}
	if pa == 0 {
		pa = 48
	}
	linear := k.Layout.PageEnd - k.Layout.PageOffset
	if pa >= 64 || linear <= 1<<uint(pa) || linear-1<<uint(pa) < align {
		return addr
	}
	rng := rand.New(rand.NewPCG(k.Cfg.KASLRSeed, 0x6d656d7374617274))
	seed := uint64(rng.Uint32() & 0xffff)
	r := (linear - 1<<uint(pa)) / align
	return addr - align*((r*seed)>>16)
}

// Boot builds a kernel from cfg and boots it on CPU 0: the physical memory,
// the kernel image mapping (map_kernel, in its final post-mark_rodata_ro
// permissions), the linear map (map_mem), the read-only kernel alias
// (mark_linear_text_alias_ro), free_initmem, and, once all CPUs are up and
// the capabilities are final, linear_map_maybe_split_to_ptes and the late
// KFENCE pool (arch_kfence_init_pool).
func Boot(cfg Config) (*Kernel, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g, err := cfg.Geometry()
	if err != nil {
		return nil, err
	}
	v, err := cfg.Version()
	if err != nil {
		return nil, err
	}
	midrs, err := cfg.MIDRs()
	if err != nil {
		return nil, err
	}
	rodataFull, err := cfg.RodataFull()
	if err != nil {
		return nil, err
	}
	kfenceIgnored := false
	if cfg.KFENCE == "" {
		cfg.KFENCE = KFENCEOff
	} else if cfg.KFENCE != KFENCEOff && !v.KFENCE {
		cfg.KFENCE, kfenceIgnored = KFENCEOff, true
	}
	regs := make([]physmem.Region, len(cfg.RAM))
	for i, r := range cfg.RAM {
		regs[i] = physmem.Region{Base: uint64(r.Base), Size: uint64(r.Size)}
	}
	// MAX_PAGE_ORDER follows the granule (ARCH_FORCE_MAX_ORDER), so a
	// PMD-sized huge vmalloc page is one buddy block on 16K and 64K too.
	mem, err := physmem.NewMaxOrder(g.PageShift, regs, physmem.MaxOrderFor(g.PageShift))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	k := &Kernel{
		Cfg:           cfg,
		V:             v,
		G:             g,
		Layout:        v.Layout(g, cfg.ConfigVABits),
		Feat:          arm64.Features{NG: cfg.KPTI, LPA2: g.LPA2, BTI: cfg.BTI},
		Mem:           mem,
		MIDRs:         midrs,
		RodataFull:    rodataFull,
		BootBBML2:     midrs[0].SupportsBBML2NoAbort(),
		SplitLock:     NewMutex("pgtable_split_lock"),
		PageTableLock: NewMutex("init_mm.page_table_lock"),
		InitMM:        NewRWSem("init_mm.mmap_lock"),
		PatchLock:     NewMutex("patch_lock"),
		VmapLock:      NewMutex("vmap_node.busy.lock"),
		PurgeLock:     NewMutex("vmap_purge_lock"),
		warned:        map[string]bool{},
	}
	if kfenceIgnored {
		k.warnOnce("kfence", "kfence: not in the %s build (CONFIG_KFENCE=n); kfence setting ignored", v.Name)
	}
	regs = mem.Regions()
	k.PhysOffset = k.memstartAddr(regs[0].Base)
	if err := k.placeImage(); err != nil {
		return nil, err
	}
	if k.PT, err = pgtable.New(g, mem); err != nil {
		return nil, err
	}
	c := NewPlainCPU(0)
	k.trackRegions(c)
	if err := k.earlyFixmapInit(c); err != nil {
		return nil, err
	}
	if err := k.mapKernel(c); err != nil {
		return nil, fmt.Errorf("map_kernel: %w", err)
	}
	if cfg.imported != nil {
		if err := k.mapImported(c); err != nil {
			return nil, err
		}
	} else {
		if err := k.mapMem(c); err != nil {
			return nil, fmt.Errorf("map_mem: %w", err)
		}
		if cfg.KFENCE == KFENCEEarly {
			// kfence_init (mm_core_init): guard pages protected.
			if err := k.kfenceInitPool(c); err != nil {
				return nil, err
			}
		}
		if err := k.markLinearTextAliasRO(c); err != nil {
			return nil, err
		}
	}
	// bootmem_init -> sparse_init: the struct pages of every present section.
	if err := k.vmemmapPopulate(c); err != nil {
		return nil, err
	}
	k.VM = newVmalloc(k, []vaSpan{{k.Image.VA, k.Image.VA + k.Image.End}})
	if err := k.freeInitmem(c); err != nil {
		return nil, err
	}
	// smp_init: secondaries come up; setup_system_features finalizes caps.
	k.BBML2 = arm64.SystemSupportsBBML2NoAbort(midrs)
	k.capsFinalized = true
	if cfg.imported == nil {
		if err := k.linearMapMaybeSplitToPTEs(c); err != nil {
			return nil, err
		}
	}
	if cfg.KFENCE == KFENCELate {
		if err := k.kfenceInitPoolLate(c); err != nil {
			return nil, err
		}
	}
	// The PCI host bridge probe maps its I/O window.
	if err := k.pciRemapIOSpace(c); err != nil {
		return nil, err
	}
	// execmem_init: late (ARCH_WANTS_EXECMEM_LATE) so the ROX cache can
	// depend on the final BBML2_NOABORT capability (RFC patch 5).
	k.execmemArchSetup()
	// What the rest of the boot puts in the vmalloc range.
	if cfg.imported == nil {
		if err := k.bootVmallocUsers(c); err != nil {
			return nil, fmt.Errorf("boot vmalloc users: %w", err)
		}
	}
	return k, nil
}

// placeImage reserves the kernel image in physical memory (2 MiB into the
// first RAM region unless configured) and computes its segment layout.
func (k *Kernel) placeImage() error {
	// Sizes not configured are the release's (Version.Image), field by field.
	im, vi := k.Cfg.Image, k.V.Image
	for _, f := range []struct{ c, v *Size }{{&im.Header, &vi.Header}, {&im.Text, &vi.Text},
		{&im.Rodata, &vi.Rodata}, {&im.Init, &vi.Init}, {&im.InitText, &vi.InitText}, {&im.Data, &vi.Data}, {&im.Tail, &vi.Tail}} {
		if *f.c == 0 {
			*f.c = *f.v
		}
	}
	l := ImageLayout{}
	l.Stext = alignUp(uint64(im.Header), segmentAlign)
	l.TextEnd = alignUp(uint64(im.Text), segmentAlign)
	if l.Stext >= l.TextEnd {
		return fmt.Errorf("%w: image header %#x not below _etext %#x", ErrConfig, l.Stext, l.TextEnd)
	}
	l.RodataStart = l.TextEnd
	l.InitStart = l.RodataStart + alignUp(uint64(im.Rodata), segmentAlign)
	l.InitEnd = l.InitStart + alignUp(uint64(im.Init), segmentAlign)
	l.InitDataStart = l.InitEnd
	if t := alignUp(uint64(im.InitText), segmentAlign); t != 0 && l.InitStart+t < l.InitEnd {
		l.InitDataStart = l.InitStart + t
	}
	l.DataStart = l.InitEnd
	l.End = l.DataStart + alignUp(uint64(im.Data), segmentAlign)
	l.BssStop = l.End - min(uint64(im.Tail)&^(k.G.PageSize()-1), l.End-l.DataStart)
	l.PA = uint64(im.PhysBase)
	if l.PA == 0 {
		l.PA = alignUp(k.Mem.Regions()[0].Base+2<<20, 2<<20)
	}
	l.VA = k.Layout.KimageVaddr + uint64(im.KASLR)
	if l.PA&(2<<20-1) != 0 || l.VA&(2<<20-1) != 0 {
		return fmt.Errorf("%w: kernel image at PA %#x VA %#x is not 2 MiB aligned", ErrConfig, l.PA, l.VA)
	}
	if err := k.Mem.Reserve(l.PA, l.End, physmem.OwnerKernelImage); err != nil {
		return fmt.Errorf("%w: kernel image [%#x, %#x): %w", ErrConfig, l.PA, l.PA+l.End, err)
	}
	k.Image = l
	return nil
}

// mapKernel is map_kernel (arch/arm64/mm/mmu.c): text read-only executable,
// rodata read-only without contiguous hints, init text executable, init data
// read-write (two segments, so neither shares a block with the other), data
// read-write. Blocks are used
// where alignment allows. Since the C map_kernel (Version.HeaderMapped) the
// image header [_text, _stext) is a segment of its own, read-only and
// non-executable, with pages; 6.1 mapped from _stext.
func (k *Kernel) mapKernel(c CPU) error {
	im := k.Image
	text := k.Feat.Prot(arm64.PageKernelROX)
	if k.Cfg.BTI {
		text |= arm64.PTEGP
	}
	if k.Cfg.Rodata == RodataOff {
		text = k.Feat.Prot(arm64.PageKernelExec)
	}
	ro := k.Feat.Prot(arm64.PageKernelRO)
	if k.Cfg.Rodata == RodataOff {
		ro = k.Feat.Prot(arm64.PageKernel)
	}
	segs := []struct {
		start, end uint64
		prot       uint64
		flags      pgtable.Flags
	}{
		{im.Stext, im.TextEnd, text, 0},
		{im.RodataStart, im.InitStart, ro, pgtable.NoContMappings},
		{im.InitStart, im.InitDataStart, text, 0},
		{im.InitDataStart, im.InitEnd, k.Feat.Prot(arm64.PageKernel), 0},
		{im.DataStart, im.End, k.Feat.Prot(arm64.PageKernel), 0},
	}
	if k.V.HeaderMapped {
		segs = append(segs, struct {
			start, end uint64
			prot       uint64
			flags      pgtable.Flags
		}{0, im.Stext, ro, pgtable.NoBlockMappings | pgtable.NoContMappings})
	}
	for _, s := range segs {
		if s.end == s.start {
			continue
		}
		if err := k.PT.Map(c, im.VA+s.start, im.PA+s.start, s.end-s.start, s.prot, s.flags); err != nil {
			return err
		}
	}
	return nil
}

// aliasStart is the offset from _text where map_mem's kernel-alias interval
// begins: _text, or _stext in 6.1 (Version.AliasFromText).
func (k *Kernel) aliasStart() uint64 {
	if k.V.AliasFromText {
		return 0
	}
	return k.Image.Stext
}

// mapMem is map_mem: the linear map of all RAM. The kernel alias
// [_text, __init_begin) is left out (NOMAP) and mapped afterwards with plain
// PAGE_KERNEL (no contiguous hints up to 6.18; map_mem's own flags with the
// 7.x alias series, see unmapKernelDataAlias); an early
// KFENCE pool is taken top-down from memblock and mapped page by page. The
// rest is pgprot_tagged(PAGE_KERNEL), NO_EXEC tables, and — when
// force_pte_mapping() — no blocks or contiguous runs.
func (k *Kernel) mapMem(c CPU) error {
	force := k.forcePTEMapping()
	k.LinearMapRequiresBBML2 = !force && k.CanSetDirectMap()
	flags := pgtable.NoExecMappings
	if force {
		flags |= pgtable.NoBlockMappings | pgtable.NoContMappings
	}
	im := k.Image
	alias := vaSpan{im.PA + k.aliasStart(), im.PA + im.InitStart}
	holes := []vaSpan{alias}
	data := k.dataAliasHole()
	if data.end > data.start {
		holes = append(holes, data)
	}
	if k.Cfg.KFENCE == KFENCEEarly {
		// arm64_kfence_alloc_pool: memblock_phys_alloc (top-down), NOMAP.
		pa, err := k.allocKFENCEPoolTopDown()
		if err != nil {
			return err
		}
		holes = append(holes, vaSpan{pa, pa + k.kfencePoolSize()})
	}
	sort.Slice(holes, func(i, j int) bool { return holes[i].start < holes[j].start })
	prot := k.Feat.Prot(arm64.Tagged(arm64.PageKernel))
	for _, r := range k.Mem.Regions() {
		start, end := r.Base, r.End()
		for _, h := range holes {
			if h.end <= start || h.start >= end {
				continue
			}
			if h.start > start {
				if err := k.PT.Map(c, k.Lin(start), start, h.start-start, prot, flags); err != nil {
					return err
				}
			}
			start = max(start, h.end)
		}
		if start < end {
			if err := k.PT.Map(c, k.Lin(start), start, end-start, prot, flags); err != nil {
				return err
			}
		}
	}
	aliasFlags := pgtable.Flags(0)
	switch {
	case k.V.AliasUnmapData:
		aliasFlags = flags &^ pgtable.NoExecMappings
	case k.V.AliasNoCont:
		aliasFlags = pgtable.NoContMappings
	}
	if err := k.PT.Map(c, k.Lin(alias.start), alias.start, alias.end-alias.start, k.Feat.Prot(arm64.PageKernel), aliasFlags); err != nil {
		return err
	}
	if data.end > data.start {
		// The data/bss alias: mapped with map_mem's flags, then made
		// present-invalid (set_memory_valid(false) semantics: PTE_VALID
		// cleared, PTE_PRESENT_INVALID set) before anything runs on it.
		if err := k.PT.Map(c, k.Lin(data.start), data.start, data.end-data.start, prot, flags); err != nil {
			return err
		}
		pv, pi := k.presentBits()
		if err := k.PT.Protect(c, k.Lin(data.start), k.Lin(data.end), pi, pv); err != nil {
			return fmt.Errorf("data/bss alias: %w", err)
		}
	}
	if k.kfencePool[1] != 0 {
		// arm64_kfence_map_pool: always page granular.
		p := k.kfencePool
		if err := k.PT.Map(c, k.Lin(p[0]), p[0], p[1]-p[0], prot, pgtable.NoBlockMappings|pgtable.NoContMappings|pgtable.NoExecMappings); err != nil {
			return err
		}
	}
	return nil
}

// allocKFENCEPoolTopDown is memblock_phys_alloc(KFENCE_POOL_SIZE, PAGE_SIZE)
// as arm64_kfence_alloc_pool calls it: memblock allocates top-down, so the
// pool is the highest free page-aligned range of RAM.
func (k *Kernel) allocKFENCEPoolTopDown() (uint64, error) {
	size, ps := k.kfencePoolSize(), k.G.PageSize()
	regs := k.Mem.Regions()
	for i := len(regs) - 1; i >= 0; i-- {
		r := regs[i]
		if r.Size < size {
			continue
		}
		for pa := (r.End() - size) &^ (ps - 1); pa >= r.Base; pa -= ps {
			if err := k.Mem.Reserve(pa, size, physmem.OwnerReserved); err == nil {
				k.kfencePool = [2]uint64{pa, pa + size}
				return pa, nil
			}
			if pa < r.Base+ps {
				break
			}
		}
	}
	return 0, fmt.Errorf("KFENCE pool: %w", ErrNoMem)
}

// kfenceInitPool is kfence_init_pool (mm/kfence/core.c): the first two pages
// of the pool and the guard page after every object page are protected
// (kfence_protect -> set_memory_valid(addr, 1, false) on arm64), so only the
// 255 object pages stay mapped.
func (k *Kernel) kfenceInitPool(c CPU) error {
	p := k.kfencePool
	if p[1] == 0 {
		return nil
	}
	ps := k.G.PageSize()
	n := int((p[1] - p[0]) / ps)
	for i := 0; i < n; i++ {
		if i >= 2 && i%2 == 0 {
			continue // an object page
		}
		if err := k.SetMemoryValid(c, k.Lin(p[0]+uint64(i)*ps), 1, false); err != nil {
			return fmt.Errorf("kfence_init_pool: %w", err)
		}
	}
	return nil
}

// updateMappingProt is update_mapping_prot: remap a range with new
// permissions through the create path (no contiguous hints), then flush it.
// extra adds create flags: with the 7.x alias series the create path keeps
// the tables it finds ("Preserve existing table mappings"), which for a
// range first mapped with map_mem's flags is the same as passing them again.
func (k *Kernel) updateMappingProt(c CPU, pa, va, size, prot uint64, extra pgtable.Flags) error {
	if err := k.PT.Map(c, va, pa, size, prot, pgtable.NoContMappings|extra); err != nil {
		return err
	}
	k.FlushTLBKernelRange(c, va, va+size)
	return nil
}

// markLinearTextAliasRO is mark_linear_text_alias_ro: the linear alias of
// the kernel text and rodata becomes read-only. smp_cpus_done calls it
// whatever rodata= says, so the alias is read-only even with rodata=off.
func (k *Kernel) markLinearTextAliasRO(c CPU) error {
	im := k.Image
	a := k.aliasStart()
	if !k.V.AliasNoCont {
		// linux-mm and 7.x keep the shape it finds (existing tables, contiguous
		// runs: "Preserve existing table mappings", "Permit contiguous
		// descriptors to be manipulated"): only the permission changes.
		start, end := k.Lin(im.PA+a), k.Lin(im.PA+im.InitStart)
		if err := k.PT.Protect(c, start, end, arm64.PTERdonly, arm64.PTEWrite); err != nil {
			return fmt.Errorf("mark_linear_text_alias_ro: %w", err)
		}
		k.FlushTLBKernelRange(c, start, end)
		return nil
	}
	return k.updateMappingProt(c, im.PA+a, k.Lin(im.PA+a), im.InitStart-a, k.Feat.Prot(arm64.PageKernelRO), 0)
}

// dataAliasHole is the linear alias of the kernel's data and bss,
// [__init_end, __bss_stop), which the 7.x alias series leaves out of the
// plain linear map and maps present-invalid unless rodata=off (as 7.3
// captures show: F entries there with rodata=on and noalias, RW with off).
func (k *Kernel) dataAliasHole() vaSpan {
	im := k.Image
	if !k.V.AliasUnmapData || k.Cfg.Rodata == RodataOff || im.BssStop <= im.InitEnd {
		return vaSpan{}
	}
	return vaSpan{im.PA + im.InitEnd, im.PA + im.BssStop}
}

// LinearHoles are the physical ranges of RAM the boot leaves out of the
// linear map on purpose: the kernel's data/bss alias (7.x) and the KFENCE
// pool's protected pages. Sorted, end exclusive.
func (k *Kernel) LinearHoles() [][2]uint64 {
	var out [][2]uint64
	if h := k.dataAliasHole(); h.end > h.start && k.Cfg.imported == nil {
		out = append(out, [2]uint64{h.start, h.end})
	}
	if p := k.kfencePool; p[1] != 0 {
		ps := k.G.PageSize()
		for i := uint64(0); p[0]+i*ps < p[1]; i++ {
			if i < 2 || i%2 == 1 {
				out = append(out, [2]uint64{p[0] + i*ps, p[0] + (i+1)*ps})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// freeInitmem is free_initmem: the init segment's pages go back to the page
// allocator and its image mapping is removed.
func (k *Kernel) freeInitmem(c CPU) error {
	im := k.Image
	if im.InitEnd == im.InitStart {
		return nil
	}
	if err := k.PT.Unmap(c, im.VA+im.InitStart, im.VA+im.InitEnd); err != nil {
		return fmt.Errorf("free_initmem: %w", err)
	}
	k.FlushTLBKernelRange(c, im.VA+im.InitStart, im.VA+im.InitEnd)
	return k.Mem.Unreserve(im.PA+im.InitStart, im.InitEnd-im.InitStart)
}

// linearMapMaybeSplitToPTEs is linear_map_maybe_split_to_ptes: if the boot
// CPU block-mapped the linear map relying on BBML2_NOABORT but a secondary
// CPU lacks it, every leaf of the linear map except the kernel alias is split
// to non-contiguous PTEs (under stop_machine; GFP_ATOMIC failures panic) and
// the whole linear range is flushed.
func (k *Kernel) linearMapMaybeSplitToPTEs(c CPU) error {
	if !k.LinearMapRequiresBBML2 || k.BBML2 {
		return nil
	}
	lin0, lin1 := k.Layout.PageOffset, k.Layout.PageEnd
	a0, a1 := k.Lin(k.Image.PA), k.Lin(k.Image.PA+k.Image.InitStart)
	for _, r := range [][2]uint64{{lin0, a0}, {a1, lin1}} {
		if err := k.PT.SplitRangeToPTEs(c, r[0], r[1], &k.Stats.Split); err != nil {
			return fmt.Errorf("linear_map_split_to_ptes: panic: %w", err)
		}
	}
	if !k.Mutations.RepaintWithoutFlush {
		k.FlushTLBKernelRange(c, lin0, lin1)
	}
	return nil
}

// kfenceInitPoolLate is arch_kfence_init_pool for a pool allocated after
// boot: the pool's linear mapping is split to PTEs under the split lock, with
// no TLB maintenance (BBML2_NOABORT lets larger entries linger).
func (k *Kernel) kfenceInitPoolLate(c CPU) error {
	pa, err := k.allocKFENCEPool()
	if err != nil {
		return err
	}
	if !k.forcePTEMapping() {
		c.Lock(k.SplitLock)
		err = k.PT.SplitRangeToPTEs(c, k.Lin(pa), k.Lin(pa)+k.kfencePoolSize(), &k.Stats.Split)
		c.Unlock(k.SplitLock)
		if err != nil {
			return err
		}
	}
	return k.kfenceInitPool(c)
}

// KFENCEPool is the physical range of the KFENCE pool, if one was set up.
func (k *Kernel) KFENCEPool() (start, end uint64) { return k.kfencePool[0], k.kfencePool[1] }
