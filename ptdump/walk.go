package ptdump

import (
	"fmt"

	"github.com/ptlab/ptlab/arm64"
)

// TableSource gives the descriptors of the table page at a physical address:
// ptlab's model (pgtable.Tables) or a live kernel's memory (capture).
type TableSource interface {
	Table(pa uint64) ([]uint64, error)
}

// Loader reads one descriptor; a simulated CPU's door, so that a ptdump walk
// is one more lockless walker the concurrency checker can interleave.
// pgtable.Direct satisfies it.
type Loader interface {
	Load(pa uint64, p *uint64) uint64
}

type plainLoad struct{}

func (plainLoad) Load(_ uint64, p *uint64) uint64 { return *p }

// Walk notes every slot of the tree rooted at root from start to the top of
// the address space into w and flushes it, as ptdump_walk_pgd does with
// walk_page_range_novma: an empty slot above the last level is one note (a
// hole) at its level; a leaf is noted without descending; every slot of a
// present PTE table is noted, empty ones included. ld may be nil; w may be
// nil for a walk that only reads (the loads are the same, nothing is noted).
func Walk(src TableSource, ld Loader, g arm64.Geometry, root, start uint64, w *Writer) error {
	if ld == nil {
		ld = plainLoad{}
	}
	tbl, err := src.Table(root)
	if err != nil {
		return fmt.Errorf("ptdump: root table: %w", err)
	}
	wk := walker{src: src, ld: ld, g: &g, w: w}
	if err := wk.level(root, tbl, g.StartLevel, start, 0); err != nil {
		return err
	}
	if w == nil {
		return nil
	}
	return w.Flush()
}

type walker struct {
	src TableSource
	ld  Loader
	g   *arm64.Geometry
	w   *Writer
}

// note notes the leaf (or junk) d at va, unless the walk only reads.
func (wk *walker) note(va uint64, kl int, d uint64) {
	if wk.w != nil {
		wk.w.Note(va, kl, d, wk.g.OutputAddress(d))
	}
}

// level walks [va, end) of the level-l table at tpa; end 0 is the top.
func (wk *walker) level(tpa uint64, tbl []uint64, l arm64.Level, va, end uint64) error {
	g := wk.g
	kl := g.KLevel(l)
	for {
		next := (va | (g.Size(l) - 1)) + 1
		if next-1 >= end-1 {
			next = end
		}
		idx := g.Index(va, l)
		if idx >= len(tbl) {
			return fmt.Errorf("ptdump: index %d outside the table at %#x", idx, tpa)
		}
		dpa := tpa + uint64(idx)*8
		d := wk.ld.Load(dpa, &tbl[idx])
		switch {
		case l == arm64.LastLevel:
			wk.note(va, kl, d)
		case g.IsTable(d, l):
			cpa := g.OutputAddress(d)
			ctbl, err := wk.src.Table(cpa)
			if err != nil {
				return fmt.Errorf("ptdump: %s entry %#016x at %#x for va %#x: %w", g.Name(l), d, dpa, va, err)
			}
			if wk.w != nil {
				wk.w.Table(va, next, kl, d, cpa)
			}
			if err := wk.level(cpa, ctbl, l+1, va, next); err != nil {
				return err
			}
		case d == 0:
			if wk.w != nil {
				wk.w.Note(va, kl, 0, 0) // ptdump_hole
			}
		default:
			wk.note(va, kl, d) // leaf (or non-present junk, printed as the kernel would)
		}
		if next == end {
			return nil
		}
		va = next
	}
}
