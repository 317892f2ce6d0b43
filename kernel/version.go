package kernel

import (
	"fmt"
	"strings"

	"github.com/ptlab/ptlab/arm64"
)

// Version is one kernel release as the model needs it: every behaviour of
// the kernel-mapping code that changed between the releases ptlab models.
// The profiles are data (Versions); each field names the upstream commit or
// release that sets it. A machine configuration picks one with `kernel:`.
type Version struct {
	Name    string // as written in a configuration: "6.1", "6.12", "7.3", "linux-mm"
	Release string // what the profile was taken from

	// RodataNoAlias is the rodata= scheme of "arm64: refactor the
	// rodata=xxx" (Huang Shijie; in 6.18 and 7.x, not in 6.12: Debian's
	// 6.18.15 booted with rodata=on has a page-mapped linear map): "on" means
	// rodata_full, "noalias" the old "on", "full" is no longer parsed (the
	// generic parser rejects it and the default stays). Before it:
	// "full" = rodata_full, "on" = read-only kernel without the alias
	// protection, "off". Both default to rodata_full
	// (RODATA_FULL_DEFAULT_ENABLED, which Debian sets).
	RodataNoAlias bool
	// KFENCE: the build has CONFIG_KFENCE (Debian's 6.1 does not: booted
	// with kfence.sample_interval=100 it sets up no pool). Without it the
	// configuration's kfence is off whatever it says.
	KFENCE bool
	// LazySplit: a166563e7ec3 ("arm64: mm: support large block mapping when
	// rodata=full", v6.18): with BBML2_NOABORT the linear map keeps blocks
	// under rodata_full and leaves are split on demand
	// (split_kernel_leaf_mapping, linear_map_maybe_split_to_ptes). Before,
	// can_set_direct_map() alone made map_mem page-granular.
	LazySplit bool
	// AliasFromText: map_mem's NOMAP hole and the later kernel-alias
	// mapping start at _text (v6.12 maps [_text, __init_begin)); 6.1 used
	// [_stext, __init_begin), leaving [_text, _stext) in the plain linear
	// map (mmu.c map_mem at 004fc58f917c, ~v6.2).
	AliasFromText bool
	// AliasUnmapData: Ard Biesheuvel's "arm64: Unmap linear alias of kernel
	// data/bss" (v7.x): the alias [_text, __init_begin) takes map_mem's own
	// flags (page-granular when the rest is) and the alias of
	// [__init_end, __bss_stop) is made present-invalid.
	AliasUnmapData bool
	// AliasNoCont: the alias is mapped NO_CONT_MAPPINGS (every release up to
	// 6.18 and linux-mm before Ard's series; "Permit contiguous descriptors
	// to be manipulated" dropped it).
	AliasNoCont bool
	// HeaderMapped: map_kernel maps the image header [_text, _stext) as a
	// segment of its own, read-only and non-executable, with pages
	// (the early C map_kernel of "arm64: mm: Map the kernel in C", v6.9).
	// 6.1's map_kernel starts at _stext.
	HeaderMapped bool
	// LegacyLayout is the VA layout before the vmemmap/PCI/fixmap regions
	// moved to the top of the address space and MODULES_VSIZE grew to 2 GiB
	// (3e35d303ab7d "arm64: module: rework module VA range selection" and
	// the "arm64: mm: ... vmemmap" series, v6.5): 128 MiB of modules below
	// the image, VMEMMAP_START = -(1 << (VA_BITS - VMEMMAP_SHIFT)).
	LegacyLayout bool
	// Execmem: mm/execmem.c exists (12af2b83d0b1 "mm: introduce
	// execmem_alloc() and execmem_free()", v6.10); before it module_alloc.
	Execmem bool
	// BPFProgPack: the arm64 BPF JIT packs programs into 2 MiB ROX packs
	// (1dad391daef1 "bpf, arm64: use bpf_prog_pack for memory management",
	// v6.10).
	BPFProgPack bool
	// KprobeROX: arm64's alloc_insn_page (arch/arm64/kernel/probes/kprobes.c)
	// follows execmem_alloc(EXECMEM_KPROBES) with set_memory_rox(addr, 1), so
	// the slot page's linear alias is read-only too ("arm64: kprobes: call
	// set_memory_rox() for kprobe page", Yang Shi, merged after v6.12 and
	// before v6.18). Before, the page was ROX through vmalloc only and its
	// alias stayed writable.
	KprobeROX bool
	// PresentInvalid: set_memory_valid(false) leaves kernel entries
	// present-invalid (bit 11, PTE_PRESENT_INVALID) and valid ones carry
	// PTE_PRESENT_VALID_KERNEL (in the 6.18.24 stable update and 7.x).
	// Before, it cleared PTE_VALID alone, and __change_memory_common always
	// flushed.
	PresentInvalid bool
	// ModuleRegionFull is CONFIG_RANDOMIZE_MODULE_REGION_FULL, which Debian
	// sets: under KASLR modules get a random 2 GiB region reached through
	// PLTs, never the 128 MiB direct-branch window (module_init_limits).
	ModuleRegionFull bool
	// Fixmap is the release's enum fixed_addresses as Debian builds it
	// (fixmap.go): its size places FIXADDR_TOT_START.
	Fixmap Fixmap
	// Image is the kernel image of Debian's build of the release (kallsyms
	// of the booted kernel).
	Image Image
	// Boot is what the release itself vmallocs during boot (bootvm.go), from
	// /proc/vmallocinfo of Debian's build booted under QEMU virt.
	Boot BootVmalloc
}

