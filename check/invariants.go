package check

import (
	"fmt"
	"strings"
)

// Kind names one invariant: every violation the package reports has one.
type Kind string

// The invariants. Each is reported through one path (Monitor.fail, or a
// whole-state check returning a *Violation) and proved by the mutants
// Registry lists for it.
const (
	KindTranslation      Kind = "translation changed"
	KindLostUpdate       Kind = "lost update"
	KindUseAfterFree     Kind = "use after free"
	KindFreedUnderWalk   Kind = "table freed under walk cache"
	KindFreedUnderWalker Kind = "table freed under walker"
	KindStaleTLB         Kind = "stale TLB entry"
	KindBBM              Kind = "break-before-make"
	KindTLBConflict      Kind = "TLB conflict"
	KindWX               Kind = "W^X"
	KindOpFailed         Kind = "operation failed"
	KindExecContent      Kind = "dead text executable"
	KindDirectMap        Kind = "direct map not restored"
	KindAccounting       Kind = "accounting"
	KindTableLeak        Kind = "table leak"
	KindDanglingTable    Kind = "dangling table"
	KindTableTwice       Kind = "table reachable twice"
	// Not invariants of the kernel: the run itself went wrong.
	KindPanic          Kind = "panic"
	KindDeadlock       Kind = "deadlock"
	KindNondeterminism Kind = "nondeterminism"
)

// When says at which points of a run an invariant is evaluated.
type When string

const (
	EveryStep When = "every step"    // after every door call that can break it
	OpEnd     When = "operation end" // when an operation returns (and at the end)
	RunEnd    When = "end of run"    // once every CPU is done
	Harness   When = "explorer"      // reported by the explorer, not the monitor
)

// Invariant describes one entry of the registry.
type Invariant struct {
	Kind Kind
	When When
	Doc  string
	// Mutants are the injected bugs (explore.Mutants names) that make it
	// fire in a `ptlab check` scenario; Tests are the unit tests that drive
	// the branches no mutant reaches.
	Mutants []string
	Tests   []string
}

// Registry is every invariant the checker evaluates, in report order: the
// explorer's monitor and real mode's end-of-round checks are both served by
// it (real mode evaluates the RunEnd and OpEnd ones, since it has no steps).
var Registry = []Invariant{
	{KindTranslation, EveryStep, "a store keeps every page nobody is changing translating as before, and a changing page keeps its PA; an access reaches the intended PA",
		[]string{"fold-ignores-attributes", "no-split-lock"}, []string{"TestMonitorTranslationEquivalence"}},
	{KindLostUpdate, EveryStep, "a store lands in a table still reachable from the root; an operation ends with its footprint as in the serial run",
		nil, []string{"TestMonitorLostUpdateAndWalkCache"}},
	{KindUseAfterFree, EveryStep, "no load, store or hardware walk reads a page that is no longer a table",
		nil, []string{"TestMonitorUseAfterFree", "TestMonitorAccessFaults"}},
	{KindFreedUnderWalk, EveryStep, "no table page is freed while a CPU's walk cache points to it",
		[]string{"free-table-before-flush"}, []string{"TestMonitorLostUpdateAndWalkCache"}},
	{KindFreedUnderWalker, EveryStep, "no table page is freed while a lockless walker (ptdump, pageattr, vmalloc_to_page) is inside it",
		[]string{"fold-without-patch-lock", "fold-without-vmap-lock"}, nil},
	{KindStaleTLB, OpEnd, "no CPU's TLB is more permissive, or maps another PA, than the tables over an operation's footprint once it returns (and over the tracked ranges at the end); an access outside any changing page is allowed only by the tables",
		[]string{"skip-tlbi", "purge-without-flush"}, nil},
	{KindBBM, EveryStep, "a CPU without BBML2_NOABORT never caches an entry of another size than the tables' leaf",
		[]string{"split-without-bbml2", "repaint-without-tlb-maintenance"}, nil},
	{KindTLBConflict, EveryStep, "no access hits two TLB entries of different sizes on a CPU without BBML2_NOABORT",
		nil, []string{"TestMonitorAccessFaults"}},
	{KindWX, EveryStep, "an executable page is writable neither through its own mapping nor through its linear alias",
		[]string{"fold-skips-last-pte"}, []string{"TestWXFindsWritableAlias", "TestMonitorWXPerStep"}},
	{KindOpFailed, OpEnd, "an operation fails exactly when it fails alone",
		nil, []string{"TestMonitorOpFailed"}},
	{KindExecContent, OpEnd, "every executable execmem page holds trap fill or the text of a live object",
		[]string{"free-without-refill"}, []string{"TestExecContentFindsDeadText"}},
	{KindDirectMap, RunEnd, "a free page's linear alias is valid and writable again (the ROX cache and vm_reset_perms restore it)",
		[]string{"clean-forgets-alias"}, nil},
	{KindAccounting, OpEnd, "physmem's free and owned pages add up, and its page-table count is the tables'",
		nil, []string{"TestAccountingFinal"}},
	{KindTableLeak, RunEnd, "every allocated table page is reachable from the root",
		nil, []string{"TestLeaksAndDanglingTables", "TestFinalRecordsLeak"}},
	{KindDanglingTable, RunEnd, "no table entry points to a page that is not a table",
		nil, []string{"TestLeaksAndDanglingTables"}},
	{KindTableTwice, RunEnd, "no table page is referenced by two entries",
		nil, []string{"TestLeaksTableTwice"}},
	{KindPanic, Harness, "the modelled kernel panicked (a Go panic in a CPU's thread)", nil, nil},
	{KindDeadlock, Harness, "no CPU can run", nil, nil},
	{KindNondeterminism, Harness, "a replayed prefix offered other choices", nil, nil},
}

// Lookup returns the registry entry of a kind.
func Lookup(k Kind) (Invariant, bool) {
	for _, inv := range Registry {
		if inv.Kind == k {
			return inv, true
		}
	}
	return Invariant{}, false
}

// WriteRegistry prints the registry: kind, when it is evaluated, and what
// proves it fires.
func WriteRegistry(w interface{ Write([]byte) (int, error) }) error {
	for _, inv := range Registry {
		proof := strings.Join(append(append([]string(nil), inv.Mutants...), inv.Tests...), ", ")
		if _, err := fmt.Fprintf(w, "%-30s %-14s %s\n", inv.Kind, inv.When, proof); err != nil {
			return err
		}
	}
	return nil
}
