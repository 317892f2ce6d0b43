package modscan

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"path"
	"strings"
)

// arm64 and generic loader constants (facts from the kernel headers named).
const (
	elfSymSize      = 24 // sizeof(Elf64_Sym)
	elfRelaSize     = 24 // sizeof(Elf64_Rela)
	pltEntrySize    = 12 // sizeof(struct plt_entry): adrp, add, br (arch/arm64/include/asm/module.h)
	pltEntryAlign   = 4  // __alignof__(struct plt_entry)
	l1CacheBytes    = 64 // L1_CACHE_BYTES on arm64 (arch/arm64/include/asm/cache.h)
	modKallsymsSize = 32 // sizeof(struct mod_kallsyms) on 64-bit: 3 pointers and an int
	modKallsymsAlgn = 8  // __alignof__(struct mod_kallsyms)

	rAarch64AdrPrelPgHi21   = 275
	rAarch64AdrPrelPgHi21NC = 276
	rAarch64Jump26          = 282
	rAarch64Call26          = 283
)

// PlacedSection is where the layout put one section (or one of the blocks
// layout_symtab appends, with Index -1).
type PlacedSection struct {
	Index  int        `json:"index"`
	Name   string     `json:"name"`
	Type   ModMemType `json:"type"`
	Offset uint64     `json:"offset"`
	Size   uint64     `json:"size"`
	Align  uint64     `json:"align"`
}

// ModuleLayout is the full result of laying out one module file.
type ModuleLayout struct {
	Module   Module
	Modinfo  Modinfo
	Sections []PlacedSection
}

// section is the loader's working copy of one section header (the kernel
// edits sh_flags, sh_size, sh_addralign and sh_entsize in place).
type section struct {
	name        string
	typ         elf.SectionType
	flags       uint64
	size        uint64
	align       uint64
	info        uint32
	link        uint32
	off         uint64 // file offset
	roAfterInit bool   // SHF_RO_AFTER_INIT, a flag only the loader sets
	placed      bool   // sh_entsize != ~0UL
	memType     ModMemType
}

type elfSym struct {
	name  uint32
	shndx uint16
}

type moduleFile struct {
	raw  []byte
	secs []section
	cfg  LayoutConfig
	// indexes the kernel caches in struct load_info
	infoIdx, modIdx, symIdx, strIdx, pcpuIdx int
	syms                                     []elfSym
	strtab                                   []byte
	mod                                      Module
	placed                                   []PlacedSection
}

