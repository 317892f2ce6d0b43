package capture_test

// The fidelity suite: serial logs of stock Debian arm64 kernels booted under
// QEMU (testdata/fidelity: boot-all.sh boots configs.txt, pack.sh keeps what
// this test reads), each with a capture of the live tables (ptlab capture
// --pa --tables), kallsyms, memblock and iomem. For each one the test boots
// ptlab with the same release profile, RAM, image, rodata=, KFENCE and KASLR
// placement and requires what `ptlab dump diff` would show to be empty for
// the linear map (the kernel alias included) and the kernel image: the same
// ranges, leaf sizes, permissions and contiguous hints; and the same number
// of table pages per level, within one, for the linear map, for the regions
// above VMALLOC_END and for the whole tree (the vmalloc range's tables come
// from the boot-time vmalloc users: device ioremaps, kernel stacks, percpu,
// BPF, DMA pools).

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/capture"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/ptdump/analysis"
)

// fidelityCase is one captured boot.
type fidelityCase struct {
	name string
	secs map[string]Section
	real *ptdump.Dump
}

func loadFidelityCases(t *testing.T) []fidelityCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "fidelity", "*.log.xz"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no fidelity captures in testdata/fidelity")
	}
	var out []fidelityCase
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := xz.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		log, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		c := fidelityCase{name: strings.TrimSuffix(filepath.Base(f), ".log.xz"), secs: ParseSections(log)}
		capt, ok := c.secs["capture"]
		if !ok || capt.RC != 0 {
			t.Fatalf("%s: no capture section", f)
		}
		var lines []string
		for _, l := range capt.Lines {
			if !strings.HasPrefix(l, "ptlab capture:") { // its stderr summary
				lines = append(lines, l)
			}
		}
		c.real, err = ptdump.Parse(strings.NewReader(strings.Join(lines, "\n")), c.name+" (real)", ptdump.ParseOptions{})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, c)
	}
	return out
}

var memblockRE = regexp.MustCompile(`^\s*\d+: 0x([0-9a-f]+)\.\.0x([0-9a-f]+)`)

