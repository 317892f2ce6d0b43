package kernel

import (
	"fmt"
	"sort"

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
	midrs, err := cfg.MIDRs()
	if err != nil {
		return nil, err
	}
	rodataFull, err := cfg.RodataFull()
	if err != nil {
		return nil, err
	}
	if cfg.KFENCE == "" {
		cfg.KFENCE = KFENCEOff
	}
	regs := make([]physmem.Region, len(cfg.RAM))
	for i, r := range cfg.RAM {
		regs[i] = physmem.Region{Base: uint64(r.Base), Size: uint64(r.Size)}
	}
	mem, err := physmem.New(g.PageShift, regs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	k := &Kernel{
		Cfg:           cfg,
		G:             g,
		Layout:        arm64.KernelLayout(g, cfg.ConfigVABits),
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
	regs = mem.Regions()
	k.PhysOffset = regs[0].Base &^ (memstartAlign(g) - 1)
	if err := k.placeImage(); err != nil {
		return nil, err
	}
	if k.PT, err = pgtable.New(g, mem); err != nil {
		return nil, err
	}
	c := NewPlainCPU(0)
	k.trackRegions(c)
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
		if err := k.markLinearTextAliasRO(c); err != nil {
			return nil, err
		}
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
	// execmem_init: late (ARCH_WANTS_EXECMEM_LATE) so the ROX cache can
	// depend on the final BBML2_NOABORT capability (RFC patch 5).
	k.execmemArchSetup()
	return k, nil
}

// placeImage reserves the kernel image in physical memory (2 MiB into the
// first RAM region unless configured) and computes its segment layout.
func (k *Kernel) placeImage() error {
	im := k.Cfg.Image
	l := ImageLayout{}
	l.TextEnd = alignUp(uint64(im.Text), segmentAlign)
	l.RodataStart = l.TextEnd
	l.InitStart = l.RodataStart + alignUp(uint64(im.Rodata), segmentAlign)
	l.InitEnd = l.InitStart + alignUp(uint64(im.Init), segmentAlign)
	l.DataStart = l.InitEnd
	l.End = l.DataStart + alignUp(uint64(im.Data), segmentAlign)
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

// mapKernel is map_kernel: text read-only executable, rodata read-only
// without contiguous hints, init text/data, data read-write. Blocks are used
// where alignment allows.
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
		{0, im.TextEnd, text, 0},
		{im.RodataStart, im.InitStart, ro, pgtable.NoContMappings},
		{im.InitStart, im.InitEnd, text, 0},
		{im.DataStart, im.End, k.Feat.Prot(arm64.PageKernel), 0},
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

// mapMem is map_mem: the linear map of all RAM. The kernel alias
// [_text, __init_begin) is left out (NOMAP) and mapped afterwards with plain
// PAGE_KERNEL and no contiguous hints; an early KFENCE pool is mapped page
// by page. The rest is pgprot_tagged(PAGE_KERNEL), NO_EXEC tables, and —
// when force_pte_mapping() — no blocks or contiguous runs.
func (k *Kernel) mapMem(c CPU) error {
	force := k.forcePTEMapping()
	k.LinearMapRequiresBBML2 = !force && k.CanSetDirectMap()
	flags := pgtable.NoExecMappings
	if force {
		flags |= pgtable.NoBlockMappings | pgtable.NoContMappings
	}
	alias := vaSpan{k.Image.PA, k.Image.PA + k.Image.InitStart}
	holes := []vaSpan{alias}
	if k.Cfg.KFENCE == KFENCEEarly {
		// arm64_kfence_alloc_pool: memblock_phys_alloc, marked NOMAP.
		pa, err := k.allocKFENCEPool()
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
	if err := k.PT.Map(c, k.Lin(alias.start), alias.start, alias.end-alias.start, k.Feat.Prot(arm64.PageKernel), pgtable.NoContMappings); err != nil {
		return err
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

// updateMappingProt is update_mapping_prot: remap a range with new
// permissions through the create path (no contiguous hints), then flush it.
func (k *Kernel) updateMappingProt(c CPU, pa, va, size, prot uint64) error {
	if err := k.PT.Map(c, va, pa, size, prot, pgtable.NoContMappings); err != nil {
		return err
	}
	k.FlushTLBKernelRange(c, va, va+size)
	return nil
}

// markLinearTextAliasRO is mark_linear_text_alias_ro: the linear alias of
// [_text, __init_begin) becomes read-only.
func (k *Kernel) markLinearTextAliasRO(c CPU) error {
	if k.Cfg.Rodata == RodataOff {
		return nil
	}
	im := k.Image
	return k.updateMappingProt(c, im.PA, k.Lin(im.PA), im.InitStart, k.Feat.Prot(arm64.PageKernelRO))
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
	if k.forcePTEMapping() {
		return nil
	}
	c.Lock(k.SplitLock)
	defer c.Unlock(k.SplitLock)
	return k.PT.SplitRangeToPTEs(c, k.Lin(pa), k.Lin(pa)+k.kfencePoolSize(), &k.Stats.Split)
}
