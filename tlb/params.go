// Package tlb is ptlab's TLB and page-walk COST model: how many translations
// a CPU core misses and how many cycles it spends walking the kernel's
// tables, given the exact shape of those tables (package pgtable) and an
// access stream. It is separate from package cpu, whose TLBs are the
// architecture's worst case for the concurrency checker: here a TLB is a
// particular core's structures — L1 instruction and data TLBs, a unified L2
// TLB, walk caches — with their sizes, associativity, LRU replacement, the
// page and block sizes each can hold, contiguous-range entries and the
// Cortex-A76 family's four-page coalescing.
//
// Numbers come from vendor manuals where public; every parameter set lists
// its sources, and numbers that are not public are marked assumed (and the
// output of every command that uses them says so).
package tlb

import (
	"fmt"
	"sort"
	"strings"
)

// Structure describes one TLB structure of a core.
type Structure struct {
	Entries, Ways int
	// Holds are the spans (log2 bytes) an entry can cover; a larger leaf is
	// splintered to the largest held span not above it ("breaking these down
	// into smaller pages", Cortex-A76 TRM A5.2).
	Holds []uint8
	// Latency is the hit latency in cycles (informational).
	Latency int
	// Coalesce4 makes 4K page entries cover four adjacent pages when their
	// output addresses and attributes are contiguous (Cortex-A76 TRM
	// Table A6-31: a coalesced entry with per-page valid bits).
	Coalesce4 bool
	// WalkLevels are the table levels whose table pointers this structure
	// also caches as walk-cache entries (A76: the L2 TLB holds intermediate
	// walk results). A pointer to the level-l table lets a walk start at l.
	WalkLevels []int8
}

// Model is one CPU core's translation hardware.
type Model struct {
	Key, Name string
	L1I, L1D  Structure
	L2        Structure
	// Walk are separate walk caches (none when the L2 TLB holds them).
	Walk []Structure
	// WalkFillOnBlock: walk-cache entries are also filled when the walk ends
	// at a block. Cortex-A35 TRM A6.2: when the stage 1 translation gives a
	// section or larger mapping, nothing is placed in the walk cache.
	WalkFillOnBlock bool
	// ReadCycles is the cost of one descriptor read during a walk and
	// WalkCycles a fixed cost per walk; see calibration in README.
	ReadCycles, WalkCycles float64
	// Sources cites each number; Assumed lists the ones that are not public.
	Sources []string
	Assumed []string
}

// Spans, log2 bytes.
const (
	s4K   = 12
	s16K  = 14
	s64K  = 16
	s256K = 18
	s2M   = 21
	s32M  = 25
	s512M = 29
	s1G   = 30
)

// readCyclesAltra is the descriptor-read cost that makes the model's mean
// cycles per walk on a gups-like stream (uniform random 8-byte reads over an
// 8 GiB 4K-mapped region) on Neoverse N1 equal the median measured on an
// Ampere Altra: ≈39 cycles per dTLB walk, derived from the Elastic
// Translations (MICRO'24) artifact, cslab-ntua/elastic-translations-MICRO2024
// scripts/plots/fig8/{cycles,tlbmisses}.csv (Δcycles/Δdtlb_walk between 4K
// and ET over ten workloads: median 39, range 4–131). On that stream the
// model's walks read 3.55 descriptors on average (the L2 TLB's walk entries
// rarely cover 8 GiB of PTE tables; TestCalibrationAltra pins it), so one
// read costs 39/3.55 ≈ 11 cycles — an L2-cache hit on N1, the effective
// cost once the out-of-order core overlaps walks with other misses.
const readCyclesAltra = 11.0