// fidelityConfig is the machine and boot options ptlab needs to boot what
// the log shows.
func fidelityConfig(c fidelityCase) (kernel.Config, error) {
	cfg, err := kernel.Machine("qemu-virt")
	if err != nil {
		return cfg, err
	}
	cfg.Name = c.name
	if u := c.secs["uname"].Lines; len(u) == 1 {
		cfg.Kernel = strings.TrimSpace(u[0])
	}
	v, err := cfg.Version()
	if err != nil {
		return cfg, err
	}
	g := c.real.Geometry
	switch g.PageSize {
	case 16 << 10:
		cfg.Granule = "16K"
	case 64 << 10:
		cfg.Granule = "64K"
	default:
		cfg.Granule = "4K"
	}
	cfg.VABits = g.VABits
	cfg.LPA2 = g.VABits > 48 && cfg.Granule != "64K"
	cfg.ConfigVABits = 52
	if v.LegacyLayout {
		cfg.ConfigVABits = 48
	}
	cfg.RAM = nil
	for _, l := range c.secs["memblock-memory"].Lines {
		m := memblockRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		lo, _ := strconv.ParseUint(m[1], 16, 64)
		hi, _ := strconv.ParseUint(m[2], 16, 64)
		cfg.RAM = append(cfg.RAM, kernel.RAMRegion{Base: kernel.Size(lo), Size: kernel.Size(hi + 1 - lo)})
	}
	if len(cfg.RAM) == 0 {
		return cfg, fmt.Errorf("no memblock memory")
	}
	syms, err := capture.ReadKallsyms(strings.NewReader(strings.Join(c.secs["kallsyms"].Lines, "\n")), append(capture.KernelSymbols, "__bss_stop", "__initdata_begin"))
	if err != nil {
		return cfg, err
	}
	sym := func(n string) uint64 { a, _ := syms.Lookup(n); return a }
	// iomem: "Kernel code" is [_text or _stext, __init_begin) (6.1 starts it
	// at _stext), "Kernel data" [_sdata, _end).
	var kdata [2]uint64
	for _, l := range c.secs["iomem"].Lines {
		if f := strings.Fields(l); len(f) >= 4 && f[2] == "Kernel" && f[3] == "data" {
			lo, hi, _ := strings.Cut(f[0], "-")
			kdata[0], _ = strconv.ParseUint(lo, 16, 64)
			kdata[1], _ = strconv.ParseUint(hi, 16, 64)
			kdata[1]++
		}
	}
	stext := sym("_stext")
	text := sym("_text")
	if text == 0 {
		text = stext - 0x10000 // 6.1's kallsyms has no _text: the header is SEGMENT_ALIGN
	}
	rodata := sym("__start_rodata")
	if rodata == 0 {
		rodata = sym("_etext") // map_kernel's rodata segment starts at _etext
	}
	// The image's PA: the real dump's mapping of _stext.
	var pa uint64
	for _, r := range c.real.Ranges {
		if r.Valid() && r.HasPA && stext >= r.Start && stext < r.End {
			pa = r.PA + (stext - r.Start) - (stext - text)
		}
	}
	if pa == 0 {
		return cfg, fmt.Errorf("_stext %#x is not mapped in the capture", stext)
	}
	initEnd, end := sym("__init_end"), sym("_end")
	if initEnd == 0 || end == 0 {
		if kdata[1] == 0 {
			return cfg, fmt.Errorf("no __init_end/_end and no Kernel data in iomem")
		}
		initEnd, end = text+(kdata[0]-pa), text+(kdata[1]-pa)
	}
	cfg.Image = kernel.Image{
		PhysBase: kernel.Size(pa),
		Header:   kernel.Size(stext - text),
		Text:     kernel.Size(sym("_etext") - text),
		Rodata:   kernel.Size(sym("__init_begin") - rodata),
		Init:     kernel.Size(initEnd - sym("__init_begin")),
		Data:     kernel.Size(end - initEnd),
	}
	// __initdata_begin: kallsyms, or (6.1) the end of the vmlinux_inittext
	// segment in vmallocinfo.
	initData := sym("__initdata_begin")
	if initData == 0 {
		initData = vmallocinfoEnd(c.secs["vmallocinfo"].Lines, sym("__init_begin"))
	}
	if initData > sym("__init_begin") {
		cfg.Image.InitText = kernel.Size(initData - sym("__init_begin"))
	}
	if b := sym("__bss_stop"); b != 0 && b < end {
		cfg.Image.Tail = kernel.Size(end - b)
	}
	cmdline := ""
	if l := c.secs["cmdline"].Lines; len(l) > 0 {
		cmdline = l[0]
	}
	cfg.Rodata, cfg.KFENCE = "", kernel.KFENCEIdle
	kaslr := true
	for _, a := range strings.Fields(cmdline) {
		switch {
		case strings.HasPrefix(a, "rodata="):
			cfg.Rodata = kernel.Rodata(strings.TrimPrefix(a, "rodata="))
		case strings.HasPrefix(a, "kfence.sample_interval="):
			if n, _ := strconv.Atoi(strings.TrimPrefix(a, "kfence.sample_interval=")); n > 0 {
				cfg.KFENCE = kernel.KFENCEEarly
			}
		case a == "nokaslr":
			kaslr = false
		}
	}
	geo, err := cfg.Geometry()
	if err != nil {
		return cfg, err
	}
	lay := v.Layout(geo, cfg.ConfigVABits)
	cfg.Image.KASLR = kernel.Size(text - lay.KimageVaddr)
	if kaslr {
		cfg.KASLRSeed = 1
	}
	// PHYS_OFFSET from the first linear range, and the attributes the CPU
	// decided (KPTI's nG, BTI's GP on kernel text).
	for _, r := range c.real.Ranges {
		if !r.Valid() || !r.HasPA {
			continue
		}
		if lay.IsLinear(r.Start) && cfg.MemstartAddr == 0 {
			cfg.MemstartAddr = kernel.Size(r.PA - (r.Start - lay.PageOffset))
		}
		if r.Attrs.Flags&ptdump.AttrNG != 0 {
			cfg.KPTI = true
		}
		if r.Attrs.Flags&ptdump.AttrGP != 0 {
			cfg.BTI = true
		}
	}
	return cfg, cfg.Validate()
}

// vmallocinfoEnd is the end of the area /proc/vmallocinfo lists at start.
func vmallocinfoEnd(lines []string, start uint64) uint64 {
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		a, _ := strconv.ParseUint(strings.TrimPrefix(lo, "0x"), 16, 64)
		b, _ := strconv.ParseUint(strings.TrimPrefix(hi, "0x"), 16, 64)
		if a == start {
			return b
		}
	}
	return 0
}

// vmallocBacked reports whether every page of the linear range [start, end)
// backs one of the model's vmalloc areas.
func vmallocBacked(k *kernel.Kernel, start, end uint64) bool {
	pages := map[uint64]bool{}
	for _, a := range k.VM.Areas() {
		for i := 0; i < a.NrPages && len(a.Blocks) > 0; i++ {
			pages[k.Lin(a.PagePA(i))] = true
		}
	}
	for va := start; va < end; va += k.G.PageSize() {
		if !pages[va] {
			return false
		}
	}
	return true
}

