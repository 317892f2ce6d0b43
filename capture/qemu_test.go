package capture_test

// Integration test: boot Debian's arm64 kernel under qemu-system-aarch64 (TCG)
// with the repository's tools/qemu-arm64-guest.sh, run `ptlab capture` in the guest, and
// check the dump against what the kernel itself reports: the System RAM of
// /proc/iomem, /proc/modules, /proc/vmallocinfo, kallsyms and the boot-time
// W+X check. Skipped with -short or without qemu-system-aarch64.
//
//	go test -run OnRealKernel -v ./capture/
//
// QEMU_ARM64_GUEST overrides the script's path (default
// tools/qemu-arm64-guest.sh at the module root); PTLAB_QEMU_WORKDIR sets its
// scratch dir (-w); with PTLAB_QEMU_LOGDIR set, the serial logs are kept there.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ptlab/ptlab/capture"
	"github.com/ptlab/ptlab/ptdump"
)

// guestScript runs in the guest after the default -M modules are loaded.
// Captures go to files so that ptlab's stderr summary stays apart.
const guestScript = `
for m in $MODS; do insmod "$MODDIR/$m.ko" || exit 1; done
section iomem cat /proc/iomem
section modules cat /proc/modules
section vmallocinfo cat /proc/vmallocinfo
section kallsyms sh -c 'grep -E " (_stext|_etext|__start_rodata|__init_begin|swapper_pg_dir)$" /proc/kallsyms'
section capture sh -c '/bin/ptlab capture -o /tmp/plain.txt 2>/tmp/plain.err; rc=$?; cat /tmp/plain.txt; exit $rc'
section capture-stderr cat /tmp/plain.err
section capture-pa sh -c '/bin/ptlab capture --pa --tables -o /tmp/pa.txt 2>/tmp/pa.err; rc=$?; cat /tmp/pa.txt; exit $rc'
section capture-pa-stderr cat /tmp/pa.err
section capture-json sh -c '/bin/ptlab capture --json 2>/dev/null'
section wx sh -c 'dmesg | grep "Checked W+X mappings"'
exit 0
`

// Section is one "=== BEGIN name" ... "=== END name (rc=N)" block of the serial log.
type Section struct {
	Name  string
	RC    int
	Lines []string
}

var (
	beginRE = regexp.MustCompile(`^=== BEGIN (.+)$`)
	endRE   = regexp.MustCompile(`^=== END (.+) \(rc=(-?\d+)\)$`)
	doneRE  = regexp.MustCompile(`(?m)^=== DONE rc=(\d+)$`)
)

// ParseSections returns the sections of a serial log by name.
func ParseSections(log []byte) map[string]Section {
	out := map[string]Section{}
	var cur *Section
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := sc.Text()
		if m := beginRE.FindStringSubmatch(line); m != nil {
			cur = &Section{Name: m[1]}
		} else if m := endRE.FindStringSubmatch(line); m != nil && cur != nil && m[1] == cur.Name {
			cur.RC, _ = strconv.Atoi(m[2])
			out[cur.Name] = *cur
			cur = nil
		} else if cur != nil {
			cur.Lines = append(cur.Lines, line)
		}
	}
	return out
}

