package kernel

import (
	"errors"
	"fmt"
)

// ModMemType is enum mod_mem_type: the module memory regions.
type ModMemType int

const (
	ModText ModMemType = iota
	ModData
	ModRodata
	ModROAfterInit
	ModInitText
	ModInitData
	ModInitRodata
	NumModMemTypes
)

var modMemNames = [NumModMemTypes]string{"text", "data", "rodata", "ro_after_init", "init_text", "init_data", "init_rodata"}

func (t ModMemType) String() string {
	if t < 0 || t >= NumModMemTypes {
		return fmt.Sprintf("ModMemType(%d)", int(t))
	}
	return modMemNames[t]
}

// IsText is mod_mem_type_is_text.
func (t ModMemType) IsText() bool { return t == ModText || t == ModInitText }

// IsInit is mod_mem_type_is_init.
func (t ModMemType) IsInit() bool { return t >= ModInitText && t < NumModMemTypes }

// IsCoreData is mod_mem_type_is_core_data: data, rodata and ro_after_init.
func (t ModMemType) IsCoreData() bool { return !t.IsInit() && !t.IsText() }

// ModuleSpec is what the loader needs of a module: its name and the size of
// each memory region after layout_sections.
type ModuleSpec struct {
	Name string
	Size [NumModMemTypes]uint64
}

// Module is a loaded module: where each region lives and which object's
// text its text regions hold.
type Module struct {
	Spec   ModuleSpec
	Base   [NumModMemTypes]uint64
	IsROX  [NumModMemTypes]bool
	Object [NumModMemTypes]uint64
	inited bool
}

// moduleMemoryAlloc is module_memory_alloc: page-aligned, text from
// EXECMEM_MODULE_TEXT and everything else from EXECMEM_MODULE_DATA, through
// execmem_alloc_rw so the memory is writable for the loader.
func (k *Kernel) moduleMemoryAlloc(c CPU, m *Module, t ModMemType) error {
	size := m.Spec.Size[t]
	if size == 0 {
		return nil
	}
	et := ExecmemModuleData
	if t.IsText() {
		et = ExecmemModuleText
	}
	p, err := k.ExecmemAllocRW(c, et, size)
	if err != nil {
		return fmt.Errorf("module %s: %v (%d bytes): %w", m.Spec.Name, t, size, err)
	}
	m.Base[t] = p
	m.IsROX[t] = k.Exec.IsROX(et)
	return nil
}

func (k *Kernel) moduleMemoryFree(c CPU, m *Module, t ModMemType) error {
	if m.Base[t] == 0 {
		return nil
	}
	if m.Object[t] != 0 {
		k.Exec.Retire(m.Object[t])
	}
	err := k.ExecmemFree(c, m.Base[t])
	m.Base[t] = 0
	return err
}

// moduleSetMemory is module_set_memory: set_vm_flush_reset_perms, then the
// permission change over the region.
func (k *Kernel) moduleSetMemory(c CPU, m *Module, t ModMemType, set func(CPU, uint64, int) error) error {
	if m.Spec.Size[t] == 0 {
		return nil
	}
	if a := k.FindVMArea(m.Base[t]); a != nil && !m.IsROX[t] {
		a.Flags |= VMFlushResetPerms
	}
	return set(c, m.Base[t], k.pages(m.Spec.Size[t]))
}

// LoadModule loads a module as load_module and do_init_module do: allocate
// every region writable (move_module), copy the sections in (text regions
// get a fresh object), then complete_formation's STRICT_MODULE_RWX sequence —
// module_enable_rodata_ro, module_enable_data_nx, module_enable_text_rox
// (execmem_restore_rox for ROX-cache text, set_memory_rox otherwise) — run
// init, make ro_after_init read-only and free the init regions.
func (k *Kernel) LoadModule(c CPU, spec ModuleSpec) (*Module, error) {
	return k.loadModule(c, spec, true)
}

