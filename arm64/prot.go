package arm64

// Kernel protection values (pgtable-prot.h), for the classic descriptor format
// without KPTI nG and without BTI. Use Prot to get them for a given machine.
const (
	// PROT_DEFAULT / PROT_SECT_DEFAULT with PTE_MAYBE_NG = 0 and
	// PTE_MAYBE_SHARED = PTE_SHARED.
	protDefault     = PTETypePage | PTEShared | PTEAF
	protSectDefault = PMDTypeSect | PTEShared | PTEAF

	// ProtNormal is PROT_NORMAL = _PAGE_KERNEL = 0x0068000000000703.
	ProtNormal = protDefault | PTEPXN | PTEUXN | PTEWrite | MTNormal<<PTEAttrIndxShift
	// ProtSectNormal is PROT_SECT_NORMAL = 0x0068000000000701.
	ProtSectNormal = protSectDefault | PTEPXN | PTEUXN | PTEWrite | MTNormal<<PTEAttrIndxShift
	// PageKernel is PAGE_KERNEL.
	PageKernel = ProtNormal
	// PageKernelRO is PAGE_KERNEL_RO = 0x0060000000000783.
	PageKernelRO = ProtNormal&^PTEWrite | PTERdonly
	// PageKernelROX is PAGE_KERNEL_ROX = 0x0040000000000783.
	PageKernelROX = ProtNormal&^(PTEWrite|PTEPXN) | PTERdonly
	// PageKernelExec is PAGE_KERNEL_EXEC = 0x0048000000000703.
	PageKernelExec = ProtNormal &^ PTEPXN
	// PageKernelExecCont is PAGE_KERNEL_EXEC_CONT = 0x0058000000000703.
	PageKernelExecCont = PageKernelExec | PTECont
	// ProtDeviceNGnRE is PROT_DEVICE_nGnRE = 0x0068000000000713.
	ProtDeviceNGnRE = protDefault | PTEPXN | PTEUXN | PTEWrite | MTDeviceNGnRE<<PTEAttrIndxShift
	// ProtDeviceNGnRnE is PROT_DEVICE_nGnRnE.
	ProtDeviceNGnRnE = protDefault | PTEPXN | PTEUXN | PTEWrite | MTDeviceNGnRnE<<PTEAttrIndxShift
)

// Tagged is pgprot_tagged: AttrIndx replaced by MT_NORMAL_TAGGED. The linear map
// is mapped with pgprot_tagged(PAGE_KERNEL) (map_mem).
func Tagged(prot uint64) uint64 { return prot&^PTEAttrIndxMask | AttrIndx(MTNormalTagged) }

// Features are the machine properties that change the kernel's prot values.
type Features struct {
	NG   bool // arm64_use_ng_mappings (KPTI): PTE_MAYBE_NG = PTE_NG
	LPA2 bool // lpa2_is_enabled(): PTE_MAYBE_SHARED = 0 (bits 9:8 hold OA[51:50])
	BTI  bool // system_supports_bti_kernel(): PTE_MAYBE_GP = PTE_GP
}

// Prot adjusts one of the constant prot values above to a machine: adds nG under
// KPTI and drops the shareability bits under LPA2 (PTE_MAYBE_NG, PTE_MAYBE_SHARED).
func (f Features) Prot(p uint64) uint64 {
	if f.NG {
		p |= PTENG
	}
	if f.LPA2 {
		p &^= PTEShared
	}
	return p
}

// MaybeNG is PTE_MAYBE_NG.
func (f Features) MaybeNG() uint64 {
	if f.NG {
		return PTENG
	}
	return 0
}

// MaybeGP is PTE_MAYBE_GP (set_memory_x / set_memory_nx masks).
func (f Features) MaybeGP() uint64 {
	if f.BTI {
		return PTEGP
	}
	return 0
}

// PresentValidKernel is PTE_PRESENT_VALID_KERNEL = PTE_VALID | PTE_MAYBE_NG.
func (f Features) PresentValidKernel() uint64 { return PTEValid | f.MaybeNG() }

// PgattrChangeIsSafe reports whether a live descriptor may be rewritten from old
// to new without break-before-make (pgattr_change_is_safe in mmu.c): creating
// or removing a mapping is always safe; otherwise the output address must not
// change, neither side may be contiguous, nG may not be cleared, and only PXN,
// RDONLY, WRITE/DBM, nG and the software bits may differ — plus AttrIndx when
// both sides are Normal or Normal-Tagged.
func (g *Geometry) PgattrChangeIsSafe(old, new uint64) bool {
	if !DescValid(old) || !DescValid(new) {
		return true
	}
	if g.OutputAddress(old) != g.OutputAddress(new) {
		return false
	}
	if (old|new)&PTECont != 0 {
		return false
	}
	if old&PTENG != 0 && new&PTENG == 0 {
		return false
	}
	mask := PTEPXN | PTERdonly | PTEWrite | PTENG | PTESWBits
	normal := func(d uint64) bool { a := AttrIndxOf(d); return a == MTNormal || a == MTNormalTagged }
	if normal(old) && normal(new) {
		mask |= PTEAttrIndxMask
	}
	return (old^new)&^mask == 0
}
