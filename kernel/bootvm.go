package kernel

import (
	"fmt"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
)

// Boot-time vmalloc users: what a booted kernel has put in the vmalloc range
// besides its image by the time a shell runs. They decide which table pages
// of the vmalloc range exist (a PTE table, once allocated, stays when its
// area is freed), so a boot's table-page count needs them. The machine's
// part is data (Config.Devices with Ioremap, Config.BootThreads); the
// kernel's part follows /proc/vmallocinfo of Debian's builds booted under
// QEMU virt, release by release (Version.Boot).

// BootAlloc is one kind of boot-time vmalloc of the kernel itself, as
// /proc/vmallocinfo of a booted build lists it.
type BootAlloc struct {
	Caller string
	Bytes  uint64 // each area's size, rounded up to pages; 0: Pages
	// Bytes16K replaces Bytes with 16K pages where the build's area differs
	// (percpu's chunk maps scale with the unit size, which the granule
	// rounds); 0: Bytes.
	Bytes16K uint64
	Pages    int  // each area's size in pages of the granule, when Bytes is 0
	Count    int  // areas; with PerAtomicPool, areas per DMA atomic pool
	Freed    bool // vfree'd before the boot ends: its VA waits, unpurged, for the lazy purge
	// PerAtomicPool: one area per DMA atomic pool (gen_pool_add_owner
	// vzallocs each pool's chunk with its bitmap).
	PerAtomicPool bool
}

// BootVmalloc is what a release itself puts in the vmalloc range during
// boot, in boot order (Version.Boot). The callers Debian's builds show:
// bpf_prog_alloc_no_stats (kernel/bpf/core.c), gen_pool_add_owner for the
// DMA atomic pools' bitmaps (kernel/dma/pool.c), pcpu_mem_zalloc
// (mm/percpu.c), n_tty_open (drivers/tty/n_tty.c), crypto_scomp_init_tfm
// (crypto/scompress.c), lz4_alloc_ctx (crypto/lz4.c). The DMA atomic pools
// themselves (dma_common_contiguous_remap) and the BPF JIT's first pack are
// made separately (atomicPools, bootBPF). pcpu_mem_zalloc takes kmalloc
// for a page or less, so its small areas exist only with 4K pages.
type BootVmalloc struct {
	Allocs []BootAlloc
	// AtomicPoolsByZone: dma_atomic_pool_init (kernel/dma/pool.c) makes a
	// pool only for a zone with managed memory (has_managed_zone), as the
	// 7.x builds do; before, one pool per configured zone (GFP_KERNEL,
	// GFP_DMA, GFP_DMA32: three on Debian's arm64 builds) whatever the RAM.
	AtomicPoolsByZone bool
}

