// Package modscan reads the kernel module sets of real arm64 kernels: it
// lays out .ko files (plain or xz/zstd/gzip) as the kernel's loader does
// (region sizes per mod_mem_type, PLTs, alignment), scans directories and
// Debian .deb packages into a dataset with dependencies, computes the order
// modprobe loads them in, and embeds Debian's arm64 6.12 dataset and a real
// server's module list. The workload package loads these sets into the
// model.
package modscan

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ptlab/ptlab/kernel"
)

// Sentinel errors. Every error of this package wraps one of them, so callers
// can tell a file that is not a module from one the kernel would refuse.
var (
	// ErrNotModule: the file is not an arm64 ELF relocatable object.
	ErrNotModule = errors.New("not an arm64 kernel module")
	// ErrMalformed: the file claims to be a module but its structure is
	// broken (out-of-range indexes, truncated tables, sizes that overflow).
	ErrMalformed = errors.New("malformed module")
	// ErrRejected: a well-formed module that the kernel's loader would refuse
	// (W+X section, missing .plt, no symbol table, ...).
	ErrRejected = errors.New("module rejected by the loader")
	// ErrArchive: a .deb, ar or tar container that cannot be read.
	ErrArchive = errors.New("bad archive")
	// ErrDuplicateModule: two files of one scan give the same module name.
	ErrDuplicateModule = errors.New("duplicate module name")
	// ErrUnknownModule: a name that is not in the dataset.
	ErrUnknownModule = errors.New("unknown module")
	// ErrDataset: a dataset file that cannot be decoded.
	ErrDataset = errors.New("bad module dataset")
)

// ModMemType is the kernel's enum mod_mem_type (kernel.ModMemType): the
// dataset's region sizes are indexed in the loader's order.
type ModMemType = kernel.ModMemType

// The module memory types, numbered as the kernel numbers them.
const (
	ModText        = kernel.ModText
	ModData        = kernel.ModData
	ModRodata      = kernel.ModRodata
	ModROAfterInit = kernel.ModROAfterInit
	ModInitText    = kernel.ModInitText
	ModInitData    = kernel.ModInitData
	ModInitRodata  = kernel.ModInitRodata
	NumModMemTypes = kernel.NumModMemTypes
)

// ModinfoEntry is one tag=value string of a module's .modinfo section.
type ModinfoEntry struct {
	Key, Value string
}

// Modinfo is the parsed .modinfo section, in file order; tags may repeat
// (alias, softdep, import_ns, ...).
type Modinfo []ModinfoEntry

// ParseModinfo splits a .modinfo section the way the kernel walks it
// (module_next_tag_pair / get_next_modinfo in kernel/module/main.c): strings
// separated by runs of NUL bytes, each "tag=value". Strings without '=' can
// never match a tag lookup, so they are dropped. An unterminated last string
// is kept (bounded by the section). It never fails: the kernel accepts any
// byte sequence here.
func ParseModinfo(b []byte) Modinfo {
	var out Modinfo
	for len(b) > 0 {
		end := bytes.IndexByte(b, 0)
		s := b
		if end >= 0 {
			s, b = b[:end], b[end+1:]
		} else {
			b = nil
		}
		if len(s) == 0 {
			continue
		}
		eq := bytes.IndexByte(s, '=')
		if eq < 0 {
			continue
		}
		out = append(out, ModinfoEntry{Key: string(s[:eq]), Value: string(s[eq+1:])})
	}
	return out
}

// Get is get_modinfo: the value of the first entry with this tag.
func (m Modinfo) Get(key string) (string, bool) {
	for _, e := range m {
		if e.Key == key {
			return e.Value, true
		}
	}
	return "", false
}

// All is for_each_modinfo_entry: the values of every entry with this tag.
func (m Modinfo) All(key string) []string {
	var out []string
	for _, e := range m {
		if e.Key == key {
			out = append(out, e.Value)
		}
	}
	return out
}

// Depends is the depends= tag modpost writes: the modules whose exported
// symbols this one uses, in file order, without repeats.
func (m Modinfo) Depends() []string {
	var out []string
	for _, v := range m.All("depends") {
		for _, d := range strings.Split(v, ",") {
			d = strings.TrimSpace(d)
			if d != "" && !contains(out, d) {
				out = append(out, d)
			}
		}
	}
	return out
}

