package workload

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
)

// The default comparison's cost rows, pinned: the SHA-256 of the JSON of
// every preset's observed columns, per-sample values, final values and
// notes, computed with the cost model as it was before it was sped up (the
// tlb and workload cost code of commit c5c9715, on main at 0c4e009, whose
// kernel changed the run). runDigest pins the run the rows were computed on (the
// same JSON without the observed values): when the kernel or the workload
// changes the run, the cost rows change with it and both digests must be
// recomputed (go test -run TestDefaultCostRowsPinned -v prints them).
const (
	costRowsDigest = "7ab06413e087c611ec4c9ed815f926ce5969042a4a2587fc84956e0c588f4564"
	runDigest      = "9f8b8a94220fd86faa25f498fbce6a2a4206f3a0e41b4eef504ea561bec50358"
)

func TestDefaultCostRowsPinned(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the default comparison")
	}
	s, err := DefaultScenario()
	if err != nil {
		t.Fatal(err)
	}
	mods, err := ScenarioModules(s)
	if err != nil {
		t.Fatal(err)
	}
	type rows struct {
		Preset  string
		Columns []Column
		At      []int64
		Series  [][]float64
		Final   []float64
		Notes   []string
	}
	var cost []rows
	var runs []*Result
	for _, p := range s.Presets {
		obs, err := ScenarioObservers(s)
		if err != nil {
			t.Fatal(err)
		}
		r, err := RunObserved(s, p, mods, nil, obs...)
		if err != nil {
			t.Fatal(err)
		}
		c := rows{Preset: p, Columns: r.ObservedColumns, Final: r.ObservedFinal, Notes: r.ObservedNotes}
		for i := range r.Series {
			c.At = append(c.At, int64(r.Series[i].At))
			c.Series = append(c.Series, r.Series[i].Observed)
			r.Series[i].Observed = nil
		}
		cost = append(cost, c)
		r.ObservedColumns, r.ObservedFinal, r.ObservedNotes, r.WallNS = nil, nil, nil, 0
		runs = append(runs, r)
	}
	digest := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		return hex.EncodeToString(h[:])
	}
	gotRun, gotCost := digest(runs), digest(cost)
	t.Logf("run digest %s, cost rows digest %s", gotRun, gotCost)
	if gotRun != runDigest {
		t.Skipf("the default run itself changed (digest %s, pinned %s): the cost rows' pin no longer applies; recompute both", gotRun, runDigest)
	}
	if gotCost != costRowsDigest {
		t.Errorf("the default comparison's cost rows changed on the same run: digest %s, pinned %s", gotCost, costRowsDigest)
	}
}
