package trace

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/workload"
)

func TestParseEventLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Event
		err  string
	}{
		{line: "          insmod-120     [001] .....    10.000200: execmem_alloc: (module_memory_alloc+0x5c/0x120) type=0 size=8192",
			want: Event{Comm: "insmod", PID: 120, CPU: 1, TS: 10000200000, Name: "execmem_alloc", Args: "(module_memory_alloc+0x5c/0x120) type=0 size=8192"}},
		{line: "     kworker/0:1-10      [000] d..1.    3.5: module_load: xfs ",
			want: Event{Comm: "kworker/0:1", PID: 10, CPU: 0, TS: 3500000000, Name: "module_load", Args: "xfs"}},
		{line: " systemd-udevd-2-7 (    7) [003] 1.000001: module_free: xfs",
			want: Event{Comm: "systemd-udevd-2", PID: 7, CPU: 3, TS: 1000001000, Name: "module_free", Args: "xfs"}},
		{line: "  <idle>-0 [002] 1.0: set_memory_ro:", want: Event{Comm: "<idle>", PID: 0, CPU: 2, TS: 1e9, Name: "set_memory_ro"}},
		{line: "bpftool-130 [000] ..... 11.0008", err: "truncated: no time stamp"},
		{line: "bpftool-130 [000", err: "truncated [cpu] column"},
		{line: "bpftool-130 [x] 1.0: a: b", err: "bad cpu"},
		{line: "bpftool [0] 1.0: a: b", err: "no COMM-PID column"},
		{line: "a-1 [0] 1.0:", err: "truncated: no event name"},
		{line: "a-1 [0] 1.0000000000: e: x", err: "bad time stamp"},
		{line: "a-1 [0] 1.0: two words: x", err: "bad event name"},
	} {
		got, err := parseEventLine(tc.line)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.line, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q:\n got %+v, %v\nwant %+v", tc.line, got, err, tc.want)
		}
	}
}

func mustBuild(t *testing.T, path string, opt Options) (*Recording, *Timeline) {
	t.Helper()
	rec, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := Build(rec, opt)
	if err != nil {
		t.Fatal(err)
	}
	return rec, tl
}

func TestSmallRecording(t *testing.T) {
	rec, tl := mustBuild(t, "testdata/small.txt", Options{})
	if rec.Meta["kernel"] != "6.12.117+deb12-arm64" || rec.Meta["KERNELOFFSET"] != "1a2b0000" {
		t.Errorf("meta %v", rec.Meta)
	}
	if rec.Overruns != 3 {
		t.Errorf("overruns %d, want 3", rec.Overruns)
	}
	if len(rec.Start.Modules) != 1 || len(rec.Start.Vmalloc) != 2 || len(rec.Start.Sections) != 2 || len(rec.Start.Symbols) != 1 {
		t.Errorf("start snapshot %+v", rec.Start)
	}
	// Every event has exactly one mapping.
	if len(tl.Mappings) != len(rec.Events) {
		t.Fatalf("%d mappings for %d events", len(tl.Mappings), len(rec.Events))
	}
	// Line-numbered warnings for the truncated line and the unknown section.
	var warned []int
	for _, w := range rec.Warnings {
		warned = append(warned, w.Line)
	}
	if len(warned) != 2 || warned[0] != 53 || warned[1] != 68 {
		t.Errorf("warnings %v, want lines 53 and 68", rec.Warnings)
	}
	wantUnmapped := map[int]string{
		49: "in no object",
		50: "unknown event",
		51: "no allocation at this address",
		52: "never allocated",
		63: "never saw loaded",
	}
	got := map[int]string{}
	for _, m := range tl.Unmapped() {
		got[m.Line] = m.Reason
	}
	for l, w := range wantUnmapped {
		if !strings.Contains(got[l], w) {
			t.Errorf("line %d: unmapped reason %q, want %q", l, got[l], w)
		}
	}
	if len(got) != len(wantUnmapped) {
		t.Errorf("unmapped %v", got)
	}
	// The module hello: text 8K, data 4K (nx only), rodata 4K (ro before
	// module_load), init_text 4K (freed by a kworker while loaded).
	rp := tl.Replay
	if len(rp.Modules) != 2 || rp.Modules[1].Name != "hello" {
		t.Fatalf("modules %+v", rp.Modules)
	}
	h := rp.Modules[1].Size
	if h["text"] != 8192 || h["data"] != 4096 || h["rodata"] != 4096 || h["init_text"] != 4096 || len(h) != 4 {
		t.Errorf("hello sizes %v", h)
	}
	var ops []string
	for _, o := range rp.Ops {
		ops = append(ops, o.Op)
	}
	if want := "vmalloc vmalloc load vmalloc load vfree jit-alloc unload unload"; strings.Join(ops, " ") != want {
		t.Errorf("ops %q, want %q", strings.Join(ops, " "), want)
	}
}

