package trace

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/ptlab/ptlab/capture"
)

// RecordOptions configure Record.
type RecordOptions struct {
	Tracefs  string // "" finds it
	BufferKB int    // per-CPU ring buffer (0: 8192)
	Proc     string // "" is /proc (tests point it elsewhere)
	Sys      string // "" is /sys
	Log      io.Writer
	// Ready, if not nil, is closed once the start snapshot is taken and
	// events are being recorded: a caller runs its command after that.
	Ready chan<- struct{}
}

// Record does what the script does, from Go: define the probes, enable the
// tracepoints, snapshot the start state, stream trace_pipe until ctx ends
// (the caller cancels it on a signal or when its command exits), snapshot the
// end state, remove the probes. The recording goes to w.
func Record(ctx context.Context, w io.Writer, opt RecordOptions) (err error) {
	if opt.Proc == "" {
		opt.Proc = "/proc"
	}
	if opt.Sys == "" {
		opt.Sys = "/sys"
	}
	if opt.BufferKB == 0 {
		opt.BufferKB = 8192
	}
	if opt.Log == nil {
		opt.Log = io.Discard
	}
	T := opt.Tracefs
	if T == "" {
		for _, d := range []string{filepath.Join(opt.Sys, "kernel/tracing"), filepath.Join(opt.Sys, "kernel/debug/tracing")} {
			if _, err := os.Stat(filepath.Join(d, "kprobe_events")); err == nil {
				T = d
				break
			}
		}
	}
	if T == "" {
		return errors.New("trace record: no tracefs with kprobe_events (root? CONFIG_KPROBE_EVENTS? mount -t tracefs nodev /sys/kernel/tracing)")
	}
	put := func(file, v string) error { return os.WriteFile(filepath.Join(T, file), []byte(v+"\n"), 0) }
	add := func(file, v string) error {
		f, err := os.OpenFile(filepath.Join(T, file), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(v + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	bw := bufio.NewWriter(w)
	defer func() {
		if ferr := bw.Flush(); err == nil {
			err = ferr
		}
	}()
	sec := func(name string) { fmt.Fprintf(bw, "%s%s\n", sectionPrefix, name) }
	cat := func(path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(opt.Log, "trace record: %v\n", err)
			return
		}
		bw.Write(b)
	}
	first := func(path string) string {
		b, _ := os.ReadFile(path)
		return strings.TrimSpace(string(b))
	}

	fmt.Fprintln(bw, "# ptlab-trace 1")
	sec("meta")
	fmt.Fprintf(bw, "kernel %s\n", first(filepath.Join(opt.Proc, "sys/kernel/osrelease")))
	arch := runtime.GOARCH
	if arch == "arm64" {
		arch = "aarch64"
	}
	fmt.Fprintf(bw, "machine %s\n", arch)
	fmt.Fprintf(bw, "cmdline %s\n", first(filepath.Join(opt.Proc, "cmdline")))
	fmt.Fprintf(bw, "tracefs %s\nbuffer_size_kb %d\n", T, opt.BufferKB)
	fmt.Fprintf(bw, "trace_clock %s\n", first(filepath.Join(T, "trace_clock")))
	fmt.Fprintf(bw, "kptr_restrict %s\n", first(filepath.Join(opt.Proc, "sys/kernel/kptr_restrict")))
	fmt.Fprintf(bw, "bpf_jit_kallsyms %s\n", first(filepath.Join(opt.Proc, "sys/net/core/bpf_jit_kallsyms")))
	if b, err := os.ReadFile(filepath.Join(opt.Proc, "meminfo")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal") || strings.HasPrefix(l, "Vmalloc") {
				fmt.Fprintln(bw, l)
			}
		}
	}
	if k, err := capture.OpenKcore(filepath.Join(opt.Proc, "kcore")); err == nil {
		if vi := k.VMCoreInfo; vi != nil {
			for _, key := range vi.Keys() {
				if strings.HasPrefix(key, "NUMBER(") || key == "KERNELOFFSET" || key == "PAGESIZE" || key == "SIZE(page)" || key == "OSRELEASE" {
					v, _ := vi.Get(key)
					fmt.Fprintf(bw, "%s=%s\n", key, v)
				}
			}
		}
		k.Close()
	}

	// Quiet the tracer, drop stale ptlab probes, size the buffer.
	_ = put("tracing_on", "0")
	_ = put("events/ptlab/enable", "0")
	for _, e := range Tracepoints {
		_ = put("events/"+e+"/enable", "0")
	}
	if b, err := os.ReadFile(filepath.Join(T, "kprobe_events")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if len(l) > 2 && (l[0] == 'p' || l[0] == 'r') && strings.HasPrefix(l[1:], ":ptlab/") {
				def, _, _ := strings.Cut(l[2:], " ")
				_ = add("kprobe_events", "-:"+def)
			}
		}
	}
	_ = put("buffer_size_kb", fmt.Sprint(opt.BufferKB))
	_ = put("current_tracer", "nop")

	syms := probeableSymbols(T, opt.Proc)
	var status []string
	var defined []string
	for _, p := range Probes {
		if !syms[p.Sym] {
			status = append(status, fmt.Sprintf("missing %s %s: not in available_filter_functions or kallsyms", p.Name, p.Sym))
			continue
		}
		if err := add("kprobe_events", p.Definition()); err != nil {
			status = append(status, fmt.Sprintf("failed %s %s: kprobe_events refused '%s': %v", p.Name, p.Sym, p.Definition(), err))
			continue
		}
		status = append(status, fmt.Sprintf("ok %s %c %s %s", p.Name, p.Kind, p.Sym, strings.Join(p.Args, " ")))
		defined = append(defined, p.Name)
	}
	defer func() {
		_ = put("events/ptlab/enable", "0")
		for _, e := range Tracepoints {
			_ = put("events/"+e+"/enable", "0")
		}
		for _, n := range defined {
			_ = add("kprobe_events", "-:ptlab/"+n)
		}
	}()
	if len(defined) > 0 {
		if err := put("events/ptlab/enable", "1"); err != nil {
			return fmt.Errorf("trace record: enable the probes: %w", err)
		}
	}
	for _, e := range Tracepoints {
		if put("events/"+e+"/enable", "1") == nil {
			status = append(status, "ok "+e+" tracepoint")
		} else {
			status = append(status, "missing "+e+": no such tracepoint")
		}
	}
	sec("probes")
	for _, s := range status {
		fmt.Fprintln(bw, s)
	}
	sec("formats")
	var fmts []string
	for _, g := range []string{"events/ptlab/*/format", "events/vmalloc/*/format", "events/module/module_load/format", "events/module/module_free/format"} {
		m, _ := filepath.Glob(filepath.Join(T, g))
		fmts = append(fmts, m...)
	}
	for _, f := range fmts {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "name:") || strings.HasPrefix(l, "print fmt:") {
				fmt.Fprintln(bw, l)
			}
		}
	}
	// Stream trace_pipe into a temporary file; it is copied in after.
	// Tracing runs while the start snapshot is taken, so nothing that
	// changes under the snapshot is lost; the "start" mark says where it
	// ended.
	tmp, err := os.CreateTemp("", "ptlab-trace-pipe")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	_ = put("trace", "")
	fd, err := syscall.Open(filepath.Join(T, "trace_pipe"), syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("trace record: open trace_pipe: %w", err)
	}
	defer syscall.Close(fd)
	if err := put("tracing_on", "1"); err != nil {
		return fmt.Errorf("trace record: tracing_on: %w", err)
	}
	_ = put("trace_marker", "ptlab-mark snapshot")
	snapshot(bw, "start", opt, cat)
	_ = put("trace_marker", "ptlab-mark start")
	fmt.Fprintf(opt.Log, "trace record: recording (tracefs %s)\n", T)
	if opt.Ready != nil {
		close(opt.Ready)
	}
	buf := make([]byte, 64<<10)
	drain := func() error {
		for {
			n, err := syscall.Read(fd, buf)
			if n > 0 {
				if _, werr := tmp.Write(buf[:n]); werr != nil {
					return werr
				}
			}
			if err == syscall.EAGAIN || (err == nil && n == 0) {
				return nil
			}
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				return err
			}
		}
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		if err := drain(); err != nil {
			return fmt.Errorf("trace record: trace_pipe: %w", err)
		}
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
	}
	_ = put("trace_marker", "ptlab-mark end")
	_ = put("tracing_on", "0")
	time.Sleep(200 * time.Millisecond)
	if err := drain(); err != nil {
		return fmt.Errorf("trace record: trace_pipe: %w", err)
	}
	sec("trace")
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := io.Copy(bw, tmp); err != nil {
		return err
	}
	sec("stats")
	cpus, _ := filepath.Glob(filepath.Join(T, "per_cpu/cpu*"))
	sort.Strings(cpus)
	for _, c := range cpus {
		b, err := os.ReadFile(filepath.Join(c, "stats"))
		if err != nil {
			continue
		}
		var parts []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "overrun") || strings.HasPrefix(l, "dropped") {
				parts = append(parts, l)
			}
		}
		fmt.Fprintf(bw, "%s %s\n", filepath.Base(c), strings.Join(parts, " "))
	}
	snapshot(bw, "end", opt, cat)
	sec("end rc=0")
	return nil
}

