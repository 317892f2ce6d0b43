package arm64

import (
	"errors"
	"fmt"
)

// ErrGeometry reports a granule / VA-size combination the kernel does not build.
var ErrGeometry = errors.New("arm64: unsupported translation geometry")

// Page shifts of the three translation granules.
const (
	PageShift4K  = 12
	PageShift16K = 14
	PageShift64K = 16
)

// Level is an architectural lookup level: -1 (only with 52-bit VA and the 4K
// granule under FEAT_LPA2), 0, 1, 2, 3. Level 3 always holds page descriptors.
// The kernel's names for levels depend on how many levels are in use; see
// Geometry.Name.
type Level int8

// The lookup levels by the kernel's names. The top level of a geometry is
// always called PGD (Geometry.PGD, Geometry.Name): level 0 with 4 levels,
// level 1 with 3 (PUD folded), level -1 with 5 (LPA2, 52-bit VA).
const (
	LevelP4D Level = 0 // P4D with 5 levels; the PGD with 4
	LevelPUD Level = 1 // PUD: 1G blocks with the 4K granule; the PGD with 3 levels
	LevelPMD Level = 2 // PMD: blocks with every granule
	LevelPTE Level = 3 // PTE: page descriptors
)

// LastLevel is the level of page (PTE) descriptors.
const LastLevel = LevelPTE

// MinLevel is the lowest lookup level of any geometry (5 levels).
const MinLevel Level = -1

// NumLevels is the number of lookup levels, -1..3.
const NumLevels = int(LastLevel-MinLevel) + 1

// PerLevel holds one T for each lookup level, -1..3: the one convention for
// per-level values. It is indexed by Level only (At, Get), so a bare number
// cannot pick the wrong level.
type PerLevel[T any] struct{ v [NumLevels]T }

// At returns the element of level l.
func (a *PerLevel[T]) At(l Level) *T { return &a.v[l-MinLevel] }

// Get returns the element of level l.
func (a *PerLevel[T]) Get(l Level) T { return a.v[l-MinLevel] }

// Kernel table-level names, indexed like mm/ptdump.c's levels (0 = PGD .. 4 = PTE).
const (
	KLevelPGD = iota
	KLevelP4D
	KLevelPUD
	KLevelPMD
	KLevelPTE
)

// KLevelNames are the level names ptdump prints.
var KLevelNames = [5]string{"PGD", "P4D", "PUD", "PMD", "PTE"}

// Geometry is one translation regime of the kernel's TTBR1 tables: granule,
// virtual address size and whether FEAT_LPA2 descriptors (52-bit output
// addresses for 4K/16K) are in use. Derived values are precomputed so that the
// walker's hot paths are shifts and masks.
type Geometry struct {
	PageShift uint // 12, 14 or 16
	VABits    int  // 39..52 (vabits_actual)
	LPA2      bool // 52-bit OA in 4K/16K descriptors: OA[51:50] in bits 9:8, no SH field

	// StartLevel is the first lookup level; Levels = 4 - StartLevel.
	StartLevel Level
	Levels     int

	bitsPerLevel uint
	// Precomputed per level (index level+1) so walks are shifts and masks.
	shift    [8]uint8 // 8 so that li(l) needs no bounds check
	idxMask  [8]uint64
	addrMask uint64
	plainOA  bool // the output address is desc & addrMask (no high bits elsewhere)
}

