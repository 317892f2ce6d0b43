package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ptlab/ptlab/arm64"
)

// This file builds synthetic /proc/kcore files: an ELF64 core with a PT_NOTE
// segment (a CORE note and a VMCOREINFO note) and PT_LOAD segments laid out
// like fs/proc/kcore.c's (kernel text, vmalloc, linear-map RAM), holding a
// translation-table tree that the test constructs through a "kernel view" of
// the tables that is independent of Machine's root computation.

// sparseCore is an io.ReaderAt over a huge, mostly-zero file: the ELF
// headers at offset 0 and a few written chunks; everything else reads as 0
// (like kcore's unbacked vmalloc space).
type sparseCore struct {
	size   int64
	chunks []chunk // sorted by off, non-overlapping
}

type chunk struct {
	off  int64
	data []byte
}

func (s *sparseCore) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset")
	}
	if off >= s.size {
		return 0, io.EOF
	}
	n := len(p)
	var err error
	if int64(n) > s.size-off {
		n = int(s.size - off)
		err = io.EOF
	}
	clear(p[:n])
	i := sort.Search(len(s.chunks), func(i int) bool { return s.chunks[i].off+int64(len(s.chunks[i].data)) > off })
	for ; i < len(s.chunks) && s.chunks[i].off < off+int64(n); i++ {
		c := s.chunks[i]
		lo, hi := max(off, c.off), min(off+int64(n), c.off+int64(len(c.data)))
		copy(p[lo-off:hi-off], c.data[lo-c.off:hi-c.off])
	}
	return n, err
}

// fakeSeg is a PT_LOAD segment with its contents given per page (by offset
// into the segment).
type fakeSeg struct {
	Segment
	pages map[uint64][]byte
}

