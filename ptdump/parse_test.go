package ptdump

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/ptdump/internal/dumptest"
)

// samples are the dumps in testdata: the real dumps and hand-made
// variants. Every one must parse strictly, without warnings.
func samples(t testing.TB) []string { return dumptest.Samples(t, "testdata") }

func parseFile(t testing.TB, path string, opt ParseOptions) *Dump {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := Parse(f, filepath.Base(path), opt)
	if err != nil {
		t.Fatalf("Parse(%s): %v", path, err)
	}
	return d
}

func parseString(s string, opt ParseOptions) (*Dump, error) {
	return Parse(strings.NewReader(s), "test", opt)
}

var (
	reRangeLine  = regexp.MustCompile(`0x([0-9a-f]{8,16})-0x([0-9a-f]{8,16})\s+(\d+)([BKMGTPE])\s`)
	reMarkerLine = regexp.MustCompile(`---\[ (.*) \]---`)
)

// TestParseSamples checks every sample against what a plain regexp reading of
// the same file finds: same number of ranges and markers, same addresses and
// sizes, and each range's line number pointing at its text.
func TestParseSamples(t *testing.T) {
	for _, path := range samples(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			d := parseFile(t, path, ParseOptions{})
			if len(d.Warnings) != 0 {
				t.Errorf("warnings: %v", d.Warnings)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(raw), "\n")
			var want []Range
			markers := 0
			for i, l := range lines {
				if strings.HasPrefix(l, "#") {
					continue
				}
				if reMarkerLine.MatchString(l) {
					markers++
				}
				m := reRangeLine.FindStringSubmatch(l)
				if m == nil {
					continue
				}
				s, _ := strconv.ParseUint(m[1], 16, 64)
				e, _ := strconv.ParseUint(m[2], 16, 64)
				want = append(want, Range{Start: s, End: e, SizeText: m[3] + m[4], Line: i + 1})
			}
			if len(d.Ranges) != len(want) || len(d.Markers) != markers {
				t.Fatalf("%d ranges, %d markers; the file has %d and %d", len(d.Ranges), len(d.Markers), len(want), markers)
			}
			for i, r := range d.Ranges {
				w := want[i]
				if r.Start != w.Start || r.End != w.End || r.SizeText != w.SizeText || r.Line != w.Line {
					t.Errorf("range %d = %#x-%#x %s line %d, want %#x-%#x %s line %d", i,
						r.Start, r.End, r.SizeText, r.Line, w.Start, w.End, w.SizeText, w.Line)
				}
				if r.Size != r.End-r.Start {
					t.Errorf("line %d: size %d != end-start", r.Line, r.Size)
				}
				if i > 0 && r.Start < d.Ranges[i-1].End {
					t.Errorf("line %d: not ascending", r.Line)
				}
				if d.Geometry.EntrySize(r.Level) == 0 {
					t.Errorf("line %d: level %q unknown to geometry %v", r.Line, r.Level, d.Geometry)
				}
			}
		})
	}
}

