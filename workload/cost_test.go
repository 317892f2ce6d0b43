package workload

import (
	"strings"
	"testing"
	"time"

	"github.com/ptlab/ptlab/tlb"
)

func costValue(t *testing.T, r *Result, key string) float64 {
	t.Helper()
	for i, c := range r.ObservedColumns {
		if c.Key == key {
			return r.ObservedFinal[i]
		}
	}
	t.Fatalf("%s: no column %s", r.Preset, key)
	return 0
}

// The default scenario, shortened: every preset reports the cost columns of
// every CPU model, each sample carries them, and the ordering the shapes
// imply holds on every model — module text in 2M ROX-cache chunks whose
// vmalloc mapping collapse folds to PMD blocks takes fewer iTLB walks and
// fewer walk cycles than mainline's module text on 4K pages.
func TestCostDefaultScenarioOrdering(t *testing.T) {
	s, err := DefaultScenario()
	if err != nil {
		t.Fatal(err)
	}
	s.Work.Duration = Duration(10 * time.Minute)
	mods, err := ScenarioModules(s)
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]*Result{}
	for _, p := range s.Presets {
		obs, err := ScenarioObservers(s)
		if err != nil {
			t.Fatal(err)
		}
		r, err := RunObserved(s, p, mods, nil, obs...)
		if err != nil {
			t.Fatal(err)
		}
		if want := len(tlb.Models()) * len(costColumns); len(r.ObservedColumns) != want || len(r.ObservedFinal) != want {
			t.Fatalf("%s: %d columns, %d final values; want %d", p, len(r.ObservedColumns), len(r.ObservedFinal), want)
		}
		for _, smp := range r.Series {
			if len(smp.Observed) != len(r.ObservedColumns) {
				t.Fatalf("%s at %v: %d observed values", p, smp.At, len(smp.Observed))
			}
		}
		if !strings.Contains(strings.Join(r.ObservedNotes, "\n"), "assumed") {
			t.Errorf("%s: notes do not say what is assumed", p)
		}
		res[p] = r
	}
	for _, m := range tlb.Models() {
		for _, key := range []string{"_itlb_l2_mpka", "_walk_cycles_per_s"} {
			main, coll := costValue(t, res["mainline"], m.Key+key), costValue(t, res["collapse"], m.Key+key)
			if !(coll < main) {
				t.Errorf("%s%s: collapse %.3f, mainline %.3f: 2M-mapped module text must cost less", m.Key, key, coll, main)
			}
		}
		// Every preset must have run the data streams.
		for p, r := range res {
			if v := costValue(t, r, m.Key+"_dtlb_l1_mpka"); v <= 0 {
				t.Errorf("%s %s: dTLB L1 misses %v: the data streams did not run", p, m.Key, v)
			}
			// Every policy invalidates translations the warm TLBs hold
			// (module reloads and BPF programs come and go).
			if v := costValue(t, r, m.Key+"_tlbi_refills"); v <= 0 {
				t.Errorf("%s %s: no TLBI refills: invalidations did not reach the TLBs", p, m.Key)
			}
		}
	}
}

// Same seed, same numbers.
func TestCostDeterministic(t *testing.T) {
	s, err := DefaultScenario()
	if err != nil {
		t.Fatal(err)
	}
	s.Work.Duration = Duration(5 * time.Minute)
	mods, err := ScenarioModules(s)
	if err != nil {
		t.Fatal(err)
	}
	var got [2][]float64
	for i := range got {
		obs, _ := ScenarioObservers(s)
		r, err := RunObserved(s, "rox-cache", mods, nil, obs...)
		if err != nil {
			t.Fatal(err)
		}
		got[i] = r.ObservedFinal
	}
	for i := range got[0] {
		if got[0][i] != got[1][i] {
			t.Fatalf("column %d: %v then %v", i, got[0][i], got[1][i])
		}
	}
}
