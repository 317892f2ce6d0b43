// Package ptdump writes and reads kernel_page_tables dumps: the
// text /sys/kernel/debug/kernel_page_tables prints on arm64 (and x86 dumps,
// for reading). The writer and walker reproduce arch/arm64/mm/ptdump.c and
// mm/ptdump.c over any tree of real descriptors — ptlab's model or a live
// kernel read through /proc/kcore.
package ptdump

import (
	"github.com/ptlab/ptlab/arm64"
)

// Marker is an addr_marker: a named address where ptdump prints a header.
type Marker struct {
	Start uint64
	Name  string
}

// KernelMarkers is the address_markers array of ptdump_init for a layout,
// ending with the -1 sentinel. KASAN and the in-flight percpu markers are not
// included (KASAN is off in the configurations ptlab models).
func KernelMarkers(l arm64.Layout) []Marker {
	return []Marker{
		{l.PageOffset, "Linear Mapping start"},
		{l.PageEnd, "Linear Mapping end"},
		{l.ModulesVaddr, "Modules start"},
		{l.ModulesEnd, "Modules end"},
		{l.VmallocStart, "vmalloc() area"},
		{l.VmallocEnd, "vmalloc() end"},
		{l.VmemmapStart, "vmemmap start"},
		{l.VmemmapEnd, "vmemmap end"},
		{l.PCIIOStart, "PCI I/O start"},
		{l.PCIIOEnd, "PCI I/O end"},
		{l.FixaddrStart, "Fixmap start"},
		{l.FixaddrTop, "Fixmap end"},
		{^uint64(0), ""},
	}
}
