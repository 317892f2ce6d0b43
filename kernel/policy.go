package kernel

import (
	"fmt"
	"sort"
	"strings"
)

// CollapseMode selects what, if anything, merges split mappings back.
type CollapseMode string

const (
	// CollapseNone: splits are permanent (mainline).
	CollapseNone CollapseMode = "none"
	// CollapseRFCv1: RFC patch 6/6 as posted — after set_memory_ro on a
	// VM_ALLOW_HUGE_VMAP area, try to fold the PTE table holding the linear
	// alias of area->pages[0] into a PMD block, under pgtable_split_lock only.
	CollapseRFCv1 CollapseMode = "rfc-v1"
	// CollapseGeneral: ptlab's proposal — fold PTE->contPTE, PTE table->PMD,
	// PMD->contPMD (and PMD table->PUD) for the vmalloc mapping and the
	// linear alias, driven by page_order, with exclusion at the owner level.
	CollapseGeneral CollapseMode = "general"
)

// AliasMode selects how set_memory_ro/rw update the linear alias under
// rodata_full.
type AliasMode string

const (
	// AliasPerPage: one __change_memory_common per 4K page (mainline).
	AliasPerPage AliasMode = "per-page"
	// AliasPageOrder: one call per backing page of area->page_order when
	// the request covers it whole (Ryan Roberts' review suggestion).
	AliasPageOrder AliasMode = "page-order"
	// AliasNoExecmemSplit: execmem memory's alias is made read-only once, per
	// backing page, when a cache chunk is populated, and is not touched by
	// later set_memory_rw/ro on it (the author's last idea in the thread).
	AliasNoExecmemSplit AliasMode = "no-execmem-split"
)

// Policy is the set of knobs that distinguish mainline, the RFC and the
// designs its review asked for. Policies are data: a preset is a value.
type Policy struct {
	Name string `json:"name" yaml:"name"`
	// ROXCache enables EXECMEM_ROX_CACHE for text-like execmem ranges on
	// systems where every CPU has BBML2_NOABORT (RFC patches 1, 4, 5).
	ROXCache bool `json:"rox_cache" yaml:"rox_cache"`
	// HugeVmapPerms lets set_memory_* change VM_ALLOW_HUGE_VMAP areas on
	// BBML2_NOABORT systems (RFC patch 2).
	HugeVmapPerms bool `json:"huge_vmap_perms" yaml:"huge_vmap_perms"`
	// CleanRestoresRW makes the ROX cache's clean path restore the linear
	// alias to valid and writable (RFC patch 3) rather than only valid.
	CleanRestoresRW bool `json:"clean_restores_rw" yaml:"clean_restores_rw"`
	// CleanWholeArea makes the cache clean release a free range only when it
	// is a whole chunk (the size check of Mike Rapoport's tree); without it
	// (linux-mm's execmem_cache_clean) a free PMD-aligned prefix of a larger
	// chunk takes the busy rest of the chunk with it.
	CleanWholeArea bool         `json:"clean_whole_area" yaml:"clean_whole_area"`
	Collapse       CollapseMode `json:"collapse" yaml:"collapse"`
	Alias          AliasMode    `json:"alias" yaml:"alias"`
}

// Presets are the named policies.
var Presets = map[string]Policy{
	"mainline":       {Name: "mainline", Collapse: CollapseNone, Alias: AliasPerPage},
	"rox-cache":      {Name: "rox-cache", ROXCache: true, HugeVmapPerms: true, CleanRestoresRW: true, Collapse: CollapseNone, Alias: AliasPerPage},
	"rfc-v1":         {Name: "rfc-v1", ROXCache: true, HugeVmapPerms: true, CleanRestoresRW: true, Collapse: CollapseRFCv1, Alias: AliasPerPage},
	"collapse":       {Name: "collapse", ROXCache: true, HugeVmapPerms: true, CleanRestoresRW: true, CleanWholeArea: true, Collapse: CollapseGeneral, Alias: AliasPageOrder},
	"no-alias-split": {Name: "no-alias-split", ROXCache: true, HugeVmapPerms: true, CleanRestoresRW: true, CleanWholeArea: true, Collapse: CollapseGeneral, Alias: AliasNoExecmemSplit},
}

// PresetNames lists the presets in a fixed order.
func PresetNames() []string {
	order := []string{"mainline", "rox-cache", "rfc-v1", "collapse", "no-alias-split"}
	var extra []string
	for n := range Presets {
		found := false
		for _, o := range order {
			found = found || o == n
		}
		if !found {
			extra = append(extra, n)
		}
	}
	sort.Strings(extra)
	return append(order, extra...)
}

// Preset returns a named policy.
func Preset(name string) (Policy, error) {
	p, ok := Presets[name]
	if !ok {
		return Policy{}, fmt.Errorf("%w: no preset %q (%s)", ErrConfig, name, strings.Join(PresetNames(), ", "))
	}
	return p, nil
}

func (p *Policy) validate() error {
	switch p.Collapse {
	case "", CollapseNone, CollapseRFCv1, CollapseGeneral:
	default:
		return fmt.Errorf("%w: collapse %q (none, rfc-v1, general)", ErrConfig, p.Collapse)
	}
	switch p.Alias {
	case "", AliasPerPage, AliasPageOrder, AliasNoExecmemSplit:
	default:
		return fmt.Errorf("%w: alias %q (per-page, page-order, no-execmem-split)", ErrConfig, p.Alias)
	}
	return nil
}

// ValidatePolicy checks the configuration's policy knobs alone.
func (c *Config) ValidatePolicy() error { return c.Policy.validate() }