// TestParseSampleFacts checks what each real sample is known to be, from its
// source line and contents.
func TestParseSampleFacts(t *testing.T) {
	cases := []struct {
		file     string
		arch     Arch
		page     uint64
		vaBits   int
		holes    bool
		firstMrk string
	}{
		// 48-bit 4K 6.x dump, linear map only.
		{"002-ryan-roberts-bbml2-v7-ampereone-mode3-ptes.txt", ArchARM64, 4096, 48, true, "Linear Mapping start"},
		// 4.14, 39-bit VA: 3 levels, 1G blocks print as "PGD"; no holes printed.
		{"003-wenboshen-android-4.14-39bitva.txt", ArchARM64, 4096, 39, false, "Modules start"},
		// 52-bit VA excerpt: SHD shows, so no LPA2, so the granule is 64K;
		// the "3964T PGD" line starts at 0xfff0040000000000, 4T- but not
		// 128T/256T-aligned, which only 64K's 4T PGD entries allow.
		{"006-linux-doc-ptdump-rst-52bitva-excerpt.txt", ArchARM64, 65536, 52, true, ""},
		{"901-x86-fedora-4.18rc8-ryzen-dmesg-excerpt.txt", ArchX86, 4096, 48, true, "Kernel Space"},
		{"hand-arm64-6x-kpti-bti-mte.txt", ArchARM64, 4096, 48, true, "Linear Mapping start"},
		{"hand-arm64-5x-bpf-devicegre.txt", ArchARM64, 4096, 48, true, "Linear Mapping start"},
		// Complete 64K dump: no PUD line, so not 4K/48.
		{"hand-arm64-64k-48bit.txt", ArchARM64, 65536, 48, true, "Linear Mapping start"},
		{"hand-arm64-pasted-from-logs.txt", ArchARM64, 4096, 48, true, "Linear Mapping start"},
		{"hand-x86-debugfs-kernel.txt", ArchX86, 4096, 48, true, "User Space"},
	}
	for _, c := range cases {
		d := parseFile(t, filepath.Join("testdata", c.file), ParseOptions{})
		if d.Arch != c.arch || d.Geometry.PageSize != c.page || d.Geometry.VABits != c.vaBits || d.HolesPrinted != c.holes {
			t.Errorf("%s: arch %s page %d va %d holes %v; want %s %d %d %v", c.file, d.Arch,
				d.Geometry.PageSize, d.Geometry.VABits, d.HolesPrinted, c.arch, c.page, c.vaBits, c.holes)
		}
		first := ""
		if len(d.Markers) > 0 {
			first = d.Markers[0].Name
		}
		if first != c.firstMrk {
			t.Errorf("%s: first marker %q want %q", c.file, first, c.firstMrk)
		}
	}
}

// TestParseHandSamples checks what the hand-made samples were made to show.
func TestParseHandSamples(t *testing.T) {
	six := parseFile(t, "testdata/hand-arm64-6x-kpti-bti-mte.txt", ParseOptions{})
	flags := Attr(0)
	for _, r := range six.Ranges {
		if r.Attrs != nil {
			flags |= r.Attrs.Flags
		}
	}
	for _, f := range []Attr{AttrNG, AttrGP, AttrInvalid, AttrCont, AttrBlock, AttrReadOnly} {
		if flags&f == 0 {
			t.Errorf("6.x sample lacks flag %#x", f)
		}
	}
	if last := six.Ranges[len(six.Ranges)-1]; last.End != 0 || len(six.Markers) != 12 {
		t.Errorf("6.x sample: last %+v, %d markers", last, len(six.Markers))
	}
	// The pasted copy is the 6.x sample's first lines under log prefixes.
	logs := parseFile(t, "testdata/hand-arm64-pasted-from-logs.txt", ParseOptions{})
	for i, r := range logs.Ranges {
		w := six.Ranges[i]
		if r.Start != w.Start || r.End != w.End || r.Level != w.Level || r.Attrs.Has(AttrNG) != w.Attrs.Has(AttrNG) {
			t.Errorf("pasted range %d: %+v, want %+v", i, r, w)
		}
	}
	five := parseFile(t, "testdata/hand-arm64-5x-bpf-devicegre.txt", ParseOptions{})
	gre, bpf := false, false
	for _, r := range five.Ranges {
		gre = gre || r.Attrs != nil && r.Attrs.Mem == "DEVICE/GRE" && r.Attrs.Prot&arm64.PTEAttrIndxMask == arm64.AttrIndx(2)
	}
	for _, m := range five.Markers {
		bpf = bpf || m.Kind == "bpf"
	}
	if !gre || !bpf {
		t.Errorf("5.x sample: DEVICE/GRE %v, BPF region %v", gre, bpf)
	}
	x86 := parseFile(t, "testdata/hand-x86-debugfs-kernel.txt", ParseOptions{})
	if x86.Skipped != 131059 || len(x86.Geometry.Levels) != 4 {
		t.Errorf("x86 sample: skipped %d, geometry %v", x86.Skipped, x86.Geometry)
	}
}