func TestMarks(t *testing.T) {
	_, tl := mustBuild(t, "testdata/small.txt", Options{From: "before", To: "after"})
	last := tl.Mappings[len(tl.Mappings)-1]
	if last.Disp != Outside || last.Line != 63 {
		t.Errorf("last mapping %+v, want line 63 outside", last)
	}
	if _, err := Build(mustParse(t, "testdata/small.txt"), Options{From: "nope"}); !errors.Is(err, ErrFormat) {
		t.Errorf("missing mark: %v", err)
	}
}

func mustParse(t *testing.T, path string) *Recording {
	rec, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestOutOfOrder(t *testing.T) {
	in := "a-1 [0] 2.0: module_load: x\na-1 [0] 1.0: module_free: x\n"
	rec, err := Parse(strings.NewReader(in), "ooo")
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Warnings) != 1 || rec.Warnings[0].Line != 2 || !strings.Contains(rec.Warnings[0].Msg, "out of order") {
		t.Errorf("warnings %v", rec.Warnings)
	}
	if rec.Events[0].Name != "module_free" {
		t.Errorf("not sorted: %+v", rec.Events)
	}
}

func TestNotATrace(t *testing.T) {
	if _, err := Parse(strings.NewReader("hello\nworld\n"), "junk"); !errors.Is(err, ErrFormat) {
		t.Errorf("junk: %v", err)
	}
}

// The replay of the small recording runs under every preset.
func TestReplaySmall(t *testing.T) {
	_, tl := mustBuild(t, "testdata/small.txt", Options{})
	s := &workload.Scenario{Name: "small", Machine: "qemu-virt", Work: workload.Workload{Modules: "none"}, Replay: tl.Replay}
	b, _ := os.ReadFile("testdata/small.txt")
	_ = b
	for _, p := range []string{"mainline", "rox-cache", "rfc-v1", "collapse", "no-alias-split"} {
		s.Presets = []string{p}
		r, _, err := workload.RunReplay(s, p, nil)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(r.Failed) != 0 {
			t.Errorf("%s: failed %v", p, r.Failed)
		}
	}
}

func FuzzImport(f *testing.F) {
	for _, p := range []string{"testdata/small.txt"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("# ptlab-trace 1\n=== ptlab-trace trace\na-1 [0] 1.0: execmem_alloc_ret: ret=0x0\n"))
	f.Add([]byte("a-1 [0] 1.0: alloc_vmap_area: va_start: 99 size=0 align=1 failed=0\n"))
	f.Add([]byte("a-1 [0] 1.0: tracing_mark_write: ptlab-mark before\na-1 [0] 1.1: execmem_alloc: type=0 size=4096\n" +
		"a-1 [0] 1.2: execmem_alloc_ret: ret=0xffff800078000000\na-1 [0] 1.3: module_load: m\n" +
		"k-2 [0] 1.4: execmem_free: addr=0xffff800078000000\na-1 [0] 1.5: tracing_mark_write: ptlab-mark after\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := Parse(bytes.NewReader(b), "fuzz")
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error without ErrFormat: %v", err)
			}
			return
		}
		tl, err := Build(rec, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(tl.Mappings) != len(rec.Events) {
			t.Fatalf("%d mappings for %d events", len(tl.Mappings), len(rec.Events))
		}
		for _, w := range rec.Warnings {
			if w.Line < 0 {
				t.Fatalf("warning without a line: %v", w)
			}
		}
		s := &workload.Scenario{Name: "fuzz", Machine: "qemu-virt", Presets: []string{"mainline"}, Work: workload.Workload{Modules: "none"}, Replay: tl.Replay}
		if err := workload.ValidateReplay(s); err != nil {
			t.Fatalf("built replay does not validate: %v", err)
		}
		// A window between marks, pinned: missing marks are an ErrFormat.
		tl, err = Build(rec, Options{From: "before", To: "after", Pinned: true})
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("marks: error without ErrFormat: %v", err)
			}
			return
		}
		s.Replay = tl.Replay
		if err := workload.ValidateReplay(s); err != nil {
			t.Fatalf("built replay (marks) does not validate: %v", err)
		}
	})
}