var models = []*Model{
	{
		Key: "n1", Name: "Neoverse N1",
		L1I: Structure{Entries: 48, Ways: 48, Holds: []uint8{s4K, s16K, s64K, s2M, s32M}, Latency: 1},
		L1D: Structure{Entries: 48, Ways: 48, Holds: []uint8{s4K, s16K, s64K, s2M, s512M}, Latency: 1},
		L2: Structure{Entries: 1280, Ways: 5, Holds: []uint8{s4K, s16K, s64K, s2M, s32M, s512M, s1G}, Latency: 3,
			Coalesce4: true, WalkLevels: []int8{3}},
		ReadCycles: readCyclesAltra,
		Sources: []string{
			"L1 I/D 48 fully associative, held sizes, L2 1280 5-way, 1/3-cycle hits, walk results in the L2 TLB: Arm Cortex-A76 TRM (100798) A5.1-A5.2; N1 shares the A76 MMU (WikiChip, Neoverse N1)",
			"4-page coalescing in the L2 TLB: Cortex-A76 TRM Table A6-31 (L2 TLB entry, coalesced bit)",
			"cycles per walk: calibrated to Ampere Altra (N1) measurements, cslab-ntua/elastic-translations-MICRO2024 fig8",
		},
		Assumed: []string{
			"N1 TLBs identical to Cortex-A76 (secondary source)",
			"walk-cache entries in the L2 TLB hold level-3 table pointers only (gem5 ArmMMU partial_levels=[\"L2\"])",
			"walk cache not filled for block leaves (Cortex-A35 TRM rule)",
			"4-page coalescing on N1 as on A76",
		},
	},
	{
		Key: "a76", Name: "Cortex-A76",
		L1I: Structure{Entries: 48, Ways: 48, Holds: []uint8{s4K, s16K, s64K, s2M, s32M}, Latency: 1},
		L1D: Structure{Entries: 48, Ways: 48, Holds: []uint8{s4K, s16K, s64K, s2M, s512M}, Latency: 1},
		L2: Structure{Entries: 1280, Ways: 5, Holds: []uint8{s4K, s16K, s64K, s2M, s32M, s512M, s1G}, Latency: 3,
			Coalesce4: true, WalkLevels: []int8{3}},
		ReadCycles: readCyclesAltra,
		Sources: []string{
			"L1 I/D 48 fully associative, held sizes, L2 1280 5-way, 1/3-cycle hits, walk results in the L2 TLB: Arm Cortex-A76 TRM (100798) A5.1-A5.2",
			"4-page coalescing: Cortex-A76 TRM Table A6-31",
		},
		Assumed: []string{
			"walk-cache entries in the L2 TLB hold level-3 table pointers only (gem5 ArmMMU partial_levels=[\"L2\"])",
			"walk cache not filled for block leaves (Cortex-A35 TRM rule)",
			"descriptor-read cost as on the Altra (a phone's memory is slower)",
		},
	},
	{
		Key: "v2", Name: "Neoverse V2",
		L1I: Structure{Entries: 48, Ways: 12, Holds: []uint8{s4K, s16K, s64K, s2M, s32M}, Latency: 1},
		L1D: Structure{Entries: 48, Ways: 48, Holds: []uint8{s4K, s16K, s64K, s2M, s32M, s512M}, Latency: 1},
		L2: Structure{Entries: 2048, Ways: 8, Holds: []uint8{s4K, s16K, s64K, s2M, s32M, s512M, s1G}, Latency: 3,
			WalkLevels: []int8{3}},
		ReadCycles: readCyclesAltra,
		Sources: []string{
			"L1 I 48 12-way, L1 D 48 fully associative, L2 2048 8-way with walk entries: gem5 configs/common/cores/arm/neoverse_v2.py (NeoverseMMU), citing Hot Chips 2023 (Magnus Bruce) and Chips and Cheese (Graviton4)",
		},
		Assumed: []string{
			"held page sizes per structure (not public; A76 set with 32M in L1D)",
			"hit latencies 1/3 cycles (as A76)",
			"no 4-page coalescing",
			"walk-cache entries in the L2 TLB hold level-3 table pointers only",
			"walk cache not filled for block leaves (Cortex-A35 TRM rule)",
			"descriptor-read cost as on the Altra",
		},
	},
	{
		Key: "ampereone", Name: "AmpereOne",
		L1I: Structure{Entries: 64, Ways: 64, Holds: allSizes, Latency: 1},
		L1D: Structure{Entries: 64, Ways: 64, Holds: allSizes, Latency: 1},
		L2:  Structure{Entries: 2048, Ways: 8, Holds: allSizes, Latency: 4},
		Walk: []Structure{
			{Entries: 64, Ways: 4, WalkLevels: []int8{1, 2, 3}},
		},
		ReadCycles: readCyclesAltra,
		Sources: []string{
			"universal entries (any page size in any entry, every TLB level): AmpereOne at Hot Chips 2024 (ServeTheHome report)",
		},
		Assumed: []string{
			"all sizes (not public): L1 I/D 64 fully associative, L2 2048 8-way, hit latencies 1/4 cycles",
			"a separate 64-entry 4-way walk cache for levels 1-3 (Cortex-A55/A53 organisation)",
			"walk cache not filled for block leaves (Cortex-A35 TRM rule)",
			"descriptor-read cost as on the Altra",
		},
	},
}

var allSizes = []uint8{s4K, s16K, s64K, s256K, s2M, s32M, s512M, s1G}

// Models returns the built-in parameter sets, in display order.
func Models() []*Model { return models }

// ModelKeys are the keys of the built-in models.
func ModelKeys() []string {
	var k []string
	for _, m := range models {
		k = append(k, m.Key)
	}
	return k
}

// LookupModel finds a model by key or name, case-insensitively ("n1",
// "Neoverse N1", "neoverse-n1").
func LookupModel(name string) (*Model, error) {
	n := strings.ToLower(strings.NewReplacer("-", "", " ", "", "_", "").Replace(name))
	for _, m := range models {
		if n == m.Key || n == strings.ToLower(strings.ReplaceAll(m.Name, " ", "")) ||
			n == strings.TrimPrefix(strings.ToLower(strings.ReplaceAll(m.Name, " ", "")), "neoverse") ||
			n == strings.TrimPrefix(strings.ToLower(strings.ReplaceAll(m.Name, " ", "")), "cortex") {
			return m, nil
		}
	}
	keys := ModelKeys()
	sort.Strings(keys)
	return nil, fmt.Errorf("%w: unknown CPU model %q (have %s)", ErrModel, name, strings.Join(keys, ", "))
}
