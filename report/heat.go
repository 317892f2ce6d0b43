package report

import (
	"fmt"

	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/ptdump/analysis"
)

// HeatClasses name the cell classes of a linear-map heat map, from largest
// leaf to smallest; a cell shows the smallest leaf (the most split mapping)
// inside it.
var HeatClasses = []string{"unmapped", "PUD block", "contPMD", "PMD block", "contPTE", "PTE", "present-invalid"}

// HeatGrid is a linear map drawn as Cols × Rows cells of CellBytes each,
// starting at Base (a linear-map VA).
type HeatGrid struct {
	Base, CellBytes uint64
	Cols, Rows      int
	Class           []uint8 // row-major, Rows*Cols
}

// maxHeatCells bounds a heat map's cells: wide RAM gets larger cells.
const maxHeatCells = 128 * 128

// LinearHeat computes the heat grid of d's linear map. It works per printed
// range, each painting the cells it covers, so its cost is bounded by the
// number of lines plus the number of cells, never by the memory mapped.
func LinearHeat(d *ptdump.Dump) (*HeatGrid, error) {
	g := &d.Geometry
	n := len(g.Levels)
	if n < 2 {
		return nil, fmt.Errorf("%s: %w (no geometry)", d.Name, analysis.ErrNoLinearMap)
	}
	regs, idx := ptdump.Regions(d)
	var lin []*ptdump.Range
	for i := range d.Ranges {
		if regs[idx[i]].Kind == "linear" && d.Ranges[i].Mapped() {
			lin = append(lin, &d.Ranges[i])
		}
	}
	if len(lin) == 0 {
		return nil, fmt.Errorf("%s: %w", d.Name, analysis.ErrNoLinearMap)
	}
	first, last := lin[0].Start, lin[len(lin)-1].Last()
	cell := g.Levels[n-2].Size // one PMD block
	for (last-first)/cell+1 > maxHeatCells {
		cell *= 2
	}
	cells := (last-first)/cell + 1
	cols := uint64(128)
	if cells < cols {
		cols = cells
	}
	base := first / (cell * cols) * (cell * cols)
	rows := (last-base)/(cell*cols) + 1
	h := &HeatGrid{Base: base, CellBytes: cell, Cols: int(cols), Rows: int(rows), Class: make([]uint8, rows*cols)}
	for _, r := range lin {
		c := heatClass(g, r)
		for p := (r.Start - base) / cell; p <= (r.Last()-base)/cell; p++ {
			if h.Class[p] < c {
				h.Class[p] = c
			}
		}
	}
	return h, nil
}

func heatClass(g *ptdump.DumpGeometry, r *ptdump.Range) uint8 {
	if !r.Valid() {
		return 6
	}
	l, n := g.Level(r.Level), len(g.Levels)
	cont := r.Attrs.Has(ptdump.AttrCont)
	switch {
	case l == n-1 && cont:
		return 4
	case l == n-1:
		return 5
	case l == n-2 && cont:
		return 2
	case l == n-2:
		return 3
	}
	return 1
}
