package ptdump

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"strings"

	"github.com/ptlab/ptlab/arm64"
)

// Errors returned by Parse. Every error for a bad line wraps ErrMalformed;
// the more specific ones wrap it too, so errors.Is(err, ErrMalformed) holds for
// all of them.
var (
	// ErrMalformed: a line is not what any kernel's ptdump prints.
	ErrMalformed = errors.New("malformed ptdump line")
	// ErrSizeMismatch: the printed size differs from end - start.
	ErrSizeMismatch = &lineError{"printed size differs from end - start", ErrMalformed}
	// ErrOrder: a range starts before the previous one ends (ptdump walks upwards).
	ErrOrder = &lineError{"range out of order", ErrMalformed}
	// ErrNoDump: the input holds no ptdump line at all.
	ErrNoDump = &lineError{"no ptdump lines", ErrMalformed}
)

// lineError is a sentinel error that wraps a more general one.
type lineError struct {
	msg    string
	parent error
}

func (e *lineError) Error() string { return e.msg }
func (e *lineError) Unwrap() error { return e.parent }

// maxLineLen bounds one input line; longer lines are malformed (no kernel
// prints one: the longest real line is under 150 bytes).
const maxLineLen = 64 << 10

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

// Attribute flags. arm64 columns come from dump_prot's table (fact sheet
// section 16.3); x86 ones from printk_prot in arch/x86/mm/dump_pagetables.c.
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
}

// Parse reads a kernel page-table dump: /sys/kernel/debug/kernel_page_tables
// from arm64 kernels 4.x to 6.x (including 3-level 39-bit VA, 52-bit VA, KPTI
// NG, MTE, BTI and present-invalid ranges), x86's
// /sys/kernel/debug/page_tables/* and its boot-time dmesg form. Lines may carry
// log prefixes (dmesg timestamps, syslog "kernel: ", "> " mail quoting); lines
// starting with '#' are comments. Columns are split on whitespace.
//
// Every range is checked: end - start must equal the printed size (note_page
// prints (end-start)>>10 in the largest exact unit of KMGTPE) and ranges must
// ascend without overlap (ptdump walks upwards). A bad line is an error wrapping
// ErrMalformed with name:line, or with opt.Lenient a Warning. Unknown attribute
// tokens are kept in AttrSet.Unknown and reported once each as a Warning in
// both modes: newer kernels add columns, and a dump should still be readable.
//
// Parse models the output side of note_page/dump_prot (arch/arm64/mm/ptdump.c,
// its 4.x predecessor arch/arm64/mm/dump.c, and arch/x86/mm/dump_pagetables.c).
func Parse(r io.Reader, name string, opt ParseOptions) (*Dump, error) {
	p := parser{
		name:    name,
		opt:     opt,
		d:       &Dump{Name: name},
		attrs:   make(map[string]*AttrSet),
		sizes:   make(map[string]string),
		unknown: make(map[string]bool),
	}
	br := bufio.NewReaderSize(r, maxLineLen)
	lineNo := 0
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 || err == nil || err == bufio.ErrBufferFull {
			lineNo++
		}
		if err == bufio.ErrBufferFull {
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			if e := p.bad(lineNo, ErrMalformed, "line longer than %d bytes", maxLineLen); e != nil {
				return nil, e
			}
		} else if len(line) > 0 {
			if e := p.line(line, lineNo); e != nil {
				return nil, e
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, lineNo, err)
		}
	}
	if len(p.d.Ranges) == 0 && len(p.d.Markers) == 0 {
		if e := p.bad(lineNo, ErrNoDump, "no range or marker lines found"); e != nil {
			return nil, e
		}
	}
	if p.d.Arch == ArchUnknown {
		p.d.Arch = archFromMarkers(p.d.Markers)
	}
	var w *Warning
	p.d.Geometry, w = inferGeometry(p.d, opt.PageSize)
	if w != nil {
		p.d.Warnings = append(p.d.Warnings, *w)
	}
	return p.d, nil
}

type parser struct {
	name    string
	opt     ParseOptions
	d       *Dump
	attrs   map[string]*AttrSet // interned attribute columns by their joined text
	sizes   map[string]string   // interned size texts
	unknown map[string]bool     // unknown tokens already warned about
	fields  [][]byte
	key     []byte
	prev    *Range // last accepted range (points into d.Ranges; refreshed on append)
	// emptyNoted: the F-without-AF warning was given.
	emptyNoted bool
}

