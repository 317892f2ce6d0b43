package ptdump

import (
	"fmt"
	"math/bits"
	"strings"

	"github.com/ptlab/ptlab/arm64"
)

// DumpGeometry says what a dump's level names mean: the VA span of one entry
// at each printed level, and contiguous-run lengths.
type DumpGeometry struct {
	Arch     Arch         `json:"arch"`
	PageSize uint64       `json:"page_size"`
	VABits   int          `json:"va_bits"`
	Levels   []LevelShape `json:"levels"` // top level first
	// Basis says how the geometry was chosen.
	Basis string `json:"basis"`
}

// LevelShape is one table level as a dump names it.
type LevelShape struct {
	Name        string `json:"name"`         // as printed
	Size        uint64 `json:"size"`         // VA span of one entry
	ContEntries int    `json:"cont_entries"` // entries in a CON run (0: no contiguous hint)
}

// Level returns the index of a level name in Levels, or -1.
func (g *DumpGeometry) Level(name string) int {
	for i := range g.Levels {
		if g.Levels[i].Name == name {
			return i
		}
	}
	return -1
}

// EntrySize is the VA span of one entry at a printed level (0 if unknown).
func (g *DumpGeometry) EntrySize(level string) uint64 {
	if i := g.Level(level); i >= 0 {
		return g.Levels[i].Size
	}
	return 0
}

// LeafSize is the VA span one TLB entry can cover for a range's entries: the
// level's entry size, times the contiguous-run length when CON is shown.
func (g *DumpGeometry) LeafSize(r *Range) uint64 {
	i := g.Level(r.Level)
	if i < 0 {
		return 0
	}
	s := g.Levels[i].Size
	if r.Attrs.Has(AttrCont) && g.Levels[i].ContEntries > 0 {
		s *= uint64(g.Levels[i].ContEntries)
	}
	return s
}

// LeafName names a leaf size the way kernel developers do: "PTE 4K",
// "contPTE 64K", "PMD 2M", "contPMD 32M", "PUD 1G".
func (g *DumpGeometry) LeafName(level string, cont bool) string {
	i := g.Level(level)
	if i < 0 {
		return level
	}
	s := g.Levels[i].Size
	if cont && g.Levels[i].ContEntries > 0 {
		return "cont" + level + " " + FormatSize(s*uint64(g.Levels[i].ContEntries))
	}
	return level + " " + FormatSize(s)
}

func (g DumpGeometry) String() string {
	if g.PageSize == 0 {
		return "unknown geometry"
	}
	names := make([]string, len(g.Levels))
	for i, l := range g.Levels {
		names[i] = l.Name + "=" + FormatSize(l.Size)
	}
	return fmt.Sprintf("%s %s pages, %d-bit VA, %s", g.Arch, FormatSize(g.PageSize), g.VABits, strings.Join(names, " "))
}

// arm64Candidates lists granule/VA combinations the kernel builds, in the
// order a dump is matched against them: 4K first (by far the most common),
// smallest VA size first.
var arm64Candidates = []struct {
	shift uint
	va    int
	lpa2  bool
}{
	{12, 39, false}, {12, 48, false}, {12, 52, true},
	{14, 36, false}, {14, 47, false}, {14, 48, false}, {14, 52, true},
	{16, 42, false}, {16, 48, false}, {16, 52, false},
}