func (k *Kernel) loadModule(c CPU, spec ModuleSpec, freeInit bool) (*Module, error) {
	m := &Module{Spec: spec}
	fail := func(err error) (*Module, error) {
		for t := ModMemType(0); t < NumModMemTypes; t++ {
			if m.IsROX[t] && m.Base[t] != 0 {
				// module_memory_restore_rox does not check the result.
				k.kernelIgnores("module_memory_restore_rox", k.ExecmemRestoreROX(c, m.Base[t], spec.Size[t]))
			}
			err = errors.Join(err, k.moduleMemoryFree(c, m, t))
		}
		return nil, err
	}
	for t := ModMemType(0); t < NumModMemTypes; t++ {
		if k.BeforeModuleAlloc != nil && spec.Size[t] != 0 {
			if err := k.BeforeModuleAlloc(c, spec, t); err != nil {
				return fail(err)
			}
		}
		if err := k.moduleMemoryAlloc(c, m, t); err != nil {
			return fail(err)
		}
	}
	for _, t := range []ModMemType{ModText, ModInitText} {
		if m.Base[t] != 0 {
			m.Object[t] = k.Exec.NewObject()
			if err := k.WriteText(m.Base[t], spec.Size[t], m.Object[t]); err != nil {
				return fail(err)
			}
		}
	}
	// complete_formation
	if k.Cfg.Rodata != RodataOff {
		for _, t := range []ModMemType{ModRodata, ModInitRodata} {
			if err := k.moduleSetMemory(c, m, t, k.SetMemoryRO); err != nil {
				return fail(err)
			}
		}
	}
	for _, t := range []ModMemType{ModData, ModRodata, ModROAfterInit, ModInitData, ModInitRodata} {
		if err := k.moduleSetMemory(c, m, t, k.SetMemoryNX); err != nil {
			return fail(err)
		}
	}
	for _, t := range []ModMemType{ModText, ModInitText} {
		var err error
		if m.IsROX[t] {
			err = k.ExecmemRestoreROX(c, m.Base[t], spec.Size[t])
		} else {
			err = k.moduleSetMemory(c, m, t, k.SetMemoryROX)
		}
		if err != nil {
			return fail(err)
		}
	}
	// do_init_module: init ran; ro_after_init sealed; init regions freed.
	if k.Cfg.Rodata != RodataOff {
		if err := k.moduleSetMemory(c, m, ModROAfterInit, k.SetMemoryRO); err != nil {
			return fail(err)
		}
	}
	m.inited = true
	if freeInit {
		if err := k.FreeModuleInit(c, m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// UnloadModule is free_module: every remaining region is freed with
// execmem_free (vfree with VM_FLUSH_RESET_PERMS, or back to the ROX cache).
func (k *Kernel) UnloadModule(c CPU, m *Module) error {
	for t := ModMemType(0); t < NumModMemTypes; t++ {
		if err := k.moduleMemoryFree(c, m, t); err != nil {
			return fmt.Errorf("unloading %s: %w", m.Spec.Name, err)
		}
	}
	return nil
}

// JITText is a smaller execmem user: a BPF program's JIT image, a BPF
// trampoline or a kprobe instruction slot page.
type JITText struct {
	Type   ExecmemType
	Addr   uint64
	Size   uint64
	Object uint64
	Packed bool // carved out of a bpf_prog_pack
}

// LoadJITText allocates executable memory for JIT-generated code and makes
// it executable: from the ROX cache the code is written with text_poke into
// memory that never becomes writable; otherwise the image is allocated
// writable (EXECMEM_BPF, PAGE_KERNEL), written, and sealed with
// set_memory_rox (bpf_jit_binary_lock_ro), or — for kprobes, whose range is
// PAGE_KERNEL_ROX — written with text_poke into ROX memory; releases with
// Version.KprobeROX also run set_memory_rox on the slot page
// (alloc_insn_page), which makes its linear alias read-only.
//
// BPF images on releases with bpf_prog_pack (v6.10+) share 2 MiB ROX packs
// instead (bpf_jit_binary_pack_alloc, bpf_pack.go).
func (k *Kernel) LoadJITText(c CPU, t ExecmemType, size uint64) (*JITText, error) {
	if t == ExecmemBPF && k.V.BPFProgPack && bpfPackSize(size) <= bpfProgPackSize {
		j := &JITText{Type: t, Size: size, Object: k.Exec.NewObject(), Packed: true}
		p, err := k.bpfProgPackAlloc(c, bpfPackSize(size), j.Object)
		if err != nil {
			k.Exec.Retire(j.Object)
			return nil, err
		}
		j.Addr = p
		return j, nil
	}
	p, err := k.ExecmemAlloc(c, t, size)
	if err != nil {
		return nil, err
	}
	j := &JITText{Type: t, Addr: p, Size: size, Object: k.Exec.NewObject()}
	if err := k.WriteText(p, size, j.Object); err != nil {
		return nil, err
	}
	if !k.Exec.IsROX(t) && (t != ExecmemKprobes || k.V.KprobeROX) {
		if err := k.SetMemoryROX(c, p, k.pages(size)); err != nil {
			return nil, errors.Join(err, k.ExecmemFree(c, p))
		}
	}
	return j, nil
}

// FreeJITText releases JIT text (bpf_jit_free_exec / free_insn_page).
func (k *Kernel) FreeJITText(c CPU, j *JITText) error {
	k.Exec.Retire(j.Object)
	if j.Packed {
		return k.bpfProgPackFree(c, j.Addr)
	}
	return k.ExecmemFree(c, j.Addr)
}
