package kernel

import "testing"

// Tests that reproduce what docs/findings.md reports about the kernel. The
// other findings have their tests beside the code they concern (named in
// docs/findings.md).

// TestVmResetPermsFlushesAllTLBs: on arm64, freeing any VM_FLUSH_RESET_PERMS
// area (module init sections, BPF images, kprobe pages outside the ROX
// cache) flushes the whole TLB. vm_reset_perms (mm/vmalloc.c) widens the
// lazy-purge flush to the direct-map addresses of the area's pages, so
// the one flush_tlb_kernel_range spans from the linear map to the vmalloc
// range: far beyond MAX_DVM_OPS pages, and beyond MAX_TLBI_RANGE_PAGES with
// FEAT_TLBIRANGE, so arch/arm64/include/asm/tlbflush.h falls back to
// flush_tlb_all (TLBI VMALLE1IS). The same vfree without the flag issues
// no TLBI at all (the purge is lazy).
func TestVmResetPermsFlushesAllTLBs(t *testing.T) {
	for _, m := range []string{"n1-server", "bbml2-server"} {
		for _, rangeOps := range []bool{false, true} {
			k := boot(t, m, func(c *Config) { c.TLBIRange = rangeOps })
			c := &PlainCPU{}
			for _, flags := range []VMFlags{0, VMFlushResetPerms} {
				a, err := k.VmallocNodeRange(c, VmallocRequest{Size: 4096, Flags: flags, Caller: "test"})
				if err != nil {
					t.Fatal(err)
				}
				k.TLB.Reset()
				if err := k.Vfree(c, a.Addr); err != nil {
					t.Fatal(err)
				}
				all := k.TLB.Count[TLBIVMALLE1IS]
				other := k.TLB.Count[TLBIVAALE1IS] + k.TLB.Count[TLBIRVAALE1IS]
				switch {
				case flags == 0 && all+other != 0:
					t.Errorf("%s range=%v: plain vfree of one page issued %d+%d TLBIs", m, rangeOps, all, other)
				case flags != 0 && (all != 1 || other != 0):
					t.Errorf("%s range=%v: VM_FLUSH_RESET_PERMS vfree of one page: %d VMALLE1IS, %d range/page TLBIs; want one full flush", m, rangeOps, all, other)
				}
			}
		}
	}
}
