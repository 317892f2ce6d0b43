package kernel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/physmem"
	"gopkg.in/yaml.v3"
)

// ErrConfig reports a machine or boot configuration the model cannot boot.
var ErrConfig = errors.New("kernel: bad configuration")

// Rodata is the rodata= boot option (arch_parse_debug_rodata), read the way
// the configured kernel release reads it (Version.RodataFull): 7.x accepts
// "on" (the default: read-only kernel memory and read-only linear aliases,
// i.e. rodata_full), "noalias" (no alias protection, more block mappings) and
// "off"; 6.x accepts "full" (rodata_full), "on" (no alias protection) and
// "off". A value the release does not parse leaves the default, rodata_full.
type Rodata string

const (
	RodataOn      Rodata = "on"
	RodataNoAlias Rodata = "noalias"
	RodataOff     Rodata = "off"
	RodataFull    Rodata = "full" // 6.x: rodata_full; 7.x does not parse it
)

// KFENCE is how the KFENCE pool is set up: off (CONFIG_KFENCE=n), early
// (kfence.sample_interval non-zero at boot: the pool is taken from memblock
// and mapped page-granular from the start), idle (built in with
// kfence.sample_interval=0, Debian's default: no pool at boot, but it may be
// enabled later, so the linear map must stay changeable) or late (idle, and
// then enabled: the pool is allocated once the system is up).
type KFENCE string

const (
	KFENCEOff   KFENCE = "off"
	KFENCEEarly KFENCE = "early"
	KFENCEIdle  KFENCE = "idle"
	KFENCELate  KFENCE = "late"
)

// Size is a byte count or address written as a number, "0x..." or with a
// K/M/G/T suffix ("2G", "512M").
type Size uint64

func parseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	mult := uint64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K', 'k':
			mult = 1 << 10
		case 'M', 'm':
			mult = 1 << 20
		case 'G', 'g':
			mult = 1 << 30
		case 'T', 't':
			mult = 1 << 40
		}
		if mult != 1 {
			s = s[:n-1]
		}
	}
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: size %q", ErrConfig, s)
	}
	if v > ^uint64(0)/mult {
		return 0, fmt.Errorf("%w: size %q overflows", ErrConfig, s)
	}
	return Size(v * mult), nil
}

func (s *Size) UnmarshalText(b []byte) error {
	v, err := parseSize(string(b))
	*s = v
	return err
}

func (s *Size) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		return s.UnmarshalText([]byte(str))
	}
	return s.UnmarshalText(b)
}

func (s Size) MarshalText() ([]byte, error) { return []byte(fmt.Sprintf("%#x", uint64(s))), nil }

// RAMRegion is one memblock memory range.
type RAMRegion struct {
	Base Size `json:"base" yaml:"base"`
	Size Size `json:"size" yaml:"size"`
}

// CPUGroup is Count CPUs of one model: a name (see CPUModels) or a MIDR value.
type CPUGroup struct {
	Model string `json:"model" yaml:"model"`
	Count int    `json:"count" yaml:"count"`
}

// CPUModels are the CPU names a configuration may use.
var CPUModels = map[string]arm64.MIDR{
	"cortex-a72":  arm64.MIDRCortexA72,
	"neoverse-n1": arm64.MIDRNeoverseN1,
	"neoverse-v3": arm64.MIDRNeoverseV3, // r0p2: on the BBML2_NOABORT list
	"cortex-x4":   arm64.MIDRCortexX4,   // r0p3: on the list
	// Revisions the allow-list rejects (MIDR_REV_RANGE starts above them).
	"neoverse-v3-r0p1": arm64.MIDRNeoverseV3Early,
	"cortex-x4-r0p2":   arm64.MIDRCortexX4Early,
	"ampere1":          arm64.MIDRAmpere1,
	"ampere1a":         arm64.MIDRAmpere1A,
	"olympus":          arm64.MIDROlympus,
}

