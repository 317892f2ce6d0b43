package trace

// The live loop: boot Debian's arm64 kernel under QEMU with
// qemu-arm64-guest.sh, record with the script `ptlab trace script` prints
// while modules load and unload, capture the page tables before and after
// with `ptlab capture --pa --tables` (a TBL line per table descriptor, so
// the table pages compare exactly, table by table), and check the replay
// against them (as TestCommittedRecording does for the committed recordings). Skipped with
// -short or without qemu-system-aarch64. PTLAB_TRACE_SAVE=DIR keeps the
// recording and both captures there; PTLAB_QEMU_ARGS adds options of the
// script ("-E trixie-backports": Debian's 7.x kernel).

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// qemuModules are loaded, unloaded and partly reloaded in the guest
// (dependencies are added by qemu-arm64-guest.sh).
const qemuModules = "minix qnx4 befs ntfs3 nilfs2 serpent_generic camellia_generic wp512 xfs jfs hfs hfsplus udf isofs romfs ufs affs omfs exfat vfat msdos twofish_generic cast5_generic cast6_generic blowfish_generic des_generic fcrypt michael_mic rmd160 lz4 lz4hc dummy efs freevxfs sysv adfs hpfs"

// qemuGuest runs in the guest: the recorder around a workload that captures
// the tables, marks "before", loads every module, unloads them all, reloads
// the first 20, marks "after" and captures again ("capture-start" and
// "capture-end" bracket the captures).
const qemuGuest = `
cat > /tmp/work.sh <<'W'
mark() { echo "ptlab-mark $1" > "$PTLAB_TRACEFS/trace_marker"; }
mark capture-start
/bin/ptlab capture --pa --tables -o /tmp/before.txt 2>/tmp/before.err || exit 1
mark before
for m in $MODS; do insmod "$MODDIR/$m.ko" || echo "insmod $m failed" >&2; done
rev=""; for m in $MODS; do rev="$m $rev"; done
for m in $rev; do rmmod "$m" || echo "rmmod $m failed" >&2; done
n=0; for m in $MODS; do n=$((n+1)); [ $n -le 20 ] && insmod "$MODDIR/$m.ko"; done
mark after
/bin/ptlab capture --pa --tables -o /tmp/after.txt 2>/tmp/after.err
mark capture-end
W
export MODS MODDIR
section record sh /bin/ptlab-trace.sh -o /tmp/rec.txt sh /tmp/work.sh
section recording cat /tmp/rec.txt
section before cat /tmp/before.txt
section after cat /tmp/after.txt
m=${MODS##* }
section gorecord /bin/ptlab trace record -o /tmp/rec2.txt -- sh -c "insmod $MODDIR/$m.ko && rmmod $m"
section gorecording cat /tmp/rec2.txt
`

// guestScriptPath finds qemu-arm64-guest.sh: $QEMU_ARM64_GUEST, or the
// repository's own tools/ copy.
func guestScriptPath() string {
	if p := os.Getenv("QEMU_ARM64_GUEST"); p != "" {
		return p
	}
	p, err := filepath.Abs(filepath.Join("..", "tools", "qemu-arm64-guest.sh"))
	if err != nil {
		return ""
	}
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

var (
	beginRE = regexp.MustCompile(`^=== BEGIN (.+)$`)
	endRE   = regexp.MustCompile(`^=== END (.+) \(rc=(-?\d+)\)$`)
)

// guestSections returns the "=== BEGIN name" ... "=== END name (rc=N)"
// blocks of a serial log.
func guestSections(log []byte) (map[string][]string, map[string]int) {
	out, rcs := map[string][]string{}, map[string]int{}
	var cur string
	var lines []string
	in := false
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		l := sc.Text()
		if m := beginRE.FindStringSubmatch(l); m != nil {
			cur, lines, in = m[1], nil, true
		} else if m := endRE.FindStringSubmatch(l); m != nil && in && m[1] == cur {
			out[cur] = lines
			rcs[cur], _ = strconv.Atoi(m[2])
			in = false
		} else if in {
			lines = append(lines, l)
		}
	}
	return out, rcs
}

func TestTraceOnRealKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU; skipped with -short")
	}
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		t.Skip("qemu-system-aarch64 not installed")
	}
	script := guestScriptPath()
	if script == "" {
		t.Skip("qemu-arm64-guest.sh not found; set QEMU_ARM64_GUEST")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "ptlab")
	gotool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		gotool = p
	}
	build := exec.Command(gotool, "build", "-trimpath", "-o", bin, "github.com/ptlab/ptlab/cmd/ptlab")
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cross-compile: %v\n%s", err, out)
	}
	rec := filepath.Join(dir, "ptlab-trace.sh")
	guest := filepath.Join(dir, "guest.sh")
	if err := os.WriteFile(rec, []byte(Script()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(guest, []byte(qemuGuest), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	args := []string{"-q", "-c", "max,pauth-impdef=on", "-t", "1500", "-M", qemuModules,
		"-f", bin + ":/bin/ptlab", "-f", rec + ":/bin/ptlab-trace.sh", "-r", guest}
	if w := os.Getenv("PTLAB_QEMU_SCRATCH"); w != "" {
		args = append([]string{"-w", w}, args...)
	}
	// PTLAB_QEMU_ARGS adds options, e.g. "-E trixie-backports" for a 7.x kernel.
	args = append(strings.Fields(os.Getenv("PTLAB_QEMU_ARGS")), args...)
	cmd := exec.CommandContext(ctx, script, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	log, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s\n%s", script, err, stderr.Bytes(), tailLines(log, 40))
	}
	secs, rcs := guestSections(log)
	for _, s := range []string{"record", "recording", "before", "after"} {
		if _, ok := secs[s]; !ok || rcs[s] != 0 {
			t.Fatalf("section %s missing or failed (rc=%d)\n%s", s, rcs[s], tailLines(log, 60))
		}
	}
	files := map[string]string{}
	for _, s := range []string{"recording", "before", "after"} {
		p := filepath.Join(dir, s+".txt")
		if err := os.WriteFile(p, []byte(strings.Join(secs[s], "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		files[s] = p
		if save := os.Getenv("PTLAB_TRACE_SAVE"); save != "" {
			os.WriteFile(filepath.Join(save, s+".txt"), []byte(strings.Join(secs[s], "\n")+"\n"), 0o644)
		}
	}
	t.Run("imported", func(t *testing.T) { checkRecording(t, files["recording"], files["before"], files["after"]) })
	t.Run("ownboot", func(t *testing.T) {
		text := func(s string) []byte { return []byte(strings.Join(secs[s], "\n") + "\n") }
		checkOwnBoot(t, "live", text("recording"), text("before"), text("after"))
	})
	// The guest captured with --tables: the table pages must have compared
	// exactly, not from the leaf estimate.
	for _, s := range []string{"before", "after"} {
		if d := parseDumpFile(t, files[s]); len(d.Tables) == 0 {
			t.Errorf("the %q capture has no table lines", s)
		}
	}

	// ptlab trace record, the Go recorder, on the same kernel: one module
	// loaded and unloaded, every event mapped.
	if rcs["gorecord"] != 0 {
		t.Fatalf("ptlab trace record: rc=%d\n%s", rcs["gorecord"], strings.Join(secs["gorecord"], "\n"))
	}
	if save := os.Getenv("PTLAB_TRACE_SAVE"); save != "" {
		os.WriteFile(filepath.Join(save, "gorecording.txt"), []byte(strings.Join(secs["gorecording"], "\n")+"\n"), 0o644)
	}
	grec, err := Parse(strings.NewReader(strings.Join(secs["gorecording"], "\n")+"\n"), "gorecording")
	if err != nil {
		t.Fatal(err)
	}
	tl, err := Build(grec, Options{})
	if err != nil {
		t.Fatal(err)
	}
	loads, unloads := 0, 0
	for _, o := range tl.Replay.Ops {
		switch o.Op {
		case "load":
			loads++
		case "unload":
			unloads++
		}
	}
	if loads == 0 || unloads == 0 || len(grec.Warnings) > 0 {
		t.Errorf("ptlab trace record: %d events, %d loads, %d unloads, warnings %v\n%s", len(grec.Events), loads, unloads, grec.Warnings, strings.Join(secs["gorecord"], "\n"))
	}
	for _, m := range tl.Unmapped() {
		t.Logf("ptlab trace record: unmapped line %d: %s: %s", m.Line, m.Event, m.Reason)
	}
}

func tailLines(b []byte, n int) string {
	l := strings.Split(string(b), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
