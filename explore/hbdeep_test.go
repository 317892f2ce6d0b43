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
		sameBehaviours(t, sc, bound, 2)
	}
}