// fidelityResult is one configuration compared.
type fidelityResult struct {
	changes     []analysis.DiffChange // in the linear map and the kernel image
	tolerated   int                   // runtime permission changes (see compareFidelity)
	realTables  map[string]int        // linear-map table pages per level
	modelTables map[string]int
	realTotal   int // every table page of the tree
	modelTotal  int
	realOwned   map[string]int // vmemmap, PCI I/O, fixmap tables per level
	modelOwned  map[string]int
	// ownedMisplaced are the tables above VMALLOC_END in one tree only.
	ownedMisplaced []string
	realAll        map[string]int // every table page of the tree per level, below the root
	modelAll       map[string]int
}

// linearTables counts the table pages of each level the linear map uses:
// one per table descriptor naming it (TBL lines), by the level of the table.
func linearTables(d *ptdump.Dump, l arm64.Layout) (map[string]int, int) {
	return tablesIn(d, l.IsLinear), len(d.Tables) + 1
}

// tablesIn counts, per level, the table pages named by table descriptors
// whose range starts where in says.
func tablesIn(d *ptdump.Dump, in func(va uint64) bool) map[string]int {
	next := map[string]string{"PGD": "P4D/PUD", "P4D": "P4D/PUD", "PUD": "PMD", "PMD": "PTE"}
	out := map[string]int{}
	for _, tl := range d.Tables {
		if in(tl.Start) {
			out[next[tl.Level]]++
		}
	}
	return out
}

// bootDump boots cfg and reads its tables back as a --pa --tables dump.
func bootDump(cfg kernel.Config, name string) (*ptdump.Dump, *kernel.Kernel, error) {
	k, err := kernel.Boot(cfg)
	if err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	pc := &kernel.PlainCPU{}
	w := ptdump.NewWriter(&buf, k.G, ptdump.KernelMarkers(k.Layout), ptdump.Options{PA: true, Tables: true})
	if err := ptdump.Walk(k.PT, pc, k.G, k.PT.Root(), k.Layout.PageOffset, w); err != nil {
		return nil, nil, err
	}
	model, err := ptdump.Parse(&buf, name+" (ptlab)", ptdump.ParseOptions{})
	if err != nil {
		return nil, nil, err
	}
	return model, k, nil
}

func compareFidelity(c fidelityCase) (*fidelityResult, error) {
	cfg, err := fidelityConfig(c)
	if err != nil {
		return nil, err
	}
	model, k, err := bootDump(cfg, c.name)
	if err != nil {
		return nil, err
	}
	res := &fidelityResult{}
	imStart, imEnd := k.Image.VA, k.Image.VA+k.Image.End
	if !k.V.HeaderMapped {
		imStart += k.Image.Stext // 6.1: vmalloc may use the header's VA
	}
	p0, p1 := k.KFENCEPool()
	pool0, pool1 := k.Lin(p0), k.Lin(p1)
	alias0, alias1 := k.Lin(k.Image.PA), k.Lin(k.Image.PA+k.Image.InitStart)
	for _, ch := range analysis.Diff(c.real, model).Changes {
		if !k.Layout.IsLinear(ch.Start) && (ch.Start < imStart || ch.Start >= imEnd) {
			continue
		}
		if ch.Kind == analysis.DiffPermission {
			// KFENCE protects an object's page when the object is freed:
			// which object pages are valid depends on what ran.
			if p1 != 0 && ch.Start >= pool0 && ch.End <= pool1 {
				res.tolerated++
				continue
			}
			// set_memory_ro of a vmalloc area also makes its pages' linear
			// alias read-only under rodata_full (BPF, text patching users
			// that ran before the capture): same leaves, runtime permission.
			if k.RodataFull && k.Layout.IsLinear(ch.Start) && (ch.End <= alias0 || ch.Start >= alias1) &&
				strings.HasPrefix(ch.FromAttrs, "ro ") && strings.HasPrefix(ch.ToAttrs, "RW ") &&
				strings.TrimPrefix(ch.FromAttrs, "ro ") == strings.TrimPrefix(ch.ToAttrs, "RW ") {
				res.tolerated++
				continue
			}
			// The other way: ptlab's boot-time vmalloc users (the BPF
			// JIT's first pack) made their own pages' alias read-only;
			// the real kernel's pages for them are other pages.
			if k.RodataFull && k.Layout.IsLinear(ch.Start) &&
				strings.HasPrefix(ch.FromAttrs, "RW ") && strings.HasPrefix(ch.ToAttrs, "ro ") &&
				strings.TrimPrefix(ch.FromAttrs, "RW ") == strings.TrimPrefix(ch.ToAttrs, "ro ") &&
				vmallocBacked(k, ch.Start, ch.End) {
				res.tolerated++
				continue
			}
		}
		res.changes = append(res.changes, ch)
	}
	res.realTables, res.realTotal = linearTables(c.real, k.Layout)
	res.modelTables, res.modelTotal = linearTables(model, k.Layout)
	// vmemmap, PCI I/O and fixmap: everything above VMALLOC_END.
	owned := func(va uint64) bool { return va >= k.Layout.VmallocEnd }
	res.realOwned, res.modelOwned = tablesIn(c.real, owned), tablesIn(model, owned)
	// Where those tables are, not only how many: a table (by level and
	// start) in one tree and not the other.
	// Above the lower of the two VMALLOC_ENDs (the real one is where the
	// capture's "vmalloc() end" marker is), so that a layout that moves
	// the vmemmap shows.
	low := k.Layout.VmallocEnd
	for _, m := range c.real.Markers {
		if strings.Contains(m.Name, "vmalloc() end") && m.FirstRange < len(c.real.Ranges) {
			low = min(low, c.real.Ranges[m.FirstRange].Start)
		}
	}
	placed := map[string]int{}
	for i, d := range []*ptdump.Dump{c.real, model} {
		for _, tl := range d.Tables {
			if tl.Start >= low {
				placed[fmt.Sprintf("%s %#x", tl.Level, tl.Start)] |= 1 << i
			}
		}
	}
	for key, in := range placed {
		if in != 3 {
			res.ownedMisplaced = append(res.ownedMisplaced, key)
		}
	}
	sort.Strings(res.ownedMisplaced)
	all := func(uint64) bool { return true }
	res.realAll, res.modelAll = tablesIn(c.real, all), tablesIn(model, all)
	return res, nil
}

