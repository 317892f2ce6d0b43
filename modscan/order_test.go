package modscan

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// checkLoadOrder verifies what any load order must satisfy: each module
// once, every requested module present, each module after all it depends on
// (dependencies resolved through names and aliases), apart from the edges
// reported as broken cycles, and Added = Order minus requested.
// fataler is what checkLoadOrder needs of *testing.T and *rapid.T.
type fataler interface {
	Helper()
	Fatalf(string, ...any)
}

func checkLoadOrder(t fataler, d *ModuleDataset, names []string, lo LoadOrder, softdeps bool) {
	t.Helper()
	pos := map[string]int{}
	for i, n := range lo.Order {
		if _, dup := pos[n]; dup {
			t.Fatalf("%s appears twice", n)
		}
		if _, ok := d.Lookup(n); !ok {
			t.Fatalf("%s in the order is not in the dataset", n)
		}
		pos[n] = i
	}
	broken := map[string]bool{}
	for _, c := range lo.Cycles {
		broken[c] = true
	}
	requested := map[string]bool{}
	for _, n := range names {
		n = NormalizeModuleName(n)
		requested[n] = true
		if _, ok := d.Lookup(n); ok {
			if _, in := pos[n]; !in {
				t.Fatalf("requested %s missing from the order", n)
			}
		} else if !slices.Contains(lo.MissingRequested, n) && !slices.Contains(lo.BuiltinRequested, n) {
			t.Fatalf("unknown %s not reported", n)
		}
	}
	var added []string
	for _, n := range lo.Order {
		if !requested[n] {
			added = append(added, n)
		}
		m, _ := d.Lookup(n)
		for _, dep := range dependencies(m, softdeps) {
			for _, r := range d.ResolveName(dep) {
				if r == n || broken[n+" -> "+r] {
					continue
				}
				p, ok := pos[r]
				if !ok {
					t.Fatalf("%s needs %s, which is not in the order", n, r)
				}
				if p > pos[n] {
					t.Fatalf("%s (at %d) comes before its dependency %s (at %d)", n, pos[n], r, p)
				}
			}
		}
	}
	sort.Strings(added)
	if !slices.Equal(added, lo.Added) {
		t.Fatalf("added %v, reported %v", added, lo.Added)
	}
}

// TestLoadOrderProperties orders random dependency graphs (with cycles,
// aliases, built-in and missing names) and checks checkLoadOrder.
func TestLoadOrderProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 30).Draw(t, "n")
		d := &ModuleDataset{Format: DatasetFormat, Layout: DefaultLayoutConfig(), Builtin: []string{"builtin_x"}}
		name := func(i int) string { return fmt.Sprintf("m%02d", i) }
		for i := 0; i < n; i++ {
			m := Module{Name: name(i), Aliases: []string{fmt.Sprintf("svc-%d", i%3)}}
			for k := rapid.IntRange(0, 4).Draw(t, "ndeps"); k > 0; k-- {
				switch rapid.IntRange(0, 9).Draw(t, "kind") {
				case 0:
					m.Depends = append(m.Depends, "absent_y")
				case 1:
					m.SoftdepPre = append(m.SoftdepPre, "builtin_x")
				case 2:
					m.SoftdepPre = append(m.SoftdepPre, fmt.Sprintf("svc-%d", rapid.IntRange(0, 2).Draw(t, "svc")))
				case 3:
					m.SoftdepPost = append(m.SoftdepPost, name(rapid.IntRange(0, n-1).Draw(t, "post")))
				default:
					m.Depends = append(m.Depends, name(rapid.IntRange(0, n-1).Draw(t, "dep")))
				}
			}
			d.Modules = append(d.Modules, m)
		}
		softdeps := rapid.Bool().Draw(t, "softdeps")
		var names []string
		for k := rapid.IntRange(0, n+2).Draw(t, "nreq"); k > 0; k-- {
			switch rapid.IntRange(0, 5).Draw(t, "req") {
			case 0:
				names = append(names, "not_there")
			case 1:
				names = append(names, "builtin-x")
			default:
				names = append(names, name(rapid.IntRange(0, n-1).Draw(t, "r")))
			}
		}
		lo := d.LoadOrder(names, softdeps)
		checkLoadOrder(t, d, names, lo, softdeps)
		// Input order does not matter.
		rev := slices.Clone(names)
		slices.Reverse(rev)
		if lo2 := d.LoadOrder(rev, softdeps); fmt.Sprint(lo2) != fmt.Sprint(lo) {
			t.Fatalf("order depends on input order:\n%v\n%v", lo, lo2)
		}
	})
}

