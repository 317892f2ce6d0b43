package explore

import (
	"testing"

	"github.com/ptlab/ptlab/cpu"
)

// The load preemption points of PointsShared: a load is a point before a
// descriptor another CPU stores to — unless the loading CPU holds a mutex
// that every store to it held — and as the first load from a page another
// CPU frees; any other load is not.
func TestLoadPoints(t *testing.T) {
	const ps = 4096
	const page, freed, quiet = 0x8000_0000, 0x8000_1000, 0x8000_2000
	x := &Explorer{cfg: Config{Points: PointsShared}, shared: map[uint64]*sharedPage{}, lockBit: map[string]uint{}}
	const split, patch = 1 << 0, 1 << 1 // two mutexes, as lockBit numbers them
	x.learn = true
	// CPU1 stores to descriptor 3 of page under split (twice, the second
	// time also under patch: split is what every store held) and to
	// descriptor 5 once under nothing; it frees page freed; CPU0 stores to
	// descriptor 7 of quiet.
	x.learnEvent(1, &cpu.Event{Kind: cpu.EvStore, PA: page + 3*8}, ps, split)
	x.learnEvent(1, &cpu.Event{Kind: cpu.EvStore, PA: page + 3*8}, ps, split|patch)
	x.learnEvent(1, &cpu.Event{Kind: cpu.EvStore, PA: page + 5*8}, ps, split)
	x.learnEvent(1, &cpu.Event{Kind: cpu.EvStore, PA: page + 5*8}, ps, 0)
	x.learnEvent(1, &cpu.Event{Kind: cpu.EvTableFree, PA: freed}, ps, 0)
	x.learnEvent(0, &cpu.Event{Kind: cpu.EvStore, PA: quiet + 7*8}, ps, 0)
	x.learn = false
	r := &run{x: x, points: PointsShared, pageMask: ps - 1, lastPage: make([]uint64, 2), held: make([]uint64, 2)}
	for _, c := range []struct {
		name     string
		id       int
		held     uint64
		last, pa uint64
		want     bool
	}{
		{"stored by the other, no lock held", 0, 0, page, page + 3*8, true},
		{"stored by the other, a lock it did not always hold", 0, patch, page, page + 3*8, true},
		{"stored by the other, its guard held", 0, split, page, page + 3*8, false},
		{"stored by the other once without a lock", 0, split | patch, page, page + 5*8, true},
		{"another descriptor of a page the other stores to", 0, 0, 0, page + 4*8, false},
		{"own stores only", 0, 0, 0, quiet + 7*8, false},
		{"stored by itself, loaded by the other", 1, 0, quiet, quiet + 7*8, true},
		{"first load from a page the other frees", 0, 0, page, freed + 8, true},
		{"next load from a page the other frees", 0, 0, freed, freed + 16, false},
		{"first load from a page it frees itself", 1, 0, page, freed + 8, false},
	} {
		r.held[c.id], r.lastPage[c.id], r.spOK = c.held, c.last, false
		if got := r.loadPoint(c.id, c.pa); got != c.want {
			t.Errorf("%s: CPU%d load of %#x: point %v, want %v", c.name, c.id, c.pa, got, c.want)
		}
	}
}
