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