// bad reports a malformed line: an error in strict mode, a warning (and nil)
// in lenient mode.
func (p *parser) bad(line int, sentinel error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if p.opt.Lenient {
		p.d.Warnings = append(p.d.Warnings, Warning{Line: line, Msg: msg + ": " + sentinel.Error() + " (line skipped)"})
		return nil
	}
	return fmt.Errorf("%s:%d: %s: %w", p.name, line, msg, sentinel)
}

func (p *parser) warn(line int, format string, args ...any) {
	p.d.Warnings = append(p.d.Warnings, Warning{Line: line, Msg: fmt.Sprintf(format, args...)})
}

// line handles one input line (with its newline).
func (p *parser) line(b []byte, n int) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] == '#' {
		return nil
	}
	b = stripLogPrefix(b)
	switch {
	case len(b) == 0:
		return nil
	case bytes.HasPrefix(b, []byte("---[")):
		return p.marker(b, n)
	case bytes.HasPrefix(b, []byte("0x")):
		return p.rangeLine(b, n)
	case bytes.HasPrefix(b, []byte("...")):
		return p.skippedLine(b, n)
	case bytes.Contains(b, []byte("Checked W+X mappings")):
		p.d.WXVerdict = string(b)
		return nil
	case bytes.Contains(b, []byte("Checking user space page tables")):
		return nil
	case len(p.d.Markers) == 0 && len(p.d.Ranges) == 0:
		// Whatever precedes the first marker or range — the shell prompt and
		// command a paste starts with, a mail's prose — is not the dump.
		p.warn(n, "text before the dump skipped: %q", clip(b))
		return nil
	case isShellPrompt(b):
		p.warn(n, "shell prompt skipped: %q", clip(b))
		return nil
	}
	return p.bad(n, ErrMalformed, "not a ptdump line: %q", clip(b))
}

