package kernel

import (
	"testing"

	"github.com/ptlab/ptlab/arm64"
)

// The fixmap's start follows enum fixed_addresses of each release, and
// early_fixmap_init hooks up one PTE table per PMD of the span: Debian's
// 6.12 kernels show two (its captures have PTE tables at -12M and -10M
// only), 6.18 and 7.3, with a VNCR slot per CPU, three; a 16K kernel one.
// 6.1 hooked up the PMD of the permanent FIXADDR_START alone.
func TestFixmapSpan(t *testing.T) {
	for _, tc := range []struct {
		kernel, granule string
		start           uint64 // FIXADDR_TOT_START (6.1: FIXADDR_START)
		tables          int
	}{
		// 978 slots: FIX_HOLE, FDT 1..514, EARLYCON, TEXT_POKE0, 4 GHES,
		// 4 trampoline, 448 early ioremap, PTE PMD PUD P4D PGD.
		{"6.12", "4K", 0xffffffffff800000 - 978*4096, 2},
		// Plus FIX_VNCR_END..FIX_VNCR: NR_CPUS + 1 = 513 slots.
		{"6.18", "4K", 0xffffffffff800000 - 1491*4096, 3},
		{"7.3", "4K", 0xffffffffff800000 - 1491*4096, 3},
		// 16K: an FDT of 130 slots, 112 early-ioremap slots: 771.
		{"7.3", "16K", 0xffffffffff800000 - 771*16384, 1},
		// 6.1: FDT window 1..1024 (4 MiB), permanent end at 1035.
		{"6.1", "4K", 0xfffffbfffe000000 - 1035*4096, 1},
	} {
		k := boot(t, "qemu-virt", func(c *Config) { c.Kernel = tc.kernel; c.Granule = tc.granule })
		l := k.Layout
		if l.FixaddrStart != tc.start {
			t.Errorf("%s %s: fixmap start %#x, want %#x", tc.kernel, tc.granule, l.FixaddrStart, tc.start)
		}
		c := &PlainCPU{}
		pmd := k.G.Size(2)
		n := 0
		// Sixteen PMDs up to the last, which holds FIXADDR_TOP - 1 (va
		// wraps to 0 after it).
		last := (l.FixaddrTop - 1) &^ (pmd - 1)
		for i := uint64(0); i < 16; i++ {
			va := last - i*pmd
			if ok, err := k.PT.TableAt(c, va, arm64.Level(2)); err == nil && ok {
				n++
			}
		}
		if n != tc.tables {
			t.Errorf("%s %s: %d fixmap PTE tables, want %d", tc.kernel, tc.granule, n, tc.tables)
		}
	}
}

// tableDescs returns the table descriptors on the walk to va's last level,
// root first.
func tableDescs(t *testing.T, k *Kernel, va uint64) []uint64 {
	t.Helper()
	g := k.G
	pa := k.PT.Root()
	var out []uint64
	for l := g.StartLevel; l < arm64.LastLevel; l++ {
		tbl, err := k.PT.Table(pa)
		if err != nil {
			t.Fatal(err)
		}
		d := tbl[g.Index(va, l)]
		if !g.IsTable(d, l) {
			break
		}
		out = append(out, d)
		pa = g.OutputAddress(d)
	}
	return out
}

// early_fixmap_init hooks bm_pud, bm_pmd and bm_pte up with the table type
// alone; the PCI I/O window's page table, hooked up later by
// pmd_populate_kernel in the same PMD table, carries UXNTable as every other
// kernel table does. The captures of 6.1, 6.12 and 7.3 show both.
func TestFixmapTablesBare(t *testing.T) {
	for _, v := range []string{"6.1", "6.12", "7.3"} {
		k := boot(t, "qemu-virt", func(c *Config) { c.Kernel = v })
		fix := tableDescs(t, k, k.Layout.FixaddrStart)
		if len(fix) != int(arm64.LastLevel-k.G.StartLevel) {
			t.Fatalf("%s: %d tables above the fixmap's first slot", v, len(fix))
		}
		for i, d := range fix {
			if d&(arm64.TableUXN|arm64.TablePXN) != 0 {
				t.Errorf("%s: fixmap table descriptor %d is %#x: UXNTable/PXNTable set", v, i, d)
			}
		}
		pci := tableDescs(t, k, k.Layout.PCIIOStart)
		if last := pci[len(pci)-1]; last&arm64.TableUXN == 0 {
			t.Errorf("%s: PCI I/O page table hooked up without UXNTable: %#x", v, last)
		}
	}
}
