package trace

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// ErrFormat reports a recording that cannot be read at all.
var ErrFormat = errors.New("trace: malformed recording")

// Issue is a problem found at one line of a recording.
type Issue struct {
	Line int    `json:"line"`
	Msg  string `json:"msg"`
}

func (i Issue) String() string {
	if i.Line == 0 {
		return i.Msg
	}
	return fmt.Sprintf("line %d: %s", i.Line, i.Msg)
}

// Probe is one line of the probes section: whether the recorder could
// define a kprobe or enable a tracepoint.
type Probe struct {
	Line   int
	OK     bool
	Name   string
	Detail string
}

// LoadedModule is a line of /proc/modules.
type LoadedModule struct {
	Line int
	Name string
	Size uint64
	Addr uint64 // the address /proc/modules prints (the text base)
}

// Section is a file of /sys/module/NAME/sections.
type Section struct {
	Module, Name string
	Addr         uint64
}

// VmallocArea is a line of /proc/vmallocinfo.
type VmallocArea struct {
	Line       int
	Start, End uint64
	Size       uint64
	Caller     string
	Pages      int
	Kind       string // vmalloc, vmap, ioremap, user, vpages, ... (the flags vmallocinfo prints)
}

// Symbol is a line of /proc/kallsyms.
type Symbol struct {
	Addr   uint64
	Type   byte
	Name   string
	Module string
}

// Snapshot is the state the recorder saw at the start or the end.
type Snapshot struct {
	Modules  []LoadedModule
	Sections []Section
	Vmalloc  []VmallocArea
	Symbols  []Symbol
}

// Event is one line of ftrace text: "COMM-PID [CPU] FLAGS TS: NAME: ARGS".
type Event struct {
	Line int
	Comm string
	PID  int
	CPU  int
	TS   uint64 // nanoseconds
	Name string
	Args string
}

// Recording is a parsed recording.
type Recording struct {
	Name     string
	Meta     map[string]string
	Probes   []Probe
	Formats  map[string]string // event name -> print fmt
	Start    *Snapshot
	End      *Snapshot
	Events   []Event
	Overruns uint64 // events the ring buffer lost (per_cpu/*/stats overrun)
	Warnings []Issue
}

// Open reads a recording file, decompressing .gz, .xz and .zst.
func Open(path string) (*Recording, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, err = decompress(b, path)
	if err != nil {
		return nil, err
	}
	return Parse(bytes.NewReader(b), path)
}

func decompress(b []byte, name string) ([]byte, error) {
	var r io.Reader
	var err error
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		r, err = gzip.NewReader(bytes.NewReader(b))
	case bytes.HasPrefix(b, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		r, err = xz.NewReader(bytes.NewReader(b))
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		var d *zstd.Decoder
		d, err = zstd.NewReader(bytes.NewReader(b))
		if err == nil {
			defer d.Close()
			r = d
		}
	default:
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", name, ErrFormat, err)
	}
	out, err := io.ReadAll(io.LimitReader(r, 4<<30))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: decompress: %v", name, ErrFormat, err)
	}
	return out, nil
}

const sectionPrefix = "=== ptlab-trace "

