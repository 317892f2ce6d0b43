package modscan

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"strings"
)

// Test helper: a writer for small arm64 ELF relocatable objects shaped like
// kernel modules, built with encoding/binary (no cross toolchain needed).

type tSection struct {
	name  string
	typ   elf.SectionType
	flags elf.SectionFlag
	align uint64
	data  []byte // contents (nil for NOBITS)
	size  uint64 // NOBITS size
	info  uint32
	link  uint32
	ent   uint64
}

type tSym struct {
	name  string
	shndx uint16 // section index, or elf.SHN_UNDEF / SHN_ABS
}

type tRela struct {
	off    uint64
	typ    uint32
	sym    int // index into the symbol list (0 is the null symbol)
	addend int64
}

// tModule describes a module; build adds .modinfo, .gnu.linkonce.this_module,
// .plt, .init.plt, .text.ftrace_trampoline, .init.text.ftrace_trampoline,
// the symbol and string tables and the section name table.
type tModule struct {
	modinfo  string
	sections []tSection
	syms     []tSym             // without the null symbol
	relas    map[string][]tRela // by target section name
	noPLT    bool               // leave out .plt (the loader rejects that)
	noSymtab bool
}

func (m *tModule) build() []byte {
	secs := []tSection{{}} // SHT_NULL
	secs = append(secs, m.sections...)
	index := func(name string) int {
		for i, s := range secs {
			if s.name == name {
				return i
			}
		}
		return -1
	}
	if m.modinfo != "" {
		secs = append(secs, tSection{name: ".modinfo", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC, align: 1, data: []byte(m.modinfo)})
	}
	secs = append(secs, tSection{name: ".gnu.linkonce.this_module", typ: elf.SHT_PROGBITS,
		flags: elf.SHF_ALLOC | elf.SHF_WRITE, align: 64, data: make([]byte, 1280)})
	if !m.noPLT {
		secs = append(secs, tSection{name: ".plt", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, align: 1, data: []byte{0}})
	}
	secs = append(secs,
		tSection{name: ".init.plt", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC, align: 1, data: []byte{0}},
		tSection{name: ".text.ftrace_trampoline", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, align: 1, data: []byte{0}},
		tSection{name: ".init.text.ftrace_trampoline", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC, align: 1, data: []byte{0}},
	)
	// Relocation sections.
	for _, target := range sortedKeys(m.relas) {
		var b bytes.Buffer
		for _, r := range m.relas[target] {
			binary.Write(&b, binary.LittleEndian, r.off)
			binary.Write(&b, binary.LittleEndian, uint64(r.sym)<<32|uint64(r.typ))
			binary.Write(&b, binary.LittleEndian, r.addend)
		}
		secs = append(secs, tSection{name: ".rela" + target, typ: elf.SHT_RELA, flags: elf.SHF_INFO_LINK,
			align: 8, data: b.Bytes(), info: uint32(index(target)), ent: 24})
	}
	symtabIdx := len(secs)
	strtabIdx := symtabIdx + 1
	if !m.noSymtab {
		var strtab bytes.Buffer
		strtab.WriteByte(0)
		var symtab bytes.Buffer
		symtab.Write(make([]byte, 24))
		for _, s := range m.syms {
			name := uint32(0)
			if s.name != "" {
				name = uint32(strtab.Len())
				strtab.WriteString(s.name)
				strtab.WriteByte(0)
			}
			binary.Write(&symtab, binary.LittleEndian, name)
			symtab.WriteByte(0x12) // STB_GLOBAL, STT_FUNC
			symtab.WriteByte(0)
			binary.Write(&symtab, binary.LittleEndian, s.shndx)
			binary.Write(&symtab, binary.LittleEndian, uint64(0))
			binary.Write(&symtab, binary.LittleEndian, uint64(0))
		}
		secs = append(secs,
			tSection{name: ".symtab", typ: elf.SHT_SYMTAB, align: 8, data: symtab.Bytes(), link: uint32(strtabIdx), info: 1, ent: 24},
			tSection{name: ".strtab", typ: elf.SHT_STRTAB, align: 1, data: strtab.Bytes()},
		)
		// Fix up the relocation sections' link now that the symtab index is known.
		for i := range secs {
			if secs[i].typ == elf.SHT_RELA {
				secs[i].link = uint32(symtabIdx)
			}
		}
	}
	var shstr bytes.Buffer
	shstr.WriteByte(0)
	nameOff := make([]uint32, len(secs)+1)
	for i, s := range secs {
		if i == 0 {
			continue
		}
		nameOff[i] = uint32(shstr.Len())
		shstr.WriteString(s.name)
		shstr.WriteByte(0)
	}
	shstrIdx := len(secs)
	nameOff[shstrIdx] = uint32(shstr.Len())
	shstr.WriteString(".shstrtab")
	shstr.WriteByte(0)
	secs = append(secs, tSection{name: ".shstrtab", typ: elf.SHT_STRTAB, align: 1, data: shstr.Bytes()})

	// File: header, section contents (8-aligned), section headers.
	var body bytes.Buffer
	body.Write(make([]byte, 64))
	offs := make([]uint64, len(secs))
	for i, s := range secs {
		if i == 0 || s.typ == elf.SHT_NOBITS {
			offs[i] = uint64(body.Len())
			continue
		}
		for body.Len()%8 != 0 {
			body.WriteByte(0)
		}
		offs[i] = uint64(body.Len())
		body.Write(s.data)
	}
	for body.Len()%8 != 0 {
		body.WriteByte(0)
	}
	shoff := uint64(body.Len())
	for i, s := range secs {
		size := uint64(len(s.data))
		if s.typ == elf.SHT_NOBITS {
			size = s.size
		}
		hdr := elf.Section64{
			Name: nameOff[i], Type: uint32(s.typ), Flags: uint64(s.flags), Off: offs[i],
			Size: size, Link: s.link, Info: s.info, Addralign: s.align, Entsize: s.ent,
		}
		if i == 0 {
			hdr = elf.Section64{}
		}
		binary.Write(&body, binary.LittleEndian, hdr)
	}
	out := body.Bytes()
	h := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_AARCH64), Version: 1,
		Shoff: shoff, Ehsize: 64, Shentsize: 64, Shnum: uint16(len(secs)), Shstrndx: uint16(shstrIdx),
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var hb bytes.Buffer
	binary.Write(&hb, binary.LittleEndian, h)
	copy(out, hb.Bytes())
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	for i := 1; i < len(k); i++ {
		for j := i; j > 0 && k[j] < k[j-1]; j-- {
			k[j], k[j-1] = k[j-1], k[j]
		}
	}
	return k
}

