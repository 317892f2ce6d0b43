package explore

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestStateCachingDeep is TestStateCachingKeepsEveryBehaviour at a higher
// bound for named scenarios, run by hand (minutes):
// PTLAB_DEEP="three-ptdump three-kcore" PTLAB_DEEP_BOUND=2 go test -run TestStateCachingDeep ./explore/
func TestStateCachingDeep(t *testing.T) {
	names := os.Getenv("PTLAB_DEEP")
	if names == "" {
		t.Skip("PTLAB_DEEP names the scenarios")
	}
	bound, err := strconv.Atoi(os.Getenv("PTLAB_DEEP_BOUND"))
	if err != nil {
		t.Fatal("PTLAB_DEEP_BOUND: ", err)
	}
	for _, name := range strings.Fields(names) {
		sc, err := LookupScenario(name)
		if err != nil {
			t.Fatal(err)
		}
		plain, pr := behaviours(t, "collapse", sc, bound, false, 2)
		red, rr := behaviours(t, "collapse", sc, bound, true, 2)
		missing := 0
		for b := range plain {
			if !red[b] {
				missing++
			}
		}
		if missing > 0 || len(red) != len(plain) {
			t.Errorf("%s, bound %d: state caching ends in %d behaviours, the plain search in %d; %d missing", name, bound, len(red), len(plain), missing)
		}
		t.Logf("%s bound %d: %d behaviours; %d runs plain, %d cached", name, bound, len(plain), pr.Runs, rr.Runs)
	}
}