// Parse reads a recording: the recorder's sectioned file, or bare ftrace
// text (trace_pipe, the trace file, `trace-cmd report`). Lines it cannot
// read become warnings naming the line; only unreadable input is an error.
func Parse(r io.Reader, name string) (*Recording, error) {
	rec := &Recording{Name: name, Meta: map[string]string{}, Formats: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	section := "trace" // bare ftrace text until a section header says otherwise
	sectioned := false
	var fmtName string
	n := 0
	warn := func(format string, args ...any) {
		if len(rec.Warnings) < 10000 {
			rec.Warnings = append(rec.Warnings, Issue{Line: n, Msg: fmt.Sprintf(format, args...)})
		}
	}
	snap := func(which string) *Snapshot {
		if which == "start" {
			if rec.Start == nil {
				rec.Start = &Snapshot{}
			}
			return rec.Start
		}
		if rec.End == nil {
			rec.End = &Snapshot{}
		}
		return rec.End
	}
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.HasPrefix(line, sectionPrefix) {
			sectioned = true
			section = strings.TrimSpace(line[len(sectionPrefix):])
			if strings.HasPrefix(section, "end rc=") {
				section = "done"
			}
			switch section {
			case "meta", "probes", "formats", "trace", "stats", "done",
				"start modules", "start sections", "start vmallocinfo", "start kallsyms",
				"end modules", "end sections", "end vmallocinfo", "end kallsyms":
			default:
				warn("unknown section %q (skipped)", section)
				section = "skip"
			}
			continue
		}
		if n == 1 && strings.HasPrefix(line, "# ptlab-trace ") {
			if v := strings.TrimSpace(line[len("# ptlab-trace "):]); v != "1" {
				warn("recording format version %q; this ptlab reads version 1", v)
			}
			continue
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		switch section {
		case "meta":
			k, v, _ := strings.Cut(line, " ")
			if strings.Contains(k, "=") { // VMCOREINFO: NUMBER(X)=v, KERNELOFFSET=v
				k, v, _ = strings.Cut(line, "=")
			}
			rec.Meta[k] = strings.TrimSpace(v)
		case "probes":
			st, rest, _ := strings.Cut(line, " ")
			nm, detail, _ := strings.Cut(rest, " ")
			nm = strings.TrimSuffix(nm, ":")
			if (st != "ok" && st != "missing" && st != "failed") || nm == "" {
				warn("probe line %q not understood", line)
				continue
			}
			rec.Probes = append(rec.Probes, Probe{Line: n, OK: st == "ok", Name: nm, Detail: detail})
		case "formats":
			if v, ok := strings.CutPrefix(line, "name: "); ok {
				fmtName = strings.TrimSpace(v)
			} else if v, ok := strings.CutPrefix(line, "print fmt: "); ok && fmtName != "" {
				rec.Formats[fmtName] = v
			}
		case "trace":
			if strings.HasPrefix(line, "#") {
				continue // header of the trace file
			}
			if strings.HasPrefix(line, "CPU:") || strings.HasPrefix(line, "cpus=") || strings.HasPrefix(line, "version =") {
				continue // trace-cmd report header
			}
			ev, err := parseEventLine(line)
			if err != nil {
				warn("%v: %q", err, clip(line))
				continue
			}
			ev.Line = n
			rec.Events = append(rec.Events, ev)
		case "stats":
			// "cpu0 overrun: 0 dropped events: 0": the value is the next field
			fs := strings.Fields(line)
			for i := 0; i+1 < len(fs); i++ {
				if fs[i] == "overrun:" {
					if x, err := strconv.ParseUint(fs[i+1], 10, 64); err == nil {
						rec.Overruns += x
					}
				}
			}
		case "start modules", "end modules":
			m, err := parseModuleLine(line)
			if err != nil {
				warn("%v", err)
				continue
			}
			m.Line = n
			s := snap(strings.Fields(section)[0])
			s.Modules = append(s.Modules, m)
		case "start sections", "end sections":
			f := strings.Fields(line)
			if len(f) != 3 {
				warn("section line %q: want MODULE SECTION ADDRESS", clip(line))
				continue
			}
			a, err := parseHex(f[2])
			if err != nil {
				warn("section %s %s: %v", f[0], f[1], err)
				continue
			}
			s := snap(strings.Fields(section)[0])
			s.Sections = append(s.Sections, Section{Module: f[0], Name: f[1], Addr: a})
		case "start vmallocinfo", "end vmallocinfo":
			a, err := parseVmallocLine(line)
			if err != nil {
				warn("%v", err)
				continue
			}
			a.Line = n
			s := snap(strings.Fields(section)[0])
			s.Vmalloc = append(s.Vmalloc, a)
		case "start kallsyms", "end kallsyms":
			sy, err := parseSymbolLine(line)
			if err != nil {
				warn("%v", err)
				continue
			}
			s := snap(strings.Fields(section)[0])
			s.Symbols = append(s.Symbols, sy)
		case "skip", "done":
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w: %v", name, n+1, ErrFormat, err)
	}
	if !sectioned && len(rec.Events) == 0 {
		return nil, fmt.Errorf("%s: %w: neither a ptlab recording nor ftrace text (%d lines)", name, ErrFormat, n)
	}
	if sectioned && rec.Start == nil {
		rec.Warnings = append(rec.Warnings, Issue{Msg: "no start snapshot: modules loaded before the recording are unknown"})
	}
	// trace_pipe merges the per-CPU buffers in time order; a step back means
	// a garbled or concatenated file. Replay in time order, keeping line order
	// for equal stamps.
	sorted := true
	for i := 1; i < len(rec.Events); i++ {
		if rec.Events[i].TS < rec.Events[i-1].TS {
			if sorted {
				rec.Warnings = append(rec.Warnings, Issue{Line: rec.Events[i].Line, Msg: fmt.Sprintf("event out of order (%s before the %s of line %d); events sorted by time stamp", fmtTS(rec.Events[i].TS), fmtTS(rec.Events[i-1].TS), rec.Events[i-1].Line)})
			}
			sorted = false
		}
	}
	if !sorted {
		sort.SliceStable(rec.Events, func(i, j int) bool { return rec.Events[i].TS < rec.Events[j].TS })
	}
	return rec, nil
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

func fmtTS(ns uint64) string { return fmt.Sprintf("%d.%06d", ns/1e9, ns%1e9/1e3) }

// parseEventLine reads one line of ftrace text:
//
//	insmod-123     [001] ..... 12.345678: set_memory_ro: (set_memory_ro+0x0/0x28) addr=0x... numpages=1
//
// The comm may hold spaces and dashes; the flags column and a "(tgid)"
// column are optional (trace options irq-info, record-tgid).
func parseEventLine(line string) (Event, error) {
	var ev Event
	lb := strings.Index(line, "[")
	if lb < 0 {
		return ev, errors.New("no [cpu] column")
	}
	rb := strings.Index(line[lb:], "]")
	if rb < 0 {
		return ev, errors.New("truncated [cpu] column")
	}
	rb += lb
	head := strings.TrimSpace(line[:lb])
	if i := strings.LastIndex(head, "("); i > 0 && strings.HasSuffix(head, ")") { // record-tgid
		head = strings.TrimSpace(head[:i])
	}
	dash := strings.LastIndex(head, "-")
	if dash < 0 {
		return ev, errors.New("no COMM-PID column")
	}
	pid, err := strconv.Atoi(head[dash+1:])
	if err != nil || pid < 0 {
		return ev, fmt.Errorf("bad pid %q", head[dash+1:])
	}
	cpu, err := strconv.Atoi(strings.TrimSpace(line[lb+1 : rb]))
	if err != nil || cpu < 0 {
		return ev, fmt.Errorf("bad cpu %q", line[lb+1:rb])
	}
	rest := strings.TrimSpace(line[rb+1:])
	// optional flags column, then "TS:"
	colon := strings.Index(rest, ": ")
	if colon < 0 {
		if strings.HasSuffix(rest, ":") {
			colon = len(rest) - 1
		} else {
			return ev, errors.New("truncated: no time stamp")
		}
	}
	tsf := strings.Fields(rest[:colon])
	if len(tsf) == 0 || len(tsf) > 2 {
		return ev, fmt.Errorf("bad time stamp column %q", rest[:colon])
	}
	ts, err := parseTS(tsf[len(tsf)-1])
	if err != nil {
		return ev, err
	}
	rest = strings.TrimLeft(rest[colon+1:], " ")
	nameEnd := strings.Index(rest, ":")
	if nameEnd <= 0 {
		return ev, errors.New("truncated: no event name")
	}
	name := rest[:nameEnd]
	if strings.ContainsAny(name, " \t()") {
		return ev, fmt.Errorf("bad event name %q", name)
	}
	ev = Event{Comm: head[:dash], PID: pid, CPU: cpu, TS: ts, Name: name, Args: strings.TrimSpace(rest[nameEnd+1:])}
	return ev, nil
}

// parseTS reads "SECONDS.FRACTION" (trace_clock local/global/mono) into
// nanoseconds; a bare integer (counter clocks) is taken as nanoseconds.
func parseTS(s string) (uint64, error) {
	sec, frac, dot := strings.Cut(s, ".")
	whole, err := strconv.ParseUint(sec, 10, 64)
	if err != nil || whole > 1<<33 {
		return 0, fmt.Errorf("bad time stamp %q", s)
	}
	if !dot {
		return whole, nil
	}
	if len(frac) == 0 || len(frac) > 9 {
		return 0, fmt.Errorf("bad time stamp %q", s)
	}
	f, err := strconv.ParseUint(frac, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad time stamp %q", s)
	}
	for i := len(frac); i < 9; i++ {
		f *= 10
	}
	return whole*1e9 + f, nil
}

func parseHex(s string) (uint64, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if s == "" || len(s) > 16 {
		return 0, fmt.Errorf("bad address %q", s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("bad address %q", s)
	}
	return v, nil
}

// parseModuleLine reads a /proc/modules line:
// "xfs 2117632 0 - Live 0xffff80007a9d0000".
func parseModuleLine(line string) (LoadedModule, error) {
	f := strings.Fields(line)
	if len(f) < 6 {
		return LoadedModule{}, fmt.Errorf("/proc/modules line %q: want 6 fields", clip(line))
	}
	size, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return LoadedModule{}, fmt.Errorf("/proc/modules line %q: bad size", clip(line))
	}
	addr, err := parseHex(f[5])
	if err != nil {
		return LoadedModule{}, fmt.Errorf("/proc/modules %s: %v", f[0], err)
	}
	return LoadedModule{Name: f[0], Size: size, Addr: addr}, nil
}

// parseVmallocLine reads a /proc/vmallocinfo line:
// "0xffff800080000000-0xffff800080005000   20480 start_kernel+0x2e0/0x7f8 pages=4 vmalloc N0=4".
func parseVmallocLine(line string) (VmallocArea, error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return VmallocArea{}, fmt.Errorf("vmallocinfo line %q: want START-END SIZE", clip(line))
	}
	s, e, ok := strings.Cut(f[0], "-")
	if !ok {
		return VmallocArea{}, fmt.Errorf("vmallocinfo line %q: want START-END", clip(line))
	}
	start, err1 := parseHex(s)
	end, err2 := parseHex(e)
	size, err3 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || end < start {
		return VmallocArea{}, fmt.Errorf("vmallocinfo line %q: bad range or size", clip(line))
	}
	a := VmallocArea{Start: start, End: end, Size: size}
	for _, x := range f[2:] {
		switch {
		case strings.HasPrefix(x, "pages="):
			a.Pages, _ = strconv.Atoi(x[len("pages="):])
		case strings.HasPrefix(x, "phys=") || strings.HasPrefix(x, "N") && strings.Contains(x, "="):
		case x == "vmalloc" || x == "vmap" || x == "ioremap" || x == "user" || x == "vpages" || x == "dma-coherent" || x == "unpurged" || x == "vm_map_ram":
			if a.Kind == "" {
				a.Kind = x
			}
		case a.Caller == "" && strings.Contains(x, "+0x"):
			a.Caller = x
		}
	}
	return a, nil
}

// parseSymbolLine reads a kallsyms line: "ADDR TYPE NAME [MODULE]".
func parseSymbolLine(line string) (Symbol, error) {
	f := strings.Fields(line)
	if len(f) < 3 || len(f[1]) != 1 {
		return Symbol{}, fmt.Errorf("kallsyms line %q: want ADDR TYPE NAME", clip(line))
	}
	a, err := parseHex(f[0])
	if err != nil {
		return Symbol{}, fmt.Errorf("kallsyms %s: %v", f[2], err)
	}
	sy := Symbol{Addr: a, Type: f[1][0], Name: f[2]}
	if len(f) > 3 {
		sy.Module = strings.Trim(f[3], "[]")
	}
	return sy, nil
}

// Fields parses an event's "key=value" arguments. Values end at a space;
// the kprobe location "(sym+0x0/0x28)" and the tracepoints' free text are
// skipped. alloc_vmap_area's "va_start: N" becomes va_start=N.
func Fields(args string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Fields(strings.ReplaceAll(args, "va_start: ", "va_start=")) {
		if k, v, ok := strings.Cut(f, "="); ok && k != "" {
			out[k] = v
		}
	}
	return out
}
