package kernel

import (
	"fmt"
	"testing"
)

// BenchmarkSetMemoryRORW measures set_memory_ro + set_memory_rw of one 4K
// vmalloc page (each also updating the page's linear alias under rodata_full)
// on a BBML2 machine with a block-mapped linear map of 64 GiB and of 1 TiB.
// The cost must not depend on the RAM size.
func BenchmarkSetMemoryRORW(b *testing.B) {
	for _, ram := range []uint64{64 << 30, 1 << 40} {
		b.Run(fmt.Sprintf("%dGiB", ram>>30), func(b *testing.B) {
			k := boot(b, "bbml2-server", func(c *Config) { c.RAM = []RAMRegion{{0x80000000, Size(ram)}} })
			c := &PlainCPU{}
			a, err := k.Vmalloc(c, 4096)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := k.SetMemoryRO(c, a.Addr, 1); err != nil {
					b.Fatal(err)
				}
				if err := k.SetMemoryRW(c, a.Addr, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBoot measures booting the preset machines.
func BenchmarkBoot(b *testing.B) {
	for _, m := range []string{"qemu-virt", "bbml2-server", "n1-server"} {
		b.Run(m, func(b *testing.B) {
			cfg, _ := Machine(m)
			for i := 0; i < b.N; i++ {
				if _, err := Boot(cfg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
