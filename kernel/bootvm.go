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
	Pages  int    // each area's size in pages of the granule, when Bytes is 0
	Count  int
	Freed  bool // vfree'd before the boot ends: its VA waits, unpurged, for the lazy purge
}

// BootVmalloc is what a release itself puts in the vmalloc range during
// boot, in boot order (Version.Boot). The callers Debian's builds show:
// bpf_prog_alloc_no_stats (kernel/bpf/core.c), gen_pool_add_owner for the
// DMA atomic pools' bitmaps (kernel/dma/pool.c), pcpu_mem_zalloc
// (mm/percpu.c), n_tty_open (drivers/tty/n_tty.c), crypto_scomp_init_tfm
// (crypto/scompress.c), lz4_alloc_ctx (crypto/lz4.c). The DMA atomic pools
// themselves (dma_common_contiguous_remap) and the BPF JIT's first pack are
// made separately (AtomicPools, bootBPF).
type BootVmalloc struct {
	Allocs []BootAlloc
	// AtomicPools is how many DMA atomic pools dma_atomic_pool_init remaps
	// into vmalloc: one per DMA zone with memory (GFP_KERNEL, GFP_DMA,
	// GFP_DMA32) in the 6.x builds; the 7.x builds show one.
	AtomicPools int
}

// The boot-time vmalloc areas of Debian's builds booted under QEMU virt
// (/proc/vmallocinfo after boot, capture/testdata/fidelity).
var (
	bootDebian61 = BootVmalloc{AtomicPools: 3, Allocs: []BootAlloc{
		{"bpf_prog_alloc_no_stats", 0, 1, 1, false}, {"gen_pool_add_owner", 0, 1, 3, false},
		{"pcpu_mem_zalloc", 248 << 10, 0, 1, false}, {"n_tty_open", 12 << 10, 0, 1, false},
		{"crypto_scomp_init_tfm", 128 << 10, 0, 4, false},
		// freed at boot (unpurged in vmallocinfo): 2 x 1.25 MiB, 548K, 336K, 20K
		{"unpurged", 1280 << 10, 0, 2, true}, {"unpurged", 544 << 10, 0, 1, true},
		{"unpurged", 332 << 10, 0, 1, true}, {"unpurged", 20 << 10, 0, 1, true}}}
	bootDebian612 = BootVmalloc{AtomicPools: 3, Allocs: []BootAlloc{
		{"bpf_prog_alloc_no_stats", 0, 1, 1, false}, {"gen_pool_add_owner", 0, 1, 3, false},
		{"pcpu_mem_zalloc", 8 << 10, 0, 2, false}, {"pcpu_mem_zalloc", 272 << 10, 0, 1, false},
		{"n_tty_open", 12 << 10, 0, 1, false},
		// crypto_scomp_init_tfm's scratch buffers, freed again (8 x 132K unpurged in 6.12)
		{"crypto_scomp_init_tfm", 128 << 10, 0, 8, true}, {"unpurged", 0, 1, 3, true}}}
	bootDebian73 = BootVmalloc{AtomicPools: 1, Allocs: []BootAlloc{
		{"bpf_prog_alloc_no_stats", 0, 1, 1, false}, {"gen_pool_add_owner", 0, 1, 1, false},
		{"pcpu_mem_zalloc", 8 << 10, 0, 2, false}, {"pcpu_mem_zalloc", 288 << 10, 0, 1, false},
		{"lz4_alloc_ctx", 20 << 10, 0, 2, false}, {"n_tty_open", 12 << 10, 0, 1, false},
		{"unpurged", 0, 1, 3, true}}}
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
	for _, a := range k.V.Boot.Allocs {
		size := (a.Bytes + ps - 1) / ps * ps
		if a.Bytes == 0 {
			size = uint64(a.Pages) * ps
		}
		for range a.Count {
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
	for range k.V.Boot.AtomicPools {
		// dma_common_contiguous_remap of the 256 KiB pool (atomic_pool_size
		// default: 128 KiB per GiB of RAM, at least 128 KiB; the QEMU boots
		// show 256 KiB): a VM_DMA_COHERENT area with a guard page.
		if _, err := k.VmallocNodeRange(c, VmallocRequest{Size: 256 << 10, Caller: "dma_common_contiguous_remap"}); err != nil {
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
	k.bookMu.Lock()
	k.VM.carve(start, end)
	k.bookMu.Unlock()
	for u := uint64(0); u < n; u++ {
		va := start + u*unit
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
