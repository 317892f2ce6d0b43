package ptdump

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
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
		if r, ok := bytes.CutPrefix(b, []byte(OSReleaseComment)); ok && p.d.OSRelease == "" {
			p.d.OSRelease = string(r)
		}
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
