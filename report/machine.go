package report

import (
	"fmt"
	"strings"

	"github.com/ptlab/ptlab/kernel"
)

// Machine describes the machine a run booted, as its configuration ended up
// after a scenario's overrides and an imported dump: name, RAM, CPUs,
// granule, VA bits, boot options.
func Machine(c kernel.Config) string {
	var ram kernel.Size
	for _, r := range c.RAM {
		ram += r.Size
	}
	var cpus []string
	n := 0
	for _, g := range c.CPUs {
		cpus = append(cpus, fmt.Sprintf("%d×%s", g.Count, g.Model))
		n += g.Count
	}
	gran := c.Granule
	if gran == "" {
		gran = "4K"
	}
	va := c.VABits
	if va == 0 {
		va = 48
	}
	rodata := string(c.Rodata)
	if rodata == "" {
		rodata = "on"
	}
	s := fmt.Sprintf("%s (%s RAM, %d CPUs: %s; %s pages, %d-bit VA; rodata=%s", c.Name, exactBytes(uint64(ram)), n,
		strings.Join(cpus, ", "), gran, va, rodata)
	for _, o := range []struct {
		on   bool
		name string
	}{{c.KPTI, "kpti"}, {c.BTI, "bti"}, {c.LPA2, "lpa2"}, {c.TLBIRange, "tlbi_range"}, {c.DebugPagealloc, "debug_pagealloc"}} {
		if o.on {
			s += ", " + o.name
		}
	}
	if c.KFENCE != "" && c.KFENCE != kernel.KFENCEOff {
		s += ", kfence " + string(c.KFENCE)
	}
	return s + ")"
}

// exactBytes prints a size with the largest binary unit that divides it.
func exactBytes(b uint64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if b >= 1<<u.shift && b%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d %s", b>>u.shift, u.name)
		}
	}
	if b >= 1<<30 {
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%d bytes", b)
}
