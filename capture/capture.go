package capture

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/ptlab/ptlab/ptdump"
)

// Options select what Capture prints beyond mainline ptdump's format.
type Options struct {
	PA     bool // append each mapped range's physical start address
	Tables bool // print a line per table descriptor walked through
}

// Result is what a capture found besides the text.
type Result struct {
	Machine    *Machine
	TablesRead int // table pages read from kcore
	// WXPages and NonUXNPages are ptdump_check_wx's counts over the walk.
	WXPages, NonUXNPages uint64
	// WXVerdict is the message the kernel's own W+X check prints for them.
	WXVerdict string
}

// Capture walks the machine's kernel tables (init_mm, rooted at
// swapper_pg_dir) in kcore from _PAGE_OFFSET(vabits_actual) to the top of the
// address space and writes them to w in kernel_page_tables format, the way
// ptdump_walk / ptdump_check_wx (arch/arm64/mm/ptdump.c) do on a kernel built
// with CONFIG_PTDUMP_DEBUGFS. The live tables may change while they are read
// (vmalloc, module loading); the kernel's walker holds no lock against that
// either for the linear map, so the dump is a snapshot of each table at the
// moment it was read.
//
// With PA or Tables (ptlab's extended format) the dump starts with a comment
// naming the kernel release (VMCOREINFO's OSRELEASE), from which ptlab's
// --import picks the kernel version profile.
func Capture(w io.Writer, k *Kcore, m *Machine, opt Options) (*Result, error) {
	if (opt.PA || opt.Tables) && m.OSRelease != "" {
		if _, err := fmt.Fprintf(w, "%s%s\n", ptdump.OSReleaseComment, m.OSRelease); err != nil {
			return nil, err
		}
	}
	src := NewTableSource(k, m)
	pw := ptdump.NewWriter(w, m.Geometry, ptdump.KernelMarkers(m.Layout), ptdump.Options{PA: opt.PA, Tables: opt.Tables, CheckWX: true})
	if err := ptdump.Walk(src, nil, m.Geometry, m.RootPA, m.Layout.PageOffset, pw); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	r := &Result{Machine: m, TablesRead: src.TablesRead, WXVerdict: pw.WXVerdict()}
	r.WXPages, r.NonUXNPages = pw.WX()
	return r, nil
}

// MachineJSON is the machine description in --json output. Addresses are
// hex strings: JSON numbers lose precision above 2^53.
type MachineJSON struct {
	OSRelease     string            `json:"os_release,omitempty"`
	Geometry      string            `json:"geometry"`
	PageSize      uint64            `json:"page_size"`
	VABits        int               `json:"va_bits"`        // vabits_actual
	ConfigVABits  int               `json:"config_va_bits"` // CONFIG_ARM64_VA_BITS
	Levels        int               `json:"levels"`         // lookup levels the hardware walks
	StartLevel    int               `json:"start_level"`    // first lookup level (-1 with 5 levels)
	LPA2          bool              `json:"lpa2"`           // 52-bit OA in bits 9:8
	SwapperPgDir  string            `json:"swapper_pg_dir"` // VA
	SwapperPA     string            `json:"swapper_pg_dir_pa"`
	RootPA        string            `json:"root_pa"`     // TTBR1 base address
	PhysOffset    string            `json:"phys_offset"` // PHYS_OFFSET
	PageOffset    string            `json:"page_offset"` // PAGE_OFFSET (__va: PA - PHYS_OFFSET + PAGE_OFFSET)
	KimageVoffset string            `json:"kimage_voffset"`
	KernelOffset  string            `json:"kaslr_offset"`
	Layout        map[string]string `json:"layout"`
}

// JSON describes the machine for --json output.
func (m *Machine) JSON() MachineJSON {
	h := func(v uint64) string { return fmt.Sprintf("%#016x", v) }
	l := m.Layout
	return MachineJSON{
		OSRelease: m.OSRelease, Geometry: m.Geometry.String(), PageSize: m.Geometry.PageSize(),
		VABits: m.Geometry.VABits, ConfigVABits: m.ConfigVABits, Levels: m.Geometry.Levels,
		StartLevel: int(m.Geometry.StartLevel), LPA2: m.Geometry.LPA2,
		SwapperPgDir: h(m.SwapperPgDir), SwapperPA: h(m.SwapperPA), RootPA: h(m.RootPA),
		PhysOffset: h(m.PhysOffset), PageOffset: h(m.PageOffset), KimageVoffset: h(m.KimageVoffset),
		KernelOffset: h(m.KernelOffset),
		Layout: map[string]string{ // encoding/json sorts map keys: deterministic
			"linear_start": h(l.PageOffset), "linear_end": h(l.PageEnd),
			"modules_start": h(l.ModulesVaddr), "modules_end": h(l.ModulesEnd),
			"vmalloc_start": h(l.VmallocStart), "vmalloc_end": h(l.VmallocEnd),
			"vmemmap_start": h(l.VmemmapStart), "vmemmap_end": h(l.VmemmapEnd),
			"pci_io_start": h(l.PCIIOStart), "pci_io_end": h(l.PCIIOEnd),
			"fixmap_start": h(l.FixaddrStart), "fixmap_end": h(l.FixaddrTop),
		},
	}
}

// JSONOutput is the document `ptlab capture --json` writes.
type JSONOutput struct {
	Machine    MachineJSON  `json:"machine"`
	TablesRead int          `json:"tables_read"`
	WX         WXJSON       `json:"wx"`
	Dump       *ptdump.Dump `json:"dump"`
}

// WXJSON is the W+X check's outcome.
type WXJSON struct {
	WXPages     uint64 `json:"wx_pages"`
	NonUXNPages uint64 `json:"non_uxn_pages"`
	Verdict     string `json:"verdict"`
}

// CaptureJSON captures into text, parses that text back with ptdump.Parse and
// writes the machine, the W+X outcome and the parsed dump as one JSON
// document. The text round trip keeps one definition of a range: exactly
// what a reader of the text dump sees.
func CaptureJSON(w io.Writer, k *Kcore, m *Machine, opt Options) (*Result, error) {
	var text bytes.Buffer
	r, err := Capture(&text, k, m, opt)
	if err != nil {
		return nil, err
	}
	d, err := ptdump.Parse(&text, "capture", ptdump.ParseOptions{})
	if err != nil {
		return nil, fmt.Errorf("capture: parsing the captured dump: %w", err)
	}
	out := JSONOutput{
		Machine: m.JSON(), TablesRead: r.TablesRead, Dump: d,
		WX: WXJSON{WXPages: r.WXPages, NonUXNPages: r.NonUXNPages, Verdict: r.WXVerdict},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("capture: writing JSON: %w", err)
	}
	return r, nil
}