// LayoutModule lays out one uncompressed module the way load_module does
// before it allocates memory, and returns the size of every module memory
// region. The steps, in the kernel's order:
//
//   - ELF and index checks of elf_validity_cache_copy (relocatable arm64,
//     one .modinfo, one .gnu.linkonce.this_module, one symbol table, a sane
//     string table);
//   - rewrite_section_headers: .modinfo and the __versions sections lose
//     SHF_ALLOC;
//   - module_frob_arch_sections (arch/arm64/kernel/module-plts.c): sizes the
//     empty .plt, .init.plt and .text.ftrace_trampoline sections;
//   - module_enforce_rwx_sections (kernel/module/strict_rwx.c);
//   - layout_and_allocate: .data..percpu leaves module memory,
//     .data..ro_after_init and __jump_table get SHF_RO_AFTER_INIT;
//   - layout_sections / __layout_sections and module_get_offset_and_type;
//   - layout_symtab (kernel/module/kallsyms.c).
//
// name is the file's path, used for the module name when .modinfo has none
// and in error messages.
func LayoutModule(raw []byte, name string, cfg LayoutConfig) (*ModuleLayout, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m := &moduleFile{raw: raw, cfg: cfg}
	if err := m.readELF(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	info := ParseModinfo(m.sectionBytes(m.infoIdx))
	if err := m.load(info); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	m.mod.Name = moduleName(info, name)
	m.mod.Path = name
	m.mod.Depends = info.Depends()
	m.mod.SoftdepPre, m.mod.SoftdepPost = info.Softdeps()
	m.mod.Aliases = info.ServiceAliases()
	m.mod.Vermagic, _ = info.Get("vermagic")
	return &ModuleLayout{Module: m.mod, Modinfo: info, Sections: m.placed}, nil
}

// moduleName is the .modinfo name=, else KBUILD_MODNAME derived from the
// file name: the base name without .ko and compression suffix, '-' as '_'.
func moduleName(info Modinfo, file string) string {
	if n, ok := info.Get("name"); ok && n != "" {
		return n
	}
	base := path.Base(strings.ReplaceAll(file, "\\", "/"))
	if i := strings.Index(base, ".ko"); i > 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// readELF checks what elf_validity_ehdr, elf_validity_cache_sechdrs,
// elf_validity_cache_secstrings, elf_validity_cache_index and
// elf_validity_cache_strtab check, and copies the section headers.
func (m *moduleFile) readELF() error {
	f, err := elf.NewFile(bytes.NewReader(m.raw))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotModule, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB || f.Machine != elf.EM_AARCH64 {
		return fmt.Errorf("%w: %v %v %v", ErrNotModule, f.Class, f.Data, f.Machine)
	}
	if f.Type != elf.ET_REL {
		return fmt.Errorf("%w: ELF type %v, want ET_REL", ErrNotModule, f.Type)
	}
	if len(f.Sections) == 0 || f.Sections[0].Type != elf.SHT_NULL || f.Sections[0].Size != 0 || f.Sections[0].Addr != 0 {
		return fmt.Errorf("%w: section 0 is not an empty SHT_NULL", ErrMalformed)
	}
	m.secs = make([]section, len(f.Sections))
	for i, s := range f.Sections {
		m.secs[i] = section{
			name: s.Name, typ: s.Type, flags: uint64(s.Flags), size: s.Size,
			align: s.Addralign, info: s.Info, link: s.Link, off: s.Offset,
		}
		if i > 0 && s.Type != elf.SHT_NULL && s.Type != elf.SHT_NOBITS {
			end := s.Offset + s.Size
			if end < s.Offset || end > uint64(len(m.raw)) {
				return fmt.Errorf("%w: section %d (%s) [%#x+%#x] beyond the file (%d bytes)",
					ErrMalformed, i, s.Name, s.Offset, s.Size, len(m.raw))
			}
		}
	}
	var n int
	if m.infoIdx, n = m.findAnyUnique(".modinfo"); n > 1 {
		return fmt.Errorf("%w: %d .modinfo sections", ErrRejected, n)
	}
	if m.modIdx, n = m.findAnyUnique(".gnu.linkonce.this_module"); n != 1 {
		return fmt.Errorf("%w: %d .gnu.linkonce.this_module sections, want 1", ErrRejected, n)
	}
	if ms := m.secs[m.modIdx]; ms.typ == elf.SHT_NOBITS || ms.flags&uint64(elf.SHF_ALLOC) == 0 {
		return fmt.Errorf("%w: .gnu.linkonce.this_module is NOBITS or not SHF_ALLOC", ErrRejected)
	}
	nsym := 0
	for i := 1; i < len(m.secs); i++ {
		if m.secs[i].typ == elf.SHT_SYMTAB {
			nsym++
			m.symIdx = i
		}
	}
	if nsym != 1 {
		return fmt.Errorf("%w: %d symbol tables (stripped?), want 1", ErrRejected, nsym)
	}
	m.strIdx = int(m.secs[m.symIdx].link)
	if m.strIdx == 0 || m.strIdx >= len(m.secs) {
		return fmt.Errorf("%w: symbol table links to section %d of %d", ErrMalformed, m.strIdx, len(m.secs))
	}
	m.pcpuIdx = m.findSec(".data..percpu")
	return m.readSymbols()
}

// readSymbols decodes the symbol table and checks the string table as
// elf_validity_cache_strtab does.
func (m *moduleFile) readSymbols() error {
	m.strtab = m.sectionBytes(m.strIdx)
	if len(m.strtab) == 0 || m.strtab[0] != 0 || m.strtab[len(m.strtab)-1] != 0 {
		return fmt.Errorf("%w: symbol string table empty or not NUL-delimited", ErrMalformed)
	}
	raw := m.sectionBytes(m.symIdx)
	n := len(raw) / elfSymSize
	m.syms = make([]elfSym, n)
	for i := range m.syms {
		e := raw[i*elfSymSize:]
		m.syms[i] = elfSym{
			name:  binary.LittleEndian.Uint32(e[0:4]),
			shndx: binary.LittleEndian.Uint16(e[6:8]),
		}
		if int(m.syms[i].name) >= len(m.strtab) {
			return fmt.Errorf("%w: symbol %d name offset %d beyond the string table (%d bytes)",
				ErrMalformed, i, m.syms[i].name, len(m.strtab))
		}
	}
	return nil
}

// sectionBytes is the file contents of section i (nil for NOBITS or 0);
// readELF has checked the bounds.
func (m *moduleFile) sectionBytes(i int) []byte {
	if i <= 0 || i >= len(m.secs) {
		return nil
	}
	s := m.secs[i]
	if s.typ == elf.SHT_NOBITS || s.typ == elf.SHT_NULL {
		return nil
	}
	return m.raw[s.off : s.off+s.size]
}

// findSec is find_sec: the first SHF_ALLOC section of that name, 0 if none.
func (m *moduleFile) findSec(name string) int {
	for i := 1; i < len(m.secs); i++ {
		if m.secs[i].flags&uint64(elf.SHF_ALLOC) != 0 && m.secs[i].name == name {
			return i
		}
	}
	return 0
}

// findAnyUnique is find_any_unique_sec: the index of the one section of
// that name (SHF_ALLOC ignored) and how many there are.
func (m *moduleFile) findAnyUnique(name string) (idx, count int) {
	for i := 1; i < len(m.secs); i++ {
		if m.secs[i].name == name {
			idx = i
			count++
		}
	}
	if count != 1 {
		idx = 0
	}
	return idx, count
}

func (m *moduleFile) load(info Modinfo) error {
	// rewrite_section_headers: modinfo and version sections are read by
	// the loader but not kept.
	vers := m.findSec("__versions")
	vcrc := m.findSec("__version_ext_crcs")
	vname := m.findSec("__version_ext_names")
	for _, i := range []int{vers, vcrc, vname, m.infoIdx} {
		if i > 0 {
			m.secs[i].flags &^= uint64(elf.SHF_ALLOC)
		}
	}
	_, livepatch := info.Get("livepatch")
	if livepatch && !m.cfg.Livepatch {
		return fmt.Errorf("%w: livepatch module without CONFIG_LIVEPATCH", ErrRejected)
	}
	if err := m.frobArchSections(); err != nil {
		return err
	}
	if err := m.enforceRWX(); err != nil {
		return err
	}
	// layout_and_allocate: per-CPU data goes to the per-CPU allocator.
	if m.pcpuIdx > 0 {
		m.mod.Percpu = m.secs[m.pcpuIdx].size
		m.secs[m.pcpuIdx].flags &^= uint64(elf.SHF_ALLOC)
	}
	for _, name := range []string{".data..ro_after_init", "__jump_table"} {
		if i := m.findSec(name); i > 0 {
			m.secs[i].roAfterInit = true
		}
	}
	if err := m.layoutSections(); err != nil {
		return err
	}
	if m.cfg.Kallsyms {
		if err := m.layoutSymtab(livepatch); err != nil {
			return err
		}
	}
	return nil
}

// frobArchSections is arm64's module_frob_arch_sections: it counts the PLT
// entries branch relocations against other sections may need (count_plts,
// after partition_branch_plt_relas and the sort by type, symbol and addend,
// so a zero-addend branch to a symbol already counted adds nothing), and
// turns the empty .plt, .init.plt, .text.ftrace_trampoline and
// .init.text.ftrace_trampoline placeholder sections into executable NOBITS
// sections of the needed size. Linux 6.12 modules carry a .init.plt; for a
// module without one (later kernels dropped it) branches from init text are
// counted into .plt. The init trampoline came with "arm64: ftrace: fix
// unreachable PLT for ftrace_caller in init_module" (Aug 2025, in 6.12
// stable); the kernel places it in MOD_INIT_TEXT, which ptlab checked on
// Debian's 6.12.117 under QEMU.
func (m *moduleFile) frobArchSections() error {
	corePlt, initPlt, tramp, initTramp := 0, 0, 0, 0
	for i := range m.secs {
		switch m.secs[i].name {
		case ".plt":
			corePlt = i
		case ".init.plt":
			initPlt = i
		case ".text.ftrace_trampoline":
			tramp = i
		case ".init.text.ftrace_trampoline":
			initTramp = i
		}
	}
	if corePlt == 0 {
		return fmt.Errorf("%w: module PLT section .plt missing", ErrRejected)
	}
	var coreN, initN int
	for i := range m.secs {
		s := &m.secs[i]
		if s.typ != elf.SHT_RELA {
			continue
		}
		if int(s.info) >= len(m.secs) {
			return fmt.Errorf("%w: relocation section %d (%s) applies to section %d of %d",
				ErrMalformed, i, s.name, s.info, len(m.secs))
		}
		dst := &m.secs[s.info]
		if dst.flags&uint64(elf.SHF_EXECINSTR) == 0 {
			continue
		}
		n, err := m.countPLTs(i, dst)
		if err != nil {
			return err
		}
		if strings.HasPrefix(dst.name, ".init") && initPlt != 0 {
			initN += n
		} else {
			coreN += n
		}
	}
	m.mod.PLTs, m.mod.InitPLTs = coreN, initN
	setPLT := func(i, n int) {
		s := &m.secs[i]
		s.typ = elf.SHT_NOBITS
		s.flags = uint64(elf.SHF_EXECINSTR | elf.SHF_ALLOC)
		s.align = l1CacheBytes
		s.size = uint64(n+1) * pltEntrySize
	}
	setPLT(corePlt, coreN)
	if initPlt != 0 {
		setPLT(initPlt, initN)
	}
	for _, i := range []int{tramp, initTramp} {
		if i == 0 {
			continue
		}
		s := &m.secs[i]
		s.typ = elf.SHT_NOBITS
		s.flags = uint64(elf.SHF_EXECINSTR | elf.SHF_ALLOC)
		s.align = pltEntryAlign
		s.size = uint64(m.cfg.FtracePLTs) * pltEntrySize
	}
	return nil
}

// countPLTs is count_plts for the RELA section relIdx whose target is dst.
func (m *moduleFile) countPLTs(relIdx int, dst *section) (int, error) {
	rel := m.secs[relIdx]
	raw := m.sectionBytes(relIdx)
	n := len(raw) / elfRelaSize
	type key struct {
		typ uint32
		sym uint32
	}
	seen := map[key]bool{}
	count := 0
	for j := 0; j < n; j++ {
		e := raw[j*elfRelaSize:]
		off := binary.LittleEndian.Uint64(e[0:8])
		rinfo := binary.LittleEndian.Uint64(e[8:16])
		addend := int64(binary.LittleEndian.Uint64(e[16:24]))
		typ, sym := uint32(rinfo), uint32(rinfo>>32)
		switch typ {
		case rAarch64Jump26, rAarch64Call26:
			if !m.cfg.RandomizeBase {
				continue
			}
			if int(sym) >= len(m.syms) {
				return 0, fmt.Errorf("%w: relocation %d of section %d (%s) names symbol %d of %d",
					ErrMalformed, j, relIdx, rel.name, sym, len(m.syms))
			}
			// A branch within its own section never needs a veneer.
			if uint32(m.syms[sym].shndx) == rel.info {
				continue
			}
			if addend != 0 {
				count++
				continue
			}
			k := key{typ, sym}
			if !seen[k] {
				seen[k] = true
				count++
			}
		case rAarch64AdrPrelPgHi21, rAarch64AdrPrelPgHi21NC:
			if !m.cfg.Erratum843419 {
				continue
			}
			// The alignment that keeps this ADRP off offsets 0xff8/0xffc
			// of a 4K page: 2 << (first zero bit of offset|7).
			v := off | 7
			if v == math.MaxUint64 {
				count++
				continue
			}
			minAlign := uint64(2) << bits.TrailingZeros64(^v)
			if minAlign > 4096 {
				count++
			} else if minAlign > dst.align {
				dst.align = minAlign
			}
		}
	}
	if m.cfg.Erratum843419 {
		// Slack to skip PLT slots that would land on a risky offset.
		per := 4096 / pltEntrySize
		count += (count + per - 1) / per
	}
	return count, nil
}

// enforceRWX is module_enforce_rwx_sections.
func (m *moduleFile) enforceRWX() error {
	if !m.cfg.StrictModuleRWX {
		return nil
	}
	wx := uint64(elf.SHF_WRITE | elf.SHF_EXECINSTR)
	for i, s := range m.secs {
		if s.flags&wx == wx {
			return fmt.Errorf("%w: section %s (index %d) is writable and executable", ErrRejected, s.name, i)
		}
	}
	return nil
}

// isInitSection is module_init_layout_section: ".init*" sections, and
// ".exit*" ones too when modules can never be unloaded.
func (m *moduleFile) isInitSection(name string) bool {
	if !m.cfg.ModuleUnload && strings.HasPrefix(name, ".exit") {
		return true
	}
	return strings.HasPrefix(name, ".init")
}

// layoutSections is layout_sections / __layout_sections: a core pass and an
// init pass, each going through the flag masks in order (executable;
// read-only; ro_after_init; writable; anything else allocated, which is
// what the "small data" mask is on arm64 where ARCH_SHF_SMALL is 0) and
// placing every matching section not placed yet.
func (m *moduleFile) layoutSections() error {
	alloc, write, exec := uint64(elf.SHF_ALLOC), uint64(elf.SHF_WRITE), uint64(elf.SHF_EXECINSTR)
	type mask struct {
		need, exclude uint64
		roAfterInit   bool
		core, init    ModMemType // init -1: MOD_INVALID
	}
	masks := []mask{
		{need: exec | alloc, core: ModText, init: ModInitText},
		{need: alloc, exclude: write, core: ModRodata, init: ModInitRodata},
		{need: alloc, roAfterInit: true, core: ModROAfterInit, init: -1},
		{need: write | alloc, core: ModData, init: ModInitData},
		{need: alloc, core: ModData, init: ModInitData},
	}
	for _, isInit := range []bool{false, true} {
		for _, mk := range masks {
			t := mk.core
			if isInit {
				t = mk.init
			}
			for i := range m.secs {
				s := &m.secs[i]
				if s.flags&mk.need != mk.need || s.flags&mk.exclude != 0 ||
					(mk.roAfterInit && !s.roAfterInit) || s.placed ||
					isInit != m.isInitSection(s.name) {
					continue
				}
				if t < 0 {
					// The kernel WARNs and leaves the section with no
					// place in module memory; refuse instead.
					return fmt.Errorf("%w: init section %s (index %d) is ro_after_init", ErrRejected, s.name, i)
				}
				if err := m.place(i, t); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// place is module_get_offset_and_type: the section goes at the end of its
// region, aligned to sh_addralign (arch_mod_section_prepend is 0 on arm64).
func (m *moduleFile) place(i int, t ModMemType) error {
	s := &m.secs[i]
	if _, err := m.appendBlock(t, s.size, s.align, i, s.name); err != nil {
		return err
	}
	s.placed, s.memType = true, t
	return nil
}

// appendBlock grows region t by an aligned block and records it. The kernel
// keeps region sizes in an unsigned int; larger layouts are refused.
func (m *moduleFile) appendBlock(t ModMemType, size, align uint64, idx int, name string) (uint64, error) {
	off := alignUp(m.mod.Size[t], align)
	end := off + size
	if off < m.mod.Size[t] || end < off || end > math.MaxUint32 {
		return 0, fmt.Errorf("%w: %s region overflows 4 GiB at section %s", ErrMalformed, t, name)
	}
	m.mod.Size[t] = end
	m.placed = append(m.placed, PlacedSection{Index: idx, Name: name, Type: t, Offset: off, Size: size, Align: max(align, 1)})
	return off, nil
}

// layoutSymtab is layout_symtab: the whole symbol and string tables go at
// the end of MOD_INIT_DATA, followed by the temporary struct mod_kallsyms
// and one type byte per symbol; MOD_DATA gets the core symbols (is_core_symbol),
// their names and their type bytes, which stay for the module's lifetime.
func (m *moduleFile) layoutSymtab(livepatch bool) error {
	sym := &m.secs[m.symIdx]
	sym.flags |= uint64(elf.SHF_ALLOC)
	if err := m.place(m.symIdx, ModInitData); err != nil {
		return err
	}
	var ndst, strSize uint64
	for i := range m.syms {
		if i == 0 || livepatch || m.isCoreSymbol(m.syms[i]) {
			strSize += uint64(cstrlen(m.strtab[m.syms[i].name:])) + 1
			ndst++
		}
	}
	if _, err := m.appendBlock(ModData, ndst*elfSymSize, sym.align, -1, "[core symtab]"); err != nil {
		return err
	}
	if _, err := m.appendBlock(ModData, strSize, 1, -1, "[core strtab]"); err != nil {
		return err
	}
	if _, err := m.appendBlock(ModData, ndst, 1, -1, "[core typetab]"); err != nil {
		return err
	}
	str := &m.secs[m.strIdx]
	str.flags |= uint64(elf.SHF_ALLOC)
	if err := m.place(m.strIdx, ModInitData); err != nil {
		return err
	}
	if _, err := m.appendBlock(ModInitData, modKallsymsSize, modKallsymsAlgn, -1, "[mod_kallsyms]"); err != nil {
		return err
	}
	_, err := m.appendBlock(ModInitData, uint64(len(m.syms)), 1, -1, "[init typetab]")
	return err
}

// isCoreSymbol is is_core_symbol: a named, defined symbol of a section that
// is allocated and not init (and, without KALLSYMS_ALL, executable); with
// KALLSYMS_ALL per-CPU symbols too. A section not laid out has the type
// ~0UL >> SH_ENTSIZE_TYPE_SHIFT, which is not an init type.
func (m *moduleFile) isCoreSymbol(s elfSym) bool {
	if s.shndx == uint16(elf.SHN_UNDEF) || int(s.shndx) >= len(m.secs) || s.name == 0 {
		return false
	}
	if m.cfg.KallsymsAll && m.pcpuIdx != 0 && int(s.shndx) == m.pcpuIdx {
		return true
	}
	sec := m.secs[s.shndx]
	if sec.flags&uint64(elf.SHF_ALLOC) == 0 {
		return false
	}
	if !m.cfg.KallsymsAll && sec.flags&uint64(elf.SHF_EXECINSTR) == 0 {
		return false
	}
	return !(sec.placed && sec.memType.IsInit())
}

func cstrlen(b []byte) int {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return i
	}
	return len(b)
}
