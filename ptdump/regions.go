package ptdump

import (
	"fmt"
	"math/bits"
	"strings"

	"github.com/ptlab/ptlab/arm64"
)

// Region is one region of a dump: a marker's span, or a layout region when the
// dump has no markers (excerpts). Stats, Diff and Import see dumps by region.
type Region struct {
	Name  string
	Kind  string
	Basis string // "marker" or "layout"
}

// Regions assigns every range of d to a region and returns the regions (in
// dump order) and, per range, its region index. With markers, a range belongs
// to the last marker printed before it (the kernel prints a header when its
// walk reaches the marker, note_page), whatever the marker order: 4.x kernels
// print "Linear Mapping" last. Without markers (excerpts), arm64 ranges are
// placed by the 5.4+ kernel VA layout for the dump's geometry.
func Regions(d *Dump) ([]Region, []int) {
	idx := make([]int, len(d.Ranges))
	var regs []Region
	if len(d.Markers) > 0 {
		before := -1
		for i := range d.Ranges {
			if d.Ranges[i].Marker < 0 {
				if before < 0 {
					before = len(regs)
					regs = append(regs, Region{Name: "before the first marker", Basis: "marker"})
				}
				idx[i] = before
			}
		}
		base := len(regs)
		for _, m := range d.Markers {
			r := Region{Name: m.Name, Kind: m.Kind, Basis: "marker"}
			if m.End {
				r.Name, r.Kind = "after "+m.Name, "gap"
			}
			regs = append(regs, r)
		}
		for i := range d.Ranges {
			if m := d.Ranges[i].Marker; m >= 0 && m < len(d.Markers) {
				idx[i] = base + m
			}
		}
		return regs, idx
	}
	classify := func(uint64) string { return "" }
	name := map[string]string{}
	if d.Arch == ArchARM64 && d.Geometry.PageSize != 0 {
		shift := uint(bits.TrailingZeros64(d.Geometry.PageSize))
		va := d.Geometry.VABits
		g, err := arm64.NewGeometry(shift, va, va > 48 && shift != arm64.PageShift64K)
		if err == nil {
			l := arm64.KernelLayout(g, 0)
			name = map[string]string{"linear": "linear map", "modules": "modules", "vmalloc": "vmalloc",
				"vmemmap": "vmemmap", "pci-io": "PCI I/O", "fixmap": "fixmap", "": "outside the kernel regions"}
			for k, v := range name {
				if k != "" {
					name[k] = v + fmt.Sprintf(" (by the %d-bit VA layout)", va)
				}
			}
			classify = func(a uint64) string {
				switch {
				case l.IsLinear(a):
					return "linear"
				case l.IsModules(a):
					return "modules"
				case l.IsVmalloc(a):
					return "vmalloc"
				case a >= l.VmemmapStart && a < l.VmemmapEnd:
					return "vmemmap"
				case a >= l.PCIIOStart && a < l.PCIIOEnd:
					return "pci-io"
				case a >= l.FixaddrStart && a < l.FixaddrTop:
					return "fixmap"
				}
				return ""
			}
		}
	}
	for i := range d.Ranges {
		k := classify(d.Ranges[i].Start)
		if len(regs) == 0 || regs[len(regs)-1].Kind != k {
			n := name[k]
			if n == "" {
				n = "whole dump"
			}
			regs = append(regs, Region{Name: n, Kind: k, Basis: "layout"})
		}
		idx[i] = len(regs) - 1
	}
	return regs, idx
}

// RegionKind maps a marker name to a canonical region kind and whether the
// marker closes the region. Kinds: linear, kasan, bpf, modules, vmalloc,
// vmemmap, pci-io, fixmap, percpu, kernel-image, user, kernel-space,
// cpu-entry, ldt, espfix, efi; other names give a lower-case slug of the name.
func RegionKind(name string) (kind string, end bool) {
	l := strings.ToLower(name)
	end = strings.HasSuffix(l, " end") || strings.HasPrefix(l, "end ")
	for _, m := range []struct{ sub, kind string }{
		{"linear mapping", "linear"},
		{"low kernel mapping", "linear"},
		{"kernel mapping", "linear"}, // x86-32's PAGE_OFFSET region
		{"kasan", "kasan"},
		{"bpf", "bpf"},
		{"modules", "modules"},
		{"vmalloc", "vmalloc"},
		{"vmemmap", "vmemmap"},
		{"pci i/o", "pci-io"},
		{"fixmap", "fixmap"},
		{"percpu", "percpu"},
		{"high kernel mapping", "kernel-image"},
		{"user space", "user"},
		{"kernel space", "kernel-space"},
		{"cpu entry area", "cpu-entry"},
		{"ldt remap", "ldt"},
		{"espfix", "espfix"},
		{"efi", "efi"},
	} {
		if strings.Contains(l, m.sub) {
			if m.kind == "linear" && m.sub == "kernel mapping" && strings.Contains(l, "high") {
				continue
			}
			return m.kind, end
		}
	}
	l = strings.TrimSuffix(strings.TrimPrefix(l, "end "), " end")
	l = strings.TrimSuffix(strings.TrimSuffix(l, " start"), " area")
	return strings.Join(strings.Fields(l), "-"), end
}