// CPUPABits is the physical address size of each named CPU model
// (PARange of its technical reference manual; QEMU's cortex-a72 has 44 bits).
// Models not listed have 48.
var CPUPABits = map[string]int{"cortex-a72": 44, "cortex-x4": 40}

// Image is the kernel image: where it sits in physical memory and in the
// kernel VA space, and the sizes of its segments (_text.._etext,
// __start_rodata..__init_begin, __init_begin..__init_end, _data.._end).
type Image struct {
	PhysBase Size `json:"phys_base" yaml:"phys_base"` // PA of _text; 0: 2 MiB into the first RAM region
	KASLR    Size `json:"kaslr_offset" yaml:"kaslr_offset"`
	Header   Size `json:"header" yaml:"header"` // _text.._stext, the image header (part of Text)
	Text     Size `json:"text" yaml:"text"`
	Rodata   Size `json:"rodata" yaml:"rodata"`
	Init     Size `json:"init" yaml:"init"`
	// InitText is __init_begin..__initdata_begin: the init text map_kernel
	// maps executable; the rest of Init is init data, mapped PAGE_KERNEL.
	// 0 takes the release's; equal to Init, init is one text segment.
	InitText Size `json:"init_text" yaml:"init_text"`
	Data     Size `json:"data" yaml:"data"`
	// Tail is _end - __bss_stop: what follows the bss (the early fixmap
	// tables bm_pud/bm_pmd/bm_pte, init_pg_dir); part of Data.
	Tail Size `json:"tail" yaml:"tail"`
}

// Config is one simulated machine and its boot options.
type Config struct {
	Name string `json:"name" yaml:"name"`
	// Kernel is the modelled release (Versions): "6.1", "6.6", "6.12",
	// "6.18", "linux-mm", "7.3", or a release string such as
	// "6.12.117+deb12-arm64"; "" is DefaultVersion.
	Kernel         string      `json:"kernel" yaml:"kernel"`
	Granule        string      `json:"granule" yaml:"granule"` // "4K", "16K", "64K"
	VABits         int         `json:"va_bits" yaml:"va_bits"`
	ConfigVABits   int         `json:"config_va_bits" yaml:"config_va_bits"` // CONFIG_ARM64_VA_BITS; 0 = va_bits
	LPA2           bool        `json:"lpa2" yaml:"lpa2"`
	RAM            []RAMRegion `json:"ram" yaml:"ram"`
	CPUs           []CPUGroup  `json:"cpus" yaml:"cpus"`
	Rodata         Rodata      `json:"rodata" yaml:"rodata"`
	DebugPagealloc bool        `json:"debug_pagealloc" yaml:"debug_pagealloc"`
	KFENCE         KFENCE      `json:"kfence" yaml:"kfence"`
	KPTI           bool        `json:"kpti" yaml:"kpti"`             // arm64_use_ng_mappings: nG on kernel mappings
	BTI            bool        `json:"bti" yaml:"bti"`               // kernel BTI: PTE_GP on kernel text
	TLBIRange      bool        `json:"tlbi_range" yaml:"tlbi_range"` // FEAT_TLBIRANGE
	Image          Image       `json:"image" yaml:"image"`
	// KASLRSeed randomises the module region as module_init_limits does
	// with KASLR (random_bounding_box); 0 means no KASLR.
	KASLRSeed uint64 `json:"kaslr_seed" yaml:"kaslr_seed"`
	// MemstartAddr pins memstart_addr (PHYS_OFFSET, the PA the linear map
	// starts at), as a capture shows it; 0 computes it as
	// arm64_memblock_init does, randomised under KASLR (KASLRSeed).
	MemstartAddr Size `json:"memstart_addr" yaml:"memstart_addr"`
	// StructPageSize is sizeof(struct page) (VMCOREINFO SIZE(page)); 0 is 64.
	StructPageSize Size `json:"struct_page_size" yaml:"struct_page_size"`
	// Devices are MMIO ranges the boot maps (the PCI I/O window).
	Devices []Device `json:"devices" yaml:"devices"`
	// BootThreads is how many kernel stacks (VMAP_STACK, from vmalloc) the
	// boot has allocated by the time the machine is measured: kernel
	// threads, init and its children, and threads that exited since (their
	// stacks' table pages stay).
	BootThreads int `json:"boot_threads" yaml:"boot_threads"`
	// PABits is the CPU's physical address size (ID_AA64MMFR0_EL1.PARange);
	// 0 takes the boot CPU model's (CPUPABits). It decides whether KASLR
	// can move the linear map.
	PABits int    `json:"pa_bits" yaml:"pa_bits"`
	Policy Policy `json:"policy" yaml:"policy"`

	imported *Imported // the linear map comes from a dump (BootImported)
}

