package capture_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/modscan"
)

// Module placement against the real kernel: in the captures of the kernel
// whose modules the embedded dataset describes (Debian 6.12.117, nokaslr),
// load the guest's modules in the guest's order (/proc/modules lists the
// newest first). ptlab must place them where the real kernel did until the
// first module whose placement depends on when an earlier module's init
// regions were freed: do_free_init runs from a workqueue after an RCU grace
// period, so whether those regions are still busy when the next insmod
// allocates differs from boot to boot (the captures disagree with each
// other there). Required: the matching prefix covers the first module and
// every capture's real sections lie in the 128 MiB module window ptlab
// computes (module_init_limits without KASLR); the prefix is logged.
func TestFidelityModulePlacement(t *testing.T) {
	n := 0
	for _, c := range loadFidelityCases(t) {
		if !strings.HasPrefix(c.name, "6.12-") || strings.Contains(c.name, "kaslr") {
			continue
		}
		var order []string
		for _, l := range c.secs["modules-load"].Lines {
			if f := strings.Fields(l); len(f) > 0 {
				order = append([]string{f[0]}, order...)
			}
		}
		real := map[string]map[string]uint64{}
		for _, l := range c.secs["modules-sections"].Lines {
			f := strings.Fields(l)
			if len(f) != 3 {
				continue
			}
			a, err := strconv.ParseUint(strings.TrimPrefix(f[2], "0x"), 16, 64)
			if err != nil {
				t.Fatalf("%s: %q", c.name, l)
			}
			if real[f[0]] == nil {
				real[f[0]] = map[string]uint64{}
			}
			real[f[0]][f[1]] = a
		}
		if len(order) == 0 || len(real) == 0 {
			continue
		}
		n++
		t.Run(c.name, func(t *testing.T) {
			k := bootFidelityCase(t, c)
			specs, err := modscan.ModuleSpecs(order)
			if err != nil {
				t.Fatal(err)
			}
			pc := &kernel.PlainCPU{}
			win := k.Exec.Ranges[kernel.ExecmemModuleText]
			prefix, diverged := 0, ""
			for _, s := range specs {
				m, err := k.LoadModule(pc, s)
				if err != nil {
					t.Fatalf("%s: %v", s.Name, err)
				}
				r := real[s.Name]
				for sec, a := range r {
					if a < win.Start || a >= win.End {
						t.Errorf("%s: real %s %#x outside the module window [%#x, %#x)", s.Name, sec, a, win.Start, win.End)
					}
				}
				if diverged != "" {
					continue
				}
				same := m.Base[kernel.ModText] == r[".text"]
				for sec, typ := range map[string]kernel.ModMemType{".data": kernel.ModData, ".rodata": kernel.ModRodata} {
					if a, ok := r[sec]; ok && (a < m.Base[typ] || a >= m.Base[typ]+s.Size[typ]) {
						same = false
					}
				}
				if !same {
					diverged = s.Name
					continue
				}
				prefix++
			}
			if prefix == 0 {
				t.Errorf("the first module %s is not where the real kernel put it", specs[0].Name)
			}
			t.Logf("%d of %d modules placed exactly as the real kernel did; first difference: %q", prefix, len(specs), diverged)
		})
	}
	if n == 0 {
		t.Fatal("no 6.12 nokaslr capture with module sections")
	}
}
