package trace

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Record against a fake tracefs, /proc and /sys: the file it writes parses,
// with the probes it could define, the one it could not, the events and both
// snapshots; it removes its probes again.
func TestRecordFakeTracefs(t *testing.T) {
	root := t.TempDir()
	T, proc, sys := filepath.Join(root, "tracing"), filepath.Join(root, "proc"), filepath.Join(root, "sys")
	files := map[string]string{
		T + "/kprobe_events":                         "p:ptlab/stale foo\n",
		T + "/available_filter_functions":            "set_memory_ro\nexecmem_alloc\nexecmem_free [foo]\nother\n",
		T + "/trace_clock":                           "[local] global\n",
		T + "/trace":                                 "",
		T + "/tracing_on":                            "0",
		T + "/trace_marker":                          "",
		T + "/buffer_size_kb":                        "",
		T + "/current_tracer":                        "",
		T + "/events/ptlab/enable":                   "",
		T + "/events/vmalloc/alloc_vmap_area/enable": "",
		T + "/events/module/module_load/enable":      "",
		T + "/per_cpu/cpu0/stats":                    "entries: 3\noverrun: 2\ndropped events: 0\n",
		T + "/trace_pipe": "insmod-1 [000] ..... 1.000000: execmem_alloc: (x+0x0/0x4) type=3 size=4096\n" +
			"insmod-1 [000] ..... 1.000100: execmem_alloc_ret: (x+0x0/0x4 <- execmem_alloc) ret=0xffff800080010000\n",
		proc + "/sys/kernel/osrelease":     "6.12.0-test\n",
		proc + "/cmdline":                  "console=ttyAMA0\n",
		proc + "/modules":                  "foo 16384 0 - Live 0xffff800078000000\n",
		proc + "/vmallocinfo":              "0xffff800080000000-0xffff800080005000   20480 start_kernel+0x2e0/0x7f8 pages=4 vmalloc N0=4\n",
		proc + "/kallsyms":                 "ffff800080010000 T _text\nffff800080020000 T set_memory_nx\nffff800080030000 t bpf_prog_1_x\t[bpf]\n",
		proc + "/meminfo":                  "MemTotal: 1 kB\n",
		sys + "/module/foo/sections/.text": "0xffff800078000000\n",
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // record what is in the pipe, then stop
	var out bytes.Buffer
	if err := Record(ctx, &out, RecordOptions{Tracefs: T, Proc: proc, Sys: sys}); err != nil {
		t.Fatal(err)
	}
	rec, err := Parse(bytes.NewReader(out.Bytes()), "fake")
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Warnings) != 0 {
		t.Errorf("warnings %v", rec.Warnings)
	}
	ok := map[string]bool{}
	for _, p := range rec.Probes {
		ok[p.Name] = p.OK
	}
	if !ok["set_memory_ro"] || !ok["set_memory_nx"] || !ok["execmem_alloc_ret"] || ok["split_kernel_leaf_mapping"] {
		t.Errorf("probes %+v", rec.Probes)
	}
	if _, listed := ok["split_kernel_leaf_mapping"]; !listed {
		t.Errorf("missing probe not listed")
	}
	if len(rec.Events) != 2 || rec.Events[1].Name != "execmem_alloc_ret" {
		t.Errorf("events %+v", rec.Events)
	}
	if rec.Start == nil || len(rec.Start.Modules) != 1 || len(rec.Start.Sections) != 1 || len(rec.Start.Vmalloc) != 1 || len(rec.Start.Symbols) != 2 {
		t.Errorf("start snapshot %+v", rec.Start)
	}
	if rec.Overruns != 2 || rec.Meta["kernel"] != "6.12.0-test" {
		t.Errorf("overruns %d meta %v", rec.Overruns, rec.Meta)
	}
	ke, _ := os.ReadFile(T + "/kprobe_events")
	if !strings.Contains(string(ke), "-:stale") && !strings.Contains(string(ke), "-:ptlab/stale") {
		t.Errorf("stale probe not removed: %q", ke)
	}
	if !strings.Contains(string(ke), "-:ptlab/set_memory_ro") {
		t.Errorf("probes not removed at the end: %q", ke)
	}
}
