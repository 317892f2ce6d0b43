package pgtable

import (
	"fmt"

	"github.com/ptlab/ptlab/arm64"
)

// The range operations as visitors of the one walker (see visitor).

// unmapVisitor clears every leaf it reaches (vunmap_range's pXd_clear).
type unmapVisitor struct{}

func (unmapVisitor) entry(w *walker, tpa uint64, tbl []uint64, idx int, desc uint64, l arm64.Level, va, _, _ uint64) error {
	if desc != 0 {
		w.store(tpa, tbl, idx, 0)
		if w.t.tr != nil {
			w.t.trackLeaf(va, l, desc, 0)
		}
	}
	return nil
}

func (u unmapVisitor) ptes(w *walker, tpa uint64, tbl []uint64, i, j int, va, _ uint64) error {
	switch {
	case w.t.tr != nil:
		u.ptesTracked(w, tpa, tbl, i, j, va)
	case w.direct:
		// Nobody observes the stores: clearing an empty entry again
		// changes nothing. (A loop, not clear: runs are mostly one page,
		// and clear calls memclr.)
		for k := i; k < j; k++ {
			tbl[k] = 0
		}
	default:
		for k := i; k < j; k++ {
			if w.load(tpa, tbl, k) != 0 {
				w.store(tpa, tbl, k, 0)
			}
		}
	}
	return nil
}

// ptesTracked is ptes with the incremental census on (Track).
func (unmapVisitor) ptesTracked(w *walker, tpa uint64, tbl []uint64, i, j int, va uint64) {
	va &^= w.g.PageSize() - 1
	tr := w.t.ptes(va, va+uint64(j-i)<<w.g.PageShift)
	for k := i; k < j; k++ {
		if old := w.load(tpa, tbl, k); old != 0 {
			w.store(tpa, tbl, k, 0)
			if tr.span != 0 {
				tr.change(va+uint64(k-i)<<w.g.PageShift, old, 0)
			}
		}
	}
	tr.done()
}

// protectVisitor rewrites leaves as (old &^ clear) | set (pageattr_ops).
type protectVisitor struct {
	set, clear uint64
}

func (p *protectVisitor) entry(w *walker, tpa uint64, tbl []uint64, idx int, desc uint64, l arm64.Level, va, next, _ uint64) error {
	if desc == 0 || !w.g.IsLeaf(desc, l) {
		return nil
	}
	if next-va != w.g.Size(l) {
		return fmt.Errorf("%w: [%#x, %#x) covers part of the %s leaf at %#x", ErrInvalid, va, next, w.g.Name(l), va&^(w.g.Size(l)-1))
	}
	w.store(tpa, tbl, idx, desc&^p.clear|p.set)
	if w.t.tr != nil {
		w.t.trackLeaf(va, l, desc, desc&^p.clear|p.set)
	}
	return nil
}

func (p *protectVisitor) ptes(w *walker, tpa uint64, tbl []uint64, i, j int, va, _ uint64) error {
	switch {
	case w.t.tr != nil:
		p.ptesTracked(w, tpa, tbl, i, j, va)
	case w.direct:
		for k, old := range tbl[i:j] {
			tbl[i+k] = old&^p.clear | p.set
		}
	default:
		for k := i; k < j; k++ {
			w.store(tpa, tbl, k, w.load(tpa, tbl, k)&^p.clear|p.set)
		}
	}
	return nil
}

// ptesTracked is ptes with the incremental census on (Track).
func (p *protectVisitor) ptesTracked(w *walker, tpa uint64, tbl []uint64, i, j int, va uint64) {
	va &^= w.g.PageSize() - 1
	tr := w.t.ptes(va, va+uint64(j-i)<<w.g.PageShift)
	for k := i; k < j; k++ {
		old := w.load(tpa, tbl, k)
		w.store(tpa, tbl, k, old&^p.clear|p.set)
		if tr.span != 0 {
			tr.change(va+uint64(k-i)<<w.g.PageShift, old, old&^p.clear|p.set)
		}
	}
	tr.done()
}

// visitVisitor calls fn for every leaf or empty slot.
type visitVisitor struct {
	fn func(Entry) error
}

func (v *visitVisitor) entry(w *walker, tpa uint64, _ []uint64, idx int, desc uint64, l arm64.Level, va, _, bits uint64) error {
	return v.fn(Entry{VA: va &^ (w.g.Size(l) - 1), Level: l, Desc: desc, DescPA: descPA(tpa, idx),
		TablePXN: bits&arm64.TablePXN != 0, TableUXN: bits&arm64.TableUXN != 0})
}

func (v *visitVisitor) ptes(w *walker, tpa uint64, tbl []uint64, i, j int, va, bits uint64) error {
	ps := w.g.PageSize()
	va &^= ps - 1
	for k := i; k < j; k, va = k+1, va+ps {
		e := Entry{VA: va, Level: arm64.LastLevel, Desc: w.load(tpa, tbl, k), DescPA: descPA(tpa, k),
			TablePXN: bits&arm64.TablePXN != 0, TableUXN: bits&arm64.TableUXN != 0}
		if err := v.fn(e); err != nil {
			return err
		}
	}
	return nil
}

// censusVisitor counts leaves and tables into c.
type censusVisitor struct {
	g *arm64.Geometry
	c *Census
}

// table counts a level-l table in the range that holds its first address
// (the root's is -(1 << VABits)).
func (v *censusVisitor) table(l arm64.Level, va, end uint64) {
	if l == v.g.StartLevel {
		if base := ^uint64(0) << uint(v.g.VABits); va <= base && (base < end || end == 0) {
			*v.c.Tables.At(l)++
		}
	} else if va&(v.g.Size(l-1)-1) == 0 {
		*v.c.Tables.At(l)++
	}
}

func (v *censusVisitor) entry(_ *walker, _ uint64, _ []uint64, _ int, desc uint64, l arm64.Level, va, next, _ uint64) error {
	switch {
	case arm64.DescValid(desc):
		v.c.Leaf.At(l)[desc>>52&1] += next - va
	case arm64.DescPresentInvalid(desc):
		v.c.Invalid += next - va
	}
	return nil
}

func (v *censusVisitor) ptes(w *walker, tpa uint64, tbl []uint64, i, j int, _, _ uint64) error {
	ps := w.g.PageSize()
	leaf := v.c.Leaf.At(arm64.LastLevel)
	for k := i; k < j; k++ {
		e := w.load(tpa, tbl, k)
		switch {
		case arm64.DescValid(e):
			leaf[e>>52&1] += ps
		case arm64.DescPresentInvalid(e):
			v.c.Invalid += ps
		}
	}
	return nil
}
