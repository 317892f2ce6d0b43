package workload

import (
	"slices"
	"sort"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// sortByTime orders events exactly as a stable sort by time does.
func TestSortByTimeIsStable(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 300).Draw(t, "n")
		ev := make([]Event, n)
		for i := range ev {
			// few distinct times, so ties are common
			ev[i] = Event{At: time.Duration(rapid.IntRange(0, 20).Draw(t, "at")), Object: i}
		}
		want := slices.Clone(ev)
		sort.SliceStable(want, func(i, j int) bool { return want[i].At < want[j].At })
		if got := sortByTime(ev); !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
}