// Machines are named machine presets.
var Machines = map[string]Config{
	// QEMU virt with -cpu cortex-a72: 2 GiB at 0x40000000, no BBML2.
	"qemu-virt": {Name: "qemu-virt", Granule: "4K", VABits: 48, RAM: []RAMRegion{{0x40000000, 2 << 30}},
		CPUs: []CPUGroup{{"cortex-a72", 2}}, Rodata: RodataOn, KFENCE: KFENCEOff, Devices: QEMUVirtDevices, BootThreads: 84},
	// A 16 GiB AmpereOne server: every CPU has BBML2_NOABORT.
	"bbml2-server": {Name: "bbml2-server", Granule: "4K", VABits: 48, RAM: []RAMRegion{{0x80000000, 16 << 30}},
		CPUs: []CPUGroup{{"ampere1", 16}}, Rodata: RodataOn, KFENCE: KFENCEOff, TLBIRange: true},
	// A 16 GiB Neoverse-N1 server: no BBML2, so rodata=on maps the linear map with PTEs.
	"n1-server": {Name: "n1-server", Granule: "4K", VABits: 48, RAM: []RAMRegion{{0x80000000, 16 << 30}},
		CPUs: []CPUGroup{{"neoverse-n1", 16}}, Rodata: RodataOn, KFENCE: KFENCEOff},
	// Boot CPU with BBML2, one secondary without ("mode 3": block-mapped, then repainted).
	"mixed-server": {Name: "mixed-server", Granule: "4K", VABits: 48, RAM: []RAMRegion{{0x80000000, 16 << 30}},
		CPUs: []CPUGroup{{"ampere1", 15}, {"neoverse-n1", 1}}, Rodata: RodataOn, KFENCE: KFENCEOff},
}

// Machine returns a copy of a named preset.
func Machine(name string) (Config, error) {
	c, ok := Machines[name]
	if !ok {
		return Config{}, fmt.Errorf("%w: no machine %q", ErrConfig, name)
	}
	c.RAM = append([]RAMRegion(nil), c.RAM...)
	c.CPUs = append([]CPUGroup(nil), c.CPUs...)
	c.Devices = append([]Device(nil), c.Devices...)
	return c, nil
}

// LoadConfig reads a machine configuration from a YAML or JSON file (by
// extension; unknown fields are errors) and decodes it over base.
func LoadConfig(path string, base Config) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	return DecodeConfig(b, path, base)
}

