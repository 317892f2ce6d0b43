// Package capture reads a live arm64 kernel's own translation tables from
// /proc/kcore, using /proc/kallsyms and the VMCOREINFO note for the facts the
// tables do not carry (where swapper_pg_dir is, the granule, the VA size, the
// linear map offset), and turns them into a kernel_page_tables dump. Most
// distribution kernels (Debian's among them) are built without
// CONFIG_PTDUMP_DEBUGFS, so this is the only way to see their page tables.
package capture

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

// Sentinel errors; every error returned by this package wraps one of them.
var (
	// ErrKcore: the core file is not a usable ELF core (bad header, bad
	// program or note headers, a read that fails).
	ErrKcore = errors.New("capture: bad kcore")
	// ErrNotMapped: no PT_LOAD segment of the core covers an address.
	ErrNotMapped = errors.New("capture: address not covered by kcore")
	// ErrVMCoreInfo: a VMCOREINFO line or value does not parse.
	ErrVMCoreInfo = errors.New("capture: bad VMCOREINFO")
	// ErrKallsyms: a /proc/kallsyms line does not parse.
	ErrKallsyms = errors.New("capture: bad kallsyms")
	// ErrNoSymbol: a needed symbol is absent (or hidden by kptr_restrict).
	ErrNoSymbol = errors.New("capture: symbol not found")
	// ErrMachine: the machine facts are missing, inconsistent or unsupported.
	ErrMachine = errors.New("capture: cannot determine the machine")
)

// NoPhysAddr is the p_paddr the kernel writes for segments that have no
// single physical address (vmalloc, modules, vmemmap): (u64)-1.
const NoPhysAddr = ^uint64(0)

// Segment is one PT_LOAD program header of a kcore file: Size bytes of kernel
// virtual memory at VAddr are at file offset Offset. PAddr is the physical
// address of VAddr for segments that map RAM directly (the linear map, the
// kernel image), NoPhysAddr otherwise.
type Segment struct {
	VAddr  uint64
	PAddr  uint64
	Size   uint64
	Offset uint64
}

// HasPhys reports whether the segment is a direct mapping of physical memory.
func (s Segment) HasPhys() bool { return s.PAddr != NoPhysAddr }

// Note is one ELF note of the core's PT_NOTE segments.
type Note struct {
	Name string
	Type uint32
	Desc []byte
}

// Kcore is an open ELF core file laid out like /proc/kcore (fs/proc/kcore.c):
// an ELF64 ET_CORE header, one PT_NOTE segment (CORE notes and, since 4.19,
// the VMCOREINFO note) and one PT_LOAD segment per region of kernel virtual
// memory (kernel text, vmalloc/modules, each linear-map RAM range, vmemmap).
type Kcore struct {
	r      io.ReaderAt
	closer io.Closer

	// ByteOrder is the ELF header's data encoding: the kernel's (and so its
	// descriptors') endianness. arm64 kernels are little-endian unless built
	// with CONFIG_CPU_BIG_ENDIAN.
	ByteOrder binary.ByteOrder
	// Machine is e_machine: EM_AARCH64 for an arm64 kernel.
	Machine elf.Machine

	// Segments are the PT_LOAD segments sorted by VAddr.
	Segments []Segment
	// Notes are the notes of all PT_NOTE segments, in file order.
	Notes []Note
	// VMCoreInfo is the parsed VMCOREINFO note, nil when the core has none.
	VMCoreInfo *VMCoreInfo

	// byPhys holds the indices of the segments with a physical address,
	// sorted by PAddr, for ReadPA.
	byPhys []int
}

// maxHeaderBytes bounds the part of the file holding the ELF, program and
// section headers.
const maxHeaderBytes = 16 << 20

// maxNoteSize bounds the PT_NOTE data read into memory. The kernel's kcore
// notes are a few KiB (prstatus, prpsinfo, task_struct, VMCOREINFO).
const maxNoteSize = 1 << 20

