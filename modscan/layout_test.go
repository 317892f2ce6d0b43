package modscan

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// wantSample is the layout of sampleModule under DefaultLayoutConfig, worked
// out by hand from the kernel's rules (section indexes as sampleModule
// builds them: 1 .text, 2 .init.text, 3 .exit.text, 4 .rodata, 5 .data,
// 6 .bss, 7 .data..ro_after_init, 8 __jump_table, 9 .init.data,
// 10 .init.rodata, 11 .data..percpu, 12 __versions, 13 .comment,
// 14 .modinfo, 15 .gnu.linkonce.this_module, 16 .plt, 17 .init.plt,
// 18 .text.ftrace_trampoline, 19 .init.text.ftrace_trampoline, then the
// .rela sections, .symtab (9 symbols), .strtab, .shstrtab):
//
// PLTs: .text branches to ext_a (twice, one entry), ext_b, ext_a+8, a JUMP26
// to ext_a and a call to init_fn need 5 entries; the JUMP26 within .text
// none. .init.text's two calls to text_fn share 1.
//
//	text:          .text [0,100) .exit.text [104,144) .plt 6*12 @64 [192,264)
//	               .text.ftrace_trampoline 12 @4 [264,276)            = 276
//	rodata:        .rodata [0,33) (__versions and .modinfo lose SHF_ALLOC) = 33
//	ro_after_init: .data..ro_after_init [0,8) __jump_table [8,32)      = 32
//	data:          .data [0,10) .bss @32 [32,82) this_module @64 [128,1408)
//	               core symtab 4*24 [1408,1504) names 1+8+9+9 [1504,1531)
//	               types 4 [1531,1535)                                 = 1535
//	               (core symbols: null, text_fn, data_obj, pcpu_var)
//	init_text:     .init.text [0,40) .init.plt 2*12 @64 [64,88)
//	               .init.text.ftrace_trampoline [88,100)                = 100
//	init_data:     .init.data [0,12) .symtab 216 @8 [16,232) .strtab 55
//	               [232,287) mod_kallsyms 32 @8 [288,320) types 9     = 329
//	init_rodata:   .init.rodata [0,5)                                  = 5
var wantSample = [NumModMemTypes]uint64{
	ModText: 276, ModData: 1535, ModRodata: 33, ModROAfterInit: 32,
	ModInitText: 100, ModInitData: 329, ModInitRodata: 5,
}

