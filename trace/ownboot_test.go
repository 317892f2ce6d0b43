package trace

// Module placement from ptlab's own boot: the committed QEMU recordings
// (testdata/qemu-*) replayed, with the real kernel's free timing, on a
// kernel ptlab booted itself with the recording's profile (release, VA size,
// RAM, KASLR offset), not on the "before" capture's imported linear map.
// Every module section must land where the real kernel put it (the model's
// own lowest-fit search in the recorded module window, as the pinned replay
// checks it), and the table pages the recorded history added must be the
// ones the real kernel added, level by level and table by table
// (checkTables: exact where the captures carry table lines — the "-tables"
// recordings —, the model's from the census of its own tables; estimated
// from the leaves for the older ones). The pages whose change differs must
// be ones ExplainLate explains, as in the imported replay.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/workload"
)

// readXZ reads a committed xz file through the importer's own decompress.
func readXZ(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := decompress(raw, path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var metaRE = regexp.MustCompile(`(?m)^(?:NUMBER\()?([A-Za-z_]+)\)?=(\S+)$`)

func TestModulePlacementFromOwnBoot(t *testing.T) {
	for _, dir := range []string{"qemu-6.12", "qemu-6.12-nokaslr", "qemu-7.3", "qemu-6.12-tables", "qemu-6.12-nokaslr-tables", "qemu-7.3-tables"} {
		t.Run(dir, func(t *testing.T) {
			base := filepath.Join("testdata", dir)
			checkOwnBoot(t, dir, readXZ(t, filepath.Join(base, "recording.txt.xz")),
				readXZ(t, filepath.Join(base, "before.txt.xz")), readXZ(t, filepath.Join(base, "after.txt.xz")))
		})
	}
}

// checkOwnBoot replays a recording (text of recording, before and after
// captures) on ptlab's own boot of its profile and checks placement, page
// changes and table pages.
func checkOwnBoot(t *testing.T, dir string, recText, beforeText, afterText []byte) {
	t.Helper()
	meta := map[string]string{}
	for _, m := range metaRE.FindAllStringSubmatch(string(recText), -1) {
		if _, ok := meta[m[1]]; !ok {
			meta[m[1]] = m[2]
		}
	}
	rec, err := Parse(bytes.NewReader(recText), dir)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := Build(rec, Options{From: "before", To: "after", Pinned: true})
	if err != nil {
		t.Fatal(err)
	}
	// The guest: QEMU virt, -cpu max (LPA2, 52-bit VA), 2 GiB at
	// 0x40000000, KASLR with the recorded offset (or none: with
	// nokaslr the model chooses the module region itself), Debian's
	// default rodata and KFENCE (sample interval 0).
	kaslr := "memstart_addr: " + meta["PHYS_OFFSET"] + "\nkaslr_seed: 1\nimage: {kaslr_offset: 0x" + meta["KERNELOFFSET"] + "}\n"
	if meta["KERNELOFFSET"] == "0" {
		kaslr = ""
	}
	cfg := fmt.Sprintf("kernel: %q\ngranule: 4K\nva_bits: 52\nconfig_va_bits: 52\nlpa2: true\n"+
		"ram: [{base: 0x40000000, size: 2G}]\ncpus: [{model: neoverse-n1, count: 2}]\nkfence: idle\nrodata: %q\n"+
		"%s"+
		// The pinned replay puts the recording's own vmalloc areas
		// where the real kernel had them; the boot-time users the
		// model adds (stacks, device ioremaps) are not byte-exact
		// and would sit there, so this boot declares none.
		"boot_threads: 0\ndevices: [{name: pcie-pio, base: 0x3eff0000, size: 0x10000, pci_io: true}]\n",
		meta["OSRELEASE"], rec.Rodata(), kaslr)
	if kaslr == "" {
		// Without KASLR the module region is the model's own
		// (module_init_limits): the window the recorded kernel
		// allocated module memory from must be its direct or its
		// PLT window.
		base, err := kernel.Machine("qemu-virt")
		if err != nil {
			t.Fatal(err)
		}
		kc, err := kernel.DecodeConfig([]byte(cfg), dir+".yaml", base)
		if err != nil {
			t.Fatal(err)
		}
		k, err := kernel.Boot(kc)
		if err != nil {
			t.Fatal(err)
		}
		r := k.Exec.Ranges[kernel.ExecmemModuleText]
		w := tl.Replay.ModuleWindow
		if len(w) != 2 || !(uint64(w[0]) == r.Start && uint64(w[1]) == r.End || uint64(w[0]) == r.FallbackStart && uint64(w[1]) == r.FallbackEnd) {
			t.Errorf("the recorded module window %#x is neither of ptlab's: [%#x, %#x) or [%#x, %#x)", w, r.Start, r.End, r.FallbackStart, r.FallbackEnd)
		} else {
			t.Logf("module window [%#x, %#x): ptlab's own without KASLR", w[0], w[1])
		}
	}
	s := &workload.Scenario{Name: dir, Machine: "qemu-virt", Presets: []string{"mainline"},
		Config: workload.NewConfigOverride([]byte(cfg), dir+".yaml"),
		Work:   workload.Workload{Modules: "none"}, Replay: tl.Replay}
	run, explained := replayPinned(t, s, rec)
	misplaced := run.Misplaced
	before := parseDump(t, beforeText, "before")
	after := parseDump(t, afterText, "after")
	// Pages whose change differs (the model's own boot-time areas
	// do not change in the window, so a change compares): only a
	// capture that saw the other side of an area's lifetime may
	// explain one, as in the imported replay.
	mm := ComparePages(ChangedPages(before, after, "modules+vmalloc", 4096), ChangedPages(run.Before, run.After, "modules+vmalloc", 4096), 4096)
	expl, rest := ExplainLate(rec, "before", "after", mm, Dumps{before, after, run.Before, run.After})
	for _, m := range rest {
		t.Errorf("page difference: %v", m)
	}
	if _, exact := checkTables(t, before, after, run, expl); !exact && strings.HasSuffix(dir, "-tables") {
		t.Errorf("%s: captured with --tables, but the table pages were not compared exactly", dir)
	}
	loads, regions := 0, 0
	for _, o := range tl.Replay.Ops {
		if o.Op == "load" {
			loads++
			regions += len(o.Regions)
		}
	}
	if loads == 0 || regions == 0 {
		t.Fatalf("the recording loads no module (%d loads, %d recorded regions)", loads, regions)
	}
	t.Logf("%d operations replayed from ptlab's own boot: %d module loads, %d recorded module regions; %d placed by the model's search elsewhere (%d explained)",
		len(tl.Replay.Ops), loads, regions, len(misplaced), len(explained))
}

func parseDump(t *testing.T, b []byte, name string) *ptdump.Dump {
	t.Helper()
	d, err := ptdump.Parse(strings.NewReader(string(b)), name, ptdump.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}