// Versions are the modelled releases, oldest first. The last is the default.
var Versions = []Version{
	{
		Name: "6.1", Release: "v6.1 (Debian 6.1.0, bookworm)",
		LegacyLayout: true, AliasNoCont: true,
		ModuleRegionFull: true,
		Fixmap:           Fixmap{NRCPUs: 256},
		Image:            imageDebian61,
		Boot:             bootDebian61,
	},
	{
		Name: "6.6", Release: "v6.6 (longterm; reasoned from the commits above, not booted)",
		KFENCE:        true,
		AliasFromText: true, AliasNoCont: true,
		ModuleRegionFull: true,
		Fixmap:           Fixmap{NRCPUs: 512},
		Image:            imageDebian612,
		Boot:             bootDebian612,
	},
	{
		Name: "6.12", Release: "v6.12 (Debian 6.12.117+deb12)",
		KFENCE:        true,
		AliasFromText: true, AliasNoCont: true, HeaderMapped: true,
		Execmem: true, BPFProgPack: true,
		ModuleRegionFull: true,
		Fixmap:           Fixmap{NRCPUs: 512, P4D: true},
		Image:            imageDebian612,
		Boot:             bootDebian612,
	},
	{
		Name: "6.18", Release: "v6.18 (Debian 6.18.15+deb13, trixie-backports)",
		KFENCE:        true,
		RodataNoAlias: true, AliasFromText: true, AliasNoCont: true, HeaderMapped: true, LazySplit: true,
		Execmem: true, BPFProgPack: true, PresentInvalid: true, KprobeROX: true,
		ModuleRegionFull: true,
		Fixmap:           Fixmap{NRCPUs: 512, P4D: true, VNCR: true},
		Image:            imageDebian618,
		Boot:             bootDebian618,
	},
	{
		Name: "linux-mm", Release: "linux-mm mm-new, May 2026 (part of Ard Biesheuvel's alias series)",
		KFENCE:        true,
		RodataNoAlias: true, AliasFromText: true, HeaderMapped: true, LazySplit: true,
		Execmem: true, BPFProgPack: true, PresentInvalid: true, KprobeROX: true,
		ModuleRegionFull: true,
		Fixmap:           Fixmap{NRCPUs: 512, P4D: true, VNCR: true},
		Image:            imageDebian73,
		Boot:             bootDebian612,
	},
	{
		Name: "7.3", Release: "v7.3 (Debian 7.3.4, trixie-backports)",
		KFENCE:        true,
		RodataNoAlias: true, AliasFromText: true, AliasUnmapData: true, HeaderMapped: true, LazySplit: true,
		Execmem: true, BPFProgPack: true, PresentInvalid: true, KprobeROX: true,
		ModuleRegionFull: true,
		Fixmap:           Fixmap{NRCPUs: 512, P4D: true, VNCR: true},
		Image:            imageDebian73,
		Boot:             bootDebian73,
	},
}

// DefaultVersion is the newest modelled release.
const DefaultVersion = "7.3"

// VersionNames lists the releases in order, oldest first.
func VersionNames() []string {
	n := make([]string, len(Versions))
	for i, v := range Versions {
		n[i] = v.Name
	}
	return n
}

