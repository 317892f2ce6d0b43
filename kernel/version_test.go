package kernel

import (
	"errors"
	"testing"

	"github.com/ptlab/ptlab/arm64"
)

// rodata= as each release parses it (arch_parse_debug_rodata).
func TestRodataPerRelease(t *testing.T) {
	cases := []struct {
		kernel string
		rodata Rodata
		full   bool
	}{
		{"6.12", "", true},
		{"6.12", RodataFull, true},
		{"6.12", RodataOn, false}, // old scheme: on = no alias protection
		{"6.12", RodataNoAlias, true},
		{"6.12", RodataOff, false},
		{"6.1", RodataOn, false},
		{"7.3", "", true},
		{"7.3", RodataOn, true}, // new scheme: on = full
		{"7.3", RodataNoAlias, false},
		{"7.3", RodataFull, true}, // not parsed: the default stays
		{"7.3", RodataOff, false},
		{"linux-mm", RodataOn, true},
		{"6.18", RodataOn, true},
	}
	for _, c := range cases {
		cfg := Config{Kernel: c.kernel, Rodata: c.rodata}
		got, err := cfg.RodataFull()
		if err != nil || got != c.full {
			t.Errorf("kernel %s rodata=%q: rodata_full %v (%v), want %v", c.kernel, c.rodata, got, err, c.full)
		}
	}
	if _, err := (&Config{Rodata: "bogus"}).RodataFull(); !errors.Is(err, ErrConfig) {
		t.Errorf("rodata=bogus: %v", err)
	}
}

func TestLookupVersion(t *testing.T) {
	for in, want := range map[string]string{
		"":                     DefaultVersion,
		"6.12":                 "6.12",
		"6.12.117+deb12-arm64": "6.12",
		"6.1.0-57-arm64":       "6.1",
		"6.16.3+deb13-arm64":   "6.12",
		"7.3.4+deb13-arm64":    "7.3",
		"7.9":                  "7.3",
		"linux-mm":             "linux-mm",
	} {
		v, err := LookupVersion(in)
		if err != nil || v.Name != want {
			t.Errorf("LookupVersion(%q) = %v, %v; want %s", in, v, err, want)
		}
	}
	for _, bad := range []string{"5.15", "banana", "6"} {
		if _, err := LookupVersion(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("LookupVersion(%q): %v", bad, err)
		}
	}
	if got := Versions[len(Versions)-1].Name; got != DefaultVersion {
		t.Errorf("the default %s is not the newest profile %s", DefaultVersion, got)
	}
}

// 6.1's layout: 128 MiB of modules below the image at PAGE_END + 128M, the
// vmemmap at -(1 << (48 - 6)), PCI I/O 8M and the fixmap 32M below it.
func TestLegacyLayout(t *testing.T) {
	k := boot(t, "qemu-virt", func(c *Config) { c.Kernel = "6.1" })
	l := k.Layout
	want := map[string][2]uint64{
		"modules":  {l.ModulesVaddr, 0xffff800000000000},
		"kimage":   {l.KimageVaddr, 0xffff800008000000},
		"vmemmap":  {l.VmemmapStart, 0xfffffc0000000000},
		"vmallocE": {l.VmallocEnd, 0xfffffbfff0000000},
		"pciIO":    {l.PCIIOStart, 0xfffffbfffe800000},
		"fixTop":   {l.FixaddrTop, 0xfffffbfffe000000},
	}
	for n, w := range want {
		if w[0] != w[1] {
			t.Errorf("%s %#x, want %#x", n, w[0], w[1])
		}
	}
	// module_alloc_base without KASLR: _etext - MODULES_VSIZE.
	if r := k.Exec.Ranges[ExecmemModuleText]; r.Start != k.Image.VA+k.Image.TextEnd-128<<20 || r.End != r.Start+128<<20 || r.FallbackEnd != r.Start+2<<30 {
		t.Errorf("6.1 module region %#x-%#x fallback %#x-%#x", r.Start, r.End, r.FallbackStart, r.FallbackEnd)
	}
	// 6.1 maps the image from _stext: the header is not mapped.
	if _, _, ok := k.PT.Translate(&PlainCPU{}, k.Image.VA); ok {
		t.Error("6.1 must not map the image header")
	}
}