// NewGeometry returns the geometry for a granule (page shift 12, 14 or 16), a
// virtual address size and the LPA2 flag. The number of levels follows
// ARM64_HW_PGTABLE_LEVELS: (va_bits - 4) / (page_shift - 3).
func NewGeometry(pageShift uint, vaBits int, lpa2 bool) (Geometry, error) {
	switch pageShift {
	case PageShift4K, PageShift16K, PageShift64K:
	default:
		return Geometry{}, fmt.Errorf("%w: page shift %d", ErrGeometry, pageShift)
	}
	if vaBits < 36 || vaBits > 52 {
		return Geometry{}, fmt.Errorf("%w: %d-bit VA", ErrGeometry, vaBits)
	}
	if lpa2 && pageShift == PageShift64K {
		return Geometry{}, fmt.Errorf("%w: LPA2 descriptors are for the 4K and 16K granules (64K uses FEAT_LPA)", ErrGeometry)
	}
	if vaBits > 48 && pageShift != PageShift64K && !lpa2 {
		return Geometry{}, fmt.Errorf("%w: %d-bit VA with a %dK granule needs LPA2", ErrGeometry, vaBits, 1<<(pageShift-10))
	}
	bpl := pageShift - 3
	levels := (vaBits - 4) / int(bpl)
	g := Geometry{
		PageShift:    pageShift,
		VABits:       vaBits,
		LPA2:         lpa2,
		StartLevel:   Level(4 - levels),
		Levels:       levels,
		bitsPerLevel: bpl,
	}
	for l := Level(-1); l <= LastLevel; l++ {
		g.shift[l+1] = uint8(bpl*uint(3-l) + pageShift)
		if l < g.StartLevel {
			continue // a level this geometry does not use
		}
		n := 1 << bpl
		if l == g.StartLevel {
			n = 1 << (uint(vaBits) - uint(g.shift[l+1]))
		}
		g.idxMask[l+1] = uint64(n - 1)
	}
	g.addrMask = g.addrLowMask() | g.addrHighMask()
	g.plainOA = g.addrHighMask() == 0
	return g, nil
}

// MustGeometry is NewGeometry for constant arguments known to be valid.
func MustGeometry(pageShift uint, vaBits int, lpa2 bool) Geometry {
	g, err := NewGeometry(pageShift, vaBits, lpa2)
	if err != nil {
		panic(err)
	}
	return g
}

// Common geometries.
var (
	Geometry4K48  = MustGeometry(PageShift4K, 48, false)
	Geometry4K52  = MustGeometry(PageShift4K, 52, true)
	Geometry16K48 = MustGeometry(PageShift16K, 48, false)
	Geometry64K48 = MustGeometry(PageShift64K, 48, false)
)

// PageSize is PAGE_SIZE.
func (g *Geometry) PageSize() uint64 { return 1 << g.PageShift }

// Shift is the number of VA bits below the index of a level
// (ARM64_HW_PGTABLE_LEVEL_SHIFT(4-n) in kernel numbering).
// li is the array index of level l.
func li(l Level) uint8 { return uint8(l+1) & 7 }

func (g *Geometry) Shift(l Level) uint { return uint(g.shift[li(l)]) }

// Size is the VA span of one entry at a level.
func (g *Geometry) Size(l Level) uint64 { return 1 << g.shift[li(l)] }

// Entries is the number of descriptors in a table at a level (PTRS_PER_*);
// the first level may be shorter (PTRS_PER_PGD).
func (g *Geometry) Entries(l Level) int { return int(g.idxMask[li(l)]) + 1 }

// EntriesPerPage is the number of descriptors in one table page.
func (g *Geometry) EntriesPerPage() int { return 1 << g.bitsPerLevel }

// Index is the table index of va at a level.
func (g *Geometry) Index(va uint64, l Level) int {
	return int(va >> g.shift[li(l)] & g.idxMask[li(l)])
}

// BlockAllowed reports whether a block descriptor may appear at a level, as the
// kernel uses them: PMD blocks always; PUD blocks only with the 4K granule
// (pud_sect_supported); a 3-level 4K geometry's level-1 "PGD" blocks are the
// same 1G blocks.
func (g *Geometry) BlockAllowed(l Level) bool {
	switch l {
	case LevelPMD:
		return true
	case LevelPUD:
		return g.PageShift == PageShift4K
	}
	return false
}

