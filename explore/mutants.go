package explore

import (
	"fmt"
	"strings"

	"github.com/ptlab/ptlab/kernel"
)

// Mutant is one injected bug and the scenarios that must expose it.
type Mutant struct {
	Name      string
	Doc       string
	Mutations kernel.Mutations
	// Scenarios expose the bug under the collapse preset, which is clean
	// without it.
	Scenarios []string
}

// Mutants are the bugs the checker must catch, one kernel.Mutations knob each.
var Mutants = []Mutant{
	{"skip-tlbi", "flush_tlb_kernel_range issues no TLBI", kernel.Mutations{SkipTLBI: true}, []string{"access", "neighbours", "split"}},
	{"split-without-bbml2", "live blocks split on CPUs without BBML2_NOABORT (no break-before-make)", kernel.Mutations{SplitWithoutBBML2: true}, []string{"bbm"}},
	{"free-table-before-flush", "a folded table page is freed before the walk-cache TLBI and the ptdump sync", kernel.Mutations{FreeTableBeforeFlush: true}, []string{"neighbours", "ptdump", "access"}},
	{"fold-ignores-attributes", "a collapse folds entries whose permissions differ", kernel.Mutations{FoldIgnoresAttributes: true}, []string{"neighbours"}},
	{"no-split-lock", "splits and collapses run without pgtable_split_lock", kernel.Mutations{NoSplitLock: true}, []string{"split"}},
	{"fold-without-patch-lock", "the collapse folds the vmalloc mapping of text without patch_lock", kernel.Mutations{FoldWithoutPatchLock: true}, []string{"text-poke"}},
}

// LookupMutant returns the mutations of a named mutant ("" or "none": none).
func LookupMutant(name string) (kernel.Mutations, error) {
	if name == "" || name == "none" {
		return kernel.Mutations{}, nil
	}
	var names []string
	for _, m := range Mutants {
		if m.Name == name {
			return m.Mutations, nil
		}
		names = append(names, m.Name)
	}
	return kernel.Mutations{}, fmt.Errorf("%w: no mutant %q (%s)", ErrScenario, name, strings.Join(names, ", "))
}
