package capture

import (
	"debug/elf"
	"fmt"

	"github.com/ptlab/ptlab/arm64"
)

// Machine is what capture knows about the running kernel: the translation
// regime of its TTBR1 tables, where their root is, how physical addresses map
// into the linear map, and the kernel's virtual layout for ptdump's markers.
type Machine struct {
	// Geometry is the regime the hardware walks: the granule, vabits_actual
	// (64 - TCR_EL1.T1SZ) and whether LPA2 descriptors are in use.
	Geometry arm64.Geometry
	// ConfigVABits is CONFIG_ARM64_VA_BITS (NUMBER(VA_BITS)); it can exceed
	// Geometry.VABits when a 52-bit kernel runs on a CPU without 52-bit VA.
	ConfigVABits int
	// Layout is the kernel's virtual address map, with the values VMCOREINFO
	// reports taking precedence over the computed ones.
	Layout arm64.Layout
	// PhysOffset is PHYS_OFFSET (memstart_addr); PageOffset is the PAGE_OFFSET
	// that __phys_to_virt uses with it: VA = PA - PhysOffset + PageOffset.
	PhysOffset, PageOffset uint64
	// KimageVoffset is kimage_voffset: __pa_symbol(va) = va - KimageVoffset.
	KimageVoffset uint64
	// SwapperPgDir is the VA of swapper_pg_dir, SwapperPA its PA.
	SwapperPgDir, SwapperPA uint64
	// RootPA is the PA of the table the hardware starts its walk at
	// (TTBR1_EL1's base address): SwapperPA, plus TTBR1_BADDR_4852_OFFSET when
	// the kernel's top-level table is wider than the hardware's.
	RootPA uint64
	// KernelOffset is the KASLR displacement of the image (KERNELOFFSET).
	KernelOffset uint64
	// OSRelease is the kernel release, when VMCOREINFO has it.
	OSRelease string
	// Symbols are the kernel symbols found in kallsyms (may be empty).
	Symbols Symbols
}

// MachineHints supply facts for kernels whose kcore lacks a VMCOREINFO note
// (before 4.19) or some of its entries; zero fields are unknown.
type MachineHints struct {
	PageSize int // PAGE_SIZE, e.g. os.Getpagesize() on the captured machine
}

// DetectMachine derives the machine from a kcore's VMCOREINFO and segments
// and the kallsyms symbols. Sources, in order of preference:
//   - page size: PAGESIZE; hints.
//   - vabits_actual: NUMBER(TCR_EL1_T1SZ) (arch_crash_save_vmcoreinfo, 5.9+);
//     the vabits_actual variable read from kcore; NUMBER(VA_BITS) if <= 48.
//   - LPA2: 4K or 16K granule with vabits_actual 52 (the kernel enables
//     FEAT_LPA2 descriptors exactly when it runs with 52-bit VA on those
//     granules, see lpa2_is_enabled).
//   - swapper_pg_dir: kallsyms, then SYMBOL(swapper_pg_dir); its PA via
//     NUMBER(kimage_voffset), else through the kcore segment that maps it.
//   - PHYS_OFFSET: NUMBER(PHYS_OFFSET), else the memstart_addr variable.
func DetectMachine(k *Kcore, syms Symbols, hints MachineHints) (*Machine, error) {
	if k.Machine != elf.EM_AARCH64 {
		return nil, fmt.Errorf("%w: kcore of a %v kernel, not arm64", ErrMachine, k.Machine)
	}
	vi := k.VMCoreInfo
	m := &Machine{Symbols: syms, OSRelease: vi.OSRelease()}
	pageSize, pageShift, err := detectPageSize(vi, hints)
	if err != nil {
		return nil, err
	}
	kernelGeo, err := m.detectGeometry(k, vi, pageShift)
	if err != nil {
		return nil, err
	}
	if err := m.findSwapperPgDir(vi, pageSize); err != nil {
		return nil, err
	}
	if err := m.findSwapperPA(k, vi, pageSize); err != nil {
		return nil, err
	}
	m.RootPA = rootPA(m.SwapperPA, kernelGeo, m.Geometry)
	if err := m.findLinearMap(k, vi); err != nil {
		return nil, err
	}
	if m.KernelOffset, _, err = vi.KernelOffset(); err != nil {
		return nil, err
	}
	if m.Layout, err = layoutFor(m, vi); err != nil {
		return nil, err
	}
	return m, nil
}

// detectPageSize reads PAGESIZE, else takes the hint.
func detectPageSize(vi *VMCoreInfo, hints MachineHints) (size uint64, shift uint, err error) {
	size, ok, err := vi.PageSize()
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		if hints.PageSize == 0 {
			return 0, 0, fmt.Errorf("%w: no PAGESIZE in VMCOREINFO and no page size given", ErrMachine)
		}
		size = uint64(hints.PageSize)
	}
	switch size {
	case 4096:
		shift = arm64.PageShift4K
	case 16384:
		shift = arm64.PageShift16K
	case 65536:
		shift = arm64.PageShift64K
	default:
		return 0, 0, fmt.Errorf("%w: page size %d", ErrMachine, size)
	}
	return size, shift, nil
}