func TestFormatSize(t *testing.T) {
	for _, c := range []struct {
		n    uint64
		want string
	}{
		{4096, "4K"}, {2112 << 10, "2112K"}, {2 << 20, "2M"}, {130560 << 30, "130560G"},
		{3964 << 40, "3964T"}, {0xffff7f8000000000, "17179737600G"}, {1 << 63, "8E"}, {1000, "1000B"},
	} {
		if got := FormatSize(c.n); got != c.want {
			t.Errorf("FormatSize(%#x) = %s want %s", c.n, got, c.want)
		}
		if v, ok := parseSize([]byte(c.want)); !ok || v != c.n {
			t.Errorf("parseSize(%s) = %#x %v", c.want, v, ok)
		}
	}
}

// TestParseLogPrefixes: the same line pasted out of dmesg, syslog, the
// journal or a quoted mail parses to the same range.
func TestParseLogPrefixes(t *testing.T) {
	line := dumptest.Line(0xffff000042200000, 0xffff000042210000, "PTE", dumptest.Cols{RO: false, SHD: true, AF: true, Cont: true, UXN: true, Mem: "MEM/NORMAL-TAGGED"}.Text())
	prefixes := []string{
		"", "> ", ">> ", "> > ", "[    0.011734] ", "> [    0.011734] ", "[    0.011734][    T1] ",
		"<6>[   12.5] ", "Aug 11 13:30:39 host kernel: ", "Aug 11 13:30:39 host kernel: [    0.011734] ",
		"kernel: ", "\t", "[  C0] ",
	}
	for _, p := range prefixes {
		d, err := parseString(p+line+"\r\n", ParseOptions{})
		if err != nil {
			t.Errorf("prefix %q: %v", p, err)
			continue
		}
		if len(d.Ranges) != 1 || d.Ranges[0].Start != 0xffff000042200000 || !d.Ranges[0].Attrs.Has(AttrCont) {
			t.Errorf("prefix %q: %+v", p, d.Ranges)
		}
	}
	// Not a log prefix: text before the range is rejected.
	if _, err := parseString("hello "+line, ParseOptions{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage prefix accepted: %v", err)
	}
}

func TestParseAttrs(t *testing.T) {
	// The mask note_page applies: the OR of every pte_bits mask, computed by
	// ptdump_initialize (arch/arm64/mm/ptdump.c). It is what a dump can show.
	const ptdumpMask = 0x0074000000000fdf
	cases := []struct {
		level string
		cols  dumptest.Cols
		flags Attr
		prot  uint64
	}{
		{"PUD", dumptest.Cols{SHD: true, AF: true, Blk: true, UXN: true, X: false, Mem: "MEM/NORMAL-TAGGED"},
			AttrNX | AttrShared | AttrAF | AttrBlock | AttrUXN, arm64.Tagged(arm64.ProtSectNormal) & ptdumpMask},
		{"PTE", dumptest.Cols{SHD: true, AF: true, UXN: true, Mem: "MEM/NORMAL"},
			AttrNX | AttrShared | AttrAF | AttrUXN, arm64.PageKernel & ptdumpMask},
		{"PTE", dumptest.Cols{RO: true, X: true, SHD: true, AF: true, Cont: true, UXN: true, Mem: "MEM/NORMAL"},
			AttrReadOnly | AttrShared | AttrAF | AttrCont | AttrUXN, (arm64.PageKernelROX | arm64.PTECont) & ptdumpMask},
		// Present-invalid page (set_direct_map_invalid_noflush): valid bit
		// cleared, PTE_PRESENT_INVALID (bit 11, shown as NG) set.
		{"PTE", dumptest.Cols{Invalid: true, SHD: true, AF: true, NG: true, UXN: true, Mem: "MEM/NORMAL-TAGGED"},
			AttrInvalid | AttrNX | AttrShared | AttrAF | AttrNG | AttrUXN,
			(arm64.Tagged(arm64.PageKernel)&^arm64.PTEValid | arm64.PTEPresentInvalid) & ptdumpMask},
		{"PTE", dumptest.Cols{SHD: true, AF: true, NG: true, UXN: true, GP: true, X: true, RO: true, Mem: "MEM/NORMAL"},
			AttrReadOnly | AttrShared | AttrAF | AttrNG | AttrUXN | AttrGP,
			(arm64.PageKernelROX | arm64.PTENG | arm64.PTEGP) & ptdumpMask},
		{"PMD", dumptest.Cols{SHD: true, AF: true, Blk: true, UXN: true, Mem: "DEVICE/nGnRE"},
			AttrNX | AttrShared | AttrAF | AttrBlock | AttrUXN,
			(arm64.ProtDeviceNGnRE&^arm64.PTETypeMask | arm64.PMDTypeSect) & ptdumpMask},
	}
	for i, c := range cases {
		text := dumptest.Line(0xffff000040000000, 0xffff000080000000, c.level, c.cols.Text()) + "\n"
		d, err := parseString(text, ParseOptions{})
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		a := d.Ranges[0].Attrs
		if a.Flags != c.flags || a.Prot != c.prot || a.Mem != c.cols.Mem || len(a.Unknown) != 0 {
			t.Errorf("case %d %q: flags %#x prot %#016x mem %q; want %#x %#016x %q", i, a.Text, a.Flags, a.Prot, a.Mem, c.flags, c.prot, c.cols.Mem)
		}
		if strings.Contains(a.Perm, "CON") || strings.Contains(a.Perm, "BLK") {
			t.Errorf("case %d: Perm %q keeps a size column", i, a.Perm)
		}
	}
}

func TestParseErrors(t *testing.T) {
	good1 := dumptest.Line(0xffff000000000000, 0xffff000000200000, "PMD", dumptest.Cols{SHD: true, AF: true, Blk: true, UXN: true, Mem: "MEM/NORMAL"}.Text())
	good2 := dumptest.Line(0xffff000000200000, 0xffff000000400000, "PMD", "")
	cases := []struct {
		name     string
		bad      string
		sentinel error
	}{
		{"size mismatch", "0xffff000000400000-0xffff000000600000           4M PMD", ErrSizeMismatch},
		{"overlap", dumptest.Line(0xffff000000300000, 0xffff000000500000, "PMD", ""), ErrOrder},
		{"descending", dumptest.Line(0xffff000000000000, 0xffff000000200000, "PMD", ""), ErrOrder},
		{"end before start", "0xffff000000600000-0xffff000000400000           2M PMD", ErrMalformed},
		{"empty", "0xffff000000600000-0xffff000000600000           0K PMD", ErrMalformed},
		{"bad hex", "0xffff00000040000g-0xffff000000600000           2M PMD", ErrMalformed},
		{"long hex", "0x0ffff000000400000-0xffff000000600000           2M PMD", ErrMalformed},
		{"bad size", "0xffff000000400000-0xffff000000600000           2Q PMD", ErrMalformed},
		{"size overflow", "0xffff000000400000-0xffff000000600000   99999999999999999E PMD", ErrMalformed},
		{"no level", "0xffff000000400000-0xffff000000600000           2M XYZ RW", ErrMalformed},
		{"too few", "0xffff000000400000-0xffff000000600000", ErrMalformed},
		{"ro and RW", "0xffff000000400000-0xffff000000600000           2M PMD ro RW NX", ErrMalformed},
		{"NX and x", "0xffff000000400000-0xffff000000600000           2M PMD RW NX x", ErrMalformed},
		{"repeated", "0xffff000000400000-0xffff000000600000           2M PMD RW NX AF AF", ErrMalformed},
		{"two mem types", "0xffff000000400000-0xffff000000600000           2M PMD RW NX MEM/NORMAL DEVICE/nGnRE", ErrMalformed},
		{"x86 in arm64", "0xffff000000400000-0xffff000000600000           2M     RW         PSE     GLB NX pmd", ErrMalformed},
		{"unterminated marker", "---[ vmalloc() area ]--", ErrMalformed},
		{"prose", "random: crng init done", ErrMalformed},
		{"skipped garbage", "... lots of stuff", ErrMalformed},
	}
	for _, c := range cases {
		text := good1 + "\n" + good2 + "\n" + c.bad + "\n"
		_, err := parseString(text, ParseOptions{})
		if !errors.Is(err, c.sentinel) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.sentinel)
			continue
		}
		if !strings.Contains(err.Error(), "test:3:") {
			t.Errorf("%s: error %q lacks test:3:", c.name, err)
		}
		d, err := parseString(text, ParseOptions{Lenient: true})
		if err != nil {
			t.Errorf("%s lenient: %v", c.name, err)
			continue
		}
		if len(d.Ranges) != 2 || len(d.Warnings) != 1 || d.Warnings[0].Line != 3 {
			t.Errorf("%s lenient: %d ranges, warnings %v", c.name, len(d.Ranges), d.Warnings)
		}
	}
	// Nothing after a range that reached the top of the address space.
	wrap := dumptest.Line(0xffffffffffe00000, 0, "PMD", "") + "\n" + dumptest.Line(0xffffffffffe00000, 0xfffffffffff00000, "PTE", "") + "\n"
	if _, err := parseString(wrap, ParseOptions{}); !errors.Is(err, ErrOrder) {
		t.Errorf("after wrap: %v", err)
	}
	for _, empty := range []string{"", "\n\n", "# only a comment\n"} {
		if _, err := parseString(empty, ParseOptions{}); !errors.Is(err, ErrNoDump) {
			t.Errorf("empty %q: %v", empty, err)
		}
		if d, err := parseString(empty, ParseOptions{Lenient: true}); err != nil || len(d.Warnings) != 1 {
			t.Errorf("empty %q lenient: %v %v", empty, err, d)
		}
	}
	long := good1 + "\n" + strings.Repeat("x", maxLineLen+10) + "\n" + good2 + "\n"
	if _, err := parseString(long, ParseOptions{}); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "test:2:") {
		t.Errorf("long line: %v", err)
	}
	if d, err := parseString(long, ParseOptions{Lenient: true}); err != nil || len(d.Ranges) != 2 || d.Warnings[0].Line != 2 {
		t.Errorf("long line lenient: %v %+v", err, d)
	}
}