// modinfoString joins tag=value pairs the way modpost writes .modinfo.
func modinfoString(kv ...string) string {
	var b strings.Builder
	for _, s := range kv {
		b.WriteString(s)
		b.WriteByte(0)
	}
	return b.String()
}

// sampleModule is a module with one section of each kind the layout
// distinguishes, and branch relocations that need PLT entries.
func sampleModule(name string) *tModule {
	text := func(n int) []byte { return make([]byte, n) }
	m := &tModule{
		modinfo: modinfoString("license=GPL", "name="+name, "depends=dep_a,dep_b",
			"softdep=pre: pre_x post: post_y", "alias=crypto-"+name, "alias=pci:v00001234d*",
			"vermagic=6.12.0-test SMP mod_unload modversions aarch64"),
		sections: []tSection{
			{name: ".text", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, align: 8, data: text(100)}, // 1
			{name: ".init.text", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, align: 4, data: text(40)},
			{name: ".exit.text", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, align: 8, data: text(40)},
			{name: ".rodata", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC, align: 16, data: text(33)},
			{name: ".data", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, align: 8, data: text(10)}, // 5
			{name: ".bss", typ: elf.SHT_NOBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, align: 32, size: 50},
			{name: ".data..ro_after_init", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, align: 8, data: text(8)},
			{name: "__jump_table", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, align: 8, data: text(24)},
			{name: ".init.data", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, align: 8, data: text(12)},
			{name: ".init.rodata", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC, align: 4, data: text(5)}, // 10
			{name: ".data..percpu", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC | elf.SHF_WRITE, align: 64, data: text(64)},
			{name: "__versions", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC, align: 8, data: text(64)},
			{name: ".comment", typ: elf.SHT_PROGBITS, align: 1, data: []byte("GCC\x00")},
		},
		syms: []tSym{
			{name: "text_fn", shndx: 1},      // 1: core text
			{name: "init_fn", shndx: 2},      // 2: init text
			{name: "ext_a"},                  // 3: undefined
			{name: "ext_b"},                  // 4: undefined
			{name: "data_obj", shndx: 5},     // 5: core data
			{name: "pcpu_var", shndx: 11},    // 6: per-CPU
			{name: "", shndx: 1},             // 7: unnamed
			{name: "abs_sym", shndx: 0xfff1}, // 8: SHN_ABS
		},
		relas: map[string][]tRela{
			".text": {
				{off: 0, typ: rAarch64Call26, sym: 3},
				{off: 4, typ: rAarch64Call26, sym: 3}, // same target: shares the entry
				{off: 8, typ: rAarch64Call26, sym: 4},
				{off: 12, typ: rAarch64Call26, sym: 3, addend: 8}, // non-zero addend: own entry
				{off: 16, typ: rAarch64Jump26, sym: 3},            // other type: own entry
				{off: 20, typ: rAarch64Jump26, sym: 1},            // same section: none
				{off: 24, typ: rAarch64Call26, sym: 2},            // to init text: entry
				{off: 0xff8, typ: rAarch64AdrPrelPgHi21, sym: 3},  // erratum 843419: veneer
				{off: 0x10, typ: rAarch64AdrPrelPgHi21NC, sym: 3}, // erratum 843419: .text align 16
			},
			".init.text": {
				{off: 0, typ: rAarch64Call26, sym: 1},
				{off: 4, typ: rAarch64Call26, sym: 1},
			},
			".data": {
				{off: 0, typ: rAarch64Call26, sym: 3}, // non-exec target: ignored
			},
		},
	}
	return m
}