// The boot-time vmalloc areas of Debian's builds booted under QEMU virt
// (/proc/vmallocinfo after boot, capture/testdata/fidelity).
var (
	bootDebian61 = BootVmalloc{Allocs: []BootAlloc{
		{Caller: "bpf_prog_alloc_no_stats", Pages: 1, Count: 1}, {Caller: "gen_pool_add_owner", Pages: 1, Count: 1, PerAtomicPool: true},
		{Caller: "pcpu_mem_zalloc", Bytes: 248 << 10, Count: 1}, {Caller: "n_tty_open", Bytes: 12 << 10, Count: 1},
		{Caller: "crypto_scomp_init_tfm", Bytes: 128 << 10, Count: 4},
		// freed at boot (unpurged in vmallocinfo): 2 x 1.25 MiB, 548K, 336K, 20K
		{Caller: "unpurged", Bytes: 1280 << 10, Count: 2, Freed: true}, {Caller: "unpurged", Bytes: 544 << 10, Count: 1, Freed: true},
		{Caller: "unpurged", Bytes: 332 << 10, Count: 1, Freed: true}, {Caller: "unpurged", Bytes: 20 << 10, Count: 1, Freed: true}}}
	bootDebian612 = BootVmalloc{Allocs: []BootAlloc{
		{Caller: "bpf_prog_alloc_no_stats", Pages: 1, Count: 1}, {Caller: "gen_pool_add_owner", Pages: 1, Count: 1, PerAtomicPool: true},
		{Caller: "pcpu_mem_zalloc", Bytes: 8 << 10, Count: 2}, {Caller: "pcpu_mem_zalloc", Bytes: 272 << 10, Count: 1},
		{Caller: "n_tty_open", Bytes: 12 << 10, Count: 1},
		// crypto_scomp_init_tfm's scratch buffers, freed again (8 x 132K unpurged in 6.12)
		{Caller: "crypto_scomp_init_tfm", Bytes: 128 << 10, Count: 8, Freed: true}, {Caller: "unpurged", Pages: 1, Count: 3, Freed: true}}}
	// 6.18: 6.12's areas with a larger percpu chunk map.
	bootDebian618 = BootVmalloc{Allocs: []BootAlloc{
		{Caller: "bpf_prog_alloc_no_stats", Pages: 1, Count: 1}, {Caller: "gen_pool_add_owner", Pages: 1, Count: 1, PerAtomicPool: true},
		{Caller: "pcpu_mem_zalloc", Bytes: 8 << 10, Count: 2}, {Caller: "pcpu_mem_zalloc", Bytes: 280 << 10, Count: 1},
		{Caller: "n_tty_open", Bytes: 12 << 10, Count: 1},
		{Caller: "crypto_scomp_init_tfm", Bytes: 128 << 10, Count: 8, Freed: true}, {Caller: "unpurged", Pages: 1, Count: 3, Freed: true}}}
	bootDebian73 = BootVmalloc{AtomicPoolsByZone: true, Allocs: []BootAlloc{
		{Caller: "bpf_prog_alloc_no_stats", Pages: 1, Count: 1}, {Caller: "gen_pool_add_owner", Pages: 1, Count: 1, PerAtomicPool: true},
		{Caller: "pcpu_mem_zalloc", Bytes: 8 << 10, Count: 2}, {Caller: "pcpu_mem_zalloc", Bytes: 288 << 10, Bytes16K: 320 << 10, Count: 1},
		{Caller: "lz4_alloc_ctx", Bytes: 20 << 10, Count: 2}, {Caller: "n_tty_open", Bytes: 12 << 10, Count: 1},
		{Caller: "unpurged", Pages: 1, Count: 3, Freed: true}}}
)

// threadSize is THREAD_SIZE (arch/arm64/include/asm/memory.h): 16 KiB, or a
// page when pages are larger (VMAP_STACK); THREAD_ALIGN is twice it.
func (k *Kernel) threadSize() uint64 { return max(16<<10, k.G.PageSize()) }

// allocVmapStack is arch_alloc_vmap_stack / alloc_thread_stack_node
// (kernel/fork.c) with VMAP_STACK: THREAD_SIZE from vmalloc, aligned to
// THREAD_ALIGN, with a guard page.
func (k *Kernel) allocVmapStack(c CPU, caller string) error {
	_, err := k.VmallocNodeRange(c, VmallocRequest{Size: k.threadSize(), Align: 2 * k.threadSize(), Caller: caller})
	return err
}

// ioremapDevice is ioremap_prot (arch/arm64/mm/ioremap.c ->
// generic_ioremap_prot): a VM_IOREMAP area aligned to its size's power of two
// up to IOREMAP_MAX_ORDER (PUD_SHIFT with 4K pages, PMD_SHIFT otherwise), a
// guard page, and the device range mapped with PROT_DEVICE_nGnRE, blocks and
// contiguous runs where they fit (ioremap_page_range, huge vmap).
func (k *Kernel) ioremapDevice(c CPU, d Device) error {
	ps := k.G.PageSize()
	off := uint64(d.Base) & (ps - 1)
	size := alignUp(uint64(d.Size)+off, ps)
	maxOrder := k.G.Shift(arm64.LevelPMD)
	if k.G.PageShift == arm64.PageShift4K {
		maxOrder = k.G.Shift(arm64.LevelPUD)
	}
	order := uint(0)
	for uint64(1)<<order < size {
		order++
	}
	order = min(max(order, k.G.PageShift), maxOrder)
	k.shared(sharedVmap)
	k.bookMu.Lock()
	addr, ok := k.VM.allocVA(size+ps, uint64(1)<<order, k.Layout.VmallocStart, k.Layout.VmallocEnd)
	k.bookMu.Unlock()
	if !ok {
		return fmt.Errorf("ioremap %s: %w", d.Name, ErrNoMem)
	}
	pa := uint64(d.Base) - off
	// vmap_range: PUD/PMD blocks and contiguous PTEs, never contiguous PMDs.
	flags := pgtable.Flags(0)
	if size >= k.G.Size(arm64.LevelPMD) {
		flags = pgtable.NoContMappings
	}
	if err := k.PT.Map(c, addr, pa, size, k.Feat.Prot(arm64.ProtDeviceNGnRE), flags); err != nil {
		return fmt.Errorf("ioremap %s: %w", d.Name, err)
	}
	a := &VMArea{Addr: addr, Size: size + ps, Flags: VMIoremap, Prot: k.Feat.Prot(arm64.ProtDeviceNGnRE),
		Caller: "ioremap " + d.Name, pageShift: k.G.PageShift}
	k.shared(sharedVmap)
	k.bookMu.Lock()
	k.VM.insert(a)
	k.bookMu.Unlock()
	return nil
}