func TestParseWrapLine(t *testing.T) {
	text := "---[ Fixmap end ]---\n" + dumptest.Line(0xffffffffffe00000, 0, "PMD", "") + "\n"
	d, err := parseString(text, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := d.Ranges[0]
	if r.End != 0 || r.Size != 2<<20 || r.Last() != ^uint64(0) || r.Marker != 0 {
		t.Errorf("%+v", r)
	}
}

// TestParseUnknownAttr: a column this parser does not know is kept and
// warned about once, in both modes; the dump still parses.
func TestParseUnknownAttr(t *testing.T) {
	text := dumptest.Line(0xffff000000000000, 0xffff000000001000, "PTE", " RW NX SHD AF PIE UXN MEM/NORMAL-XYZ") + "\n" +
		dumptest.Line(0xffff000000001000, 0xffff000000002000, "PTE", " RW NX SHD AF PIE UXN MEM/NORMAL") + "\n"
	for _, lenient := range []bool{false, true} {
		d, err := parseString(text, ParseOptions{Lenient: lenient})
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Warnings) != 2 || d.Warnings[0].Line != 1 || !strings.Contains(d.Warnings[0].Msg, `"PIE"`) ||
			!strings.Contains(d.Warnings[1].Msg, "MEM/NORMAL-XYZ") {
			t.Errorf("warnings %v", d.Warnings)
		}
		if u := d.Ranges[1].Attrs.Unknown; len(u) != 1 || u[0] != "PIE" {
			t.Errorf("unknown %v", u)
		}
		if d.Ranges[0].Attrs.Mem != "" || !strings.Contains(d.Ranges[0].Attrs.Perm, "PIE") {
			t.Errorf("attrs %+v", d.Ranges[0].Attrs)
		}
	}
}