func TestLoadOrderCycleAndAlias(t *testing.T) {
	d := &ModuleDataset{Modules: []Module{
		{Name: "a", Depends: []string{"b"}},
		{Name: "b", Depends: []string{"c"}},
		{Name: "c", Depends: []string{"a"}},
		{Name: "crc32c_generic", Aliases: []string{"crypto-crc32c", "crc32c"}},
		{Name: "ext4", SoftdepPre: []string{"crc32c"}, Depends: []string{"jbd2"}},
		{Name: "jbd2"},
	}, Builtin: []string{"fuse"}}
	lo := d.LoadOrder([]string{"ext4", "a", "fuse", "nosuch"}, true)
	if got := strings.Join(lo.Order, " "); got != "c b a crc32c_generic jbd2 ext4" {
		t.Errorf("order %q", got)
	}
	if len(lo.Cycles) != 1 || lo.Cycles[0] != "c -> a" {
		t.Errorf("cycles %v", lo.Cycles)
	}
	if fmt.Sprint(lo.Added, lo.BuiltinRequested, lo.MissingRequested) != "[b c crc32c_generic jbd2] [fuse] [nosuch]" {
		t.Errorf("added %v builtin %v missing %v", lo.Added, lo.BuiltinRequested, lo.MissingRequested)
	}
	// Without softdeps ext4 does not pull crc32c_generic.
	if lo := d.LoadOrder([]string{"ext4"}, false); strings.Join(lo.Order, " ") != "jbd2 ext4" {
		t.Errorf("no softdeps: %v", lo.Order)
	}
	if r := d.ResolveName("crypto-crc32c"); len(r) != 1 || r[0] != "crc32c_generic" {
		t.Errorf("alias: %v", r)
	}
	rd := d.ReverseDependencies()
	if fmt.Sprint(rd["jbd2"], rd["a"]) != "[ext4] [c]" {
		t.Errorf("reverse deps %v", rd)
	}
}

func TestEmbeddedDebianDataset(t *testing.T) {
	d, err := DebianModules()
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Modules) <= 4000 {
		t.Errorf("%d modules, want > 4000", len(d.Modules))
	}
	if !strings.HasPrefix(d.Package, "linux-image-6.12.") || !strings.HasSuffix(d.Package, "-arm64") || d.Version == "" || d.Architecture != "arm64" {
		t.Errorf("package %q version %q arch %q", d.Package, d.Version, d.Architecture)
	}
	if !strings.HasPrefix(d.KernelVersion, "6.12.") || d.Layout != DefaultLayoutConfig() {
		t.Errorf("kernel %q layout %+v", d.KernelVersion, d.Layout)
	}
	tot := d.Totals()
	for _, m := range d.Modules {
		if m.Size[ModText] == 0 || m.Size[ModData] == 0 {
			t.Errorf("%s: empty text or data %v (every module has .plt and this_module)", m.Name, m.Size)
		}
	}
	if tot.Bytes[ModText] < 50<<20 {
		t.Errorf("total text %d bytes, implausibly small", tot.Bytes[ModText])
	}
	// Every depends= names a module of the package.
	for _, m := range d.Modules {
		for _, dep := range m.Depends {
			if _, ok := d.Lookup(NormalizeModuleName(dep)); !ok {
				t.Errorf("%s depends on %s, not in the package", m.Name, dep)
			}
		}
	}
	// DebianModules hands out copies.
	d.Modules[0].Size[ModText] = 1
	d2, _ := DebianModules()
	if d2.Modules[0].Size[ModText] == 1 {
		t.Error("DebianModules returned shared state")
	}
	all, err := AllModulesInDependencyOrder()
	if err != nil || len(all) != len(d2.Modules) {
		t.Fatalf("all: %d of %d, %v", len(all), len(d2.Modules), err)
	}
	names := make([]string, len(d2.Modules))
	for i := range d2.Modules {
		names[i] = d2.Modules[i].Name
	}
	checkLoadOrder(t, d2, names, d2.AllInDependencyOrder(true), true)
}

