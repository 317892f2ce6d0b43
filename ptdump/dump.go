package ptdump

import "fmt"

// Arch is the architecture whose ptdump format a dump is in.
type Arch string

// Architectures Parse recognises.
const (
	ArchUnknown Arch = ""
	ArchARM64   Arch = "arm64"
	ArchX86     Arch = "x86"
)

// ParseOptions controls Parse.
type ParseOptions struct {
	// Lenient turns malformed lines into Dump.Warnings (with their line
	// numbers) instead of failing the whole parse; the bad line is dropped.
	Lenient bool
	// PageSize forces the arm64 granule (4096, 16384 or 65536) instead of
	// inferring it. A 16K or 64K dump whose every boundary also fits 4K
	// cannot be told apart from a 4K one by its text.
	PageSize uint64
}

// Warning is a problem Parse found but did not fail on: an unknown attribute
// token (kept raw), a geometry no granule explains, or in lenient mode a
// malformed line that was skipped.
type Warning struct {
	Line int    `json:"line"`
	Msg  string `json:"msg"`
}

func (w Warning) String() string { return fmt.Sprintf("line %d: %s", w.Line, w.Msg) }

// MarkerLine is one "---[ name ]---" header. The kernel prints a header when
// its walk reaches the marker's address (note_page), so a range belongs to the
// region of the last header printed before it.
type MarkerLine struct {
	Name       string `json:"name"`
	Line       int    `json:"line"`
	FirstRange int    `json:"first_range"` // index in Dump.Ranges of the first range after the header
	Kind       string `json:"kind"`        // canonical region: see RegionKind
	End        bool   `json:"end"`         // the header closes its region ("vmalloc() end", "End Modules")
}

// Range is one printed range: [Start, End) with End == 0 meaning the top of
// the address space (the kernel's final flush line ends at address 0).
type Range struct {
	Start    uint64   `json:"start"`
	End      uint64   `json:"end"`
	Size     uint64   `json:"size"`      // bytes, from the printed size
	SizeText string   `json:"size_text"` // as printed, e.g. "2112K"
	Level    string   `json:"level"`     // as printed: "PTE", "PMD", ... (arm64), "pte", "pmd", ... (x86)
	Attrs    *AttrSet `json:"attrs"`     // nil for an unmapped range (printed without attribute columns)
	Line     int      `json:"line"`      // 1-based source line
	Marker   int      `json:"marker"`    // index in Dump.Markers of the region header above it; -1 if none
	// PA is the physical address of Start when the line carries ptlab
	// capture's " PA=0x..." column (HasPA); mainline ptdump does not print it.
	PA    uint64 `json:"pa,omitempty"`
	HasPA bool   `json:"has_pa,omitempty"`
}

// TableLine is a table-descriptor line as ptlab capture --tables prints it
// ("<range> <size> <LEVEL> TBL PA=0x... [PXNTable] [UXNTable]"): the entry at
// Level covering [Start, End) points to a next-level table page at PA.
type TableLine struct {
	Start    uint64 `json:"start"`
	End      uint64 `json:"end"`
	Level    string `json:"level"`
	PA       uint64 `json:"pa"`
	PXNTable bool   `json:"pxn_table"`
	UXNTable bool   `json:"uxn_table"`
	Line     int    `json:"line"`
}

// Last is the last byte address of the range (End-1, which also handles the
// wrap of a range ending at 2^64).
func (r *Range) Last() uint64 { return r.End - 1 }

// Mapped reports whether the kernel printed attribute columns for the range,
// i.e. its entries were non-zero (valid or present-invalid).
func (r *Range) Mapped() bool { return r.Attrs != nil }

// Valid reports whether the range maps memory the MMU can use: mapped and
// not marked "F" (present-invalid).
func (r *Range) Valid() bool { return r.Attrs != nil && r.Attrs.Flags&AttrInvalid == 0 }

// Attr is one decoded attribute column.
type Attr uint32

// Attribute flags. arm64 columns come from dump_prot's table (pte_bits in
// arch/arm64/mm/ptdump.c); x86 ones from printk_prot in arch/x86/mm/dump_pagetables.c.
// A flag is set when the column shows its "set" string; RW and x (the clear
// strings of ro and NX) are the absence of AttrReadOnly and AttrNX.
const (
	AttrInvalid  Attr = 1 << iota // "F": present but not valid (arm64)
	AttrUser                      // "USR"
	AttrReadOnly                  // "ro" (clear: "RW")
	AttrNX                        // "NX": arm64 PXN, x86 NX (clear: "x")
	AttrShared                    // "SHD" (arm64)
	AttrAF                        // "AF" (arm64)
	AttrNG                        // "NG" (arm64)
	AttrCont                      // "CON" (arm64)
	AttrBlock                     // "BLK" (arm64)
	AttrUXN                       // "UXN" (arm64)
	AttrGP                        // "GP": BTI guarded page (arm64)
	AttrPWT                       // "PWT" (x86)
	AttrPCD                       // "PCD" (x86)
	AttrPSE                       // "PSE": large page (x86)
	AttrPAT                       // "PAT" (x86)
	AttrGlobal                    // "GLB" (x86)
)

// AttrSet is the attribute columns of one range, decoded. Ranges with the same
// columns share one AttrSet (and its slices): do not modify it.
type AttrSet struct {
	Text    string   `json:"text"`              // tokens joined by single spaces
	Tokens  []string `json:"tokens"`            // as printed, in order
	Flags   Attr     `json:"flags"`             // decoded flags
	Mem     string   `json:"mem,omitempty"`     // arm64 memory type column, e.g. "MEM/NORMAL-TAGGED"
	Unknown []string `json:"unknown,omitempty"` // tokens Parse does not know (kept, warned about)
	// Perm is Text without the columns that describe the mapping size
	// rather than the permissions (arm64 CON and BLK, x86 PSE): two ranges
	// with equal Perm could share one larger leaf.
	Perm string `json:"perm"`
	// Prot is the arm64 descriptor attribute bits the columns prove (what the
	// kernel's note_page compared); 0 for x86.
	Prot uint64 `json:"prot"`
}

// Has reports whether all flags in f are set; false for a nil set (unmapped).
func (a *AttrSet) Has(f Attr) bool { return a != nil && a.Flags&f == f }

// Dump is a parsed kernel page-table dump.
type Dump struct {
	Name     string       `json:"name"`
	Arch     Arch         `json:"arch"`
	Geometry DumpGeometry `json:"geometry"`
	Markers  []MarkerLine `json:"markers"`
	Ranges   []Range      `json:"ranges"`
	Tables   []TableLine  `json:"tables,omitempty"` // table-descriptor lines (ptlab capture --tables)
	Warnings []Warning    `json:"warnings"`
	// WXVerdict is the kernel's "Checked W+X mappings: ..." line when the
	// dump was copied from a log that has it.
	WXVerdict string `json:"wx_verdict,omitempty"`
	// HolesPrinted is true when the dump prints unmapped ranges (arm64 from
	// 5.x on, x86). 4.x arm64 kernels print only mapped ranges, so a gap between
	// two lines is unmapped memory there.
	HolesPrinted bool `json:"holes_printed"`
	// Skipped counts entries x86 left out of a marker region with a line limit
	// ("... N entries skipped ...", the ESPfix area).
	Skipped uint64 `json:"skipped"`
	// OSRelease is the kernel release a ptlab capture recorded in its
	// OSReleaseComment line.
	OSRelease string `json:"os_release,omitempty"`
}