// DecodeConfig decodes a YAML or JSON machine configuration (JSON when name
// ends in .json) over base: fields the text sets replace base's, the rest
// keep base's values. Unknown fields are errors. This is the one way a
// configuration is overridden (sim --config, a scenario's config:).
func DecodeConfig(b []byte, name string, base Config) (Config, error) {
	c := base
	c.RAM = append([]RAMRegion(nil), base.RAM...)
	c.CPUs = append([]CPUGroup(nil), base.CPUs...)
	switch strings.ToLower(filepath.Ext(name)) {
	case ".json":
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return Config{}, fmt.Errorf("%s: %w: %v", name, ErrConfig, err)
		}
	default:
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return Config{}, fmt.Errorf("%s: %w: %v", name, ErrConfig, err)
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// Geometry returns the translation geometry the configuration asks for.
func (c *Config) Geometry() (arm64.Geometry, error) {
	var shift uint
	switch strings.ToUpper(c.Granule) {
	case "4K", "":
		shift = arm64.PageShift4K
	case "16K":
		shift = arm64.PageShift16K
	case "64K":
		shift = arm64.PageShift64K
	default:
		return arm64.Geometry{}, fmt.Errorf("%w: granule %q", ErrConfig, c.Granule)
	}
	va := c.VABits
	if va == 0 {
		va = 48
	}
	g, err := arm64.NewGeometry(shift, va, c.LPA2)
	if err != nil {
		return g, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return g, nil
}

// MIDRs lists every CPU's MIDR, boot CPU first.
func (c *Config) MIDRs() ([]arm64.MIDR, error) {
	var out []arm64.MIDR
	for _, grp := range c.CPUs {
		m, ok := CPUModels[strings.ToLower(grp.Model)]
		if !ok {
			v, err := strconv.ParseUint(grp.Model, 0, 32)
			if err != nil {
				return nil, fmt.Errorf("%w: CPU model %q (known: cortex-a72, neoverse-n1, neoverse-v3, neoverse-v3-r0p1, cortex-x4, cortex-x4-r0p2, ampere1, ampere1a, olympus, or a MIDR value)", ErrConfig, grp.Model)
			}
			m = arm64.MIDR(v)
		}
		if grp.Count <= 0 {
			return nil, fmt.Errorf("%w: CPU group %q has count %d", ErrConfig, grp.Model, grp.Count)
		}
		if grp.Count > NRCPUsMax-len(out) {
			return nil, fmt.Errorf("%w: cpus: more than NR_CPUS allows (%d)", ErrConfig, NRCPUsMax)
		}
		for i := 0; i < grp.Count; i++ {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no CPUs", ErrConfig)
	}
	return out, nil
}

// Version is the kernel release profile the configuration names.
func (c *Config) Version() (*Version, error) { return LookupVersion(c.Kernel) }

// RodataFull reports rodata_full as the configured release parses rodata=.
// Values no release knows are configuration errors; a value only another
// release knows ("full" on 7.x, "noalias" on 6.x) is what the kernel would
// see: rejected, default kept.
func (c *Config) RodataFull() (bool, error) {
	switch c.Rodata {
	case RodataOn, RodataFull, RodataNoAlias, RodataOff, "":
	default:
		return false, fmt.Errorf("%w: rodata=%q (on, noalias, off; full on 6.x)", ErrConfig, c.Rodata)
	}
	v, err := c.Version()
	if err != nil {
		return false, err
	}
	full, _, _ := v.RodataFull(c.Rodata)
	return full, nil
}

// Validate checks the configuration without booting it.
func (c *Config) Validate() error {
	g, err := c.Geometry()
	if err != nil {
		return err
	}
	if _, err := c.Version(); err != nil {
		return err
	}
	midrs, err := c.MIDRs()
	if err != nil {
		return err
	}
	if _, err := c.RodataFull(); err != nil {
		return err
	}
	if err := c.checkLimits(g, midrs); err != nil {
		return err
	}
	switch c.KFENCE {
	case KFENCEOff, KFENCEEarly, KFENCEIdle, KFENCELate, "":
	default:
		return fmt.Errorf("%w: kfence=%q (off, early, idle, late)", ErrConfig, c.KFENCE)
	}
	if err := c.Policy.validate(); err != nil {
		return err
	}
	if len(c.RAM) == 0 {
		return fmt.Errorf("%w: no RAM", ErrConfig)
	}
	regs := make([]physmem.Region, len(c.RAM))
	for i, r := range c.RAM {
		regs[i] = physmem.Region{Base: uint64(r.Base), Size: uint64(r.Size)}
	}
	if _, err := physmem.New(g.PageShift, regs); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}
