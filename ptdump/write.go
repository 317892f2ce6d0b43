package ptdump

import (
	"bufio"
	"fmt"
	"io"
	"strconv"

	"github.com/ptlab/ptlab/arm64"
)

// Options select what a Writer prints beyond mainline ptdump.
type Options struct {
	// PA breaks runs where the output address is not contiguous and appends
	// " PA=0x<start>" to every mapped line.
	PA bool
	// Tables prints a line for every table descriptor the walk descends
	// through: "<range> <size> <LEVEL> TBL PA=0x<table page>" plus the
	// PXNTable/UXNTable bits. Runs break at table boundaries.
	Tables bool
	// Bits is the attribute-column table; nil means ProtBits (current kernels).
	Bits []ProtBit
	// CheckWX counts W+X and non-UXN pages as ptdump_check_wx does.
	CheckWX bool
}

// Writer turns a stream of notes (address, level, descriptor) into
// kernel_page_tables text, coalescing equal neighbours into one line and
// printing marker headers, as arm64's note_page does.
type Writer struct {
	w       *bufio.Writer
	g       arm64.Geometry
	markers []Marker // ends with the {^0, ""} sentinel
	opt     Options
	bits    []ProtBit
	mask    uint64
	names   [5]string

	level   int  // -1 before the first note
	started bool // the first marker header is out
	prot    uint64
	start   uint64
	pa      uint64 // output address of start (Options.PA)
	hasPA   bool
	m       int // current marker

	wxPages, uxnPages uint64
	err               error
	buf               []byte
}

// NewWriter prints to out. markers must be sorted and end with the sentinel
// (KernelMarkers does).
func NewWriter(out io.Writer, g arm64.Geometry, markers []Marker, opt Options) *Writer {
	bits := opt.Bits
	if bits == nil {
		bits = ProtBits
	}
	w := &Writer{w: bufio.NewWriterSize(out, 64<<10), g: g, markers: markers, opt: opt, bits: bits, mask: ProtMask(bits), level: -1}
	copy(w.names[:], arm64.KLevelNames[:])
	return w
}

// Note records the descriptor val at addr for ptdump level (0=PGD .. 4=PTE);
// pa is the output address when val maps memory (used with Options.PA). It is
// note_page: a change of attributes or level, or reaching the next marker,
// ends the current run and prints it.
func (w *Writer) Note(addr uint64, level int, val, pa uint64) {
	var prot uint64
	if level >= 0 {
		prot = val & w.mask
	}
	mapped := level >= 0 && prot != 0
	paBreak := w.opt.PA && mapped && w.hasPA && pa != w.pa+(addr-w.start)
	next := w.markers[w.m+1].Start
	if w.level == -1 {
		w.level, w.prot, w.start = level, prot, addr
		w.pa, w.hasPA = pa, mapped
		if !w.started {
			w.header()
			w.started = true
		}
	} else if prot != w.prot || level != w.level || addr >= next || paBreak {
		if addr != w.start { // a run emptied by a table line is replaced, not printed
			w.line(addr)
		}
		if addr >= next {
			w.m++
			w.header()
		}
		w.level, w.prot, w.start = level, prot, addr
		w.pa, w.hasPA = pa, mapped
	}
	if addr >= w.markers[w.m+1].Start {
		w.m++
		w.header()
	}
}

// Table prints a table-descriptor line (Options.Tables) for [start, end) at
// ptdump level, whose next-level table page is at tablePA.
func (w *Writer) Table(start, end uint64, level int, desc, tablePA uint64) {
	if !w.opt.Tables {
		return
	}
	// Table lines break runs: the pending run up to start is printed first,
	// and a new one continues from start.
	if !w.started {
		w.header()
		w.started = true
	} else if w.level != -1 && start > w.start {
		w.line(start)
		for start >= w.markers[w.m+1].Start {
			w.m++
			w.header()
		}
		if w.hasPA {
			w.pa += start - w.start
		}
		w.start = start
	}
	w.buf = w.rangeText(w.buf[:0], start, end, level)
	w.buf = append(w.buf, " TBL PA=0x"...)
	w.buf = appendHex16(w.buf, tablePA)
	if desc&arm64.TablePXN != 0 {
		w.buf = append(w.buf, " PXNTable"...)
	}
	if desc&arm64.TableUXN != 0 {
		w.buf = append(w.buf, " UXNTable"...)
	}
	w.buf = append(w.buf, '\n')
	w.write(w.buf)
}