// detectGeometry sets m.Geometry (the regime the hardware walks, from
// vabits_actual) and m.ConfigVABits, and returns the geometry the kernel was
// built for (CONFIG_ARM64_VA_BITS), whose top level sets the TTBR1 offset.
func (m *Machine) detectGeometry(k *Kcore, vi *VMCoreInfo, pageShift uint) (arm64.Geometry, error) {
	configVA, haveConfigVA, err := vi.Number("VA_BITS")
	if err != nil {
		return arm64.Geometry{}, err
	}
	vaActual, err := vabitsActual(k, vi, m.Symbols, configVA, haveConfigVA)
	if err != nil {
		return arm64.Geometry{}, err
	}
	if !haveConfigVA {
		configVA = uint64(vaActual)
	}
	if configVA < uint64(vaActual) || configVA > 52 {
		return arm64.Geometry{}, fmt.Errorf("%w: VA_BITS %d with vabits_actual %d", ErrMachine, configVA, vaActual)
	}
	m.ConfigVABits = int(configVA)
	lpa2 := pageShift != arm64.PageShift64K && vaActual > 48
	if m.Geometry, err = arm64.NewGeometry(pageShift, vaActual, lpa2); err != nil {
		return arm64.Geometry{}, fmt.Errorf("%w: %w", ErrMachine, err)
	}
	kernelGeo, err := arm64.NewGeometry(pageShift, m.ConfigVABits, pageShift != arm64.PageShift64K && m.ConfigVABits > 48)
	if err != nil {
		return arm64.Geometry{}, fmt.Errorf("%w: VA_BITS %d: %w", ErrMachine, m.ConfigVABits, err)
	}
	return kernelGeo, nil
}

// vabitsActual is the VA size the kernel runs with: 64 - TCR_EL1_T1SZ, else
// the vabits_actual variable, else VA_BITS when it cannot be 52-bit.
func vabitsActual(k *Kcore, vi *VMCoreInfo, syms Symbols, configVA uint64, haveConfigVA bool) (int, error) {
	if t1sz, ok, err := vi.Number("TCR_EL1_T1SZ"); err != nil {
		return 0, err
	} else if ok {
		if t1sz < 12 || t1sz > 39 {
			return 0, fmt.Errorf("%w: TCR_EL1_T1SZ %d", ErrMachine, t1sz)
		}
		return 64 - int(t1sz), nil
	}
	if a, ok := syms["vabits_actual"]; ok {
		v, err := k.ReadUint64(a)
		if err != nil {
			return 0, fmt.Errorf("%w: reading vabits_actual: %w", ErrMachine, err)
		}
		return int(v), nil
	}
	if haveConfigVA && configVA <= 48 {
		return int(configVA), nil
	}
	return 0, fmt.Errorf("%w: VA size unknown (no TCR_EL1_T1SZ, no vabits_actual; VA_BITS %d)", ErrMachine, configVA)
}

// findSwapperPgDir sets m.SwapperPgDir: kallsyms and VMCOREINFO must agree
// when both have it.
func (m *Machine) findSwapperPgDir(vi *VMCoreInfo, pageSize uint64) error {
	sym, haveSym := m.Symbols["swapper_pg_dir"]
	vsym, haveVsym, err := vi.Symbol("swapper_pg_dir")
	if err != nil {
		return err
	}
	switch {
	case haveSym && haveVsym && sym != vsym:
		return fmt.Errorf("%w: swapper_pg_dir is %#x in kallsyms but %#x in VMCOREINFO", ErrMachine, sym, vsym)
	case haveSym:
		m.SwapperPgDir = sym
	case haveVsym:
		m.SwapperPgDir = vsym
	default:
		return fmt.Errorf("%w: swapper_pg_dir in neither kallsyms nor VMCOREINFO", ErrNoSymbol)
	}
	if m.SwapperPgDir&(pageSize-1) != 0 {
		return fmt.Errorf("%w: swapper_pg_dir %#x is not page aligned", ErrMachine, m.SwapperPgDir)
	}
	return nil
}

// findSwapperPA sets m.SwapperPA, __pa_symbol(swapper_pg_dir), and
// m.KimageVoffset: from kimage_voffset, checked against the kcore segment
// that maps the symbol, or from that segment alone.
func (m *Machine) findSwapperPA(k *Kcore, vi *VMCoreInfo, pageSize uint64) error {
	kv, haveKV, err := vi.Number("kimage_voffset")
	if err != nil {
		return err
	}
	seg, haveSeg := k.segmentFor(m.SwapperPgDir, int(pageSize))
	haveSeg = haveSeg && seg.HasPhys()
	switch {
	case haveKV:
		m.KimageVoffset = kv
		m.SwapperPA = m.SwapperPgDir - kv
		if haveSeg && seg.PAddr+(m.SwapperPgDir-seg.VAddr) != m.SwapperPA {
			return fmt.Errorf("%w: swapper_pg_dir PA %#x by kimage_voffset, %#x by the kcore segment at %#x",
				ErrMachine, m.SwapperPA, seg.PAddr+(m.SwapperPgDir-seg.VAddr), seg.VAddr)
		}
	case haveSeg:
		m.SwapperPA = seg.PAddr + (m.SwapperPgDir - seg.VAddr)
		m.KimageVoffset = m.SwapperPgDir - m.SwapperPA
	default:
		return fmt.Errorf("%w: no kimage_voffset and no kcore segment with a physical address covers swapper_pg_dir %#x", ErrMachine, m.SwapperPgDir)
	}
	return nil
}