// OpenKcore opens a core file, normally /proc/kcore (root only).
func OpenKcore(path string) (*Kcore, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKcore, err)
	}
	k, err := NewKcore(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	k.closer = f
	return k, nil
}

// NewKcore reads the ELF and program headers and the notes of a core file.
// It models what read_kcore_iter (fs/proc/kcore.c) lays out: the ELF header,
// then the program headers, then the notes, then the segments' data at the
// offsets their headers give.
func NewKcore(r io.ReaderAt) (*Kcore, error) {
	// debug/elf only needs the headers, which kcore keeps in its first pages
	// (the ELF header, one program header per region, at most one section
	// header); bounding its reader keeps a corrupt e_shoff/e_shnum from
	// making it read gigabytes.
	f, err := elf.NewFile(io.NewSectionReader(r, 0, maxHeaderBytes))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKcore, err)
	}
	if f.Class != elf.ELFCLASS64 {
		return nil, fmt.Errorf("%w: ELF class %v, want ELFCLASS64", ErrKcore, f.Class)
	}
	if f.Type != elf.ET_CORE {
		return nil, fmt.Errorf("%w: ELF type %v, want ET_CORE", ErrKcore, f.Type)
	}
	k := &Kcore{r: r, ByteOrder: f.ByteOrder, Machine: f.Machine}
	for i, p := range f.Progs {
		switch p.Type {
		case elf.PT_LOAD:
			if p.Filesz == 0 {
				continue
			}
			if p.Vaddr+p.Filesz-1 < p.Vaddr || p.Off+p.Filesz-1 < p.Off {
				return nil, fmt.Errorf("%w: program header %d: segment at %#x size %#x wraps", ErrKcore, i, p.Vaddr, p.Filesz)
			}
			k.Segments = append(k.Segments, Segment{VAddr: p.Vaddr, PAddr: p.Paddr, Size: p.Filesz, Offset: p.Off})
		case elf.PT_NOTE:
			if p.Filesz > maxNoteSize {
				return nil, fmt.Errorf("%w: program header %d: note segment of %d bytes", ErrKcore, i, p.Filesz)
			}
			buf := make([]byte, p.Filesz)
			if _, err := r.ReadAt(buf, int64(p.Off)); err != nil {
				return nil, fmt.Errorf("%w: program header %d: reading notes at offset %#x: %v", ErrKcore, i, p.Off, err)
			}
			notes, err := parseNotes(buf, f.ByteOrder)
			if err != nil {
				return nil, fmt.Errorf("%w: program header %d: %v", ErrKcore, i, err)
			}
			k.Notes = append(k.Notes, notes...)
		}
	}
	// Segments overlap: the vmalloc segment spans the kernel image's. In
	// kcore a file offset stands for one VA whichever segment names it
	// (kc_offset_to_vaddr), so any covering segment reads the same bytes.
	sort.SliceStable(k.Segments, func(i, j int) bool { return k.Segments[i].VAddr < k.Segments[j].VAddr })
	for i, s := range k.Segments {
		if s.HasPhys() && s.PAddr+s.Size-1 >= s.PAddr {
			k.byPhys = append(k.byPhys, i)
		}
	}
	sort.SliceStable(k.byPhys, func(a, b int) bool {
		return k.Segments[k.byPhys[a]].PAddr < k.Segments[k.byPhys[b]].PAddr
	})
	for _, n := range k.Notes {
		if n.Name == "VMCOREINFO" {
			vi, err := ParseVMCoreInfo(n.Desc)
			if err != nil {
				return nil, err
			}
			k.VMCoreInfo = vi
			break
		}
	}
	return k, nil
}

// Close closes the file opened by OpenKcore.
func (k *Kcore) Close() error {
	if k.closer == nil {
		return nil
	}
	return k.closer.Close()
}