// ServiceAliases are the alias= values without ':' (those that are not
// device match patterns), without repeats, in file order.
func (m Modinfo) ServiceAliases() []string {
	var out []string
	for _, a := range m.All("alias") {
		if a != "" && !strings.Contains(a, ":") && !contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// Softdeps parses the softdep= tags ("pre: a b post: c", the syntax of
// modprobe.d's softdep command, which kmod reads from .modinfo): modules to
// load before and after this one.
func (m Modinfo) Softdeps() (pre, post []string) {
	for _, v := range m.All("softdep") {
		var cur *[]string
		for _, tok := range strings.Fields(v) {
			switch tok {
			case "pre:":
				cur = &pre
			case "post:":
				cur = &post
			default:
				if cur != nil && !contains(*cur, tok) {
					*cur = append(*cur, tok)
				}
			}
		}
	}
	return pre, post
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// LayoutConfig holds the kernel build and run-time facts the module layout
// depends on. The defaults are those of Debian's arm64 6.12 kernel.
type LayoutConfig struct {
	// PageSize is PAGE_SIZE; module_memory_alloc rounds each region up to it.
	PageSize uint64 `json:"page_size"`
	// Kallsyms (CONFIG_KALLSYMS) makes layout_symtab append the symbol
	// tables to MOD_INIT_DATA and the kept core symbols to MOD_DATA.
	Kallsyms bool `json:"kallsyms"`
	// KallsymsAll (CONFIG_KALLSYMS_ALL) keeps data symbols in the core
	// symbol table too, not only text symbols.
	KallsymsAll bool `json:"kallsyms_all"`
	// ModuleUnload (CONFIG_MODULE_UNLOAD) keeps .exit* sections in core
	// memory; without it they are laid out with the init sections.
	ModuleUnload bool `json:"module_unload"`
	// StrictModuleRWX (CONFIG_STRICT_MODULE_RWX) makes the loader refuse
	// sections that are both writable and executable.
	StrictModuleRWX bool `json:"strict_module_rwx"`
	// Livepatch (CONFIG_LIVEPATCH) allows livepatch modules, which keep
	// every symbol in the core symbol table.
	Livepatch bool `json:"livepatch"`
	// RandomizeBase (CONFIG_RANDOMIZE_BASE): kernels before 6.5 only reserve
	// PLT entries for branches when KASLR is built in.
	RandomizeBase bool `json:"randomize_base"`
	// FtracePLTs is NR_FTRACE_PLTS (arch/arm64/include/asm/ftrace.h), the
	// entries module_frob_arch_sections reserves in .text.ftrace_trampoline:
	// 1 since the arm64 ftrace rework (6.x), 2 before.
	FtracePLTs int `json:"ftrace_plts"`
	// Erratum843419 says ARM64_WORKAROUND_843419 is active at run time
	// (Cortex-A53 only): ADRP veneers and PLT slack, and raised alignment
	// of sections holding ADRPs at risky offsets.
	Erratum843419 bool `json:"erratum_843419"`
}

// DefaultLayoutConfig is Debian's arm64 6.12 kernel (4K pages, KALLSYMS_ALL,
// MODULE_UNLOAD, STRICT_MODULE_RWX, KASLR) on a CPU without erratum 843419.
func DefaultLayoutConfig() LayoutConfig {
	return LayoutConfig{
		PageSize:        4096,
		Kallsyms:        true,
		KallsymsAll:     true,
		ModuleUnload:    true,
		StrictModuleRWX: true,
		RandomizeBase:   true,
		FtracePLTs:      1,
	}
}

// ApplyKconfig sets the fields that follow from a kernel .config (the
// /boot/config-VERSION file of a kernel package): page size, KALLSYMS,
// KALLSYMS_ALL, MODULE_UNLOAD, STRICT_MODULE_RWX, LIVEPATCH, RANDOMIZE_BASE.
// Options the file does not mention are taken as unset, as Kconfig does.
func (c *LayoutConfig) ApplyKconfig(r io.Reader) error {
	set := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok || !strings.HasPrefix(k, "CONFIG_") {
			return fmt.Errorf("%w: kconfig line %d: %q is not CONFIG_X=value", ErrDataset, line, s)
		}
		set[k] = v == "y"
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%w: kconfig: %v", ErrDataset, err)
	}
	switch {
	case set["CONFIG_ARM64_64K_PAGES"]:
		c.PageSize = 65536
	case set["CONFIG_ARM64_16K_PAGES"]:
		c.PageSize = 16384
	case set["CONFIG_ARM64_4K_PAGES"]:
		c.PageSize = 4096
	}
	c.Kallsyms = set["CONFIG_KALLSYMS"]
	c.KallsymsAll = set["CONFIG_KALLSYMS_ALL"]
	c.ModuleUnload = set["CONFIG_MODULE_UNLOAD"]
	c.StrictModuleRWX = set["CONFIG_STRICT_MODULE_RWX"]
	c.Livepatch = set["CONFIG_LIVEPATCH"]
	c.RandomizeBase = set["CONFIG_RANDOMIZE_BASE"]
	return nil
}

func (c LayoutConfig) validate() error {
	if c.PageSize == 0 || c.PageSize&(c.PageSize-1) != 0 {
		return fmt.Errorf("%w: page size %d is not a power of two", ErrDataset, c.PageSize)
	}
	if c.FtracePLTs < 0 || c.FtracePLTs > 16 {
		return fmt.Errorf("%w: ftrace PLT count %d out of range", ErrDataset, c.FtracePLTs)
	}
	return nil
}

// Module is one kernel module of a dataset: what the loader needs to replay
// loading it.
type Module struct {
	// Name is the module name (.modinfo name=, else the file name with '-'
	// turned into '_', as KBUILD_MODNAME is).
	Name string `json:"name"`
	// Path is the file, relative to /lib/modules/VERSION when it lives there.
	Path string `json:"path"`
	// Size is mod->mem[type].size after layout_sections and layout_symtab:
	// the bytes each region holds, before module_memory_alloc rounds it up
	// to whole pages (see AllocSize).
	Size [NumModMemTypes]uint64 `json:"size"`
	// Percpu is the .data..percpu size, which the loader takes from the
	// per-CPU allocator instead of module memory.
	Percpu uint64 `json:"percpu,omitempty"`
	// PLTs and InitPLTs are the PLT entries module_frob_arch_sections
	// reserved in .plt and .init.plt (one more slot each is always added).
	PLTs     int `json:"plts,omitempty"`
	InitPLTs int `json:"init_plts,omitempty"`
	// Depends is .modinfo depends=: modules that must be loaded first.
	Depends []string `json:"depends,omitempty"`
	// SoftdepPre and SoftdepPost are .modinfo softdep= (modprobe loads the
	// pre: ones before and the post: ones after this module).
	SoftdepPre  []string `json:"softdep_pre,omitempty"`
	SoftdepPost []string `json:"softdep_post,omitempty"`
	// Aliases are the module's .modinfo aliases that name a service rather
	// than a device (no ':' in them: "crypto-crc32c", "fs-xfs",
	// "net-pf-10"), which softdeps and request_module may use.
	Aliases []string `json:"aliases,omitempty"`
	// Vermagic is set only when it differs from the dataset's.
	Vermagic string `json:"vermagic,omitempty"`
}

// AllocSize is the size module_memory_alloc asks execmem for: the region's
// size rounded up to whole pages (PAGE_ALIGN); 0 for an empty region.
func (m *Module) AllocSize(t ModMemType, pageSize uint64) uint64 {
	return alignUp(m.Size[t], pageSize)
}

// AllocSizes is AllocSize for every region.
func (m *Module) AllocSizes(pageSize uint64) [NumModMemTypes]uint64 {
	var out [NumModMemTypes]uint64
	for t := ModMemType(0); t < NumModMemTypes; t++ {
		out[t] = m.AllocSize(t, pageSize)
	}
	return out
}

// CoreSize is what /sys/module/NAME/coresize shows on arm64 (no
// CONFIG_ARCH_WANTS_MODULES_DATA_IN_VMALLOC): the page-aligned text plus the
// page-aligned core data regions (show_coresize in kernel/module/main.c).
func (m *Module) CoreSize(pageSize uint64) uint64 {
	var s uint64
	for t := ModMemType(0); t < NumModMemTypes; t++ {
		if !t.IsInit() {
			s += m.AllocSize(t, pageSize)
		}
	}
	return s
}

// InitSize is the page-aligned sum of the init regions (show_initsize,
// while the module is still initialising).
func (m *Module) InitSize(pageSize uint64) uint64 {
	var s uint64
	for t := ModMemType(0); t < NumModMemTypes; t++ {
		if t.IsInit() {
			s += m.AllocSize(t, pageSize)
		}
	}
	return s
}

// alignUp is the kernel's ALIGN(x, a) = (x + a - 1) & ~(a - 1), including
// its behaviour for an alignment that is not a power of two.
func alignUp(x, a uint64) uint64 {
	if a == 0 {
		a = 1
	}
	return (x + a - 1) &^ (a - 1)
}

func clone[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append([]T(nil), s...)
}

func (m Module) clone() Module {
	m.Depends = clone(m.Depends)
	m.SoftdepPre = clone(m.SoftdepPre)
	m.SoftdepPost = clone(m.SoftdepPost)
	m.Aliases = clone(m.Aliases)
	return m
}