// isShellPrompt recognises the prompt a paste ends with ("~ #", "root@host:~#
// ", "$ ", "/ # exit"): a first word of prompt characters ending in '#', '$'
// or '%', alone or followed by a space.
func isShellPrompt(b []byte) bool {
	bracket := false
	for i, c := range b {
		switch {
		case c == '[':
			bracket = true
		case c == ']':
			bracket = false
		case c == ' ' && bracket: // "[user@host ~]$"
		case c == '#' || c == '$' || c == '%':
			return i == len(b)-1 || b[i+1] == ' '
		case c == ' ' && i > 0 && i+1 < len(b) && (b[i+1] == '#' || b[i+1] == '$'):
			// "~ #": the prompt character is the second word
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '@', c == ':', c == '~', c == '/', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return false
}

// clip shortens a line for an error message.
func clip(b []byte) string {
	const max = 60
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// stripLogPrefix removes what copying a dump out of a log or a mail adds in
// front of the kernel's text: "> " quoting, printk level "<6>", bracketed dmesg
// timestamps and caller ids ("[    0.011734]", "[    T1]"), and syslog or
// journal prefixes ending in "kernel: ".
func stripLogPrefix(b []byte) []byte {
	for {
		b = bytes.TrimLeft(b, " \t")
		if len(b) == 0 {
			return b
		}
		switch b[0] {
		case '>':
			b = b[1:]
			continue
		case '<':
			if j := bytes.IndexByte(b, '>'); j > 1 && j <= 4 && allDigits(b[1:j]) {
				b = b[j+1:]
				continue
			}
		case '[':
			if j := bytes.IndexByte(b, ']'); j > 1 && j <= 40 && isStamp(b[1:j]) {
				b = b[j+1:]
				continue
			}
		}
		if bytes.HasPrefix(b, []byte("0x")) || bytes.HasPrefix(b, []byte("---[")) || bytes.HasPrefix(b, []byte("...")) {
			return b
		}
		if k := bytes.Index(b, []byte("kernel: ")); k >= 0 {
			b = b[k+len("kernel: "):]
			continue
		}
		return b
	}
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// isStamp accepts the inside of a dmesg timestamp or caller-id bracket.
func isStamp(b []byte) bool {
	digits := false
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			digits = true
		case c == ' ' || c == '.' || c == ':' || c == 'T' || c == 'C':
		default:
			return false
		}
	}
	return digits
}

func (p *parser) marker(b []byte, n int) error {
	if len(b) < 8 || !bytes.HasSuffix(b, []byte("]---")) {
		return p.bad(n, ErrMalformed, "unterminated marker %q", clip(b))
	}
	name := string(bytes.TrimSpace(b[4 : len(b)-4]))
	kind, end := RegionKind(name)
	p.d.Markers = append(p.d.Markers, MarkerLine{
		Name: name, Line: n, FirstRange: len(p.d.Ranges), Kind: kind, End: end,
	})
	return nil
}

// skippedLine handles x86's "... N entries skipped ... " line.
func (p *parser) skippedLine(b []byte, n int) error {
	f := bytes.Fields(b)
	if len(f) >= 4 && string(f[0]) == "..." && (string(f[2]) == "entries" || string(f[2]) == "entry") && string(f[3]) == "skipped" {
		if v, err := strconv.ParseUint(string(f[1]), 10, 64); err == nil {
			p.d.Skipped += v
			return nil
		}
	}
	return p.bad(n, ErrMalformed, "not a ptdump line: %q", clip(b))
}

var arm64Levels = [...]string{"PGD", "P4D", "PUD", "PMD", "PTE"}
var x86Levels = [...]string{"pgd", "p4d", "pud", "pmd", "pte"}

// levelName returns the interned level name for b, or "".
func levelName(b []byte, names *[5]string) string {
	for _, s := range names {
		if string(b) == s {
			return s
		}
	}
	return ""
}

func (p *parser) rangeLine(b []byte, n int) error {
	f := splitFields(b, p.fields[:0])
	p.fields = f
	if len(f) < 3 {
		return p.bad(n, ErrMalformed, "want START-END SIZE LEVEL [ATTRS], got %q", clip(b))
	}
	start, end, ok := parseAddrRange(f[0])
	if !ok {
		return p.bad(n, ErrMalformed, "bad address range %q", clip(f[0]))
	}
	size, ok := parseSize(f[1])
	if !ok {
		return p.bad(n, ErrMalformed, "bad size %q", clip(f[1]))
	}
	var arch Arch
	var level string
	var attrs [][]byte
	if level = levelName(f[2], &arm64Levels); level != "" {
		arch, attrs = ArchARM64, f[3:]
	} else if level = levelName(f[len(f)-1], &x86Levels); level != "" {
		arch, attrs = ArchX86, f[2:len(f)-1]
	} else {
		return p.bad(n, ErrMalformed, "no level name (PGD..PTE after the size, or pgd..pte at the end) in %q", clip(b))
	}
	if p.d.Arch != ArchUnknown && arch != p.d.Arch {
		return p.bad(n, ErrMalformed, "%s line in a dump that started as %s", arch, p.d.Arch)
	}
	if start == end {
		return p.bad(n, ErrMalformed, "empty range %#x-%#x", start, end)
	}
	if end != 0 && end < start {
		return p.bad(n, ErrMalformed, "range %#x-%#x ends before it starts", start, end)
	}
	if size != end-start {
		return p.bad(n, ErrSizeMismatch, "%#x-%#x spans %s but the line says %s",
			start, end, FormatSize(end-start), f[1])
	}
	if arch == ArchARM64 && len(attrs) > 0 && string(attrs[0]) == "TBL" {
		return p.tableLine(start, end, level, attrs[1:], n)
	}
	var pa uint64
	hasPA := false
	if k := len(attrs); k > 0 && bytes.HasPrefix(attrs[k-1], []byte("PA=")) {
		if pa, ok = parseHex(attrs[k-1][3:]); !ok {
			return p.bad(n, ErrMalformed, "bad physical address %q", clip(attrs[k-1]))
		}
		attrs, hasPA = attrs[:k-1], true
	}
	if p.prev != nil {
		if p.prev.End == 0 {
			return p.bad(n, ErrOrder, "range %#x-%#x after line %d reached the top of the address space",
				start, end, p.prev.Line)
		}
		if start < p.prev.End {
			return p.bad(n, ErrOrder, "range %#x-%#x starts before the range on line %d ends (%#x)",
				start, end, p.prev.Line, p.prev.End)
		}
	}
	var set *AttrSet
	if len(attrs) > 0 {
		var err error
		if set, err = p.attrSet(arch, level, attrs, n); err != nil {
			return err
		}
		if set == nil { // lenient: the line was dropped
			return nil
		}
		if arch == ArchARM64 && set.Flags&AttrInvalid != 0 && set.Flags&AttrAF == 0 {
			// An all-zero entry printed with its clear columns ("F" and
			// "BLK", no "AF"): a present-invalid entry (pte_mkinvalid of a
			// kernel mapping) keeps PTE_AF, an empty one has nothing.
			if !p.emptyNoted {
				p.emptyNoted = true
				p.warn(n, "entries printed with F but no AF are empty descriptors: counted as unmapped")
			}
			set = nil
			p.d.HolesPrinted = true
		}
	} else {
		p.d.HolesPrinted = true
	}
	p.d.Arch = arch
	p.d.Ranges = append(p.d.Ranges, Range{
		Start: start, End: end, Size: size, SizeText: p.intern(f[1]),
		Level: level, Attrs: set, Line: n, Marker: len(p.d.Markers) - 1, PA: pa, HasPA: hasPA,
	})
	p.prev = &p.d.Ranges[len(p.d.Ranges)-1]
	return nil
}

// tableLine records a TBL line. Table lines are printed when the walk
// descends, before the leaves under them, so they are checked among
// themselves (a walk visits tables in address order), not against ranges.
func (p *parser) tableLine(start, end uint64, level string, toks [][]byte, n int) error {
	t := TableLine{Start: start, End: end, Level: level, Line: n}
	if len(toks) == 0 || !bytes.HasPrefix(toks[0], []byte("PA=")) {
		return p.bad(n, ErrMalformed, "table line without PA=")
	}
	var ok bool
	if t.PA, ok = parseHex(toks[0][3:]); !ok {
		return p.bad(n, ErrMalformed, "bad table address %q", clip(toks[0]))
	}
	for _, tok := range toks[1:] {
		switch string(tok) {
		case "PXNTable":
			t.PXNTable = true
		case "UXNTable":
			t.UXNTable = true
		default:
			if u := string(tok); !p.unknown[u] {
				p.unknown[u] = true
				p.warn(n, "unknown table attribute %q ignored", u)
			}
		}
	}
	if k := len(p.d.Tables); k > 0 && start < p.d.Tables[k-1].Start {
		return p.bad(n, ErrOrder, "table line %#x-%#x before the table line on line %d (%#x)",
			start, end, p.d.Tables[k-1].Line, p.d.Tables[k-1].Start)
	}
	p.d.Arch = ArchARM64
	p.d.Tables = append(p.d.Tables, t)
	return nil
}

func (p *parser) intern(b []byte) string {
	if s, ok := p.sizes[string(b)]; ok {
		return s
	}
	s := string(b)
	p.sizes[s] = s
	return s
}

// attrSet returns the shared AttrSet for a line's attribute tokens. A nil set
// with a nil error means the line was malformed and dropped (lenient mode).
func (p *parser) attrSet(arch Arch, level string, toks [][]byte, n int) (*AttrSet, error) {
	p.key = p.key[:0]
	p.key = append(p.key, arch...)
	p.key = append(p.key, ' ')
	p.key = append(p.key, level...)
	for _, t := range toks {
		p.key = append(p.key, ' ')
		p.key = append(p.key, t...)
	}
	if s, ok := p.attrs[string(p.key)]; ok {
		return s, nil
	}
	s, msg := decodeAttrs(arch, level, toks)
	if msg != "" {
		return nil, p.bad(n, ErrMalformed, "%s", msg)
	}
	for _, u := range s.Unknown {
		if !p.unknown[u] {
			p.unknown[u] = true
			p.warn(n, "unknown attribute %q kept as is (a newer kernel's column?)", u)
		}
	}
	p.attrs[string(p.key)] = s
	return s, nil
}

// decodeAttrs decodes attribute tokens; msg is non-empty for contradictory
// or repeated columns, which no kernel prints.
func decodeAttrs(arch Arch, level string, toks [][]byte) (*AttrSet, string) {
	s := &AttrSet{Tokens: make([]string, len(toks))}
	var perm []string
	var rw, x bool
	for i, t := range toks {
		tok := string(t)
		s.Tokens[i] = tok
		f, kind := attrToken(arch, tok)
		switch kind {
		case tokFlag:
			if s.Flags&f != 0 {
				return nil, fmt.Sprintf("attribute %q repeated", tok)
			}
			s.Flags |= f
		case tokRW:
			if rw {
				return nil, fmt.Sprintf("attribute %q repeated", tok)
			}
			rw = true
		case tokX:
			if x {
				return nil, fmt.Sprintf("attribute %q repeated", tok)
			}
			x = true
		case tokMem:
			if s.Mem != "" {
				return nil, fmt.Sprintf("two memory types %q and %q", s.Mem, tok)
			}
			s.Mem = tok
		default:
			s.Unknown = append(s.Unknown, tok)
		}
		if f&sizeAttrs == 0 || kind != tokFlag {
			perm = append(perm, tok)
		}
	}
	if rw && s.Flags&AttrReadOnly != 0 {
		return nil, "both ro and RW"
	}
	if x && s.Flags&AttrNX != 0 {
		return nil, "both NX and x"
	}
	s.Text = strings.Join(s.Tokens, " ")
	s.Perm = strings.Join(perm, " ")
	if arch == ArchARM64 {
		s.Prot = protFromAttrs(s, level)
	}
	return s, ""
}

// sizeAttrs are the columns that describe the leaf size, not permissions.
const sizeAttrs = AttrCont | AttrBlock | AttrPSE

type tokKind uint8

const (
	tokUnknown tokKind = iota
	tokFlag
	tokRW  // "RW": ro clear
	tokX   // "x": NX clear
	tokMem // arm64 memory type
)

func attrToken(arch Arch, t string) (Attr, tokKind) {
	switch t {
	case "USR":
		return AttrUser, tokFlag
	case "ro":
		return AttrReadOnly, tokFlag
	case "RW":
		return 0, tokRW
	case "NX":
		return AttrNX, tokFlag
	case "x":
		return 0, tokX
	}
	if arch == ArchX86 {
		return x86AttrToken(t)
	}
	switch t {
	case "F":
		return AttrInvalid, tokFlag
	case "SHD":
		return AttrShared, tokFlag
	case "AF":
		return AttrAF, tokFlag
	case "NG":
		return AttrNG, tokFlag
	case "CON":
		return AttrCont, tokFlag
	case "BLK":
		return AttrBlock, tokFlag
	case "UXN":
		return AttrUXN, tokFlag
	case "GP":
		return AttrGP, tokFlag
	case "DEVICE/nGnRnE", "DEVICE/nGnRE", "DEVICE/GRE", "MEM/NORMAL-NC", "MEM/NORMAL", "MEM/NORMAL-TAGGED":
		return 0, tokMem
	}
	return 0, tokUnknown
}

// protFromAttrs rebuilds the descriptor bits the arm64 columns prove: the
// inverse of dump_prot (arch/arm64/mm/ptdump.c) over the same column table
// (ProtBits). A column whose set string shows, or whose blank set string
// stands against an absent clear string (no "F" means valid), contributes its
// value; other columns prove nothing. The type bits then follow from F, BLK
// and the level: bit 1 is set for pages (pte_mkinvalid keeps it) and clear for
// blocks, which show BLK when valid under both kernels' BLK rules.
func protFromAttrs(s *AttrSet, level string) uint64 {
	has := func(t string) bool {
		for _, x := range s.Tokens {
			if x == t {
				return true
			}
		}
		return false
	}
	var prot uint64
	for _, b := range ProtBits {
		set, clear := strings.TrimSpace(b.Set), strings.TrimSpace(b.Clear)
		if (set != "" && has(set)) || (set == "" && clear != "" && !has(clear)) {
			prot |= b.Val
		}
	}
	if s.Mem == "DEVICE/GRE" {
		prot |= arm64.AttrIndx(mtDeviceGRE)
	}
	valid := s.Flags&AttrInvalid == 0
	if s.Flags&AttrBlock == 0 && (level == "PTE" || valid) {
		prot |= arm64.PTETypeMask &^ arm64.PTEValid
	}
	return prot
}

// mtDeviceGRE is MT_DEVICE_GRE, MAIR index 2 in kernels before 5.10 (index 2
// became MT_NORMAL_NC); the current column table no longer has it.
const mtDeviceGRE = 2

// splitFields splits on ASCII whitespace, reusing dst.
func splitFields(b []byte, dst [][]byte) [][]byte {
	i := 0
	for i < len(b) {
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		j := i
		for j < len(b) && !isSpace(b[j]) {
			j++
		}
		if j > i {
			dst = append(dst, b[i:j])
		}
		i = j
	}
	return dst
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

// parseAddrRange parses "0xSTART-0xEND".
func parseAddrRange(b []byte) (start, end uint64, ok bool) {
	i := bytes.IndexByte(b, '-')
	if i < 0 {
		return 0, 0, false
	}
	start, ok = parseHex(b[:i])
	if !ok {
		return 0, 0, false
	}
	end, ok = parseHex(b[i+1:])
	return start, end, ok
}

func parseHex(b []byte) (uint64, bool) {
	if len(b) < 3 || b[0] != '0' || (b[1] != 'x' && b[1] != 'X') {
		return 0, false
	}
	return HexDigits(b[2:])
}

// HexDigits parses 1 to 16 hexadecimal digits (no prefix) without
// allocating, as dump and kallsyms addresses are written.
func HexDigits(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

// sizeUnits are note_page's units; x86 starts at bytes ("BKMGTPE").
const sizeUnits = "BKMGTPE"

// parseSize parses a printed size such as "2112K" or "130560G" into bytes.
func parseSize(b []byte) (uint64, bool) {
	if len(b) < 2 {
		return 0, false
	}
	u := strings.IndexByte(sizeUnits, b[len(b)-1])
	if u < 0 {
		return 0, false
	}
	digits := b[:len(b)-1]
	if len(digits) > 20 || !allDigits(digits) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil {
		return 0, false
	}
	shift := uint(10 * u)
	if shift > 0 && v > ^uint64(0)>>shift {
		return 0, false
	}
	return v << shift, true
}

// FormatSize prints a byte count the way note_page does: (bytes>>10) in the
// largest unit of KMGTPE that keeps it exact; byte counts that are not a
// multiple of 1K print in bytes (x86's "B").
func FormatSize(n uint64) string {
	if n%1024 != 0 {
		return strconv.FormatUint(n, 10) + "B"
	}
	n >>= 10
	u := 1
	for n != 0 && n%1024 == 0 && u < len(sizeUnits)-1 {
		n >>= 10
		u++
	}
	return strconv.FormatUint(n, 10) + sizeUnits[u:u+1]
}

// RegionKind maps a marker name to a canonical region kind and whether the
// marker closes the region. Kinds: linear, kasan, bpf, modules, vmalloc,
// vmemmap, pci-io, fixmap, percpu, kernel-image, user, kernel-space,
// cpu-entry, ldt, espfix, efi; other names give a lower-case slug of the name.
func RegionKind(name string) (kind string, end bool) {
	l := strings.ToLower(name)
	end = strings.HasSuffix(l, " end") || strings.HasPrefix(l, "end ")
	for _, m := range []struct{ sub, kind string }{
		{"linear mapping", "linear"},
		{"low kernel mapping", "linear"},
		{"kernel mapping", "linear"}, // x86-32's PAGE_OFFSET region
		{"kasan", "kasan"},
		{"bpf", "bpf"},
		{"modules", "modules"},
		{"vmalloc", "vmalloc"},
		{"vmemmap", "vmemmap"},
		{"pci i/o", "pci-io"},
		{"fixmap", "fixmap"},
		{"percpu", "percpu"},
		{"high kernel mapping", "kernel-image"},
		{"user space", "user"},
		{"kernel space", "kernel-space"},
		{"cpu entry area", "cpu-entry"},
		{"ldt remap", "ldt"},
		{"espfix", "espfix"},
		{"efi", "efi"},
	} {
		if strings.Contains(l, m.sub) {
			if m.kind == "linear" && m.sub == "kernel mapping" && strings.Contains(l, "high") {
				continue
			}
			return m.kind, end
		}
	}
	l = strings.TrimSuffix(strings.TrimPrefix(l, "end "), " end")
	l = strings.TrimSuffix(strings.TrimSuffix(l, " start"), " area")
	return strings.Join(strings.Fields(l), "-"), end
}

// archFromMarkers guesses the architecture of a dump without ranges.
func archFromMarkers(ms []MarkerLine) Arch {
	for _, m := range ms {
		switch m.Kind {
		case "user", "kernel-space", "cpu-entry", "ldt", "espfix", "kernel-image":
			return ArchX86
		case "linear", "vmemmap", "pci-io", "bpf":
			if m.Name != "Low Kernel Mapping" {
				return ArchARM64
			}
		}
	}
	return ArchUnknown
}

// DumpGeometry says what a dump's level names mean: the VA span of one entry
// at each printed level, and contiguous-run lengths.
type DumpGeometry struct {
	Arch     Arch         `json:"arch"`
	PageSize uint64       `json:"page_size"`
	VABits   int          `json:"va_bits"`
	Levels   []LevelShape `json:"levels"` // top level first
	// Basis says how the geometry was chosen.
	Basis string `json:"basis"`
}

// LevelShape is one table level as a dump names it.
type LevelShape struct {
	Name        string `json:"name"`         // as printed
	Size        uint64 `json:"size"`         // VA span of one entry
	ContEntries int    `json:"cont_entries"` // entries in a CON run (0: no contiguous hint)
}

// Level returns the index of a level name in Levels, or -1.
func (g *DumpGeometry) Level(name string) int {
	for i := range g.Levels {
		if g.Levels[i].Name == name {
			return i
		}
	}
	return -1
}

// EntrySize is the VA span of one entry at a printed level (0 if unknown).
func (g *DumpGeometry) EntrySize(level string) uint64 {
	if i := g.Level(level); i >= 0 {
		return g.Levels[i].Size
	}
	return 0
}

// LeafSize is the VA span one TLB entry can cover for a range's entries: the
// level's entry size, times the contiguous-run length when CON is shown.
func (g *DumpGeometry) LeafSize(r *Range) uint64 {
	i := g.Level(r.Level)
	if i < 0 {
		return 0
	}
	s := g.Levels[i].Size
	if r.Attrs.Has(AttrCont) && g.Levels[i].ContEntries > 0 {
		s *= uint64(g.Levels[i].ContEntries)
	}
	return s
}

// LeafName names a leaf size the way kernel developers do: "PTE 4K",
// "contPTE 64K", "PMD 2M", "contPMD 32M", "PUD 1G".
func (g *DumpGeometry) LeafName(level string, cont bool) string {
	i := g.Level(level)
	if i < 0 {
		return level
	}
	s := g.Levels[i].Size
	if cont && g.Levels[i].ContEntries > 0 {
		return "cont" + level + " " + FormatSize(s*uint64(g.Levels[i].ContEntries))
	}
	return level + " " + FormatSize(s)
}

func (g DumpGeometry) String() string {
	if g.PageSize == 0 {
		return "unknown geometry"
	}
	names := make([]string, len(g.Levels))
	for i, l := range g.Levels {
		names[i] = l.Name + "=" + FormatSize(l.Size)
	}
	return fmt.Sprintf("%s %s pages, %d-bit VA, %s", g.Arch, FormatSize(g.PageSize), g.VABits, strings.Join(names, " "))
}

// arm64Candidates lists granule/VA combinations the kernel builds, in the
// order a dump is matched against them: 4K first (by far the most common),
// smallest VA size first.
var arm64Candidates = []struct {
	shift uint
	va    int
	lpa2  bool
}{
	{12, 39, false}, {12, 48, false}, {12, 52, true},
	{14, 36, false}, {14, 47, false}, {14, 48, false}, {14, 52, true},
	{16, 42, false}, {16, 48, false}, {16, 52, false},
}

// inferGeometry chooses the granule and VA size of an arm64 dump. The first
// candidate (4K first) is taken whose VA size reaches the dump's lowest
// address and that the dump does not rule out. Two facts of the kernel's walk
// rule a geometry out:
//   - runs only break at entry boundaries (note_page is called once per
//     entry), so every range printed at a level starts and ends on that
//     level's entry size in the geometry;
//   - from 5.x on the walk prints unmapped entries at the level where they are
//     found, so a complete dump (with PGD lines and lines below PUD) shows
//     each level between PGD and PMD the geometry has: a 4K/48 dump always
//     prints PUD lines, a 64K/48 one never.
//
// A 16K or 64K dump that fits 4K on both counts cannot be told from a 4K one;
// Basis then names the other geometries that fit.
func inferGeometry(d *Dump, pageSize uint64) (DumpGeometry, *Warning) {
	if d.Arch == ArchX86 {
		return x86Geometry(d), nil
	}
	// Per level name: OR of all boundaries, whose trailing zeros bound the
	// alignment every range at that level has.
	var align [5]uint64
	var seen [5]bool
	for i := range d.Ranges {
		r := &d.Ranges[i]
		for k, n := range arm64Levels {
			if r.Level == n {
				align[k] |= r.Start | r.End
				seen[k] = true
			}
		}
	}
	// Table lines (capture --tables) cover exactly one entry of their level.
	var tsize [5]uint64
	for i := range d.Tables {
		t := &d.Tables[i]
		for k, n := range arm64Levels {
			if t.Level == n {
				align[k] |= t.Start | t.End
				seen[k] = true
				tsize[k] = t.End - t.Start
			}
		}
	}
	complete := d.HolesPrinted && seen[0] && (seen[3] || seen[4])
	lb := 0
	if len(d.Ranges) > 0 {
		if first := d.Ranges[0].Start; first>>63 == 1 {
			lb = 64 - bits.LeadingZeros64(^first)
		} else {
			lb = bits.Len64(d.Ranges[len(d.Ranges)-1].Last())
		}
	}
	fits := func(g arm64.Geometry) bool {
		var has [5]bool
		for l := g.StartLevel; l <= arm64.LastLevel; l++ {
			k := g.KLevel(l)
			has[k] = true
			if seen[k] && align[k]&(g.Size(l)-1) != 0 {
				return false
			}
			if tsize[k] != 0 && tsize[k] != g.Size(l) {
				return false
			}
			if complete && l > g.StartLevel && k < 3 && !seen[k] {
				return false
			}
		}
		for k := range seen {
			if seen[k] && !has[k] {
				return false
			}
		}
		return true
	}
	var chosen *arm64.Geometry
	var others []string
	otherShift := map[uint]bool{}
	for _, c := range arm64Candidates {
		if c.va < lb || (pageSize != 0 && uint64(1)<<c.shift != pageSize) {
			continue
		}
		g := arm64.MustGeometry(c.shift, c.va, c.lpa2)
		if !fits(g) {
			continue
		}
		if chosen == nil {
			chosen = &g
		} else if g.PageShift != chosen.PageShift && !otherShift[g.PageShift] {
			otherShift[g.PageShift] = true
			others = append(others, fmt.Sprintf("%s/%d-bit", FormatSize(g.PageSize()), g.VABits))
		}
	}
	if chosen != nil {
		g := *chosen
		var basis string
		switch {
		case len(d.Ranges) == 0:
			basis = "no ranges; 4K granule assumed"
		case pageSize != 0:
			basis = "granule given; every range fits its level's entry size"
		case g.PageShift != arm64.PageShift4K:
			basis = "the ranges rule out a 4K granule (level alignment or levels present); " +
				FormatSize(g.PageSize()) + " is the first granule they fit"
		default:
			basis = "4K granule assumed; every range fits its level's entry size"
		}
		if len(others) > 0 {
			basis += "; " + strings.Join(others, ", ") + " fit too (give the page size if the kernel used it)"
		}
		return fromARM64(g, basis), nil
	}
	// Nothing fits: assume the given or 4K granule and say which line breaks it.
	shift := uint(arm64.PageShift4K)
	if pageSize == 16384 {
		shift = arm64.PageShift16K
	} else if pageSize == 65536 {
		shift = arm64.PageShift64K
	}
	va := 48
	switch {
	case lb > 48:
		va = 52
	case lb <= 39 && shift == arm64.PageShift4K:
		va = 39
	}
	g := arm64.MustGeometry(shift, va, va == 52 && shift != arm64.PageShift64K)
	dg := fromARM64(g, "no geometry fits every range; "+g.String()+" assumed")
	w := &Warning{Msg: "no arm64 geometry fits every range's level and alignment; leaf sizes assume " + g.String()}
	for i := range d.Ranges {
		r := &d.Ranges[i]
		s := dg.EntrySize(r.Level)
		if s == 0 || (r.Start|r.End)&(s-1) != 0 {
			w.Line = r.Line
			w.Msg += fmt.Sprintf(" (first misfit: %s range %#x-%#x)", r.Level, r.Start, r.End)
			break
		}
	}
	return dg, w
}

func fromARM64(g arm64.Geometry, basis string) DumpGeometry {
	dg := DumpGeometry{Arch: ArchARM64, PageSize: g.PageSize(), VABits: g.VABits, Basis: basis}
	for l := g.StartLevel; l <= arm64.LastLevel; l++ {
		dg.Levels = append(dg.Levels, LevelShape{Name: g.Name(l), Size: g.Size(l), ContEntries: g.ContEntries(l)})
	}
	return dg
}
