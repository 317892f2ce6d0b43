// Package kernel models how the Linux arm64 kernel maps and changes its own
// memory: boot (the kernel image and the linear map, by the mainline rules for
// rodata, BBML2_NOABORT, debug_pagealloc and KFENCE), vmalloc, pageattr
// (set_memory_*, set_direct_map_*, the linear alias), splitting of live block
// mappings, and the TLB maintenance all of these issue.
//
// Files are named after the kernel files they model (mmu.go for
// arch/arm64/mm/mmu.c, pageattr.go, vmalloc.go, tlbflush.go); functions after
// the kernel functions they model. Every operation takes the CPU it runs on.
package kernel

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
)

// Errors returned by kernel operations, as the kernel returns them.
var (
	ErrInvalid = errors.New("kernel: -EINVAL")
	ErrNoMem   = errors.New("kernel: -ENOMEM")
	ErrBusy    = errors.New("kernel: -EBUSY")
)

// Stats counts what the kernel did. Split is updated under
// pgtable_split_lock (or single-threaded at boot); the counters are atomic.
type Stats struct {
	Split          pgtable.SplitStats // leaves split by split_kernel_leaf_mapping and range splits
	Collapse       CollapseStats      // tables folded back into blocks or runs
	SetMemoryCalls atomic.Uint64      // __change_memory_common calls
	PageUpdates    atomic.Uint64      // pages whose descriptors a pageattr walk rewrote
	Warnings       []string           // WARN_ONCE messages, once each
}

// ImageLayout is where the kernel image ended up.
type ImageLayout struct {
	PA, VA                        uint64 // _text
	Stext                         uint64 // offset of _stext: the header [_text, _stext) ends
	TextEnd, RodataStart          uint64 // offsets from _text: _etext, __start_rodata
	InitStart, InitEnd, DataStart uint64 // __init_begin, __init_end, _data
	InitDataStart                 uint64 // __initdata_begin (InitEnd when init is one segment)
	End                           uint64 // _end
	BssStop                       uint64 // __bss_stop
}

// Kernel is one booted, modelled kernel.
type Kernel struct {
	Cfg    Config
	V      *Version // the modelled release
	G      arm64.Geometry
	Layout arm64.Layout
	Feat   arm64.Features
	Mem    *physmem.Memory
	PT     *pgtable.Tables
	MIDRs  []arm64.MIDR
	Image  ImageLayout

	PhysOffset uint64 // memstart_addr: PHYS_OFFSET of the linear map

	RodataFull bool // rodata_full
	BootBBML2  bool // the boot CPU's own BBML2_NOABORT (cpu_supports_bbml2_noabort)
	BBML2      bool // the system capability ARM64_HAS_BBML2_NOABORT
	// LinearMapRequiresBBML2 records at map_mem time that the linear map was
	// block-mapped although the linear alias may need changing later.
	LinearMapRequiresBBML2 bool
	capsFinalized          bool
	kfencePool             [2]uint64 // PA range of the KFENCE pool, if any

	SplitLock *Mutex // pgtable_split_lock
	// PageTableLock is init_mm.page_table_lock: installing a new table in
	// an empty slot re-checks the slot under it (__pte_alloc_kernel).
	PageTableLock *Mutex
	InitMM        *RWSem // init_mm's mmap lock: ptdump walks hold it for writing
	// PatchLock is arm64's patch_lock: text patching (__text_poke,
	// aarch64_insn_copy) holds it across its lockless vmalloc_to_page walk.
	PatchLock *Mutex
	// VmapLock is the vmap node's busy.lock as /proc/kcore's vread_iter
	// holds it across its lockless vmalloc_to_page walk.
	VmapLock  *Mutex
	PurgeLock *Mutex       // vmap_purge_lock: one lazy purge at a time
	ptdumping atomic.Int32 // arm64_ptdump_lock_key: a ptdump walk is running
	// onShared is told of accesses to bookkeeping shared outside the door
	// calls (SetSharedHook).
	onShared func(what string)
	Stats    Stats
	TLB      TLBLog
	VM       *Vmalloc
	Exec     *Execmem
	// bpfPackList is bpf_prog_pack's pack_list (bpf_pack.go).
	bpfPackList *bpfPacks
	// Mutations are injected bugs for the checker's mutant suite (mutants.go);
	// zero is the faithful model.
	Mutations Mutations
	// BeforeModuleAlloc, when set, runs before each region of a loading
	// module is allocated: move_module allocates them one by one, and other
	// CPUs free and purge VA in between, so a replay runs there what the
	// recording shows before that region's allocation. Nil in the model.
	BeforeModuleAlloc func(c CPU, spec ModuleSpec, t ModMemType) error

	warnMu sync.Mutex
	warned map[string]bool
	// bookMu guards vmalloc and execmem bookkeeping (vmap_area_lock and
	// friends). It is a Go lock, never held across a door call, so it adds
	// no scheduling point and cannot deadlock a cooperative scheduler.
	bookMu sync.Mutex
}

// Lin is __phys_to_virt: the linear-map address of a physical address.
func (k *Kernel) Lin(pa uint64) uint64 { return pa - k.PhysOffset + k.Layout.PageOffset }

// PA is __virt_to_phys for linear-map addresses.
func (k *Kernel) PA(lin uint64) uint64 { return lin - k.Layout.PageOffset + k.PhysOffset }

// warnOnce records a WARN_ONCE.
func (k *Kernel) warnOnce(key, format string, args ...any) {
	k.warnMu.Lock()
	defer k.warnMu.Unlock()
	if k.warned[key] {
		return
	}
	k.warned[key] = true
	k.Stats.Warnings = append(k.Stats.Warnings, fmt.Sprintf(format, args...))
}

// CanSetDirectMap is can_set_direct_map (pageattr.c): the linear map may have
// its permissions changed at page granularity.
// KFENCE counts when its pool may still be set up late (kfence.sample_interval
// 0 at boot: arm64_kfence_can_set_direct_map).
func (k *Kernel) CanSetDirectMap() bool {
	return k.RodataFull || k.Cfg.DebugPagealloc || k.Cfg.KFENCE == KFENCELate || k.Cfg.KFENCE == KFENCEIdle
}

// forcePTEMapping is force_pte_mapping (mmu.c): whether the linear map must be
// PTE-granular from the start. Before the CPU capabilities are final the
// boot CPU's own MIDR decides.
func (k *Kernel) forcePTEMapping() bool {
	if k.Cfg.DebugPagealloc {
		return true
	}
	bbml2 := k.BootBBML2
	if k.capsFinalized {
		bbml2 = k.splitCapable()
	}
	if bbml2 && k.V.LazySplit {
		return false
	}
	return k.CanSetDirectMap()
}

// splitLeafMappingPossible is split_leaf_mapping_possible: live splitting
// needs the system capability and a linear map that is not forced to PTEs.
func (k *Kernel) splitLeafMappingPossible() bool {
	return k.V.LazySplit && k.splitCapable() && !k.forcePTEMapping()
}

func (k *Kernel) isKFENCEAddress(va uint64) bool {
	if k.kfencePool[1] == 0 || !k.Layout.IsLinear(va) {
		return false
	}
	pa := k.PA(va)
	return pa >= k.kfencePool[0] && pa < k.kfencePool[1]
}