// LookupVersion returns the profile of a release: a profile name ("6.12"),
// or a kernel release string as uname -r or VMCOREINFO's OSRELEASE print it
// ("6.12.117+deb12-arm64"), matched to the profile of the same major.minor
// or else the nearest older one. "" is DefaultVersion.
func LookupVersion(name string) (*Version, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		name = DefaultVersion
	}
	for i := range Versions {
		if Versions[i].Name == name {
			return &Versions[i], nil
		}
	}
	maj, min, ok := parseRelease(name)
	if !ok {
		return nil, fmt.Errorf("%w: kernel %q (%s, or a release such as 6.12.117)", ErrConfig, name, strings.Join(VersionNames(), ", "))
	}
	var best *Version
	bestKey := -1
	for i := range Versions {
		vmaj, vmin, ok := parseRelease(Versions[i].Name)
		if !ok {
			continue
		}
		key := vmaj*1000 + vmin
		if key <= maj*1000+min && key > bestKey {
			best, bestKey = &Versions[i], key
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%w: kernel %q is older than every modelled release (%s)", ErrConfig, name, strings.Join(VersionNames(), ", "))
	}
	return best, nil
}

// parseRelease reads "MAJOR.MINOR" from the front of a release string.
func parseRelease(s string) (maj, min int, ok bool) {
	var n [2]int
	i := 0
	for f := 0; f < 2; f++ {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			n[f] = n[f]*10 + int(s[i]-'0')
			if n[f] > 1000 {
				return 0, 0, false
			}
			i++
		}
		if i == start {
			return 0, 0, false
		}
		if f == 0 {
			if i >= len(s) || s[i] != '.' {
				return 0, 0, false
			}
			i++
		}
	}
	return n[0], n[1], true
}

// RodataFull is how this release's arch_parse_debug_rodata (and the generic
// set_debug_rodata) read rodata=: whether rodata_full ends up set, and
// whether the value was accepted ("" is the built-in default). A value the
// release does not parse leaves the default, rodata_full, as the kernel
// does after printing "Invalid option string for rodata".
func (v *Version) RodataFull(r Rodata) (full, off, accepted bool) {
	switch r {
	case "":
		return true, false, true
	case RodataOff:
		return false, true, true
	}
	if v.RodataNoAlias {
		switch r {
		case RodataOn:
			return true, false, true
		case RodataNoAlias:
			return false, false, true
		}
		return true, false, false
	}
	switch r {
	case RodataFull:
		return true, false, true
	case RodataOn:
		return false, false, true
	}
	return true, false, false
}

// Kernel image segment sizes of Debian's arm64 builds, from the booted
// kernels' /proc/kallsyms (_text, _stext, _etext, __start_rodata,
// __init_begin, __init_end, _end), rounded up to SEGMENT_ALIGN (64K).
var (
	imageDebian61 = Image{Header: 64 << 10, Text: 20 << 20, Rodata: 8 << 20, Init: 2 << 20, InitText: 0xe0000, Data: 3 << 20}
	// 6.12.117+deb12-arm64: _stext +0x10000, _etext = __start_rodata
	// +0xf50000, __init_begin +0x1d00000, __init_end +0x2670000, _end +0x2b30000.
	imageDebian612 = Image{Header: 0x10000, Text: 0xf50000, Rodata: 0xdb0000, Init: 0x970000, InitText: 0x100000, Data: 0x4c0000}
	// 6.18.15+deb13-arm64: _etext +0x1170000, __init_begin +0x2190000,
	// __init_end +0x2520000, __bss_stop +0x2a9a730, _end +0x2ab0000.
	imageDebian618 = Image{Header: 0x10000, Text: 0x1170000, Rodata: 0x1020000, Init: 0x390000, InitText: 0xf0000, Data: 0x590000, Tail: 0x15000}
	// 7.3.4+deb13-arm64: _etext +0x12e0000, __init_begin +0x2700000,
	// __init_end +0x2b00000, __bss_stop +0x321e000, _end +0x3240000.
	imageDebian73 = Image{Header: 0x10000, Text: 0x12e0000, Rodata: 0x1420000, Init: 0x400000, InitText: 0x120000, Data: 0x740000, Tail: 0x22000}
)

// Layout is the kernel VA layout of this release for a geometry.
func (v *Version) Layout(g arm64.Geometry, configVABits int) arm64.Layout {
	var l arm64.Layout
	if v.LegacyLayout {
		l = arm64.LegacyKernelLayout(g, configVABits)
	} else {
		l = arm64.KernelLayout(g, configVABits)
	}
	l.FixaddrStart = l.FixaddrTop - v.fixmapStartOffset(g.PageSize())
	return l
}
