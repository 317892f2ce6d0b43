package pgtable

import (
	"encoding/json"
	"testing"

	"github.com/ptlab/ptlab/arm64"
)

// SplitStats keeps the JSON shape it had as [4]int arrays indexed by level.
func TestSplitStatsJSON(t *testing.T) {
	var s SplitStats
	*s.Blocks.At(arm64.LevelPUD), *s.Blocks.At(arm64.LevelPMD) = 1, 2
	*s.ContRun.At(arm64.LevelPMD), *s.ContRun.At(arm64.LevelPTE) = 3, 4
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"Blocks":[0,1,2,0],"ContRun":[0,0,3,4]}`; string(b) != want {
		t.Fatalf("got %s, want %s", b, want)
	}
	var back SplitStats
	if err := json.Unmarshal(b, &back); err != nil || back != s {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}
