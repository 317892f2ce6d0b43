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
// tlb and workload cost code of commit c5c9715), re-pinned on the 7.3 kernel
// profile's default run (the cost code unchanged since). runDigest pins the run the rows were computed on (the
// same JSON without the observed values): when the kernel or the workload
// changes the run, the cost rows change with it and both digests must be
// recomputed (go test -run TestDefaultCostRowsPinned -v prints them).
const (
	costRowsDigest = "81a300e14c02c671ef9a3c77715bd94a0bde9c1f9079c3592cdf3ca7423e8220"
	runDigest      = "dd0ac992bd864b015621f285e881562cdc443c4093d6f3553ab9d81d4586a4dc"
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