func TestParseX86(t *testing.T) {
	text := `---[ User Space ]---
0x0000000000000000-0x0000000000001000           4K                               pte
0x0000000000001000-0x0000000000200000        2044K USR RW                     NX pte
0x0000000000200000-0x0000000040000000        1022M     RW         PSE     GLB x  pmd
---[ ESPfix Area ]---
0x0000000040000000-0x0000000040001000           4K     ro PWT PCD     PAT GLB NX pte
... 131059 entries skipped ... 
0xffffffffff5ff000-0x0000000000000000        10244K                              pte
`
	d, err := parseString(text, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Arch != ArchX86 || len(d.Ranges) != 5 || d.Skipped != 131059 || len(d.Markers) != 2 {
		t.Fatalf("%+v", d)
	}
	want := []Attr{0, AttrUser | AttrNX, AttrPSE | AttrGlobal, AttrReadOnly | AttrPWT | AttrPCD | AttrPAT | AttrGlobal | AttrNX, 0}
	for i, r := range d.Ranges {
		var f Attr
		if r.Attrs != nil {
			f = r.Attrs.Flags
			if r.Attrs.Prot != 0 {
				t.Errorf("x86 line %d has arm64 prot", r.Line)
			}
		}
		if f != want[i] {
			t.Errorf("line %d flags %#x want %#x", r.Line, f, want[i])
		}
	}
	if d.Ranges[2].Attrs.Perm != "RW GLB x" {
		t.Errorf("perm %q", d.Ranges[2].Attrs.Perm)
	}
	if k, _ := RegionKind("ESPfix Area"); k != "espfix" {
		t.Errorf("kind %q", k)
	}
}

func TestRegionKind(t *testing.T) {
	for _, c := range []struct {
		name, kind string
		end        bool
	}{
		{"Linear Mapping start", "linear", false}, {"Linear Mapping end", "linear", true},
		{"Linear Mapping", "linear", false}, {"vmalloc() Area", "vmalloc", false}, {"vmalloc() End", "vmalloc", true},
		{"BPF start", "bpf", false}, {"PCI I/O end", "pci-io", true}, {"End Modules", "modules", true},
		{"High Kernel Mapping", "kernel-image", false}, {"Low Kernel Mapping", "linear", false},
		{"Kasan shadow start", "kasan", false}, {"Global percpu start", "percpu", false},
		{"Some New Region start", "some-new-region", false},
	} {
		k, e := RegionKind(c.name)
		if k != c.kind || e != c.end {
			t.Errorf("RegionKind(%q) = %q %v, want %q %v", c.name, k, e, c.kind, c.end)
		}
	}
}

// TestParseRoundTrip: any dump printed in the kernel's format parses back to
// exactly the ranges and attributes that were printed.
func TestParseRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rs := dumptest.Gen(t, 0xffff000000000000, 8<<30, 0, false)
		text := dumptest.Format(t, rs)
		d, err := parseString(text, ParseOptions{})
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		if len(d.Warnings) != 0 || len(d.Ranges) != len(rs) || len(d.Markers) != 2 {
			t.Fatalf("warnings %v, %d ranges (want %d), %d markers", d.Warnings, len(d.Ranges), len(rs), len(d.Markers))
		}
		for i, g := range rs {
			r := d.Ranges[i]
			if r.Start != g.Start || r.End != g.End || r.Level != g.Level || r.Mapped() != (g.Cols != nil) || r.Marker != 0 {
				t.Fatalf("range %d: %+v want %+v", i, r, g)
			}
			if g.Cols == nil {
				continue
			}
			c := *g.Cols
			a := r.Attrs
			if a.Has(AttrInvalid) != c.Invalid || a.Has(AttrReadOnly) != c.RO || a.Has(AttrNX) == c.X ||
				a.Has(AttrCont) != c.Cont || a.Has(AttrBlock) != c.Blk || a.Has(AttrNG) != c.NG || a.Mem != c.Mem {
				t.Fatalf("range %d: attrs %q from %+v", i, a.Text, c)
			}
		}
		if len(rs) > 0 && d.Geometry.PageSize != 4096 {
			t.Fatalf("geometry %v", d.Geometry)
		}
	})
}