// bootVmallocUsers makes the boot-time vmalloc areas in the order the boot
// makes them: init_IRQ's per-CPU IRQ stacks (init_irq_stacks) and the
// interrupt controller's registers; the kernel's own early areas; an idle
// thread stack per secondary CPU (fork_idle); the stacks of the threads the
// boot starts (BootThreads); the drivers' device registers; the DMA atomic
// pools; the BPF JIT's first pack (a program the boot loads); and the
// second percpu chunk, which pcpu_get_vm_areas takes from the top of the
// vmalloc range.
func (k *Kernel) bootVmallocUsers(c CPU) error {
	ioremaps := false
	for _, d := range k.Cfg.Devices {
		ioremaps = ioremaps || d.Ioremap
	}
	if !ioremaps && k.Cfg.BootThreads == 0 {
		return nil // a machine that declares none (the server presets)
	}
	for range k.MIDRs {
		if err := k.allocVmapStack(c, "init_irq_stacks"); err != nil {
			return err
		}
	}
	for _, d := range k.Cfg.Devices {
		if d.Ioremap && d.Irqchip {
			if err := k.ioremapDevice(c, d); err != nil {
				return err
			}
		}
	}
	ps := k.G.PageSize()
	var freed []uint64
	pools, poolSize := k.atomicPools()
	for _, a := range k.V.Boot.Allocs {
		bytes := a.Bytes
		if a.Bytes16K != 0 && ps == 16<<10 {
			bytes = a.Bytes16K
		}
		size := (bytes + ps - 1) / ps * ps
		if bytes == 0 {
			size = uint64(a.Pages) * ps
		}
		count := a.Count
		if a.PerAtomicPool {
			count *= pools
		}
		if a.Caller == "pcpu_mem_zalloc" && size <= ps {
			continue // kzalloc, not vmalloc (mm/percpu.c pcpu_mem_zalloc)
		}
		for range count {
			area, err := k.VmallocNodeRange(c, VmallocRequest{Size: size, Caller: a.Caller})
			if err != nil {
				return err
			}
			if a.Freed {
				freed = append(freed, area.Addr)
			}
		}
	}
	for range len(k.MIDRs) - 1 {
		if err := k.allocVmapStack(c, "fork_idle"); err != nil {
			return err
		}
	}
	for range k.Cfg.BootThreads {
		if err := k.allocVmapStack(c, "kernel_clone"); err != nil {
			return err
		}
	}
	for _, a := range freed {
		if err := k.Vfree(c, a); err != nil {
			return err
		}
	}
	for _, d := range k.Cfg.Devices {
		if d.Ioremap && !d.Irqchip {
			if err := k.ioremapDevice(c, d); err != nil {
				return err
			}
		}
	}
	for range pools {
		// dma_common_contiguous_remap of each pool's pages: a
		// VM_DMA_COHERENT area with a guard page.
		if _, err := k.VmallocNodeRange(c, VmallocRequest{Size: poolSize, Caller: "dma_common_contiguous_remap"}); err != nil {
			return err
		}
	}
	if err := k.bootBPF(c); err != nil {
		return err
	}
	return k.pcpuChunk(c)
}