// TestFidelityIoremaps checks the machine's device data against the real
// boots: every ioremap /proc/vmallocinfo lists (register page and size) is
// one ptlab's boot makes, and no other. 6.1 maps no virtio-pci capability
// windows (its captures list none), which the QEMU virt data has for the
// later releases; those four are not required there.
func TestFidelityIoremaps(t *testing.T) {
	for _, c := range loadFidelityCases(t) {
		t.Run(c.name, func(t *testing.T) {
			k := bootFidelityCase(t, c)
			ps := k.G.PageSize()
			real := map[string]int{}
			for _, l := range c.secs["vmallocinfo"].Lines {
				f := strings.Fields(l)
				if len(f) < 5 || f[len(f)-1] != "ioremap" {
					continue
				}
				n, _ := strconv.ParseUint(f[1], 10, 64)
				phys, _ := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(f[3], "phys="), "0x"), 16, 64)
				real[fmt.Sprintf("%#x+%#x", phys&^(ps-1), n)]++
			}
			if len(real) == 0 {
				t.Fatal("no ioremap in vmallocinfo")
			}
			model := map[string]int{}
			pc := &kernel.PlainCPU{}
			for _, a := range k.VM.Areas() {
				if a.Flags&kernel.VMIoremap == 0 {
					continue
				}
				pa, _, ok := k.PT.Translate(pc, a.Addr)
				if !ok {
					t.Errorf("ioremap area %#x not mapped", a.Addr)
				}
				model[fmt.Sprintf("%#x+%#x", pa&^(ps-1), a.Size)]++
			}
			for key, n := range model {
				if real[key] != n && !(k.V.LegacyLayout && strings.HasPrefix(key, "0x800000")) {
					t.Errorf("ptlab ioremaps %s %d times, the real kernel %d", key, n, real[key])
				}
			}
			for key, n := range real {
				if model[key] != n {
					t.Errorf("the real kernel ioremaps %s %d times, ptlab %d", key, n, model[key])
				}
			}
		})
	}
}

