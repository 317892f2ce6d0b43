package check

import (
	"github.com/ptlab/ptlab/arm64"
)

// regionMemo remembers how the tables served the last PMD-sized region the
// monitor translated in: either one descriptor at the PMD level or above
// (a block, or nothing) that covers the whole region, or the last-level
// table that maps it. The tables cannot change while the monitor runs (it
// runs between two steps, or once every CPU is done), so the memo is valid
// for one monitor call and dropped at the start of the next (forget); it
// lets the per-page checks over a region — W^X through the linear alias,
// footprint and TLB comparisons — read one descriptor per page instead of
// walking from the root. The monitor's own table reads, not the engine's
// walk cache (pgtable), so an invalidation bug there cannot hide from it.
type regionMemo struct {
	ok     bool
	region uint64 // va >> the PMD shift
	pxn    bool   // PXNTable above the remembered descriptor or table
	// tbl is the last-level table (its PA tpa), or nil when desc at level
	// serves the whole region.
	tbl   []uint64
	tpa   uint64
	desc  uint64
	level arm64.Level
}

// forget drops the memo: the tables may have changed since the last call.
func (mo *Monitor) forget() { mo.memo.ok = false }

// tr is Translate through the region memo.
func (mo *Monitor) tr(va uint64) Translation {
	g := mo.g
	m := &mo.memo
	if region := va / mo.pmdSize; !m.ok || m.region != region {
		mo.fill(va)
	}
	if m.tbl != nil {
		i := g.Index(va, arm64.LastLevel)
		return leafTranslation(g, mo.raw.Load(m.tpa+uint64(i)*8, &m.tbl[i]), arm64.LastLevel, va, m.pxn)
	}
	return leafTranslation(g, m.desc, m.level, va, m.pxn)
}

// fill walks from the root to the descriptor or last-level table serving
// va's PMD-sized region, as scan does.
func (mo *Monitor) fill(va uint64) {
	g := mo.g
	m := &mo.memo
	*m = regionMemo{ok: true, region: va / mo.pmdSize}
	tpa := mo.K.PT.Root()
	for l := g.StartLevel; ; l++ {
		tbl, err := mo.K.PT.Table(tpa)
		if err != nil {
			m.level = l // not a table: nothing valid below (desc 0)
			return
		}
		if l == arm64.LastLevel {
			m.tbl, m.tpa = tbl, tpa
			return
		}
		i := g.Index(va, l)
		d := mo.raw.Load(tpa+uint64(i)*8, &tbl[i])
		if !g.IsTable(d, l) {
			m.desc, m.level = d, l
			return
		}
		m.pxn = m.pxn || d&arm64.TablePXN != 0
		tpa = g.OutputAddress(d)
	}
}
