package arm64

// LegacyKernelLayout is the VA layout of kernels before v6.5 (memory.h and
// pgtable.h of v6.1): 128 MiB of modules between PAGE_END and the kernel
// image (MODULES_VSIZE = SZ_128M), and the vmemmap at
// VMEMMAP_START = -(1 << (VA_BITS - VMEMMAP_SHIFT)) with the PCI I/O window
// 8 MiB and the fixmap 32 MiB below it; VMALLOC_END = VMEMMAP_START - 256M.
// 3e35d303ab7d ("arm64: module: rework module VA range selection") grew the
// module region to 2 GiB and the v6.5 layout rework moved vmemmap, PCI I/O
// and fixmap to the top (KernelLayout).
func LegacyKernelLayout(g Geometry, configVABits int) Layout {
	if configVABits == 0 {
		configVABits = g.VABits
	}
	vaMin := min(configVABits, 48)
	l := Layout{VABitsMin: vaMin, ConfigVABits: configVABits}
	compilePageOffset := neg(configVABits)
	l.PageOffset = neg(g.VABits)
	l.PageEnd = pageEnd(vaMin)
	l.ModulesVaddr = pageEnd(vaMin)
	l.ModulesEnd = l.ModulesVaddr + 128<<20
	l.KimageVaddr = l.ModulesEnd
	l.VmallocStart = l.ModulesEnd
	vmemmapShift := int(g.PageShift) - 6 // STRUCT_PAGE_MAX_SHIFT: 64-byte struct page
	vmemmapStart := neg(configVABits - vmemmapShift)
	vmemmapSize := (l.PageEnd - compilePageOffset) >> uint(vmemmapShift)
	unused := (l.PageOffset - compilePageOffset) >> uint(vmemmapShift)
	l.VmemmapStart = vmemmapStart + unused
	l.VmemmapEnd = vmemmapStart + vmemmapSize
	l.VmallocEnd = vmemmapStart - 256<<20
	l.PCIIOEnd = vmemmapStart - 8<<20
	l.PCIIOStart = l.PCIIOEnd - 16<<20
	l.FixaddrTop = vmemmapStart - 32<<20
	l.FixaddrStart = l.FixaddrTop - FixmapSize
	return l
}