// bootBPF is the BPF program the boot JITs: since bpf_prog_pack on arm64
// (Version.BPFProgPack) it opens the first 2 MiB pack; before, it had a page
// of its own (bpf_jit_alloc_exec).
func (k *Kernel) bootBPF(c CPU) error {
	if k.V.BPFProgPack && k.Exec != nil {
		_, err := k.bpfProgPackAlloc(c, 1<<bpfProgChunkShift, k.Exec.NewObject())
		return err
	}
	_, err := k.VmallocNodeRange(c, VmallocRequest{Size: k.G.PageSize(), Caller: "bpf_jit_alloc_exec"})
	return err
}

// pcpuChunk is the second percpu chunk (pcpu_create_chunk ->
// pcpu_get_vm_areas, mm/percpu-vm.c): one unit per CPU, unit size as the
// first chunk's, VA taken top-down below VMALLOC_END, and only the pages
// already handed out populated (the first three of each unit with 4K pages,
// the first one otherwise, as the captures show).
func (k *Kernel) pcpuChunk(c CPU) error {
	ps := k.G.PageSize()
	unit := k.pcpuUnitSize()
	n := uint64(len(k.MIDRs))
	end := k.Layout.VmallocEnd &^ (ps - 1)
	start := end - unit*n
	populated := max(ps, 12<<10)
	k.shared(sharedVmap)
	k.bookMu.Lock()
	k.VM.carve(start, end)
	k.bookMu.Unlock()
	for u := uint64(0); u < n; u++ {
		va := start + u*unit
		k.shared(sharedVmap)
		k.bookMu.Lock()
		k.VM.release(va, va+populated)
		k.bookMu.Unlock()
		if _, err := k.VmallocNodeRange(c, VmallocRequest{Size: populated, Start: va, End: va + populated,
			Flags: VMNoGuard, Caller: "pcpu_get_vm_areas"}); err != nil {
			return fmt.Errorf("pcpu_get_vm_areas: %w", err)
		}
	}
	return nil
}

// pcpuUnitSize is pcpu_unit_size of the first chunk (static, reserved and
// dynamic percpu areas, page aligned) for the release's build, from the
// second chunk's span in /proc/vmallocinfo (two units).
func (k *Kernel) pcpuUnitSize() uint64 {
	ps := k.G.PageSize()
	var u uint64
	switch {
	case k.V.LegacyLayout:
		u = 124 << 10
	case !k.V.AliasUnmapData:
		u = 140 << 10
	default:
		u = 144 << 10
	}
	return alignUp(u, ps)
}

// atomicPools is how many DMA atomic pools dma_atomic_pool_init
// (kernel/dma/pool.c) remaps into vmalloc, and each one's size. The size
// defaults to 128 KiB per GiB of RAM (totalram_pages / 8192 pages, at most
// MAX_ORDER_NR_PAGES, at least 128 KiB), and atomic_pool_expand takes it as
// one block of 2^get_order(size) pages. The zones are arm64's
// (zone_sizes_init): ZONE_DMA below the 32-bit DMA limit, ZONE_DMA32 empty
// with it, ZONE_NORMAL above; only releases with AtomicPoolsByZone skip the
// zones without memory.
func (k *Kernel) atomicPools() (n int, size uint64) {
	ps := k.G.PageSize()
	pages := k.Mem.TotalPages() / ((1 << 30) / (128 << 10))
	pages = min(pages, uint64(1)<<k.Mem.MaxOrder())
	bytes := max(pages*ps, 128<<10)
	order := 0
	for ps<<order < bytes {
		order++
	}
	order = min(order, k.Mem.MaxOrder())
	size = ps << order
	if !k.V.Boot.AtomicPoolsByZone {
		return 3, size
	}
	const dmaLimit = 1 << 32
	for _, r := range k.Cfg.RAM {
		if uint64(r.Base) < dmaLimit {
			n = 1 // ZONE_DMA
			break
		}
	}
	for _, r := range k.Cfg.RAM {
		if uint64(r.Base)+uint64(r.Size) > dmaLimit {
			n++ // ZONE_NORMAL
			break
		}
	}
	return n, size
}
