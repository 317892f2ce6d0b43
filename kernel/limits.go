package kernel

import (
	"fmt"
	"strings"

	"github.com/ptlab/ptlab/arm64"
)

// NRCPUsMax is the largest NR_CPUS arm64's Kconfig allows (range 2 4096).
const NRCPUsMax = 4096

// MaxModelTableBytes bounds the page-table memory a configuration may need
// at boot. The model keeps every table page it allocates in host memory, so a
// linear map forced to base pages costs the host what it costs the kernel
// (RAM/512 with 4K pages): 8 GiB of tables is 4 TiB of PTE-mapped RAM,
// about 8.7 GB of host memory (a table page costs ~1.04 x 4 KiB).
const MaxModelTableBytes = 8 << 30

// kconfigVABits are the CONFIG_ARM64_VA_BITS choices per granule
// (arch/arm64/Kconfig, "Virtual address space size": 36 and 47 depend on
// 16K pages, 39 on 4K, 42 on 64K; 48 and 52 on any).
var kconfigVABits = map[string][]int{
	"4K":  {39, 48, 52},
	"16K": {36, 47, 48, 52},
	"64K": {42, 48, 52},
}

// checkLimits refuses what no arm64 kernel build or boot can be, and what
// the model cannot hold, before anything is allocated: a VA size the
// granule's Kconfig does not offer, a runtime VA size other than the
// configured one (or 48 when a 52-bit kernel falls back, as on CPUs without
// LPA2/LVA), more CPUs than NR_CPUS, and a linear map forced to base pages whose tables
// would exceed MaxModelTableBytes.
func (c *Config) checkLimits(g arm64.Geometry, midrs []arm64.MIDR) error {
	gran := strings.ToUpper(c.Granule)
	if gran == "" {
		gran = "4K"
	}
	va := c.VABits
	if va == 0 {
		va = 48
	}
	cfgVA := c.ConfigVABits
	if cfgVA == 0 {
		cfgVA = va
	}
	ok := false
	for _, v := range kconfigVABits[gran] {
		ok = ok || v == cfgVA
	}
	if !ok {
		return fmt.Errorf("%w: config_va_bits %d with %s pages: CONFIG_ARM64_VA_BITS offers %v", ErrConfig, cfgVA, gran, kconfigVABits[gran])
	}
	if va != cfgVA && !(cfgVA == 52 && va == 48) {
		return fmt.Errorf("%w: va_bits %d on a kernel built with CONFIG_ARM64_VA_BITS=%d: the runtime VA size is the configured one, or 48 when a 52-bit kernel runs without LPA2/LVA", ErrConfig, va, cfgVA)
	}
	if len(midrs) > NRCPUsMax {
		return fmt.Errorf("%w: cpus: %d CPUs, more than NR_CPUS allows (%d)", ErrConfig, len(midrs), NRCPUsMax)
	}
	var ram uint64
	for _, r := range c.RAM {
		ram += uint64(r.Size)
	}
	rodataFull, err := c.RodataFull()
	if err != nil {
		return err
	}
	bbml2 := arm64.SystemSupportsBBML2NoAbort(midrs)
	// map_mem's rule as force_pte_mapping has it, with every CPU counted
	// (a boot CPU with BBML2 and a secondary without ends PTE-mapped too).
	forcePTE := c.DebugPagealloc || (!bbml2 && (rodataFull || c.KFENCE == KFENCELate))
	if forcePTE && c.imported == nil {
		if tables := ram / g.PageSize() * 8; tables > MaxModelTableBytes {
			return fmt.Errorf("%w: ram %d GiB mapped with base pages (no BBML2_NOABORT on every CPU, rodata=on or debug_pagealloc) needs %d GiB of PTE tables; the model holds at most %d GiB: use less RAM, BBML2_NOABORT CPUs or rodata=noalias",
				ErrConfig, ram>>30, tables>>30, MaxModelTableBytes>>30)
		}
	}
	return nil
}
