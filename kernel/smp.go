package kernel

import "github.com/ptlab/ptlab/arm64"

// SecondaryOnline records that secondary CPU i has the given MIDR, as
// smp_init learns it, and recomputes the system's BBML2_NOABORT capability
// (setup_system_capabilities). With a CPU that lacks it on a block-mapped
// linear map, LinearMapMaybeSplitToPTEs then has a repaint to do. Boot does
// all of this on one CPU without TLBs; the checker's repaint scenario calls
// it on a kernel booted with BBML2 CPUs only, so that the repaint runs on
// simulated CPUs whose TLBs hold the old block entries.
func (k *Kernel) SecondaryOnline(i int, midr arm64.MIDR) {
	for len(k.MIDRs) <= i {
		k.MIDRs = append(k.MIDRs, k.MIDRs[0])
	}
	k.MIDRs[i] = midr
	k.BBML2 = arm64.SystemSupportsBBML2NoAbort(k.MIDRs)
}

// LinearMapMaybeSplitToPTEs is linear_map_maybe_split_to_ptes's boot-CPU
// side (linear_map_split_to_ptes with smp_processor_id() == 0): split the
// linear map to PTEs and flush, once the secondaries are parked (the caller
// models wait_linear_map_split_to_ptes).
func (k *Kernel) LinearMapMaybeSplitToPTEs(c CPU) error { return k.linearMapMaybeSplitToPTEs(c) }