// guestScriptPath finds qemu-arm64-guest.sh, or "" when the test cannot run.
func guestScriptPath() string {
	if p := os.Getenv("QEMU_ARM64_GUEST"); p != "" {
		return p
	}
	// The test runs in its package directory; the script is in the module
	// root's tools/, found by walking up to go.mod.
	dir, err := filepath.Abs(".")
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "tools", "qemu-arm64-guest.sh")
			if _, err := os.Stat(p); err != nil {
				return ""
			}
			return p
		}
		up := filepath.Dir(dir)
		if up == dir {
			return ""
		}
		dir = up
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func TestCaptureOnRealKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU; skipped with -short")
	}
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		t.Skip("qemu-system-aarch64 not installed (.ci/install-qemu.sh installs it)")
	}
	script := guestScriptPath()
	if script == "" {
		t.Skip("qemu-arm64-guest.sh not found; set QEMU_ARM64_GUEST")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "ptlab")
	build := exec.Command(goTool(), "build", "-trimpath", "-o", bin, "github.com/ptlab/ptlab/cmd/ptlab")
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cross-compile: %v\n%s", err, out)
	}
	guest := filepath.Join(dir, "guest.sh")
	if err := os.WriteFile(guest, []byte(guestScript), 0o644); err != nil {
		t.Fatal(err)
	}
	// Setup (downloads on the first run) outside the boots' timeouts.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if out, err := runScript(ctx, script, "-q", "-S"); err != nil {
		t.Fatalf("%s -S: %v\n%s", script, err, out)
	}

	cases := []struct {
		cpu, mem string
		geometry string // Machine.Geometry.String()
		ng       bool   // KPTI: kernel mappings are non-global
	}{
		{"max,pauth-impdef=on", "2048", "4K/52-bit/5 levels/LPA2", false},
		{"cortex-a72", "1536", "4K/48-bit/4 levels", true},
	}
	for _, c := range cases {
		t.Run(c.cpu, func(t *testing.T) {
			log, err := runScript(ctx, script, "-q", "-c", c.cpu, "-m", c.mem, "-t", "300",
				"-f", bin+":/bin/ptlab", "-r", guest)
			if err != nil {
				t.Fatalf("%v (exit 1: guest script failed, 4: no DONE, 124: timeout)\n%s", err, tail(log, 60))
			}
			if m := doneRE.FindSubmatch(log); m == nil || string(m[1]) != "0" {
				t.Fatalf("no \"=== DONE rc=0\" in the log\n%s", tail(log, 60))
			}
			if dir := os.Getenv("PTLAB_QEMU_LOGDIR"); dir != "" {
				os.WriteFile(filepath.Join(dir, "capture-"+strings.Split(c.cpu, ",")[0]+".log"), log, 0o644)
			}
			checkGuest(t, ParseSections(log), c.geometry, c.ng)
		})
	}
}

func runScript(ctx context.Context, script string, args ...string) ([]byte, error) {
	if w := os.Getenv("PTLAB_QEMU_WORKDIR"); w != "" {
		args = append([]string{"-w", w}, args...)
	}
	cmd := exec.CommandContext(ctx, script, args...)
	// On cancel, SIGTERM lets the script stop QEMU; SIGKILL would leave it running.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return append(out, stderr.Bytes()...), err
	}
	return out, nil
}

func tail(b []byte, n int) string {
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func section(t *testing.T, s map[string]Section, name string) []string {
	t.Helper()
	sec, ok := s[name]
	if !ok {
		t.Fatalf("no section %q in the serial log", name)
	}
	if sec.RC != 0 {
		t.Fatalf("section %q: rc=%d\n%s", name, sec.RC, strings.Join(sec.Lines, "\n"))
	}
	return sec.Lines
}

// span is a half-open address range.
type span struct{ start, end uint64 }

// union merges spans into sorted, disjoint, non-adjacent ones.
func union(in []span) []span {
	sort.Slice(in, func(i, j int) bool { return in[i].start < in[j].start })
	var out []span
	for _, s := range in {
		if n := len(out); n > 0 && s.start <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, s.end)
			continue
		}
		out = append(out, s)
	}
	return out
}

