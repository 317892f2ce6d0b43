package kernel

import (
	"testing"

	"github.com/ptlab/ptlab/arm64"
)

// The vmemmap maps the struct page of every RAM page (PMD blocks with 4K
// pages, pages with 16K and 64K); the fixmap's tables exist with nothing
// mapped; the QEMU virt PCI I/O window is device memory at PCI_IO_START.
func TestKernelOwnedMappings(t *testing.T) {
	for _, gr := range []struct {
		granule string
		level   arm64.Level
	}{{"4K", 2}, {"16K", 3}, {"64K", 3}} {
		k := boot(t, "qemu-virt", func(c *Config) { c.Granule = gr.granule; c.Kernel = "7.3" })
		c := &PlainCPU{}
		for _, r := range k.Mem.Regions() {
			for pa := r.Base; pa < r.End(); pa += 64 << 20 {
				va := k.vmemmapVA(pa)
				if _, e, ok := k.PT.Translate(c, va); !ok || e.Level != gr.level {
					t.Fatalf("%s: struct page of %#x at %#x not mapped at level %d (%v, %d)", gr.granule, pa, va, gr.level, ok, e.Level)
				}
			}
		}
		l := k.Layout
		if ok, err := k.PT.TableAt(c, l.FixaddrTop-k.G.PageSize(), arm64.Level(2)); err != nil || !ok {
			t.Errorf("%s: no fixmap PTE table: %v", gr.granule, err)
		}
		if _, _, ok := k.PT.Translate(c, l.FixaddrTop-k.G.PageSize()); ok {
			t.Errorf("%s: fixmap slot mapped at boot", gr.granule)
		}
		pa, e, ok := k.PT.Translate(c, l.PCIIOStart)
		if !ok || pa != 0x3eff0000 || e.Desc&arm64.PTEAttrIndxMask != arm64.AttrIndx(arm64.MTDeviceNGnRE) {
			t.Errorf("%s: PCI I/O %#x -> %#x %v desc %#x", gr.granule, l.PCIIOStart, pa, ok, e.Desc)
		}
	}
}