// inferGeometry chooses the granule and VA size of an arm64 dump. The first
// candidate (4K first) is taken whose VA size reaches the dump's lowest
// address and that the dump does not rule out. Two facts of the kernel's walk
// rule a geometry out:
//   - runs only break at entry boundaries (note_page is called once per
//     entry), so every range printed at a level starts and ends on that
//     level's entry size in the geometry;
//   - from 5.x on the walk prints unmapped entries at the level where they are
//     found, so a complete dump (with PGD lines and lines below PUD) shows
//     each level between PGD and PMD the geometry has: a 4K/48 dump always
//     prints PUD lines, a 64K/48 one never.
//
// A 16K or 64K dump that fits 4K on both counts cannot be told from a 4K one;
// Basis then names the other geometries that fit.
func inferGeometry(d *Dump, pageSize uint64) (DumpGeometry, *Warning) {
	if d.Arch == ArchX86 {
		return x86Geometry(d), nil
	}
	// Per level name: OR of all boundaries, whose trailing zeros bound the
	// alignment every range at that level has.
	var align [5]uint64
	var seen [5]bool
	for i := range d.Ranges {
		r := &d.Ranges[i]
		for k, n := range arm64Levels {
			if r.Level == n {
				align[k] |= r.Start | r.End
				seen[k] = true
			}
		}
	}
	// Table lines (capture --tables) cover exactly one entry of their level.
	var tsize [5]uint64
	for i := range d.Tables {
		t := &d.Tables[i]
		for k, n := range arm64Levels {
			if t.Level == n {
				align[k] |= t.Start | t.End
				seen[k] = true
				tsize[k] = t.End - t.Start
			}
		}
	}
	complete := d.HolesPrinted && seen[0] && (seen[3] || seen[4])
	lb := 0
	if len(d.Ranges) > 0 {
		if first := d.Ranges[0].Start; first>>63 == 1 {
			lb = 64 - bits.LeadingZeros64(^first)
		} else {
			lb = bits.Len64(d.Ranges[len(d.Ranges)-1].Last())
		}
	}
	fits := func(g arm64.Geometry) bool {
		var has [5]bool
		for l := g.StartLevel; l <= arm64.LastLevel; l++ {
			k := g.KLevel(l)
			has[k] = true
			if seen[k] && align[k]&(g.Size(l)-1) != 0 {
				return false
			}
			if tsize[k] != 0 && tsize[k] != g.Size(l) {
				return false
			}
			if complete && l > g.StartLevel && k < 3 && !seen[k] {
				return false
			}
		}
		for k := range seen {
			if seen[k] && !has[k] {
				return false
			}
		}
		return true
	}
	var chosen *arm64.Geometry
	var others []string
	otherShift := map[uint]bool{}
	for _, c := range arm64Candidates {
		if c.va < lb || (pageSize != 0 && uint64(1)<<c.shift != pageSize) {
			continue
		}
		g := arm64.MustGeometry(c.shift, c.va, c.lpa2)
		if !fits(g) {
			continue
		}
		if chosen == nil {
			chosen = &g
		} else if g.PageShift != chosen.PageShift && !otherShift[g.PageShift] {
			otherShift[g.PageShift] = true
			others = append(others, fmt.Sprintf("%s/%d-bit", FormatSize(g.PageSize()), g.VABits))
		}
	}
	if chosen != nil {
		g := *chosen
		var basis string
		switch {
		case len(d.Ranges) == 0:
			basis = "no ranges; 4K granule assumed"
		case pageSize != 0:
			basis = "granule given; every range fits its level's entry size"
		case g.PageShift != arm64.PageShift4K:
			basis = "the ranges rule out a 4K granule (level alignment or levels present); " +
				FormatSize(g.PageSize()) + " is the first granule they fit"
		default:
			basis = "4K granule assumed; every range fits its level's entry size"
		}
		if len(others) > 0 {
			basis += "; " + strings.Join(others, ", ") + " fit too (give the page size if the kernel used it)"
		}
		return fromARM64(g, basis), nil
	}
	// Nothing fits: assume the given or 4K granule and say which line breaks it.
	shift := uint(arm64.PageShift4K)
	if pageSize == 16384 {
		shift = arm64.PageShift16K
	} else if pageSize == 65536 {
		shift = arm64.PageShift64K
	}
	va := 48
	switch {
	case lb > 48:
		va = 52
	case lb <= 39 && shift == arm64.PageShift4K:
		va = 39
	}
	g := arm64.MustGeometry(shift, va, va == 52 && shift != arm64.PageShift64K)
	dg := fromARM64(g, "no geometry fits every range; "+g.String()+" assumed")
	w := &Warning{Msg: "no arm64 geometry fits every range's level and alignment; leaf sizes assume " + g.String()}
	for i := range d.Ranges {
		r := &d.Ranges[i]
		s := dg.EntrySize(r.Level)
		if s == 0 || (r.Start|r.End)&(s-1) != 0 {
			w.Line = r.Line
			w.Msg += fmt.Sprintf(" (first misfit: %s range %#x-%#x)", r.Level, r.Start, r.End)
			break
		}
	}
	return dg, w
}

func fromARM64(g arm64.Geometry, basis string) DumpGeometry {
	dg := DumpGeometry{Arch: ArchARM64, PageSize: g.PageSize(), VABits: g.VABits, Basis: basis}
	for l := g.StartLevel; l <= arm64.LastLevel; l++ {
		dg.Levels = append(dg.Levels, LevelShape{Name: g.Name(l), Size: g.Size(l), ContEntries: g.ContEntries(l)})
	}
	return dg
}
