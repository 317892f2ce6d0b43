package arm64

// Descriptor bits of stage-1 VMSAv8-64 descriptors as the kernel names them
// (pgtable-hwdef.h, pgtable-prot.h; 64-bit descriptors, not ARM64_D128).
const (
	PTEValid uint64 = 1 << 0 // PTE_VALID
	// Bit 1 distinguishes table/page (1) from block (0) at levels that allow both.
	PTETypeMask  uint64 = 3 << 0 // PTE_TYPE_MASK / PMD_TYPE_MASK
	PTETypePage  uint64 = 3 << 0 // PTE_TYPE_PAGE (level 3)
	PMDTypeTable uint64 = 3 << 0 // PMD_TYPE_TABLE (also PUD/P4D/PGD)
	PMDTypeSect  uint64 = 1 << 0 // PMD_TYPE_SECT (block; also PUD_TYPE_SECT)

	PTEAttrIndxShift        = 2
	PTEAttrIndxMask  uint64 = 7 << PTEAttrIndxShift // PTE_ATTRINDX_MASK

	PTEUser    uint64 = 1 << 6          // PTE_USER, AP[1]
	PTERdonly  uint64 = 1 << 7          // PTE_RDONLY, AP[2]
	PTEShared  uint64 = 3 << 8          // PTE_SHARED, SH[1:0] inner shareable (OA[51:50] under LPA2)
	PTEAF      uint64 = 1 << 10         // PTE_AF
	PTENG      uint64 = 1 << 11         // PTE_NG
	PTEGP      uint64 = 1 << 50         // PTE_GP, BTI guarded page
	PTEDBM     uint64 = 1 << 51         // PTE_DBM
	PTEWrite   uint64 = PTEDBM          // PTE_WRITE: the kernel's software "writable" is DBM
	PTECont    uint64 = 1 << 52         // PTE_CONT, contiguous hint
	PTEPXN     uint64 = 1 << 53         // PTE_PXN, privileged execute-never
	PTEUXN     uint64 = 1 << 54         // PTE_UXN, unprivileged execute-never
	PTEDirty   uint64 = 1 << 55         // PTE_DIRTY (software)
	PTESpecial uint64 = 1 << 56         // PTE_SPECIAL (software)
	PTEUffdWP  uint64 = 1 << 58         // PTE_UFFD_WP (software)
	PTESWBits  uint64 = 0xf<<55 | 1<<63 // PTE_SWBITS_MASK: bits 58:55 and 63

	// PTEPresentInvalid is bit 11 reused when bit 0 is clear: "present to
	// software, invalid to the hardware" (PTE_PRESENT_INVALID).
	PTEPresentInvalid uint64 = PTENG

	// Table descriptor attributes (upper attributes of next-level tables).
	TableAF  uint64 = 1 << 10 // PMD_TABLE_AF (only meaningful with FEAT_HAFT)
	TablePXN uint64 = 1 << 59 // PXNTable
	TableUXN uint64 = 1 << 60 // UXNTable
	TableAP  uint64 = 3 << 61 // APTable
)

// Memory attribute indices into MAIR_EL1 (memory.h MT_*).
const (
	MTNormal       = 0
	MTNormalTagged = 1
	MTNormalNC     = 2
	MTDeviceNGnRnE = 3
	MTDeviceNGnRE  = 4
)

// AttrIndx encodes a MAIR index into descriptor bits (PTE_ATTRINDX).
func AttrIndx(mt int) uint64 { return uint64(mt) << PTEAttrIndxShift }

// AttrIndxOf extracts the MAIR index of a descriptor.
func AttrIndxOf(desc uint64) int { return int(desc & PTEAttrIndxMask >> PTEAttrIndxShift) }

// DescNone is pte_none / pmd_none: an all-zero descriptor.
func DescNone(d uint64) bool { return d == 0 }

// DescValid is pte_valid: the hardware valid bit.
func DescValid(d uint64) bool { return d&PTEValid != 0 }

// DescPresentInvalid is pte_present_invalid: bit 0 clear and bit 11 set.
func DescPresentInvalid(d uint64) bool { return d&(PTEValid|PTEPresentInvalid) == PTEPresentInvalid }

// DescPresent is pte_present: valid or present-invalid.
func DescPresent(d uint64) bool { return DescValid(d) || DescPresentInvalid(d) }

// DescCont is pte_cont / pmd_cont.
func DescCont(d uint64) bool { return d&PTECont != 0 }

// IsTable reports whether d is a table descriptor at level l (pmd_table /
// pud_table): type 0b11 at any level but the last, where 0b11 means a page.
func (g *Geometry) IsTable(d uint64, l Level) bool {
	return l < LastLevel && d&PTETypeMask == PMDTypeTable
}

// IsLeaf reports whether d maps memory at level l: a page at level 3, or a
// present non-table entry above (pmd_leaf / pud_leaf: present && !table, so a
// present-invalid block is a leaf too).
func (g *Geometry) IsLeaf(d uint64, l Level) bool {
	if l == LastLevel {
		return DescPresent(d)
	}
	return DescPresent(d) && d&PTETypeMask != PMDTypeTable
}

// IsSect reports a valid block descriptor (pmd_sect / pud_sect: type 0b01).
func (g *Geometry) IsSect(d uint64, l Level) bool {
	return l < LastLevel && d&PTETypeMask == PMDTypeSect
}

// MkTable builds a table descriptor pointing at the table page at pa, with the
// kernel's table attributes (TYPE_TABLE | TABLE_UXN | TABLE_AF, plus TABLE_PXN
// when pxn), as alloc_init_pud/alloc_init_cont_pmd/split_pmd write them.
func (g *Geometry) MkTable(pa uint64, pxn bool) uint64 {
	d := g.AddressBits(pa) | PMDTypeTable | TableUXN | TableAF
	if pxn {
		d |= TablePXN
	}
	return d
}

// MkTableBare builds a table descriptor with the table type and TABLE_AF
// alone, as early_fixmap_init hooks up bm_pud, bm_pmd and bm_pte.
func (g *Geometry) MkTableBare(pa uint64) uint64 {
	return g.AddressBits(pa) | PMDTypeTable | TableAF
}

// MkLeaf builds a leaf descriptor from a page protection (PAGE_KERNEL-style
// value whose type bits say page): at level 3 as is (pfn_pte), above as a
// block with type 0b01 (mk_pmd_sect_prot / mk_pud_sect_prot). A prot without
// the valid bit (present-invalid) keeps its type bits clear.
func (g *Geometry) MkLeaf(pa uint64, prot uint64, l Level) uint64 {
	prot &= g.AttrMask()
	if l < LastLevel && prot&PTEValid != 0 {
		prot = prot&^PTETypeMask | PMDTypeSect
	} else if l < LastLevel {
		prot &^= PTETypeMask
	}
	return g.AddressBits(pa) | prot
}

// PageProt is the page-form protection of a leaf at any level, as split_pmd
// and split_pud derive it: the attribute bits with type "page" (0b11), then,
// for a present-invalid block, bit 0 cleared and bit 11 set (pte_mkinvalid).
func (g *Geometry) PageProt(d uint64, l Level) uint64 {
	p := d & g.AttrMask()
	if l == LastLevel {
		return p
	}
	valid := p&PTEValid != 0
	p |= PTETypePage
	if !valid {
		p = p&^PTEValid | PTEPresentInvalid
	}
	return p
}