// coreFile assembles the ELF core: header, program headers, notes at the
// start; segment data at the segments' offsets.
func coreFile(segs []*fakeSeg, notes []Note, byteOrder binary.ByteOrder, elfType uint16) *sparseCore {
	var nb bytes.Buffer
	for _, n := range notes {
		name := []byte(n.Name + "\x00")
		binary.Write(&nb, byteOrder, uint32(len(name)))
		binary.Write(&nb, byteOrder, uint32(len(n.Desc)))
		binary.Write(&nb, byteOrder, n.Type)
		nb.Write(name)
		nb.Write(make([]byte, int(align4(uint64(len(name))))-len(name)))
		nb.Write(n.Desc)
		nb.Write(make([]byte, int(align4(uint64(len(n.Desc))))-len(n.Desc)))
	}
	nphdr := 1 + len(segs)
	noteOff := uint64(64 + 56*nphdr)
	var h bytes.Buffer
	ident := [16]byte{0x7f, 'E', 'L', 'F', 2, 1, 1}
	if byteOrder == binary.BigEndian {
		ident[5] = 2
	}
	h.Write(ident[:])
	w := func(v any) { binary.Write(&h, byteOrder, v) }
	w(elfType)       // e_type
	w(uint16(0xb7))  // e_machine EM_AARCH64
	w(uint32(1))     // e_version
	w(uint64(0))     // e_entry
	w(uint64(64))    // e_phoff
	w(uint64(0))     // e_shoff
	w(uint32(0))     // e_flags
	w(uint16(64))    // e_ehsize
	w(uint16(56))    // e_phentsize
	w(uint16(nphdr)) // e_phnum
	w(uint16(64))    // e_shentsize
	w(uint16(0))     // e_shnum
	w(uint16(0))     // e_shstrndx
	phdr := func(typ, flags uint32, off, va, pa, filesz uint64) {
		w(typ)
		w(flags)
		w(off)
		w(va)
		w(pa)
		w(filesz)
		w(filesz) // memsz
		w(uint64(4096))
	}
	phdr(4, 0, noteOff, 0, 0, uint64(nb.Len())) // PT_NOTE
	for _, s := range segs {
		phdr(1, 7, s.Offset, s.VAddr, s.PAddr, s.Size) // PT_LOAD RWX
	}
	h.Write(nb.Bytes())
	sc := &sparseCore{size: 1 << 62}
	sc.chunks = append(sc.chunks, chunk{0, h.Bytes()})
	for _, s := range segs {
		keys := make([]uint64, 0, len(s.pages))
		for k := range s.pages {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		for _, k := range keys {
			sc.chunks = append(sc.chunks, chunk{int64(s.Offset + k), s.pages[k]})
		}
	}
	sort.Slice(sc.chunks, func(i, j int) bool { return sc.chunks[i].off < sc.chunks[j].off })
	return sc
}

// fakeKernel is a miniature arm64 kernel memory image: RAM at [ramStart,
// ramStart+ramSize), the kernel image (with swapper_pg_dir) inside it, and
// the TTBR1 tables built the way the kernel indexes them.
type fakeKernel struct {
	hw, kern     arm64.Geometry // hardware regime, compile-time regime
	layout       arm64.Layout
	ramStart     uint64
	ramSize      uint64
	physOffset   uint64 // PHYS_OFFSET
	pageOffset   uint64 // PAGE_OFFSET = -(1 << VA_BITS)
	kimageVA     uint64 // _text
	kimagePA     uint64
	kimageSize   uint64
	swapperVA    uint64
	ram          map[uint64][]byte // page PA -> contents
	nextTablePA  uint64
	tables       int
	omitVMCORE   []string // VMCOREINFO keys to leave out
	extraVMCORE  string
	linearOffset bool // false: leave p_paddr of the RAM segment at -1
	bo           binary.ByteOrder
}

// newFakeKernel returns a kernel of the given page shift and VA sizes
// (vaActual <= vaConfig); 2 GiB of RAM at 1 GiB.
func newFakeKernel(pageShift uint, vaConfig, vaActual int) (*fakeKernel, error) {
	lpa2 := func(va int) bool { return pageShift != arm64.PageShift64K && va > 48 }
	hw, err := arm64.NewGeometry(pageShift, vaActual, lpa2(vaActual))
	if err != nil {
		return nil, err
	}
	kern, err := arm64.NewGeometry(pageShift, vaConfig, lpa2(vaConfig))
	if err != nil {
		return nil, err
	}
	ps := uint64(1) << pageShift
	fk := &fakeKernel{
		hw: hw, kern: kern,
		ramStart: 1 << 30, ramSize: 2 << 30,
		pageOffset:   -(uint64(1) << uint(vaConfig)),
		ram:          map[uint64][]byte{},
		linearOffset: true,
		bo:           binary.LittleEndian,
	}
	fk.physOffset = fk.ramStart
	if vaActual < vaConfig {
		// arm64_memblock_init: memstart_addr -= _PAGE_OFFSET(vabits_actual) - _PAGE_OFFSET(52)
		fk.physOffset -= -(uint64(1) << uint(vaActual)) - fk.pageOffset
	}
	fk.layout = arm64.KernelLayout(hw, vaConfig)
	fk.kimagePA = fk.ramStart + 2<<20
	fk.kimageVA = fk.layout.KimageVaddr + 0x1234<<21 // + a KASLR offset
	fk.kimageSize = 64 * ps
	fk.swapperVA = fk.kimageVA + 32*ps
	fk.nextTablePA = fk.ramStart + 256<<20
	return fk, nil
}

func (fk *fakeKernel) pageSize() uint64 { return fk.hw.PageSize() }

func (fk *fakeKernel) swapperPA() uint64 { return fk.swapperVA - fk.kimageVA + fk.kimagePA }

func (fk *fakeKernel) page(pa uint64) []byte {
	base := pa &^ (fk.pageSize() - 1)
	p, ok := fk.ram[base]
	if !ok {
		p = make([]byte, fk.pageSize())
		fk.ram[base] = p
	}
	return p
}

func (fk *fakeKernel) load(pa uint64) uint64 {
	return fk.bo.Uint64(fk.page(pa)[pa&(fk.pageSize()-1):])
}

func (fk *fakeKernel) store(pa, v uint64) {
	fk.bo.PutUint64(fk.page(pa)[pa&(fk.pageSize()-1):], v)
}

// topEntry is where the kernel keeps the top-level entry for va: with the
// top level folded at run time, swapper_pg_dir's page is the next level's
// table (pgd_to_folded_p4d); otherwise the kernel indexes its own, possibly
// wider, top table (pgd_offset_k).
func (fk *fakeKernel) topEntry(va uint64) uint64 {
	if fk.kern.Levels > fk.hw.Levels {
		return fk.swapperPA() + uint64(fk.hw.Index(va, fk.hw.StartLevel))*8
	}
	return fk.swapperPA() + uint64(fk.kern.Index(va, fk.kern.StartLevel))*8
}

// mapLeaf maps one leaf of the level's size at va (aligned) to pa with prot
// (a page prot; MkLeaf makes it a block above level 3), allocating tables.
func (fk *fakeKernel) mapLeaf(va, pa uint64, l arm64.Level, prot uint64) error {
	g := fk.hw
	slot := fk.topEntry(va)
	for lvl := g.StartLevel; ; lvl++ {
		if lvl == l {
			if d := fk.load(slot); d != 0 {
				return fmt.Errorf("va %#x level %d already mapped (%#x)", va, l, d)
			}
			fk.store(slot, g.MkLeaf(pa, prot, l))
			return nil
		}
		d := fk.load(slot)
		if d == 0 {
			t := fk.nextTablePA
			fk.nextTablePA += fk.pageSize()
			fk.tables++
			fk.page(t)
			d = g.MkTable(t, true)
			fk.store(slot, d)
		} else if !g.IsTable(d, lvl) {
			return fmt.Errorf("va %#x: level %d holds a leaf", va, lvl)
		}
		slot = g.OutputAddress(d) + uint64(g.Index(va, lvl+1))*8
	}
}

// linearVA is __phys_to_virt.
func (fk *fakeKernel) linearVA(pa uint64) uint64 { return pa - fk.physOffset + fk.pageOffset }

func (fk *fakeKernel) vmcoreinfo() string {
	var b strings.Builder
	kv := func(k, f string, a ...any) {
		for _, o := range fk.omitVMCORE {
			if o == k {
				return
			}
		}
		fmt.Fprintf(&b, "%s="+f+"\n", append([]any{k}, a...)...)
	}
	kv("OSRELEASE", "6.12.0-test")
	kv("PAGESIZE", "%d", fk.pageSize())
	kv("SYMBOL(swapper_pg_dir)", "%x", fk.swapperVA)
	kv("SYMBOL(_stext)", "%x", fk.kimageVA+0x10000)
	kv("NUMBER(VA_BITS)", "%d", fk.kern.VABits)
	kv("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)", "%d", -268435456)
	kv("NUMBER(kimage_voffset)", "%#x", fk.kimageVA-fk.kimagePA)
	kv("NUMBER(PHYS_OFFSET)", "%#x", fk.physOffset)
	kv("NUMBER(TCR_EL1_T1SZ)", "%#x", 64-fk.hw.VABits)
	kv("KERNELOFFSET", "%x", fk.kimageVA-fk.layout.KimageVaddr)
	b.WriteString(fk.extraVMCORE)
	return b.String()
}

// core builds the kcore file for the current memory image.
func (fk *fakeKernel) core() *sparseCore {
	ps := fk.pageSize()
	text := &fakeSeg{Segment{VAddr: fk.kimageVA, PAddr: fk.kimagePA, Size: fk.kimageSize}, map[uint64][]byte{}}
	ramPA := fk.ramStart
	if !fk.linearOffset {
		ramPA = NoPhysAddr
	}
	lin := &fakeSeg{Segment{VAddr: fk.linearVA(fk.ramStart), PAddr: ramPA, Size: fk.ramSize}, map[uint64][]byte{}}
	vmalloc := &fakeSeg{Segment{VAddr: fk.layout.VmallocStart, PAddr: NoPhysAddr, Size: fk.layout.VmallocEnd - fk.layout.VmallocStart}, nil}
	for pa, p := range fk.ram {
		if pa >= fk.kimagePA && pa < fk.kimagePA+fk.kimageSize {
			text.pages[pa-fk.kimagePA] = p
		}
		if pa >= fk.ramStart && pa < fk.ramStart+fk.ramSize {
			lin.pages[pa-fk.ramStart] = p
		}
	}
	// Offsets like kcore's: data for VA at (VA - a base) + header room; here
	// simply spaced apart.
	text.Offset = 1 << 50
	lin.Offset = 1 << 51
	vmalloc.Offset = 1 << 52
	_ = ps
	notes := []Note{
		{Name: "CORE", Type: 1, Desc: make([]byte, 392)}, // NT_PRSTATUS
		{Name: "VMCOREINFO", Type: 0, Desc: []byte(fk.vmcoreinfo())},
	}
	// Program headers in kcore's order: text, vmalloc, RAM (not sorted).
	return coreFile([]*fakeSeg{text, vmalloc, lin}, notes, fk.bo, 4)
}

// kallsyms renders a /proc/kallsyms for the fake kernel.
func (fk *fakeKernel) kallsyms() string {
	return fmt.Sprintf("%016x T _text\n%016x t __pi__text\n%016x T _stext\n%016x T swapper_pg_dir\n%016x t swapper_pg_dir\t[fake]\n%016x D _etext\n",
		fk.kimageVA, fk.kimageVA, fk.kimageVA+0x10000, fk.swapperVA, fk.swapperVA+0x1000, fk.kimageVA+0x20000)
}