func TestServerModuleSet(t *testing.T) {
	set, err := ServerModuleSet()
	if err != nil {
		t.Fatal(err)
	}
	if len(set) < 100 || len(set) > 200 {
		t.Errorf("server set has %d modules, want 100-200", len(set))
	}
	d, _ := DebianModules()
	l, _ := ServerModules()
	if len(l.Sources) < 2 || !strings.Contains(l.Sources[0], "Message-") {
		t.Errorf("sources %v", l.Sources)
	}
	lo, _ := ServerModuleOrder()
	if !slices.Equal(lo.Order, set) {
		t.Error("ServerModuleSet and ServerModuleOrder disagree")
	}
	checkLoadOrder(t, d, l.Names, lo, true)
	if lo.Requested+len(lo.BuiltinRequested)+len(lo.MissingRequested) != len(l.Names) {
		t.Errorf("requested %d + builtin %d + missing %d != listed %d",
			lo.Requested, len(lo.BuiltinRequested), len(lo.MissingRequested), len(l.Names))
	}
	for _, must := range []string{"xfs", "nvme", "ipmi_msghandler", "sbsa_gwdt", "nf_tables", "mlx5_core"} {
		if !slices.Contains(set, must) {
			t.Errorf("server set lacks %s", must)
		}
	}
}

func TestParseServerModuleList(t *testing.T) {
	l, err := ParseServerModuleList([]byte("# x\n# source: a paper\n# machine: box\nfoo-bar\n\n  baz  \nfoo_bar\n"))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(l.Names, l.Sources) != "[foo_bar baz] [source: a paper machine: box]" {
		t.Errorf("%v %v", l.Names, l.Sources)
	}
	if _, err := ParseServerModuleList([]byte("two words\n")); err == nil {
		t.Error("accepted a line with two words")
	}
}

// TestDatasetMatchesRealKernel compares the embedded dataset with what
// Debian's 6.12.117 kernel itself allocated for 42 modules under QEMU
// (testdata/modules-qemu-6.12.117.txt): /sys/module/*/coresize and the size
// of each core region's vmalloc area.
func TestDatasetMatchesRealKernel(t *testing.T) {
	d, err := DebianModules()
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != "6.12.117-1~deb12u1" {
		t.Skipf("embedded dataset is %s, the measurement is of 6.12.117-1~deb12u1", d.Version)
	}
	f, err := os.Open("testdata/modules-qemu-6.12.117.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	types := map[string]ModMemType{}
	for typ := ModMemType(0); typ < NumModMemTypes; typ++ {
		types[typ.String()] = typ
	}
	sc := bufio.NewScanner(f)
	checked := 0
	for line := 1; sc.Scan(); line++ {
		fl := strings.Fields(sc.Text())
		if len(fl) == 0 || strings.HasPrefix(fl[0], "#") {
			continue
		}
		want, err := strconv.ParseUint(fl[len(fl)-1], 10, 64)
		if err != nil {
			t.Fatalf("line %d: %v", line, err)
		}
		m, ok := d.Lookup(fl[1])
		if !ok {
			t.Fatalf("line %d: %s not in the dataset", line, fl[1])
		}
		var got uint64
		switch fl[0] {
		case "coresize":
			got = m.CoreSize(d.Layout.PageSize)
		case "region":
			typ, ok := types[fl[2]]
			if !ok {
				t.Fatalf("line %d: region %q", line, fl[2])
			}
			got = m.AllocSize(typ, d.Layout.PageSize)
		default:
			t.Fatalf("line %d: %q", line, fl[0])
		}
		if got != want {
			t.Errorf("line %d: %s: ours %d, kernel %d", line, strings.Join(fl[:len(fl)-1], " "), got, want)
		}
		checked++
	}
	if checked < 150 {
		t.Errorf("only %d measurements checked", checked)
	}
}

func TestDatasetRoundTrip(t *testing.T) {
	d, err := DebianModules()
	if err != nil {
		t.Fatal(err)
	}
	var a strings.Builder
	if err := d.WriteJSON(&a); err != nil {
		t.Fatal(err)
	}
	if a.String() != string(debianModulesJSON) {
		t.Error("re-encoding the embedded dataset changes it")
	}
	d2, err := ReadModuleDataset(strings.NewReader(a.String()))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(d2) != fmt.Sprint(d) {
		t.Error("round trip changed the dataset")
	}
	for name, bad := range map[string]string{
		"format":   `{"format":2,"layout":{"page_size":4096},"modules":[]}`,
		"unsorted": `{"format":1,"layout":{"page_size":4096},"modules":[{"name":"b"},{"name":"a"}]}`,
		"page":     `{"format":1,"layout":{"page_size":4095},"modules":[]}`,
		"field":    `{"format":1,"bogus":1}`,
		"noname":   `{"format":1,"layout":{"page_size":4096},"modules":[{"path":"x"}]}`,
	} {
		if _, err := ReadModuleDataset(strings.NewReader(bad)); err == nil {
			t.Errorf("%s: accepted %s", name, bad)
		}
	}
}
