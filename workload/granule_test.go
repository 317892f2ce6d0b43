package workload

import (
	"testing"
)

// The default scenario on a 16K-granule machine under the collapse policy
// folds mappings: with MAX_PAGE_ORDER 11 a PMD-sized (32M) huge vmalloc page
// is one buddy block, so ROX-cache chunks get block-sized backing pages.
// (With the 4K MAX_PAGE_ORDER of 10 every huge allocation fell back to small
// pages and every collapse counter stayed 0.)
func TestDefaultScenarioOn16KCollapses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the default scenario")
	}
	s, err := DefaultScenario()
	if err != nil {
		t.Fatal(err)
	}
	s.Config = NewConfigOverride([]byte("granule: 16K\nva_bits: 48\n"), "16k.yaml")
	mods, err := ScenarioModules(s)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(s, "collapse", mods, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Collapse.Total() == 0 {
		t.Errorf("16K, collapse: no collapses: %+v", r.Collapse)
	}
	t.Logf("16K collapse: %+v", r.Collapse)
}