func TestLayoutSampleModule(t *testing.T) {
	raw := sampleModule("sample").build()
	l, err := LayoutModule(raw, "drivers/x/sample-mod.ko", DefaultLayoutConfig())
	if err != nil {
		t.Fatal(err)
	}
	m := l.Module
	if m.Size != wantSample {
		t.Errorf("sizes %v, want %v", m.Size, wantSample)
	}
	if m.PLTs != 5 || m.InitPLTs != 1 {
		t.Errorf("PLTs %d/%d, want 5/1", m.PLTs, m.InitPLTs)
	}
	if m.Percpu != 64 {
		t.Errorf("percpu %d, want 64", m.Percpu)
	}
	if m.Name != "sample" || m.Path != "drivers/x/sample-mod.ko" {
		t.Errorf("name %q path %q", m.Name, m.Path)
	}
	if fmt.Sprint(m.Depends, m.SoftdepPre, m.SoftdepPost, m.Aliases) != "[dep_a dep_b] [pre_x] [post_y] [crypto-sample]" {
		t.Errorf("deps %v pre %v post %v aliases %v", m.Depends, m.SoftdepPre, m.SoftdepPost, m.Aliases)
	}
	if !strings.HasPrefix(m.Vermagic, "6.12.0-test ") {
		t.Errorf("vermagic %q", m.Vermagic)
	}
	want := map[string][3]uint64{ // region, offset, size
		".exit.text": {uint64(ModText), 104, 40}, ".plt": {uint64(ModText), 192, 72},
		"__jump_table": {uint64(ModROAfterInit), 8, 24}, ".bss": {uint64(ModData), 32, 50},
		".init.plt": {uint64(ModInitText), 64, 24}, ".strtab": {uint64(ModInitData), 232, 55},
		".init.text.ftrace_trampoline": {uint64(ModInitText), 88, 12},
	}
	for _, s := range l.Sections {
		if w, ok := want[s.Name]; ok {
			if got := [3]uint64{uint64(s.Type), s.Offset, s.Size}; got != w {
				t.Errorf("%s at %v, want %v", s.Name, got, w)
			}
			delete(want, s.Name)
		}
		if s.Name == "__versions" || s.Name == ".modinfo" || s.Name == ".data..percpu" || s.Name == ".comment" {
			t.Errorf("%s must not be placed", s.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("sections not placed: %v", want)
	}
	if got := m.AllocSizes(4096); got != [NumModMemTypes]uint64{4096, 4096, 4096, 4096, 4096, 4096, 4096} {
		t.Errorf("alloc sizes %v", got)
	}
	if m.CoreSize(4096) != 4*4096 || m.InitSize(4096) != 3*4096 {
		t.Errorf("coresize %d initsize %d", m.CoreSize(4096), m.InitSize(4096))
	}
}

// TestLayoutConfigVariants changes one kernel option at a time and checks
// the regions it moves (derivations as in wantSample).
func TestLayoutConfigVariants(t *testing.T) {
	raw := sampleModule("sample").build()
	cases := []struct {
		name   string
		change func(*LayoutConfig)
		want   map[ModMemType]uint64
		plts   [2]int
	}{
		// Only text symbols are core: null + text_fn: 1408+2*24+(1+8)+2.
		{"no KALLSYMS_ALL", func(c *LayoutConfig) { c.KallsymsAll = false }, map[ModMemType]uint64{ModData: 1467}, [2]int{5, 1}},
		// No symbol tables at all.
		{"no KALLSYMS", func(c *LayoutConfig) { c.Kallsyms = false }, map[ModMemType]uint64{ModData: 1408, ModInitData: 12}, [2]int{5, 1}},
		// .exit.text joins init text: core .text, .plt [128,200), tramp [200,212);
		// init .init.text [0,40) .exit.text [40,80) .init.plt [128,152) tramp [152,164).
		{"no MODULE_UNLOAD", func(c *LayoutConfig) { c.ModuleUnload = false }, map[ModMemType]uint64{ModText: 212, ModInitText: 164}, [2]int{5, 1}},
		// No branch PLTs: .plt 12 @64 [192,204) tramp [204,216); .init.plt [64,76) tramp [76,88).
		{"no RANDOMIZE_BASE", func(c *LayoutConfig) { c.RandomizeBase = false }, map[ModMemType]uint64{ModText: 216, ModInitText: 88}, [2]int{0, 0}},
		// ADRP at 0xff8 needs a veneer (6), plus ceil(6/341) slack = 7 core;
		// init 1 + 1 slack = 2: .plt 8*12 [192,288) tramp [288,300);
		// .init.plt 36 [64,100) tramp [100,112).
		{"erratum 843419", func(c *LayoutConfig) { c.Erratum843419 = true }, map[ModMemType]uint64{ModText: 300, ModInitText: 112}, [2]int{7, 2}},
		// Two ftrace PLT slots in each trampoline.
		{"NR_FTRACE_PLTS 2", func(c *LayoutConfig) { c.FtracePLTs = 2 }, map[ModMemType]uint64{ModText: 288, ModInitText: 112}, [2]int{5, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultLayoutConfig()
			tc.change(&cfg)
			l, err := LayoutModule(raw, "sample.ko", cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := wantSample
			for k, v := range tc.want {
				want[k] = v
			}
			if l.Module.Size != want {
				t.Errorf("sizes %v, want %v", l.Module.Size, want)
			}
			if got := [2]int{l.Module.PLTs, l.Module.InitPLTs}; got != tc.plts {
				t.Errorf("PLTs %v, want %v", got, tc.plts)
			}
		})
	}
}

func TestLayoutErratumRaisesAlignment(t *testing.T) {
	cfg := DefaultLayoutConfig()
	cfg.Erratum843419 = true
	m := sampleModule("sample")
	// Put .text behind a 4-byte section so its alignment shows: the ADRP
	// at offset 0x10 asks for 16.
	m.sections = append([]tSection{{name: ".text.first", typ: elf.SHT_PROGBITS,
		flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, align: 4, data: make([]byte, 4)}}, m.sections...)
	for i := range m.syms { // section indexes moved up by one
		if m.syms[i].shndx > 0 && m.syms[i].shndx < 0xff00 {
			m.syms[i].shndx++
		}
	}
	l, err := LayoutModule(m.build(), "sample.ko", cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range l.Sections {
		if s.Name == ".text" && (s.Offset != 16 || s.Align != 16) {
			t.Errorf(".text at %d align %d, want 16/16", s.Offset, s.Align)
		}
	}
}

func TestLayoutRejects(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*tModule)
		raw    func([]byte) []byte
		want   error
	}{
		{"W+X section", func(m *tModule) {
			m.sections = append(m.sections, tSection{name: ".wx", typ: elf.SHT_PROGBITS,
				flags: elf.SHF_ALLOC | elf.SHF_WRITE | elf.SHF_EXECINSTR, align: 4, data: make([]byte, 4)})
		}, nil, ErrRejected},
		{"no .plt", func(m *tModule) { m.noPLT = true }, nil, ErrRejected},
		{"stripped", func(m *tModule) { m.noSymtab = true; m.relas = nil }, nil, ErrRejected},
		{"two .modinfo", func(m *tModule) {
			m.sections = append(m.sections, tSection{name: ".modinfo", typ: elf.SHT_PROGBITS, flags: elf.SHF_ALLOC, align: 1, data: []byte("a=b\x00")})
		}, nil, ErrRejected},
		{"livepatch", func(m *tModule) { m.modinfo += "livepatch=Y\x00" }, nil, ErrRejected},
		{"relocation names a missing symbol", func(m *tModule) {
			m.relas[".text"] = append(m.relas[".text"], tRela{typ: rAarch64Call26, sym: 99})
		}, nil, ErrMalformed},
		{"not ELF", nil, func([]byte) []byte { return []byte("hello, world, this is no ELF file at all........") }, ErrNotModule},
		{"x86-64", nil, func(b []byte) []byte {
			b = bytes.Clone(b)
			b[18] = byte(elf.EM_X86_64)
			return b
		}, ErrNotModule},
		{"executable, not relocatable", nil, func(b []byte) []byte {
			b = bytes.Clone(b)
			b[16] = byte(elf.ET_EXEC)
			return b
		}, ErrNotModule},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := sampleModule("bad")
			if tc.mutate != nil {
				tc.mutate(m)
			}
			raw := m.build()
			if tc.raw != nil {
				raw = tc.raw(raw)
			}
			_, err := LayoutModule(raw, "bad.ko", DefaultLayoutConfig())
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), "bad.ko") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestLayoutTruncatedFile(t *testing.T) {
	raw := sampleModule("t").build()
	for _, n := range []int{0, 10, 64, len(raw) / 2, len(raw) - 1} {
		_, err := LayoutModule(raw[:n], "t.ko", DefaultLayoutConfig())
		if err == nil {
			t.Errorf("truncated to %d bytes: no error", n)
		} else if !errors.Is(err, ErrNotModule) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrRejected) {
			t.Errorf("truncated to %d bytes: %v wraps no sentinel", n, err)
		}
	}
}

func TestModuleNameFallback(t *testing.T) {
	m := sampleModule("x")
	m.modinfo = modinfoString("license=GPL")
	l, err := LayoutModule(m.build(), "kernel/net/foo-bar_baz.ko.xz", DefaultLayoutConfig())
	if err != nil {
		t.Fatal(err)
	}
	if l.Module.Name != "foo_bar_baz" {
		t.Errorf("name %q, want foo_bar_baz", l.Module.Name)
	}
}

// kernelCountPLTs is count_plts done literally: branch relocations needing a
// PLT moved to the front, sorted by type, symbol and addend, each counted
// unless it repeats the previous one with a zero addend.
func kernelCountPLTs(relas []tRela, syms []tSym, dst uint16) int {
	var br []tRela
	for _, r := range relas {
		if (r.typ == rAarch64Jump26 || r.typ == rAarch64Call26) && (r.sym == 0 || syms[r.sym-1].shndx != dst) {
			br = append(br, r)
		}
	}
	sort.Slice(br, func(i, j int) bool {
		a, b := br[i], br[j]
		if a.typ != b.typ {
			return a.typ < b.typ
		}
		if a.sym != b.sym {
			return a.sym < b.sym
		}
		return a.addend < b.addend
	})
	n := 0
	for i, r := range br {
		if r.addend != 0 || i == 0 || br[i-1] != (tRela{off: br[i-1].off, typ: r.typ, sym: r.sym, addend: r.addend}) {
			n++
		}
	}
	return n
}

var sectionPool = []struct {
	name  string
	flags elf.SectionFlag
}{
	{".text", elf.SHF_ALLOC | elf.SHF_EXECINSTR}, {".text.unlikely", elf.SHF_ALLOC | elf.SHF_EXECINSTR},
	{".init.text", elf.SHF_ALLOC | elf.SHF_EXECINSTR}, {".exit.text", elf.SHF_ALLOC | elf.SHF_EXECINSTR},
	{".rodata", elf.SHF_ALLOC}, {".rodata.str1.1", elf.SHF_ALLOC}, {".init.rodata", elf.SHF_ALLOC},
	{"__ksymtab", elf.SHF_ALLOC}, {".note.gnu.build-id", elf.SHF_ALLOC},
	{".data", elf.SHF_ALLOC | elf.SHF_WRITE}, {".bss", elf.SHF_ALLOC | elf.SHF_WRITE},
	{".data..ro_after_init", elf.SHF_ALLOC | elf.SHF_WRITE}, {"__jump_table", elf.SHF_ALLOC | elf.SHF_WRITE},
	{".init.data", elf.SHF_ALLOC | elf.SHF_WRITE}, {".exit.data", elf.SHF_ALLOC | elf.SHF_WRITE},
	{".data..percpu", elf.SHF_ALLOC | elf.SHF_WRITE}, {".comment", 0}, {".BTF", 0},
}

// TestLayoutProperties lays out random modules and checks what must hold
// for any module: every allocated section placed once, in the region its
// flags and name call for, aligned, without overlap, the regions exactly as
// large as what they hold, and the PLT count of the kernel's algorithm.
func TestLayoutProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := &tModule{modinfo: modinfoString("name=rand"), relas: map[string][]tRela{}}
		nsec := rapid.IntRange(1, 12).Draw(t, "nsec")
		for i := 0; i < nsec; i++ {
			p := sectionPool[rapid.IntRange(0, len(sectionPool)-1).Draw(t, "sec")]
			align := []uint64{0, 1, 2, 4, 8, 16, 64, 4096}[rapid.IntRange(0, 7).Draw(t, "align")]
			size := uint64(rapid.IntRange(0, 5000).Draw(t, "size"))
			s := tSection{name: p.name, typ: elf.SHT_PROGBITS, flags: p.flags, align: align, data: make([]byte, size)}
			if p.name == ".bss" {
				s.typ, s.data, s.size = elf.SHT_NOBITS, nil, size
			}
			m.sections = append(m.sections, s)
		}
		nsym := rapid.IntRange(0, 8).Draw(t, "nsym")
		for i := 0; i < nsym; i++ {
			shndx := uint16(rapid.IntRange(0, nsec).Draw(t, "shndx"))
			m.syms = append(m.syms, tSym{name: fmt.Sprintf("s%d", i), shndx: shndx})
		}
		// Relocations against the first executable section, if any.
		target, targetIdx := "", 0
		for i, s := range m.sections {
			if s.flags&elf.SHF_EXECINSTR != 0 {
				target, targetIdx = s.name, i+1
				break
			}
		}
		if target != "" && nsym > 0 {
			nrel := rapid.IntRange(0, 20).Draw(t, "nrel")
			for i := 0; i < nrel; i++ {
				m.relas[target] = append(m.relas[target], tRela{
					off:    uint64(4 * i),
					typ:    []uint32{rAarch64Call26, rAarch64Jump26, rAarch64AdrPrelPgHi21, 257}[rapid.IntRange(0, 3).Draw(t, "rtype")],
					sym:    rapid.IntRange(1, nsym).Draw(t, "rsym"),
					addend: int64(rapid.IntRange(-1, 1).Draw(t, "addend") * 4),
				})
			}
		}
		cfg := DefaultLayoutConfig()
		cfg.KallsymsAll = rapid.Bool().Draw(t, "kallsyms_all")
		cfg.ModuleUnload = rapid.Bool().Draw(t, "unload")
		raw := m.build()
		l, err := LayoutModule(raw, "rand.ko", cfg)
		if err != nil {
			// Duplicate section names the kernel treats as one
			// (e.g. two .modinfo) are the only expected refusals here.
			t.Fatalf("layout: %v", err)
		}
		l2, _ := LayoutModule(raw, "rand.ko", cfg)
		if fmt.Sprint(l) != fmt.Sprint(l2) {
			t.Fatalf("layout not deterministic")
		}
		// Expected placement of each input section.
		f, err := elf.NewFile(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		firstPcpu := -1
		for i, s := range f.Sections {
			if s.Name == ".data..percpu" && s.Flags&elf.SHF_ALLOC != 0 {
				firstPcpu = i
				break
			}
		}
		firstRO := map[string]int{}
		for i, s := range f.Sections {
			if (s.Name == ".data..ro_after_init" || s.Name == "__jump_table") && s.Flags&elf.SHF_ALLOC != 0 {
				if _, ok := firstRO[s.Name]; !ok {
					firstRO[s.Name] = i
				}
			}
		}
		placed := map[int]PlacedSection{}
		for _, p := range l.Sections {
			if p.Index < 0 {
				continue
			}
			if _, dup := placed[p.Index]; dup {
				t.Fatalf("section %d placed twice", p.Index)
			}
			placed[p.Index] = p
		}
		for i, s := range f.Sections {
			alloc := s.Flags&elf.SHF_ALLOC != 0 && s.Name != ".modinfo" && s.Name != "__versions" && i != firstPcpu
			if s.Type == elf.SHT_SYMTAB || s.Type == elf.SHT_STRTAB && s.Name == ".strtab" {
				alloc = true
			}
			p, ok := placed[i]
			if ok != alloc {
				t.Fatalf("section %d %s (flags %v): placed %v, want %v", i, s.Name, s.Flags, ok, alloc)
			}
			if !ok {
				continue
			}
			init := strings.HasPrefix(s.Name, ".init") || (!cfg.ModuleUnload && strings.HasPrefix(s.Name, ".exit"))
			if s.Type == elf.SHT_SYMTAB || s.Name == ".strtab" {
				init = true
			}
			if p.Type.IsInit() != init {
				t.Fatalf("%s in %v, init %v", s.Name, p.Type, init)
			}
			exec := s.Flags&elf.SHF_EXECINSTR != 0 || strings.HasSuffix(s.Name, "plt") || strings.HasSuffix(s.Name, "ftrace_trampoline")
			if p.Type.IsText() != exec {
				t.Fatalf("%s in %v, exec %v", s.Name, p.Type, exec)
			}
			_, ro := firstRO[s.Name]
			ro = ro && firstRO[s.Name] == i
			if (p.Type == ModROAfterInit) != (ro && !init) {
				t.Fatalf("%s in %v, ro_after_init %v", s.Name, p.Type, ro)
			}
			if !exec && !ro && (p.Type == ModRodata || p.Type == ModInitRodata) != (s.Flags&elf.SHF_WRITE == 0 && s.Type != elf.SHT_SYMTAB && s.Name != ".strtab") {
				t.Fatalf("%s (flags %v) in %v", s.Name, s.Flags, p.Type)
			}
		}
		// Regions: aligned, no overlap, size = end of the last block.
		byType := map[ModMemType][]PlacedSection{}
		for _, p := range l.Sections {
			byType[p.Type] = append(byType[p.Type], p)
		}
		for typ := ModMemType(0); typ < NumModMemTypes; typ++ {
			ps := byType[typ]
			var end uint64
			for _, p := range ps { // in placement order
				if p.Offset%p.Align != 0 {
					t.Fatalf("%s at %d, align %d", p.Name, p.Offset, p.Align)
				}
				if p.Offset < end {
					t.Fatalf("%s at %d overlaps the block ending at %d", p.Name, p.Offset, end)
				}
				end = p.Offset + p.Size
			}
			if l.Module.Size[typ] != end {
				t.Fatalf("%v size %d, last block ends at %d", typ, l.Module.Size[typ], end)
			}
		}
		if target != "" {
			want := kernelCountPLTs(m.relas[target], m.syms, uint16(targetIdx))
			got := l.Module.PLTs + l.Module.InitPLTs
			if got != want {
				t.Fatalf("PLTs %d, kernel algorithm gives %d", got, want)
			}
		}
	})
}