func TestFidelityAgainstRealKernels(t *testing.T) {
	cases := loadFidelityCases(t)
	var table bytes.Buffer
	tw := bufio.NewWriter(&table)
	fmt.Fprintf(tw, "%-30s %-15s %-36s %-36s %-32s %-32s %s\n", "configuration", "release", "real: whole tree per level; total", "ptlab: whole tree per level; total", "real: linear map", "ptlab: linear map", "diff (tolerated)")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := compareFidelity(c)
			if err != nil {
				t.Fatal(err)
			}
			for i, ch := range res.changes {
				if i == 8 {
					t.Errorf("... %d changes in all", len(res.changes))
					break
				}
				t.Errorf("%#x-%#x %s: %s %s -> %s %s (real line %d, ptlab line %d)", ch.Start, ch.End, ch.Kind, ch.From, ch.FromAttrs, ch.To, ch.ToAttrs, ch.LineA, ch.LineB)
			}
			if len(res.ownedMisplaced) > 0 {
				t.Errorf("tables above VMALLOC_END in one tree only: %v", res.ownedMisplaced)
			}
			// The linear map and the tables above VMALLOC_END are the
			// same on every boot of a build: equal. The whole tree may
			// differ by one table in the vmalloc area, where boots of one
			// build differ: three boots of Debian's 6.1 listed 56 to 58
			// kernel_clone stacks and 18 to 36 unpurged areas.
			for _, l := range []string{"P4D/PUD", "PMD", "PTE"} {
				if res.realTables[l] != res.modelTables[l] {
					t.Errorf("linear-map %s tables: real %d, ptlab %d", l, res.realTables[l], res.modelTables[l])
				}
				if res.realOwned[l] != res.modelOwned[l] {
					t.Errorf("vmemmap/PCI I/O/fixmap %s tables: real %d, ptlab %d", l, res.realOwned[l], res.modelOwned[l])
				}
				if d := res.realAll[l] - res.modelAll[l]; d < -1 || d > 1 {
					t.Errorf("%s tables of the whole tree: real %d, ptlab %d", l, res.realAll[l], res.modelAll[l])
				}
			}
			rel := ""
			if u := c.secs["uname"].Lines; len(u) > 0 {
				rel = u[0]
			}
			fmt.Fprintf(tw, "%-30s %-15s %-36s %-36s %-32s %-32s %d (%d)\n", c.name, strings.SplitN(rel, "-", 2)[0],
				fmtTables(res.realAll, res.realTotal), fmtTables(res.modelAll, res.modelTotal),
				fmtTables(res.realTables, -1), fmtTables(res.modelTables, -1), len(res.changes), res.tolerated)
		})
	}
	tw.Flush()
	t.Logf("\n%s", table.String())
}

func fmtTables(m map[string]int, total int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if total < 0 {
		return strings.Join(parts, ", ")
	}
	return strings.Join(parts, ", ") + fmt.Sprintf("; %d", total)
}

// TestFidelityBootVmallocCallers checks the releases' own boot-time vmalloc
// data (kernel.Version.Boot) against the real boots: for each caller the
// model names, the areas /proc/vmallocinfo lists after boot (count and size,
// guard page included) are the ones ptlab's boot makes. The whole-tree
// table count tolerates a table either way, so it cannot catch a wrong
// count of small areas; this can. Stacks of kernel threads and the areas
// freed at boot vary between boots of one kernel and are left to the
// table-count check; so does lz4_alloc_ctx on 7.3 (one or two areas in
// the nine captures of one build: the compression contexts come with the
// CPUs that first use them), which must be one or as many as ptlab makes.
func TestFidelityBootVmallocCallers(t *testing.T) {
	callers := []string{"bpf_prog_alloc_no_stats", "gen_pool_add_owner", "pcpu_mem_zalloc", "n_tty_open",
		"lz4_alloc_ctx", "crypto_scomp_init_tfm", "dma_common_contiguous_remap", "fork_idle"}
	for _, c := range loadFidelityCases(t) {
		t.Run(c.name, func(t *testing.T) {
			k := bootFidelityCase(t, c)
			real, model := map[string]int{}, map[string]int{}
			for _, l := range c.secs["vmallocinfo"].Lines {
				f := strings.Fields(l)
				if len(f) < 3 {
					continue
				}
				caller, _, _ := strings.Cut(f[2], "+")
				if slices.Contains(callers, caller) {
					real[caller+" "+f[1]]++
				}
			}
			for _, a := range k.VM.Areas() {
				if slices.Contains(callers, a.Caller) {
					model[fmt.Sprintf("%s %d", a.Caller, a.Size)]++
				}
			}
			for key, n := range real {
				if strings.HasPrefix(key, "lz4_alloc_ctx ") && n == 1 && model[key] > 0 {
					model[key] = 1 // boot-variable, see above
				}
				if model[key] != n {
					t.Errorf("the real kernel has %d areas %s, ptlab %d", n, key, model[key])
				}
			}
			for key, n := range model {
				if real[key] != n {
					t.Errorf("ptlab has %d areas %s, the real kernel %d", n, key, real[key])
				}
			}
		})
	}
}

// bootFidelityCase boots ptlab's model of a captured configuration.
func bootFidelityCase(t *testing.T, c fidelityCase) *kernel.Kernel {
	t.Helper()
	cfg, err := fidelityConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	k, err := kernel.Boot(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
