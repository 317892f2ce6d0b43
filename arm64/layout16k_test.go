package arm64

import "testing"

// A 52-bit 16K build (Debian's 7.3 arm64-16k) has VA_BITS_MIN 47: what
// /proc/vmallocinfo and the tables of that kernel booted under QEMU -cpu max
// show (the image at 0xffffc00080000000, the second percpu chunk ending at
// VMALLOC_END 0xfffff03fbf800000, the vmemmap's tables from
// 0xfffff03fc0000000).
func TestLayout16K52(t *testing.T) {
	for _, g := range []Geometry{MustGeometry(PageShift16K, 52, true), Geometry16K48} {
		l := KernelLayout(g, 52)
		for _, c := range []struct {
			name      string
			got, want uint64
		}{
			{"VA_BITS_MIN", uint64(l.VABitsMin), 47},
			{"KIMAGE_VADDR", l.KimageVaddr, 0xffffc00080000000},
			{"VMALLOC_END", l.VmallocEnd, 0xfffff03fbf800000},
			{"VMEMMAP_START", l.VmemmapStart, 0xfffff03fc0000000},
		} {
			if g.VABits == 48 && (c.name == "VMEMMAP_START" || c.name == "VMALLOC_END") {
				continue // both shifted by the unused part of the 52-bit linear region
			}
			if c.got != c.want {
				t.Errorf("%d-bit: %s = %#x, want %#x", g.VABits, c.name, c.got, c.want)
			}
		}
	}
}
