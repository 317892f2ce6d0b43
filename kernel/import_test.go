package kernel_test

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/workload"
)

func linearSection(text string) []string {
	var out []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		in = in || strings.Contains(l, "Linear Mapping start")
		if in {
			out = append(out, l)
		}
		if strings.Contains(l, "Linear Mapping end") {
			break
		}
	}
	return out
}

// Importing a real dump and dumping the model again gives back the same
// linear map, line for line: leaf sizes, contiguous runs and permissions
// survive the round trip.
func TestImportRoundTrip(t *testing.T) {
	path := "../ptdump/testdata/002-ryan-roberts-bbml2-v7-ampereone-mode3-ptes.txt"
	base, _ := kernel.Machine("mixed-server")
	cfg, im, err := kernel.ImportFile(base, path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RAM[0].Size != 12<<30 {
		t.Errorf("RAM %+v", cfg.RAM)
	}
	k, err := kernel.BootImported(cfg, im)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := k.PtdumpWalk(&kernel.PlainCPU{}, &buf); err != nil {
		t.Fatal(err)
	}
	real, _ := os.ReadFile(path)
	got, want := linearSection(buf.String()), linearSection(string(real))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("round trip differs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A policy can now run on this machine: load a module.
	if _, err := k.LoadModule(&kernel.PlainCPU{}, kernel.ModuleSpec{Name: "m", Size: [kernel.NumModMemTypes]uint64{kernel.ModText: 64 << 10}}); err != nil {
		t.Fatal(err)
	}
}

func TestImportRejects(t *testing.T) {
	base, _ := kernel.Machine("bbml2-server")
	d, err := ptdump.Parse(strings.NewReader("---[ Kernel Space ]---\n0xffff880000000000-0xffff880000200000 2M RW PSE GLB NX pmd\n"), "x86.txt", ptdump.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := kernel.ImportDump(base, d); err == nil {
		t.Error("an x86 dump cannot be imported")
	}
}

// Importing a dump works whatever the base machine: the kernel image and its
// read-only alias come from the dump, so no page of the alias (a 32M contPMD
// block in this dump) reaches the allocator, and loading the real server
// module set splits nothing on machines that cannot split live.
func TestImportImageFromDump(t *testing.T) {
	path := "../ptdump/testdata/002-ryan-roberts-bbml2-v7-ampereone-mode3-ptes.txt"
	mods, err := workload.ScenarioModules(&workload.Scenario{Work: workload.Workload{Modules: "server"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"qemu-virt", "bbml2-server", "n1-server", "mixed-server"} {
		base, _ := kernel.Machine(name)
		cfg, im, err := kernel.ImportFile(base, path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		k, err := kernel.BootImported(cfg, im)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// The dump's alias is [0x210000, 0x2550000) past PAGE_OFFSET: _stext
		// after a 64K head at the 2M-aligned _text, __init_begin at its end.
		if got := k.Image.PA - uint64(base.RAM[0].Base); got != 0x200000 || k.Image.InitStart != 0x2350000 {
			t.Errorf("%s: image at +%#x, __init_begin at +%#x", name, got, k.Image.InitStart)
		}
		c := &kernel.PlainCPU{}
		for _, m := range mods {
			if _, err := k.LoadModule(c, m); err != nil {
				t.Fatalf("%s: loading %s: %v", name, m.Name, err)
			}
		}
		if s := k.Stats.Split; s.Total() != 0 {
			t.Errorf("%s: splits %+v", name, s)
		}
	}
}