var kallsymsAnchor = regexp.MustCompile(`\[bpf\]| (_text|_stext|_etext|__start_rodata|__init_begin|_end|swapper_pg_dir)$`)

func snapshot(bw *bufio.Writer, which string, opt RecordOptions, cat func(string)) {
	sec := func(name string) { fmt.Fprintf(bw, "%s%s %s\n", sectionPrefix, which, name) }
	sec("modules")
	cat(filepath.Join(opt.Proc, "modules"))
	sec("sections")
	dirs, _ := filepath.Glob(filepath.Join(opt.Sys, "module/*/sections"))
	sort.Strings(dirs)
	for _, d := range dirs {
		m := filepath.Base(filepath.Dir(d))
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(d, e.Name()))
			if err != nil {
				continue
			}
			fmt.Fprintf(bw, "%s %s %s\n", m, e.Name(), strings.TrimSpace(string(b)))
		}
	}
	sec("vmallocinfo")
	cat(filepath.Join(opt.Proc, "vmallocinfo"))
	sec("kallsyms")
	if f, err := os.Open(filepath.Join(opt.Proc, "kallsyms")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if l := sc.Text(); kallsymsAnchor.MatchString(l) {
				fmt.Fprintln(bw, l)
			}
		}
		f.Close()
	}
}

// probeableSymbols is the set of probed symbols the kernel has: in
// available_filter_functions, or a text symbol of kallsyms.
func probeableSymbols(T, proc string) map[string]bool {
	want := map[string]bool{}
	for _, p := range Probes {
		want[p.Sym] = true
	}
	have := map[string]bool{}
	if f, err := os.Open(filepath.Join(T, "available_filter_functions")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if s, _, _ := strings.Cut(sc.Text(), " "); want[s] {
				have[s] = true
			}
		}
		f.Close()
	}
	if f, err := os.Open(filepath.Join(proc, "kallsyms")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) >= 3 && (fs[1] == "t" || fs[1] == "T") && want[fs[2]] {
				have[fs[2]] = true
			}
		}
		f.Close()
	}
	return have
}
