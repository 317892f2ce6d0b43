package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/tlb"
)

// dump cost on a real AmpereOne dump whose linear map is 99.7% PTEs: the
// same RAM block-mapped takes fewer dTLB walks; the PTE-mapped rebuild costs
// about what the dump costs.
func TestDumpCost(t *testing.T) {
	out, err := run(t, "dump", "cost", "../../ptdump/testdata/002-ryan-roberts-bbml2-v7-ampereone-mode3-ptes.txt",
		"--cpu", "n1", "--stream", "zipf", "--accesses", "20000", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Cells []costCell `json:"cells"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	got := map[string]costCell{}
	for _, c := range res.Cells {
		got[c.Shape] = c
	}
	dumped, blocks, ptes := got["as dumped"], got["block-mapped"], got["PTE-mapped"]
	if !(blocks.L2MPKA < dumped.L2MPKA/10) {
		t.Errorf("block-mapped %.2f walks /1k vs the dump's %.2f: blocks must save most walks", blocks.L2MPKA, dumped.L2MPKA)
	}
	if d := ptes.L2MPKA - dumped.L2MPKA; d < -0.1*dumped.L2MPKA || d > 0.1*dumped.L2MPKA {
		t.Errorf("PTE-mapped %.2f walks /1k vs the dump's %.2f: a PTE-mapped dump should cost the same", ptes.L2MPKA, dumped.L2MPKA)
	}
	text, err := run(t, "dump", "cost", "../../ptdump/testdata/002-ryan-roberts-bbml2-v7-ampereone-mode3-ptes.txt",
		"--cpu", "n1", "--stream", "pagecache", "--accesses", "5000")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"as dumped", "block-mapped", "PTE-mapped", "dTLB L2 misses /1k", "walk cycles /s", "assumed"} {
		if !strings.Contains(text, want) {
			t.Errorf("dump cost output lacks %q", want)
		}
	}
	if _, err := run(t, "dump", "cost", "../../ptdump/testdata/002-ryan-roberts-bbml2-v7-ampereone-mode3-ptes.txt", "--cpu", "pentium"); !errors.Is(err, tlb.ErrModel) {
		t.Errorf("unknown CPU model: %v, want tlb.ErrModel", err)
	}
}

// compare prints the cost rows of every CPU model.
func TestCompareCostRows(t *testing.T) {
	out, err := run(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range tlb.Models() {
		if !strings.Contains(out, m.Name+" (TLB cost model)") {
			t.Errorf("compare output lacks the %s rows", m.Name)
		}
	}
	for _, want := range []string{"iTLB L1 misses /1k", "dTLB L2 misses /1k", "walk cycles /s", "TLBI refills", "assumed", "scaled to the streams' rates"} {
		if !strings.Contains(out, want) {
			t.Errorf("compare output lacks %q", want)
		}
	}
}