// parseNotes splits ELF note data: 4-byte namesz, descsz and type, then the
// name and the descriptor, each padded to 4 bytes (append_kcore_note).
func parseNotes(b []byte, bo binary.ByteOrder) ([]Note, error) {
	var out []Note
	for off := 0; off < len(b); {
		if len(b)-off < 12 {
			if allZero(b[off:]) {
				break
			}
			return nil, fmt.Errorf("truncated note header at note offset %d", off)
		}
		namesz := uint64(bo.Uint32(b[off:]))
		descsz := uint64(bo.Uint32(b[off+4:]))
		typ := bo.Uint32(b[off+8:])
		p := uint64(off) + 12
		nameEnd := p + namesz
		descStart := align4(nameEnd)
		descEnd := descStart + descsz
		if descEnd > uint64(len(b)) {
			return nil, fmt.Errorf("note at note offset %d (namesz %d, descsz %d) runs past the segment (%d bytes)", off, namesz, descsz, len(b))
		}
		name := string(bytes.TrimRight(b[p:nameEnd], "\x00"))
		out = append(out, Note{Name: name, Type: typ, Desc: b[descStart:descEnd]})
		off = int(align4(descEnd))
	}
	return out, nil
}

func align4(x uint64) uint64 { return (x + 3) &^ 3 }

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// segmentFor returns the innermost segment covering [va, va+n) (the one
// starting last), or false.
func (k *Kcore) segmentFor(va uint64, n int) (Segment, bool) {
	i := sort.Search(len(k.Segments), func(i int) bool { return k.Segments[i].VAddr > va }) - 1
	for ; i >= 0; i-- {
		s := k.Segments[i]
		off := va - s.VAddr
		if off < s.Size && uint64(n) <= s.Size-off {
			return s, true
		}
	}
	return Segment{}, false
}

// ReadVA fills buf with kernel virtual memory at va. The whole range must lie
// in one segment.
func (k *Kcore) ReadVA(va uint64, buf []byte) error {
	s, ok := k.segmentFor(va, len(buf))
	if !ok {
		return fmt.Errorf("%w: VA %#x (+%d bytes)", ErrNotMapped, va, len(buf))
	}
	return k.readAt(buf, s.Offset+(va-s.VAddr), va)
}

// PhysSegmentFor returns the segment that maps the physical range
// [pa, pa+n) directly (p_paddr set), or false.
func (k *Kcore) PhysSegmentFor(pa uint64, n int) (Segment, bool) {
	i := sort.Search(len(k.byPhys), func(i int) bool { return k.Segments[k.byPhys[i]].PAddr > pa }) - 1
	// Segments may overlap physically (the kernel image also appears in the
	// linear map); walk back over the candidates that start at or below pa.
	for ; i >= 0; i-- {
		s := k.Segments[k.byPhys[i]]
		off := pa - s.PAddr
		if off < s.Size && uint64(n) <= s.Size-off {
			return s, true
		}
	}
	return Segment{}, false
}

// ReadPA fills buf with physical memory at pa, read through a segment that
// maps it directly (a linear-map RAM segment or the kernel image).
func (k *Kcore) ReadPA(pa uint64, buf []byte) error {
	s, ok := k.PhysSegmentFor(pa, len(buf))
	if !ok {
		return fmt.Errorf("%w: PA %#x (+%d bytes) is in no segment with a physical address", ErrNotMapped, pa, len(buf))
	}
	return k.readAt(buf, s.Offset+(pa-s.PAddr), s.VAddr+(pa-s.PAddr))
}

func (k *Kcore) readAt(buf []byte, off, va uint64) error {
	if off > 1<<63-1 {
		return fmt.Errorf("%w: file offset %#x of VA %#x out of range", ErrKcore, off, va)
	}
	n, err := k.r.ReadAt(buf, int64(off))
	if n == len(buf) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: reading %d bytes of VA %#x at file offset %#x: %v", ErrKcore, len(buf), va, off, err)
}

// ReadUint64 reads a 64-bit kernel variable at va.
func (k *Kcore) ReadUint64(va uint64) (uint64, error) {
	var b [8]byte
	if err := k.ReadVA(va, b[:]); err != nil {
		return 0, err
	}
	return k.ByteOrder.Uint64(b[:]), nil
}