// ContEntries is the number of entries in a contiguous run at a level:
// CONT_PTES at level 3 and CONT_PMDS at level 2 (Kconfig defaults of
// ARM64_CONT_PTE_SHIFT / ARM64_CONT_PMD_SHIFT). Other levels have none (0).
func (g *Geometry) ContEntries(l Level) int {
	switch {
	case l == LevelPTE:
		switch g.PageShift {
		case PageShift4K:
			return 16
		case PageShift16K:
			return 128
		default:
			return 32
		}
	case l == LevelPMD:
		switch g.PageShift {
		case PageShift4K:
			return 16
		default:
			return 32
		}
	}
	return 0
}

// ContSize is CONT_PTE_SIZE (level 3) or CONT_PMD_SIZE (level 2).
func (g *Geometry) ContSize(l Level) uint64 { return uint64(g.ContEntries(l)) * g.Size(l) }

// PGD is the top lookup level, the one swapper_pg_dir holds.
func (g *Geometry) PGD() Level { return g.StartLevel }

// KLevel is the ptdump level number (0=PGD .. 4=PTE) of a lookup level: the
// first level is always "PGD"; with 4 levels level 0 is PGD (P4D folded); with
// 3 levels level 1 is PGD (P4D and PUD folded).
func (g *Geometry) KLevel(l Level) int {
	if l == g.StartLevel {
		return KLevelPGD
	}
	return int(l) + 1
}

// Name is the kernel's name for a level in this geometry (PGD, P4D, PUD, PMD, PTE).
func (g *Geometry) Name(l Level) string { return KLevelNames[g.KLevel(l)] }

// String describes the geometry, e.g. "4K/48-bit/4 levels".
func (g Geometry) String() string {
	s := fmt.Sprintf("%dK/%d-bit/%d levels", 1<<(g.PageShift-10), g.VABits, g.Levels)
	if g.LPA2 {
		s += "/LPA2"
	}
	return s
}

// addrLowMask is PTE_ADDR_LOW: OA bits [49:PAGE_SHIFT] for 4K/16K (bits 49:48
// are RES0 unless LPA2 is in use, so decoding them is always safe) and
// [47:16] for 64K, whose OA[51:48] live in bits 15:12 instead.
func (g *Geometry) addrLowMask() uint64 {
	top := uint(50)
	if g.PageShift == PageShift64K {
		top = 48
	}
	return (uint64(1)<<(top-g.PageShift) - 1) << g.PageShift
}

// addrHighMask is PTE_ADDR_HIGH: bits 9:8 under LPA2 (OA[51:50]) and bits 15:12
// with the 64K granule (OA[51:48], FEAT_LPA; RES0 without it).
func (g *Geometry) addrHighMask() uint64 {
	switch {
	case g.LPA2:
		return 3 << 8
	case g.PageShift == PageShift64K:
		return 0xf << 12
	}
	return 0
}

// OutputAddress extracts the output address of a page, block or table
// descriptor (__pte_to_phys).
func (g *Geometry) OutputAddress(desc uint64) uint64 {
	if g.plainOA {
		return desc & g.addrMask
	}
	pa := desc & g.addrLowMask()
	switch {
	case g.LPA2:
		pa |= (desc >> 8 & 3) << 50
	case g.PageShift == PageShift64K:
		pa |= (desc >> 12 & 0xf) << 48
	}
	return pa
}

// AddressBits encodes a physical address into descriptor bits (__phys_to_pte_val).
func (g *Geometry) AddressBits(pa uint64) uint64 {
	if g.plainOA {
		return pa & g.addrMask
	}
	d := pa & g.addrLowMask()
	switch {
	case g.LPA2:
		d |= (pa >> 50 & 3) << 8
	case g.PageShift == PageShift64K:
		d |= (pa >> 48 & 0xf) << 12
	}
	return d
}

// AddressMask is the set of descriptor bits that hold the output address.
func (g *Geometry) AddressMask() uint64 { return g.addrMask }

// AttrMask is every descriptor bit that is not part of the output address
// (what pte_pgprot keeps).
func (g *Geometry) AttrMask() uint64 { return ^g.addrMask }