// Flush ends the last run (note_page_flush: a note at address 0, level -1,
// so the final line ends at 0x0000000000000000) and flushes the output.
func (w *Writer) Flush() error {
	if w.level != -1 {
		w.Note(0, -1, 0, 0)
	}
	if err := w.w.Flush(); err != nil && w.err == nil {
		w.err = err
	}
	return w.err
}

// WX returns the W+X and non-UXN page counts (Options.CheckWX).
func (w *Writer) WX() (wxPages, uxnPages uint64) { return w.wxPages, w.uxnPages }

// WXVerdict is the message ptdump_check_wx prints.
func (w *Writer) WXVerdict() string {
	if w.wxPages != 0 || w.uxnPages != 0 {
		return fmt.Sprintf("Checked W+X mappings: FAILED, %d W+X pages found, %d non-UXN pages found", w.wxPages, w.uxnPages)
	}
	return "Checked W+X mappings: passed, no W+X pages found"
}

func (w *Writer) header() {
	w.buf = append(w.buf[:0], "---[ "...)
	w.buf = append(w.buf, w.markers[w.m].Name...)
	w.buf = append(w.buf, " ]---\n"...)
	w.write(w.buf)
}

// line prints the current run [w.start, end).
func (w *Writer) line(end uint64) {
	if w.prot != 0 && w.opt.CheckWX {
		pages := (end - w.start) / w.g.PageSize()
		if w.prot&arm64.PTEUXN == 0 {
			w.uxnPages += pages
		}
		if w.prot&arm64.PTERdonly == 0 && w.prot&arm64.PTEPXN == 0 {
			w.wxPages += pages
		}
	}
	b := w.rangeText(w.buf[:0], w.start, end, w.level)
	if w.prot != 0 {
		for _, bit := range w.bits {
			s := bit.Clear
			if w.prot&bit.Mask == bit.Val {
				s = bit.Set
			}
			if s != "" {
				b = append(b, ' ')
				b = append(b, s...)
			}
		}
		if w.opt.PA && w.hasPA {
			b = append(b, " PA=0x"...)
			b = appendHex16(b, w.pa)
		}
	}
	b = append(b, '\n')
	w.buf = b
	w.write(b)
}

// rangeText formats "0x%016lx-0x%016lx   %9lu%c %s".
func (w *Writer) rangeText(b []byte, start, end uint64, level int) []byte {
	b = append(b, "0x"...)
	b = appendHex16(b, start)
	b = append(b, "-0x"...)
	b = appendHex16(b, end)
	b = append(b, "   "...)
	const units = "KMGTPE"
	delta := (end - start) >> 10
	u := 0
	for delta&1023 == 0 && u+1 < len(units) {
		delta >>= 10
		u++
	}
	var num [20]byte
	n := strconv.AppendUint(num[:0], delta, 10)
	for i := len(n); i < 9; i++ {
		b = append(b, ' ')
	}
	b = append(b, n...)
	b = append(b, units[u], ' ')
	return append(b, w.names[max(level, 0)]...)
}

func appendHex16(b []byte, v uint64) []byte {
	const hex = "0123456789abcdef"
	for s := 60; s >= 0; s -= 4 {
		b = append(b, hex[v>>uint(s)&0xf])
	}
	return b
}

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	if _, err := w.w.Write(b); err != nil {
		w.err = err
	}
}