// TestParseDetectsCorruption: changing one printed size or swapping two
// lines of a valid dump is always caught.
func TestParseDetectsCorruption(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rs := dumptest.Gen(t, 0xffff000000000000, 8<<30, 0, false)
		if len(rs) < 2 {
			t.Skip("too short")
		}
		lines := make([]string, len(rs))
		for i, r := range rs {
			lines[i] = dumptest.Line(r.Start, r.End, r.Level, "")
		}
		i := rapid.IntRange(0, len(lines)-1).Draw(t, "line")
		mutated := append([]string(nil), lines...)
		var want error
		if rapid.Bool().Draw(t, "swap") {
			j := rapid.IntRange(0, len(lines)-1).Filter(func(j int) bool { return j != i }).Draw(t, "other")
			mutated[i], mutated[j] = mutated[j], mutated[i]
			want = ErrOrder
		} else {
			f := strings.Fields(mutated[i])
			n, _ := strconv.ParseUint(f[1][:len(f[1])-1], 10, 64)
			f[1] = strconv.FormatUint(n+uint64(rapid.IntRange(1, 5).Draw(t, "delta")), 10) + f[1][len(f[1])-1:]
			mutated[i] = strings.Join(f, " ")
			want = ErrSizeMismatch
		}
		_, err := parseString(strings.Join(mutated, "\n"), ParseOptions{})
		if !errors.Is(err, want) {
			t.Fatalf("got %v, want %v", err, want)
		}
	})
}

