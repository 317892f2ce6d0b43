package arm64

// StructPageSize is sizeof(struct page) on a typical arm64 config; it sizes the
// vmemmap region and so moves VMALLOC_END.
const StructPageSize = 64

// Layout is the kernel's virtual address map (memory.h, pgtable.h) for one
// geometry, without KASAN. All ends are exclusive.
type Layout struct {
	PageOffset   uint64 // _PAGE_OFFSET(vabits_actual): start of the linear map
	PageEnd      uint64 // PAGE_END = _PAGE_END(VA_BITS_MIN)
	ModulesVaddr uint64 // MODULES_VADDR
	ModulesEnd   uint64 // MODULES_END = KIMAGE_VADDR = VMALLOC_START
	KimageVaddr  uint64 // KIMAGE_VADDR (before the KASLR offset)
	VmallocStart uint64 // VMALLOC_START
	VmallocEnd   uint64 // VMALLOC_END
	VmemmapStart uint64 // virt_to_page(_PAGE_OFFSET(vabits_actual)), ptdump's "vmemmap start"
	VmemmapEnd   uint64 // VMEMMAP_END = -1G
	PCIIOStart   uint64 // PCI_IO_START
	PCIIOEnd     uint64 // PCI_IO_END
	FixaddrStart uint64 // FIXADDR_TOT_START (config dependent; see FixmapSize)
	FixaddrTop   uint64 // FIXADDR_TOP = -8M
	VABitsMin    int    // VA_BITS_MIN
	ConfigVABits int    // VA_BITS the kernel was built with
}

// FixmapSize is FIXADDR_TOP - FIXADDR_TOT_START for a typical 6.x defconfig
// (the enum fixed_addresses size depends on NR_CPUS, EFI, ACPI and KPTI); it
// only places ptdump's "Fixmap start" marker.
const FixmapSize = 0x5f8000

func neg(bits int) uint64 { return -(uint64(1) << uint(bits)) }

// pageEnd is _PAGE_END(va) = -(1 << (va - 1)).
func pageEnd(bits int) uint64 { return -(uint64(1) << uint(bits-1)) }

// KernelLayout computes the layout for a geometry. configVABits is the kernel's
// CONFIG_ARM64_VA_BITS (52 for Debian's arm64 kernel, which then runs with 48-bit
// VA on CPUs without LPA2); pass 0 to use the geometry's VA size.
func KernelLayout(g Geometry, configVABits int) Layout {
	if configVABits == 0 {
		configVABits = g.VABits
	}
	// VA_BITS_MIN (asm/memory.h): 48 for a 52-bit build, 47 with 16K pages,
	// whose 52-bit (LPA2) build falls back to 47 bits without LPA2.
	vaMin := configVABits
	if configVABits > 48 {
		vaMin = 48
		if g.PageShift == PageShift16K {
			vaMin = 47
		}
	}
	l := Layout{VABitsMin: vaMin, ConfigVABits: configVABits}
	compilePageOffset := neg(configVABits) // PAGE_OFFSET
	l.PageOffset = neg(g.VABits)           // _PAGE_OFFSET(vabits_actual)
	l.PageEnd = pageEnd(vaMin)
	l.ModulesVaddr = pageEnd(vaMin)
	l.ModulesEnd = l.ModulesVaddr + 2<<30 // MODULES_VSIZE = SZ_2G
	l.KimageVaddr = l.ModulesEnd
	l.VmallocStart = l.ModulesEnd
	l.VmemmapEnd = neg(30)
	vmemmapRange := l.PageEnd - compilePageOffset
	vmemmapSize := (vmemmapRange >> g.PageShift) * StructPageSize
	vmemmapStartConst := l.VmemmapEnd - vmemmapSize // VMEMMAP_START
	unused := (l.PageOffset - compilePageOffset) >> g.PageShift
	l.VmemmapStart = vmemmapStartConst + unused*StructPageSize
	l.VmallocEnd = l.VmemmapStart - 8<<20
	l.PCIIOStart = l.VmemmapEnd + 8<<20
	l.PCIIOEnd = l.PCIIOStart + 16<<20
	l.FixaddrTop = neg(23)
	l.FixaddrStart = l.FixaddrTop - FixmapSize
	return l
}

// IsLinear is __is_lm_address.
func (l Layout) IsLinear(va uint64) bool { return va-l.PageOffset < l.PageEnd-l.PageOffset }

// IsVmalloc reports whether va is in [VMALLOC_START, VMALLOC_END).
func (l Layout) IsVmalloc(va uint64) bool { return va >= l.VmallocStart && va < l.VmallocEnd }

// IsModules reports whether va is in the modules region.
func (l Layout) IsModules(va uint64) bool { return va >= l.ModulesVaddr && va < l.ModulesEnd }
