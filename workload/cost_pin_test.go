package workload

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
)

// The default comparison's cost rows, pinned: the SHA-256 of the JSON of
// every preset's observed columns, per-sample values, final values and
// notes. Re-pinned on the 7.3 kernel profile's default run, and again when
// the simulator's draws changed on purpose (streams chosen once per run with
// probability rate / mean run length instead of once per access; Zipf and
// page-cache offsets from the rank draw's low bits; wyrand instead of
// SplitMix64; see tlb's pinDigest and
// draw_test.go): the run is the same, the rows' samples move by sampling
// noise; re-pinned again when boot-time vmalloc users and the split init
// segments of map_kernel changed the default run (one more table page). runDigest pins the run the rows were computed on (the
// same JSON without the observed values): when the kernel or the workload
// changes the run, the cost rows change with it and both digests must be
// recomputed (go test -run TestDefaultCostRowsPinned -v prints them).
const (
	costRowsDigest = "4379df2e0c6c76efbb61935a7c126821f995f7c3679939e907e68c53a44f5b4d"
	runDigest      = "a0de7704f962884b055212b63fa2ede1377e395f0b31715a0047a2978be58f51"
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
		// A skip here once hid a changed run for a whole merge: fail, so the
		// change is looked at and both digests are re-pinned on purpose.
		t.Fatalf("the default run itself changed (digest %s, pinned %s): check the change is intended, then re-pin both digests", gotRun, runDigest)
	}
	if gotCost != costRowsDigest {
		t.Errorf("the default comparison's cost rows changed on the same run: digest %s, pinned %s", gotCost, costRowsDigest)
	}
}
