package capture

import (
	"bufio"
	"bytes"
	"fmt"
	"github.com/ptlab/ptlab/ptdump"
	"io"
	"os"
)

// Symbols are kernel symbol addresses by name.
type Symbols map[string]uint64

// Lookup returns a symbol's address; a missing symbol is an ErrNoSymbol error.
func (s Symbols) Lookup(name string) (uint64, error) {
	if a, ok := s[name]; ok {
		return a, nil
	}
	return 0, fmt.Errorf("%w: %s", ErrNoSymbol, name)
}

// KernelSymbols are the vmlinux symbols capture looks up: the root of the
// kernel's tables and the bounds of the kernel image's sections, which the
// image's mappings follow (map_kernel in arch/arm64/mm/mmu.c).
var KernelSymbols = []string{
	"swapper_pg_dir", "_text", "_stext", "_etext", "__start_rodata",
	"__end_rodata", "__init_begin", "__init_end", "_data", "_edata", "_end",
	"__bss_start", "vabits_actual", "memstart_addr", "kimage_voffset",
}

// ReadKallsyms reads /proc/kallsyms-format text ("ADDRESS TYPE NAME" with an
// optional "\t[MODULE]", as s_show in kernel/kallsyms.c prints it) and returns
// the vmlinux (non-module) symbols named in want; a name that occurs more
// than once keeps its first address. A malformed line is an ErrKallsyms error
// naming the line. When every address in the file is zero, kptr_restrict hid
// them from this user and the result is an ErrNoSymbol error.
func ReadKallsyms(r io.Reader, want []string) (Symbols, error) {
	wanted := make(map[string]bool, len(want))
	for _, w := range want {
		wanted[w] = true
	}
	out := Symbols{}
	br := bufio.NewReaderSize(r, 64<<10)
	sawAddr, lines := false, 0
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, fmt.Errorf("%w: line %d: longer than %d bytes", ErrKallsyms, lineNo, br.Size())
		}
		if len(line) == 0 && err != nil {
			if err == io.EOF {
				break
			}
			return nil, fmt.Errorf("%w: line %d: %v", ErrKallsyms, lineNo, err)
		}
		lines++
		addr, name, module, perr := parseKallsymsLine(line)
		if perr != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrKallsyms, lineNo, perr)
		}
		if addr != 0 {
			sawAddr = true
		}
		if !module && wanted[string(name)] {
			if _, seen := out[string(name)]; !seen {
				out[string(name)] = addr
			}
		}
		if err == io.EOF {
			break
		}
	}
	if lines > 0 && !sawAddr {
		return nil, fmt.Errorf("%w: all kallsyms addresses are zero (kptr_restrict; run as root)", ErrNoSymbol)
	}
	return out, nil
}

// parseKallsymsLine splits one line into address, name and whether it has a
// [module] suffix. It allocates nothing.
func parseKallsymsLine(line []byte) (addr uint64, name []byte, module bool, err error) {
	line = bytes.TrimRight(line, "\r\n")
	var fa [5][]byte
	f := fa[:0]
	for rest := line; ; {
		rest = bytes.TrimLeft(rest, " \t")
		if len(rest) == 0 {
			break
		}
		if len(f) == len(fa) {
			return 0, nil, false, fmt.Errorf("%q: want ADDRESS TYPE NAME [[MODULE]]", line)
		}
		i := bytes.IndexAny(rest, " \t")
		if i < 0 {
			i = len(rest)
		}
		f = append(f, rest[:i])
		rest = rest[i:]
	}
	if len(f) < 3 || len(f) > 4 {
		return 0, nil, false, fmt.Errorf("%q: want ADDRESS TYPE NAME [[MODULE]]", line)
	}
	if len(f[0]) > 16 {
		return 0, nil, false, fmt.Errorf("%q: address longer than 16 hex digits", line)
	}
	var ok bool
	if addr, ok = ptdump.HexDigits(f[0]); !ok {
		return 0, nil, false, fmt.Errorf("%q: address %q is not hex", line, f[0])
	}
	if len(f[1]) != 1 {
		return 0, nil, false, fmt.Errorf("%q: type %q is not one letter", line, f[1])
	}
	if len(f) == 4 {
		m := f[3]
		if len(m) < 3 || m[0] != '[' || m[len(m)-1] != ']' {
			return 0, nil, false, fmt.Errorf("%q: module %q is not [NAME]", line, m)
		}
		module = true
	}
	return addr, f[2], module, nil
}

// ReadKallsymsFile is ReadKallsyms on a file, normally /proc/kallsyms.
func ReadKallsymsFile(path string, want []string) (Symbols, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoSymbol, err)
	}
	defer f.Close()
	s, err := ReadKallsyms(f, want)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
