package arm64

import "testing"

// The BBML2_NOABORT allow-list against MIDR_RANGE semantics: for every listed
// part, the lowest and highest accepted variant:revision, the revision just
// below a MIDR_REV_RANGE, the next variant, and a neighbouring part.
func TestBBML2AllowListRevisions(t *testing.T) {
	type c struct {
		name string
		m    MIDR
		want bool
	}
	var cases []c
	revRanges := []struct {
		name       string
		part, rMin uint32
	}{
		{"Cortex-X4", PartCortexX4, 3},
		{"Neoverse-V3", PartNeoverseV3, 2},
		{"Neoverse-V3AE", PartNeoverseV3AE, 2},
	}
	for _, r := range revRanges {
		cases = append(cases,
			c{r.name + " r0p(min)", MakeMIDR(ImpArm, r.part, 0, r.rMin), true},
			c{r.name + " r0p15", MakeMIDR(ImpArm, r.part, 0, 15), true},
			c{r.name + " r0p(min-1)", MakeMIDR(ImpArm, r.part, 0, r.rMin-1), false},
			c{r.name + " r0p0", MakeMIDR(ImpArm, r.part, 0, 0), false},
			c{r.name + " r1p0", MakeMIDR(ImpArm, r.part, 1, 0), false},
			c{r.name + " r1p(min)", MakeMIDR(ImpArm, r.part, 1, r.rMin), false},
			c{r.name + " r15p15", MakeMIDR(ImpArm, r.part, 15, 15), false},
		)
	}
	all := []struct {
		name      string
		imp, part uint32
	}{
		{"Olympus", ImpNVIDIA, PartOlympus},
		{"AmpereOne", ImpAmpere, PartAmpere1},
		{"AmpereOne A", ImpAmpere, PartAmpere1A},
	}
	for _, a := range all {
		cases = append(cases,
			c{a.name + " r0p0", MakeMIDR(a.imp, a.part, 0, 0), true},
			c{a.name + " r15p15", MakeMIDR(a.imp, a.part, 15, 15), true},
			c{a.name + " r3p7", MakeMIDR(a.imp, a.part, 3, 7), true},
		)
	}
	cases = append(cases,
		c{"Cortex-A72", MIDRCortexA72, false},
		c{"Neoverse-N1", MIDRNeoverseN1, false},
		c{"Neoverse-V2 (0xd4f)", MakeMIDR(ImpArm, 0xd4f, 0, 2), false},
		c{"X4 part, NVIDIA implementer", MakeMIDR(ImpNVIDIA, PartCortexX4, 0, 3), false},
		c{"named neoverse-v3", MIDRNeoverseV3, true},
		c{"named cortex-x4", MIDRCortexX4, true},
		c{"named neoverse-v3 r0p1", MIDRNeoverseV3Early, false},
		c{"named cortex-x4 r0p2", MIDRCortexX4Early, false},
		// The architecture field is part of MIDR_CPU_MODEL_MASK.
		c{"AmpereOne, architecture 0xe", MIDR(uint32(MIDRAmpere1)&^(0xf<<16) | 0xe<<16), false},
	)
	for _, tc := range cases {
		if got := tc.m.SupportsBBML2NoAbort(); got != tc.want {
			t.Errorf("%s (%v): %v, want %v", tc.name, tc.m, got, tc.want)
		}
	}
}

// MIDR_RANGE compares variant:revision as one number: r0p15 < r1p0.
func TestMIDRRangeSpansVariants(t *testing.T) {
	r := MIDRRangeOf(ImpArm, PartCortexA72, 0, 8, 1, 2)
	for _, tc := range []struct {
		v, r uint32
		want bool
	}{{0, 7, false}, {0, 8, true}, {0, 15, true}, {1, 0, true}, {1, 2, true}, {1, 3, false}, {2, 0, false}} {
		if got := r.Contains(MakeMIDR(ImpArm, PartCortexA72, tc.v, tc.r)); got != tc.want {
			t.Errorf("r%dp%d: %v, want %v", tc.v, tc.r, got, tc.want)
		}
	}
}