// TestParseGeometryInference: complete dumps generated for each geometry
// (one line per level, top first, as a real walk starts) are recognised,
// except 16K/48, whose every boundary and level also fits 4K/48: that one is
// reported as 4K with 16K named as fitting too, and is read right when the
// page size is given.
func TestParseGeometryInference(t *testing.T) {
	for _, c := range []struct {
		shift     uint
		va        int
		lpa2      bool
		ambiguous bool
	}{{16, 48, false, false}, {16, 52, false, false}, {14, 47, false, false}, {14, 48, false, true},
		{12, 52, true, false}, {12, 48, false, false}, {12, 39, false, false}, {16, 42, false, false}} {
		g := arm64.MustGeometry(c.shift, c.va, c.lpa2)
		var b strings.Builder
		cur := -(uint64(1) << c.va)
		for l := g.StartLevel; l <= arm64.LastLevel; l++ {
			s := g.Size(l)
			b.WriteString(dumptest.Line(cur, cur+s, g.Name(l), "") + "\n")
			cur += s
		}
		d, err := parseString(b.String(), ParseOptions{})
		if err != nil {
			t.Fatalf("%v: %v\n%s", g, err, b.String())
		}
		if len(d.Warnings) != 0 {
			t.Errorf("%v: warnings %v", g, d.Warnings)
		}
		got := d.Geometry
		if c.ambiguous {
			if got.PageSize != 4096 || !strings.Contains(got.Basis, FormatSize(g.PageSize())+"/") {
				t.Errorf("%v: inferred %v (%s)", g, got, got.Basis)
			}
			d, err = parseString(b.String(), ParseOptions{PageSize: g.PageSize()})
			if err != nil {
				t.Fatal(err)
			}
			got = d.Geometry
		}
		if got.PageSize != g.PageSize() || got.VABits != c.va || len(got.Levels) != g.Levels {
			t.Errorf("%v: inferred %v (%s)\n%s", g, got, got.Basis, b.String())
		}
	}
	// A PMD range misaligned for every granule: warned, 4K assumed.
	d, err := parseString(dumptest.Line(0xffff000000001000, 0xffff000000201000, "PMD", "")+"\n", ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Geometry.PageSize != 4096 || len(d.Warnings) != 1 || d.Warnings[0].Line != 1 {
		t.Errorf("misfit: %v %v", d.Geometry, d.Warnings)
	}
}

// TestParseWriterRoundTrip reads what ptlab's own writer prints for a model
// table tree, with capture's PA= and TBL extensions: every table line points
// to a table page the tree has, every mapped line carries the physical
// address the tree maps, and the leaves match the tree.
func TestParseWriterRoundTrip(t *testing.T) {
	tb, lay := dumptest.SmallTree(t)
	g := tb.Geometry()
	lin := lay.PageOffset
	for _, opt := range []Options{{}, {PA: true}, {PA: true, Tables: true}} {
		var buf bytes.Buffer
		w := NewWriter(&buf, g, KernelMarkers(lay), opt)
		if err := Walk(tb, nil, g, tb.Root(), lay.PageOffset, w); err != nil {
			t.Fatal(err)
		}
		d, err := Parse(&buf, "writer", ParseOptions{})
		if err != nil {
			t.Fatalf("%+v: %v", opt, err)
		}
		if len(d.Warnings) != 0 || d.Geometry.PageSize != 4096 || d.Geometry.VABits != 48 {
			t.Fatalf("%+v: warnings %v geometry %v", opt, d.Warnings, d.Geometry)
		}
		mapped := uint64(0)
		for _, r := range d.Ranges {
			if !r.Mapped() {
				continue
			}
			mapped += r.Size
			if r.HasPA != opt.PA {
				t.Errorf("%+v: line %d HasPA %v", opt, r.Line, r.HasPA)
			}
			if opt.PA && r.Start >= lin && r.Start < lay.PageEnd && r.PA != dumptest.SmallTreeRAM+(r.Start-lin) {
				t.Errorf("line %d: PA %#x for %#x", r.Line, r.PA, r.Start)
			}
		}
		if want := uint64(dumptest.SmallTreeLinear + dumptest.SmallTreeVmalloc); mapped != want {
			t.Errorf("%+v: mapped %#x want %#x", opt, mapped, want)
		}
		if !opt.Tables {
			if len(d.Tables) != 0 {
				t.Errorf("table lines without Options.Tables")
			}
			continue
		}
		if len(d.Tables) == 0 {
			t.Fatalf("no table lines")
		}
		for _, tl := range d.Tables {
			if _, err := tb.Table(tl.PA); err != nil {
				t.Errorf("line %d: TBL PA=%#x is not a table page: %v", tl.Line, tl.PA, err)
			}
			if tl.End-tl.Start != d.Geometry.EntrySize(tl.Level) {
				t.Errorf("line %d: table line spans %#x", tl.Line, tl.End-tl.Start)
			}
		}
	}
}

// TestParseWXVerdict: the kernel's W+X check message, which follows the dump
// in a boot log, is kept rather than rejected.
func TestParseWXVerdict(t *testing.T) {
	text := "[    0.5] " + dumptest.Line(0xffff000000000000, 0xffff000000001000, "PTE", "") + "\n" +
		"[    0.6] x86/mm: Checked W+X mappings: passed, no W+X pages found.\n"
	d, err := parseString(text, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(d.WXVerdict, "x86/mm: Checked W+X mappings: passed") {
		t.Errorf("verdict %q", d.WXVerdict)
	}
}

// TestAttrTokensCoverProtBits: every column string of the writer's table is
// a token the parser knows, so the two cannot drift apart.
func TestAttrTokensCoverProtBits(t *testing.T) {
	for _, tbl := range [][]ProtBit{ProtBits, ProtBitsTableBit} {
		for _, b := range tbl {
			for _, s := range []string{b.Set, b.Clear} {
				if tok := strings.TrimSpace(s); tok != "" {
					if _, k := attrToken(ArchARM64, tok); k == tokUnknown {
						t.Errorf("column %q unknown to the parser", tok)
					}
				}
			}
		}
	}
}
