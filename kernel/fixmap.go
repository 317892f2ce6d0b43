package kernel

// The fixmap's size. arch/arm64/include/asm/fixmap.h lays out enum
// fixed_addresses downwards from FIXADDR_TOP, one page per slot; its length
// depends on the release and on Debian's build options, and decides where
// FIXADDR_TOT_START falls and therefore how many bm_pte tables
// early_fixmap_init hooks up (arch/arm64/mm/fixmap.c: one per PMD the span
// [FIXADDR_TOT_START, FIXADDR_TOP) touches). Debian's 6.12 spans two PMDs
// on 4K pages; 6.18 and 7.3, with a slot per CPU for KVM, span three.

// Fixmap is what in a release's enum fixed_addresses is not the same in every
// modelled release.
type Fixmap struct {
	// NRCPUs is the build's CONFIG_NR_CPUS (Debian: 256 in 6.1, 512 in 6.12
	// and 6.18, as /boot/config-* of those packages shows; 7.3's packages
	// carry no config, and its captures' three fixmap PTE tables hold for
	// any value from 50 to 560 with 4K pages, so 512 as in 6.18).
	NRCPUs int
	// VNCR: FIX_VNCR_END..FIX_VNCR, one slot per possible CPU for the page
	// KVM maps a nested guest's VNCR_EL2 at ("KVM: arm64: nv: Handle mapping
	// of VNCR_EL2 at EL2", v6.16; under CONFIG_KVM, which Debian sets).
	VNCR bool
	// P4D: a FIX_P4D slot for the fifth table level (Ard Biesheuvel's LPA2
	// series, v6.9).
	P4D bool
}

// MaxFDTSize is MAX_FDT_SIZE (asm/boot.h).
const MaxFDTSize = 2 << 20

// fixmapSlots counts the slots of enum fixed_addresses for pages of
// pageSize bytes: permanent is __end_of_permanent_fixed_addresses (FIXADDR_SIZE
// in pages) and total __end_of_fixed_addresses (FIXADDR_TOT_SIZE in pages).
// The slots that are the same in every Debian build: FIX_HOLE, the FDT
// window, FIX_EARLYCON_MEM_BASE, FIX_TEXT_POKE0, four GHES slots
// (CONFIG_ACPI_APEI_GHES with CONFIG_ARM_SDE_INTERFACE), four entry
// trampoline slots (CONFIG_UNMAP_KERNEL_AT_EL0 with CONFIG_RELOCATABLE), the
// early-ioremap slots (7 of 256 KiB each) and FIX_PTE, FIX_PMD, FIX_PUD and
// FIX_PGD.
func (v *Version) fixmapSlots(pageSize uint64) (permanent, total uint64) {
	const fdtEnd = 1 // FIX_FDT_END follows FIX_HOLE
	var fdt uint64
	if v.LegacyLayout {
		// Before 414c109bdf49 ("arm64: mm: always map fixmap at page
		// granularity", v6.4; the releases modelled with LegacyLayout are
		// the ones before it) the FDT window was MAX_FDT_SIZE plus 2 MiB of slack, so that the
		// FDT could be mapped with section blocks wherever it lay.
		fdt = fdtEnd + (MaxFDTSize+2<<20)/pageSize - 1
	} else {
		// Since: one page of slack, the FDT being mapped with pages.
		fdt = fdtEnd + (MaxFDTSize+pageSize-1)/pageSize + 1
	}
	next := fdt + 1 + 2 // FIX_EARLYCON_MEM_BASE, FIX_TEXT_POKE0
	if v.Fixmap.VNCR {
		next += uint64(v.Fixmap.NRCPUs) + 1 // FIX_VNCR_END .. FIX_VNCR_END+NR_CPUS
	}
	next += 4 // FIX_APEI_GHES_IRQ, _SEA, _SDEI_NORMAL, _SDEI_CRITICAL
	next += 4 // FIX_ENTRY_TRAMP_TEXT4 .. TEXT1
	permanent = next
	next += (256 << 10) / pageSize * 7 // FIX_BTMAP_END .. FIX_BTMAP_BEGIN
	next += 4                          // FIX_PTE, FIX_PMD, FIX_PUD, FIX_PGD
	if v.Fixmap.P4D {
		next++
	}
	return permanent, next
}

// fixmapStartOffset is FIXADDR_TOP minus the start of the fixmap as the
// release's early_fixmap_init and ptdump ("Fixmap start") see it:
// FIXADDR_TOT_START since 32f5b6995f79 and 414c109bdf49 (v6.4), which hook up
// the whole span; before, the permanent FIXADDR_START, whose PMD held the one
// bm_pte.
func (v *Version) fixmapStartOffset(pageSize uint64) uint64 {
	permanent, total := v.fixmapSlots(pageSize)
	if v.LegacyLayout {
		return permanent * pageSize
	}
	return total * pageSize
}
