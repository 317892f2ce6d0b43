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
	{"skip-tlbi", "flush_tlb_kernel_range issues no TLBI", kernel.Mutations{SkipTLBI: true}, []string{"access", "neighbours", "split", "bpf-pack"}},
	{"split-without-bbml2", "live blocks split on CPUs without BBML2_NOABORT (no break-before-make)", kernel.Mutations{SplitWithoutBBML2: true}, []string{"bbm"}},
	{"free-table-before-flush", "a folded table page is freed before the walk-cache TLBI and the ptdump sync", kernel.Mutations{FreeTableBeforeFlush: true}, []string{"neighbours", "ptdump", "access"}},
	{"fold-ignores-attributes", "a collapse folds entries whose permissions differ", kernel.Mutations{FoldIgnoresAttributes: true}, []string{"neighbours"}},
	{"no-split-lock", "splits and collapses run without pgtable_split_lock", kernel.Mutations{NoSplitLock: true}, []string{"split"}},
	{"fold-without-patch-lock", "the collapse folds the vmalloc mapping of text without patch_lock", kernel.Mutations{FoldWithoutPatchLock: true}, []string{"text-poke", "three-kcore"}},
	{"fold-without-vmap-lock", "the collapse folds the vmalloc mapping without the vmap node's busy lock (/proc/kcore's vread_iter walks it)", kernel.Mutations{FoldWithoutVmapLock: true}, []string{"kcore", "three-kcore"}},
	{"fold-skips-last-pte", "the collapse's attribute check skips the table's last entry", kernel.Mutations{FoldSkipsLastEntry: true}, []string{"chunk-offsets"}},
	{"free-without-refill", "the ROX cache's free does not refill the freed object with traps", kernel.Mutations{FreeWithoutRefill: true}, []string{"free", "chunk-release"}},
	{"clean-forgets-alias", "the cache clean releases a chunk without restoring its linear alias", kernel.Mutations{CleanForgetsAlias: true}, []string{"chunk-release", "bpf-pack"}},
	{"purge-without-flush", "the lazy vmap purge makes freed VA reusable without a TLB flush", kernel.Mutations{PurgeWithoutFlush: true}, []string{"vmap-reuse"}},
	{"repaint-without-tlb-maintenance", "the mixed-server repaint neither flushes before releasing the secondaries nor has them drop their TLBs when they park", kernel.Mutations{RepaintWithoutFlush: true, ParkKeepsTLB: true}, []string{"repaint"}},
}

// Equivalent are injected changes that no scenario can expose because the
// kernel does not depend on what they remove, with the reason: the
// mutation report lists them apart from the mutants.
var Equivalent = []Mutant{
	{"repaint-without-flush", "linear_map_split_to_ptes without its final flush_tlb_kernel_range: every secondary invalidated its own TLB when it parked " +
		"(__idmap_cpu_set_reserved_ttbr1 in wait_linear_map_split_to_ptes, arch/arm64/mm/proc.S) and cannot walk swapper while parked, so only the " +
		"boot CPU keeps the old blocks — and it has BBML2_NOABORT, under which they may linger (the arch_kfence_init_pool comment says so)",
		kernel.Mutations{RepaintWithoutFlush: true}, []string{"repaint"}},
}

// LookupMutant returns the mutations of a named mutant ("" or "none": none).
func LookupMutant(name string) (kernel.Mutations, error) {
	if name == "" || name == "none" {
		return kernel.Mutations{}, nil
	}
	var names []string
	for _, m := range append(append([]Mutant(nil), Mutants...), Equivalent...) {
		if m.Name == name {
			return m.Mutations, nil
		}
		names = append(names, m.Name)
	}
	return kernel.Mutations{}, fmt.Errorf("%w: no mutant %q (%s)", ErrScenario, name, strings.Join(names, ", "))
}
