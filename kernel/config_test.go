package kernel

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base, _ := Machine("qemu-virt")
	y := write("m.yaml", "name: mine\nram:\n  - base: 0x40000000\n    size: 4G\ncpus:\n  - model: ampere1\n    count: 8\nrodata: noalias\n")
	c, err := LoadConfig(y, base)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "mine" || c.RAM[0].Size != 4<<30 || c.CPUs[0].Count != 8 || c.Rodata != RodataNoAlias || c.Granule != "4K" {
		t.Errorf("yaml: %+v", c)
	}
	j := write("m.json", `{"ram":[{"base":"0x80000000","size":"512M"}],"granule":"16K","kfence":"late"}`)
	if c, err = LoadConfig(j, base); err != nil || c.RAM[0].Base != 0x80000000 || c.Granule != "16K" {
		t.Errorf("json: %+v %v", c, err)
	}
	for name, body := range map[string]string{
		"unknown.yaml": "name: x\nbogus: 1\n",
		"badsize.yaml": "ram:\n  - base: 0x40000000\n    size: lots\n",
		"rodata.yaml":  "rodata: sometimes\n",
		"cpu.yaml":     "cpus:\n  - model: pentium\n    count: 1\n",
		"overlap.yaml": "ram:\n  - {base: 0x40000000, size: 1G}\n  - {base: 0x50000000, size: 1G}\n",
		"unknown.json": `{"nam": "x"}`,
	} {
		_, err := LoadConfig(write(name, body), base)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := LoadConfig(write("line.yaml", "name: x\nram: [\n"), base); err == nil || !strings.Contains(err.Error(), "line") {
		t.Errorf("YAML syntax error must name the line: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	for _, m := range []string{"qemu-virt", "bbml2-server"} {
		k := boot(t, m, nil)
		c := &PlainCPU{}
		met, err := k.Metrics(c)
		if err != nil {
			t.Fatal(err)
		}
		lin := met.Regions[0]
		if lin.Mapped() != k.Mem.TotalPages()*4096 {
			t.Errorf("%s: linear map maps %d bytes of %d", m, lin.Mapped(), k.Mem.TotalPages()*4096)
		}
		total := 0
		for _, r := range met.Regions {
			total += r.Tables()
		}
		// Every table page is counted in exactly one region (the fixmap
		// and others are not modelled, so nothing lies outside them).
		if total != met.TablePages {
			t.Errorf("%s: regions count %d tables, tree has %d", m, total, met.TablePages)
		}
		var sb strings.Builder
		if err := met.WriteText(&sb); err != nil || !strings.Contains(sb.String(), "linear map") {
			t.Errorf("text: %v\n%s", err, sb.String())
		}
	}
}