// RANDOMIZE_MODULE_REGION_FULL: under KASLR no 128 MiB direct window, a 2 GiB
// region around the image; without KASLR the 128 MiB window under _end.
func TestModuleRegionFull(t *testing.T) {
	k := boot(t, "qemu-virt", func(c *Config) { c.Kernel = "7.3"; c.KASLRSeed = 42 })
	r := k.Exec.Ranges[ExecmemModuleText]
	kend := k.Image.VA + k.Image.End
	if r.End-r.Start != 2<<30 || r.FallbackEnd != 0 || r.Start > k.Image.VA || r.End < kend {
		t.Errorf("KASLR: module region %#x-%#x fallback %#x", r.Start, r.End, r.FallbackEnd)
	}
	k = boot(t, "qemu-virt", func(c *Config) { c.Kernel = "7.3" })
	if r := k.Exec.Ranges[ExecmemModuleText]; r.Start != kend-128<<20 || r.FallbackStart != kend-2<<30 {
		t.Errorf("nokaslr: module region %#x-%#x fallback %#x", r.Start, r.End, r.FallbackStart)
	}
}

// KASLR moves the linear map when the linear region exceeds the CPU's PA
// space by at least ARM64_MEMSTART_ALIGN (a 44-bit Cortex-A72 on 48-bit VA),
// not when it does not (48-bit PA on 48-bit VA).
func TestMemstartRandomised(t *testing.T) {
	a72 := boot(t, "qemu-virt", func(c *Config) { c.KASLRSeed = 7 })
	fixed := boot(t, "qemu-virt", nil)
	if a72.PhysOffset == fixed.PhysOffset {
		t.Errorf("A72 + KASLR: memstart_addr %#x not moved", a72.PhysOffset)
	}
	if (fixed.PhysOffset-a72.PhysOffset)%memstartAlign(a72.G) != 0 {
		t.Errorf("memstart moved by %#x, not a multiple of ARM64_MEMSTART_ALIGN", fixed.PhysOffset-a72.PhysOffset)
	}
	pa48 := boot(t, "qemu-virt", func(c *Config) { c.KASLRSeed = 7; c.PABits = 48 })
	if pa48.PhysOffset != fixed.PhysOffset {
		t.Errorf("48-bit PA: memstart_addr %#x moved", pa48.PhysOffset)
	}
	// memstart_addr is signed in the kernel and may go below 0: a pinned
	// value wraps like the kernel's arithmetic.
	ram := uint64(0x40000000)
	neg := ram - 1<<40
	pinned := boot(t, "qemu-virt", func(c *Config) { c.KASLRSeed = 7; c.MemstartAddr = Size(neg) })
	if pinned.PhysOffset != neg || pinned.Lin(ram) != pinned.Layout.PageOffset+1<<40 {
		t.Errorf("memstart_addr not pinned: %#x", pinned.PhysOffset)
	}
	// Every RAM page still maps one to one through the moved linear map.
	c := &PlainCPU{}
	for _, pa := range []uint64{0x40000000, 0x40000000 + 1<<30} {
		if got, _, ok := a72.PT.Translate(c, a72.Lin(pa)); !ok || got != pa {
			t.Errorf("linear %#x -> %#x %v", a72.Lin(pa), got, ok)
		}
	}
}

// 16K and 64K machines boot, and a PMD-sized huge vmalloc is one buddy
// block mapped by a PMD (MAX_PAGE_ORDER 11 and 13).
func TestBoot16Kand64K(t *testing.T) {
	for _, gr := range []struct {
		granule string
		order   int
	}{{"16K", 11}, {"64K", 13}} {
		k := boot(t, "bbml2-server", func(c *Config) { c.Granule = gr.granule; c.Kernel = "7.3" })
		if k.Mem.MaxOrder() != gr.order {
			t.Errorf("%s: MAX_PAGE_ORDER %d", gr.granule, k.Mem.MaxOrder())
		}
		c := &PlainCPU{}
		pmd := k.G.Size(2)
		a, err := k.VmallocHuge(c, pmd)
		if err != nil {
			t.Fatalf("%s: %v", gr.granule, err)
		}
		if a.PageOrder != gr.order {
			t.Errorf("%s: huge vmalloc of %#x backed by order %d, want %d", gr.granule, pmd, a.PageOrder, gr.order)
		}
		if _, e, ok := k.PT.Translate(c, a.Addr); !ok || e.Level != arm64.Level(2) {
			t.Errorf("%s: huge vmalloc not PMD mapped (level %d)", gr.granule, e.Level)
		}
		lin := linearLeaves(t, k)
		if lin["PTE"] != 0 && gr.granule == "64K" {
			// BBML2 + 7.3: the linear map keeps blocks.
			t.Logf("%s linear leaves %v", gr.granule, lin)
		}
	}
}