func checkGuest(t *testing.T, secs map[string]Section, wantGeometry string, ng bool) {
	// The machine, as capture saw it.
	stderr := strings.Join(section(t, secs, "capture-stderr"), "\n")
	if !strings.Contains(stderr, " "+wantGeometry+",") {
		t.Errorf("capture summary %q does not report %s", stderr, wantGeometry)
	}

	// The plain dump parses, without warnings.
	plain := section(t, secs, "capture")
	d, err := ptdump.Parse(strings.NewReader(strings.Join(plain, "\n")), "capture", ptdump.ParseOptions{})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if len(d.Warnings) != 0 {
		t.Errorf("warnings: %v", d.Warnings)
	}
	if len(d.Ranges) < 50 {
		t.Fatalf("only %d ranges", len(d.Ranges))
	}
	rangeAt := func(va uint64) *ptdump.Range {
		i := sort.Search(len(d.Ranges), func(i int) bool { return d.Ranges[i].Last() >= va })
		if i < len(d.Ranges) && d.Ranges[i].Start <= va {
			return &d.Ranges[i]
		}
		return nil
	}
	// covered checks that [start, end) lies in ranges satisfying ok.
	covered := func(what string, start, end uint64, ok func(*ptdump.Range) bool) {
		t.Helper()
		for va := start; va < end; {
			r := rangeAt(va)
			if r == nil || !ok(r) {
				t.Errorf("%s [%#x, %#x): at %#x: %+v", what, start, end, va, r)
				return
			}
			if r.End == 0 || r.End >= end {
				return
			}
			va = r.End
		}
	}
	regionOf := func(d *ptdump.Dump, r *ptdump.Range) string {
		if r.Marker < 0 {
			return ""
		}
		return d.Markers[r.Marker].Name
	}
	for _, r := range d.Ranges {
		// Under KPTI every kernel mapping is non-global except the entry
		// trampoline's text in the fixmap, which map_entry_trampoline maps
		// global (ROX with PTE_NG cleared) on purpose.
		if ng && regionOf(d, &r) == "Fixmap start" && r.Attrs.Has(ptdump.AttrReadOnly) && !r.Attrs.Has(ptdump.AttrNX) {
			continue
		}
		if r.Valid() && (r.Attrs.Has(ptdump.AttrNG) != ng) {
			t.Errorf("line %d: NG %v, want %v (KPTI): %s", r.Line, r.Attrs.Has(ptdump.AttrNG), ng, r.Attrs.Text)
			break
		}
	}

	// 1. W+X: the kernel's boot check, capture's own count and the dump agree.
	wx := section(t, secs, "wx")
	if len(wx) != 1 || !strings.HasSuffix(wx[0], "Checked W+X mappings: passed, no W+X pages found") {
		t.Fatalf("kernel W+X check: %q", wx)
	}
	if !strings.Contains(stderr, "ptlab capture: Checked W+X mappings: passed, no W+X pages found") {
		t.Errorf("capture's W+X verdict differs from the kernel's: %q", stderr)
	}
	for _, r := range d.Ranges {
		if r.Valid() && !r.Attrs.Has(ptdump.AttrReadOnly) && !r.Attrs.Has(ptdump.AttrNX) {
			t.Errorf("line %d: W+X range %#x-%#x %s", r.Line, r.Start, r.End, r.Attrs.Text)
		}
	}

	// 2. The linear map covers exactly the guest's RAM: with --pa, every
	// mapped linear-map range has PA = VA - (PAGE_OFFSET - PHYS_OFFSET), and
	// the PAs together are the System RAM of /proc/iomem.
	var ram []span
	for _, l := range section(t, secs, "iomem") {
		if strings.HasPrefix(l, " ") || !strings.HasSuffix(l, " : System RAM") {
			continue
		}
		var a, b uint64
		if _, err := fmt.Sscanf(l, "%x-%x", &a, &b); err != nil {
			t.Fatalf("iomem line %q: %v", l, err)
		}
		ram = append(ram, span{a, b + 1})
	}
	ram = union(ram)
	if len(ram) == 0 {
		t.Fatal("no System RAM in /proc/iomem")
	}
	// --pa --tables: physical addresses on ranges, and table lines.
	dp, err := ptdump.Parse(strings.NewReader(strings.Join(section(t, secs, "capture-pa"), "\n")), "capture --pa --tables", ptdump.ParseOptions{})
	if err != nil {
		t.Fatalf("parse --pa --tables dump: %v", err)
	}
	if len(dp.Warnings) != 0 {
		t.Errorf("--pa --tables warnings: %v", dp.Warnings)
	}
	var linear, linearPA []span
	var offset uint64
	for _, r := range dp.Ranges {
		if r.Marker < 0 || dp.Markers[r.Marker].Name != "Linear Mapping start" || !r.Mapped() {
			continue
		}
		if !r.HasPA {
			t.Fatalf("--pa line %d has no PA", r.Line)
		}
		p := r.PA
		if len(linear) == 0 {
			offset = r.Start - p
		} else if r.Start-p != offset {
			t.Errorf("--pa line %d: %#x maps PA %#x, not the linear offset %#x", r.Line, r.Start, p, offset)
		}
		linear = append(linear, span{r.Start, r.End})
		linearPA = append(linearPA, span{p, p + r.End - r.Start})
	}
	linearPA = union(linearPA)
	if fmt.Sprint(linearPA) != fmt.Sprint(ram) {
		t.Errorf("linear map covers PA %x, System RAM is %x", linearPA, ram)
	}
	// The plain dump maps the same linear VAs.
	var plainLinear []span
	for _, r := range d.Ranges {
		if r.Marker >= 0 && d.Markers[r.Marker].Name == "Linear Mapping start" && r.Mapped() {
			plainLinear = append(plainLinear, span{r.Start, r.End})
		}
	}
	if a, b := fmt.Sprint(union(plainLinear)), fmt.Sprint(union(linear)); a != b {
		t.Errorf("plain and --pa dumps map different linear VAs: %s vs %s", a, b)
	}

	// 3. Kernel text [_stext, _etext) is mapped read-only and executable.
	syms, err := capture.ReadKallsyms(strings.NewReader(strings.Join(section(t, secs, "kallsyms"), "\n")),
		[]string{"_stext", "_etext", "__start_rodata", "__init_begin"})
	if err != nil {
		t.Fatal(err)
	}
	roX := func(r *ptdump.Range) bool {
		return r.Valid() && r.Attrs.Has(ptdump.AttrReadOnly) && !r.Attrs.Has(ptdump.AttrNX)
	}
	covered("kernel text", syms["_stext"], syms["_etext"], roX)
	covered("kernel rodata", syms["__start_rodata"], syms["__init_begin"], func(r *ptdump.Range) bool {
		return r.Valid() && r.Attrs.Has(ptdump.AttrReadOnly) && r.Attrs.Has(ptdump.AttrNX)
	})

	// 4. Modules: each module's text (its /proc/modules address) is the
	// start of a load_module vmalloc area whose pages, all but the trailing
	// guard page, are mapped read-only and executable; the guard is unmapped.
	type area struct {
		start, end uint64
		caller     string
		phys       uint64
		ioremap    bool
	}
	var areas []area
	for _, l := range section(t, secs, "vmallocinfo") {
		f := strings.Fields(l)
		var a area
		if len(f) < 3 {
			t.Fatalf("vmallocinfo line %q", l)
		}
		if _, err := fmt.Sscanf(f[0], "0x%x-0x%x", &a.start, &a.end); err != nil {
			t.Fatalf("vmallocinfo line %q: %v", l, err)
		}
		a.caller = f[2]
		for _, x := range f[3:] {
			if v, ok := strings.CutPrefix(x, "phys=0x"); ok {
				a.phys, _ = strconv.ParseUint(v, 16, 64)
			}
			a.ioremap = a.ioremap || x == "ioremap"
		}
		areas = append(areas, a)
	}
	mods := section(t, secs, "modules")
	if len(mods) < 2 {
		t.Fatalf("fewer than 2 modules loaded: %q", mods)
	}
	const pageSize = 4096
	for _, l := range mods {
		f := strings.Fields(l)
		if len(f) < 6 {
			t.Fatalf("/proc/modules line %q", l)
		}
		addr, err := strconv.ParseUint(strings.TrimPrefix(f[5], "0x"), 16, 64)
		if err != nil || addr == 0 {
			t.Fatalf("/proc/modules line %q: address %v", l, err)
		}
		var a *area
		for i := range areas {
			if areas[i].start == addr {
				a = &areas[i]
			}
		}
		if a == nil || !strings.HasPrefix(a.caller, "load_module") {
			t.Errorf("module %s at %#x: no load_module vmalloc area starts there (%+v)", f[0], addr, a)
			continue
		}
		if r := rangeAt(addr); r == nil || !roX(r) {
			t.Errorf("module %s text at %#x is not mapped ro+x: %+v", f[0], addr, r)
		}
		covered("module "+f[0]+" text", a.start, a.end-pageSize, roX)
		covered("module "+f[0]+" guard page", a.end-pageSize, a.end, func(r *ptdump.Range) bool { return !r.Mapped() })
	}

	// 5. ioremap areas: device memory, at the physical address vmallocinfo names.
	nio := 0
	for _, a := range areas {
		if !a.ioremap {
			continue
		}
		nio++
		covered("ioremap", a.start, a.end-pageSize, func(r *ptdump.Range) bool {
			return r.Valid() && strings.HasPrefix(r.Attrs.Mem, "DEVICE/") && r.Attrs.Has(ptdump.AttrNX)
		})
		if !continuesPA(dp, a.start, a.phys) {
			t.Errorf("ioremap %#x: --pa dump does not map it to phys %#x", a.start, a.phys)
		}
	}
	if nio == 0 {
		t.Errorf("no ioremap area in vmallocinfo")
	}

	// 6. --tables: one TBL line per table page read (the root excepted),
	// each table page in RAM; linear-map tables carry PXNTable (map_mem).
	m := regexp.MustCompile(`; (\d+) table pages read`).FindStringSubmatch(strings.Join(section(t, secs, "capture-pa-stderr"), "\n"))
	if m == nil {
		t.Fatalf("no table count in capture's summary")
	}
	if nread, _ := strconv.Atoi(m[1]); len(dp.Tables) < 10 || len(dp.Tables) != nread-1 {
		t.Errorf("%d TBL lines for %d table pages read", len(dp.Tables), nread)
	}
	inRAM := func(p uint64) bool {
		for _, r := range ram {
			if p >= r.start && p < r.end {
				return true
			}
		}
		return false
	}
	linearStart, linearEnd := linear[0].start, linear[len(linear)-1].end
	for _, tb := range dp.Tables {
		if !inRAM(tb.PA) {
			t.Errorf("TBL line %d: table page %#x outside RAM", tb.Line, tb.PA)
		}
		if tb.Start >= linearStart && tb.End <= linearEnd && tb.End != 0 && !tb.PXNTable {
			t.Errorf("TBL line %d: linear-map table without PXNTable", tb.Line)
		}
	}

	// 7. --json: the same machine and the same ranges.
	var j capture.JSONOutput
	if err := json.Unmarshal([]byte(strings.Join(section(t, secs, "capture-json"), "\n")), &j); err != nil {
		t.Fatalf("--json: %v", err)
	}
	if j.Machine.Geometry != wantGeometry || j.Dump == nil || j.WX.WXPages != 0 || !strings.Contains(j.WX.Verdict, "passed") {
		t.Fatalf("--json: machine %+v, wx %+v", j.Machine, j.WX)
	}
	// The captures are seconds apart on a live kernel: vmalloc changes (each
	// command's kernel stack), the linear map does not.
	linearText := func(d *ptdump.Dump) string {
		var b strings.Builder
		for i := range d.Ranges {
			if r := &d.Ranges[i]; regionOf(d, r) == "Linear Mapping start" {
				txt := ""
				if r.Attrs != nil {
					txt = r.Attrs.Text
				}
				fmt.Fprintf(&b, "%#x-%#x %s %s\n", r.Start, r.End, r.Level, txt)
			}
		}
		return b.String()
	}
	if a, b := linearText(j.Dump), linearText(d); a != b || a == "" {
		t.Errorf("--json linear map differs from the text dump's:\n%s\nvs\n%s", a, b)
	}
}

// continuesPA reports whether va maps want according to the --pa line that
// covers it (a run of physically contiguous pages may start before va).
func continuesPA(d *ptdump.Dump, va, want uint64) bool {
	for _, r := range d.Ranges {
		if r.Start <= va && (r.End == 0 || va < r.End) {
			return r.HasPA && r.PA+(va-r.Start) == want
		}
	}
	return false
}
