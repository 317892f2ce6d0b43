package cpu

import (
	"testing"

	"github.com/ptlab/ptlab/arm64"
)

// interposer runs another CPU's work inside the hook of CPU0's first load
// from one table page, as the explorer does when it switches CPUs there,
// and records the level that load was performed with.
type interposer struct {
	page, mask uint64
	run        func()
	level      arm64.Level
	seen       bool
}

func (h *interposer) Before(c *CPU, ev *Event) {
	if c.ID() == 0 && ev.Kind == EvLoad && ev.PA&^h.mask == h.page && h.run != nil {
		run := h.run
		h.run = nil
		run()
	}
}

func (h *interposer) After(c *CPU, ev *Event) {
	if c.ID() == 0 && ev.Kind == EvLoad && ev.PA&^h.mask == h.page && !h.seen {
		h.seen, h.level = true, ev.Level
	}
}

// A descriptor load whose table page another CPU freed while the load
// waited in its hook is performed as a load from a page that is no longer
// a table (LevelUnknown, which the monitor reports as a use after free);
// when no other CPU ran, it keeps the level it announced.
func TestLoadRelevelsAfterOthersRan(t *testing.T) {
	for _, tc := range []struct {
		mode   Mode
		others bool
	}{{Cooperative, true}, {Cooperative, false}, {Real, true}, {Real, false}} {
		others := tc.others
		k, m := bootMachine(t, "n1-server", "neoverse-n1", 2, tc.mode)
		c0, c1 := m.CPUs[0], m.CPUs[1]
		lin := linearVA(k)
		e, err := k.PT.Lookup(c0, lin)
		if err != nil || e.Level != arm64.LastLevel {
			t.Fatal(e, err)
		}
		h := &interposer{page: e.DescPA &^ (k.G.PageSize() - 1), mask: k.G.PageSize() - 1, run: func() {}}
		if others {
			h.run = func() {
				freed, ok, err := k.PT.FoldTable(c1, lin, arm64.LevelPMD)
				if err != nil || !ok || freed != h.page {
					t.Fatalf("fold: %#x %v %v", freed, ok, err)
				}
				if err := k.PT.FreeTable(c1, freed); err != nil {
					t.Fatal(err)
				}
			}
		}
		c0.Hook, c1.Hook = h, h
		_, _ = k.PT.Lookup(c0, lin) // the walk may fail; the level is what counts
		want := arm64.LastLevel
		if others {
			want = LevelUnknown
		}
		if !h.seen || h.level != want {
			t.Errorf("mode %v, others ran %v: load performed at level %v (seen %v), want %v", tc.mode, others, h.level, h.seen, want)
		}
	}
}