// rootPA is the hardware's first table. With fewer levels than the kernel
// was built for, the top level is folded at run time and swapper_pg_dir's
// page is the next level's table (pgd_to_folded_p4d / p4d_to_folded_pud).
// With as many levels, TTBR1 points to the last entries of the wider table
// (TTBR1_BADDR_4852_OFFSET, offset_ttbr1).
func rootPA(swapperPA uint64, kernelGeo, hw arm64.Geometry) uint64 {
	if kernelGeo.Levels != hw.Levels {
		return swapperPA
	}
	ke, he := kernelGeo.Entries(kernelGeo.StartLevel), hw.Entries(hw.StartLevel)
	return swapperPA + uint64(ke-he)*8
}

// findLinearMap sets m.PhysOffset (PHYS_OFFSET, else memstart_addr) and
// m.PageOffset: _PAGE_OFFSET(VA_BITS) since 5.4, but the kcore RAM segments
// (kclist_add_remap: VA = __va(PA)) say it for any version.
func (m *Machine) findLinearMap(k *Kcore, vi *VMCoreInfo) error {
	if po, ok, err := vi.Number("PHYS_OFFSET"); err != nil {
		return err
	} else if ok {
		m.PhysOffset = po
	} else if a, ok := m.Symbols["memstart_addr"]; ok {
		if m.PhysOffset, err = k.ReadUint64(a); err != nil {
			return fmt.Errorf("%w: reading memstart_addr: %w", ErrMachine, err)
		}
	} else {
		return fmt.Errorf("%w: PHYS_OFFSET unknown (no NUMBER(PHYS_OFFSET), no memstart_addr)", ErrMachine)
	}
	m.PageOffset = -(uint64(1) << uint(m.ConfigVABits))
	linearSeen := false
	for _, s := range k.Segments {
		if !s.HasPhys() || s.VAddr-s.PAddr == m.KimageVoffset {
			continue
		}
		po := s.VAddr - s.PAddr + m.PhysOffset
		if linearSeen && po != m.PageOffset {
			return fmt.Errorf("%w: linear-map segments at %#x disagree on PAGE_OFFSET (%#x, %#x)", ErrMachine, s.VAddr, m.PageOffset, po)
		}
		m.PageOffset, linearSeen = po, true
	}
	return nil
}

// layoutFor is arm64.KernelLayout corrected by what VMCOREINFO reports
// (NUMBER(MODULES_VADDR), ..., SIZE(page)); ptdump_init's markers are built
// from these values.
func layoutFor(m *Machine, vi *VMCoreInfo) (arm64.Layout, error) {
	l := arm64.KernelLayout(m.Geometry, m.ConfigVABits)
	for _, f := range []struct {
		name string
		p    *uint64
	}{
		{"MODULES_VADDR", &l.ModulesVaddr},
		{"MODULES_END", &l.ModulesEnd},
		{"VMALLOC_START", &l.VmallocStart},
		{"VMALLOC_END", &l.VmallocEnd},
		{"VMEMMAP_END", &l.VmemmapEnd},
	} {
		v, ok, err := vi.Number(f.name)
		if err != nil {
			return l, err
		}
		if ok {
			*f.p = v
		}
	}
	// ptdump's "vmemmap start" is virt_to_page(_PAGE_OFFSET(vabits_actual)):
	// VMEMMAP_START plus the struct pages of the VA range a smaller
	// vabits_actual leaves unused.
	if vs, ok, err := vi.Number("VMEMMAP_START"); err != nil {
		return l, err
	} else if ok {
		sp, ok, err := vi.Size("page")
		if err != nil {
			return l, err
		}
		if !ok {
			sp = arm64.StructPageSize
		}
		unused := (l.PageOffset - m.PageOffset) >> m.Geometry.PageShift
		l.VmemmapStart = vs + unused*sp
	}
	return l, nil
}

// PhysToVirt is __phys_to_virt: the linear-map address of pa.
func (m *Machine) PhysToVirt(pa uint64) uint64 { return pa - m.PhysOffset + m.PageOffset }

// VirtToPhys is __virt_to_phys for linear-map addresses.
func (m *Machine) VirtToPhys(va uint64) uint64 { return va - m.PageOffset + m.PhysOffset }

// String is a one-line summary, e.g. "4K/52-bit/5 levels/LPA2, VA_BITS 52,
// swapper_pg_dir 0xffff... (PA 0x...)".
func (m *Machine) String() string {
	return fmt.Sprintf("%v, VA_BITS %d, swapper_pg_dir %#x (PA %#x, root PA %#x), PHYS_OFFSET %#x",
		m.Geometry, m.ConfigVABits, m.SwapperPgDir, m.SwapperPA, m.RootPA, m.PhysOffset)
}
