package kernel

import (
	"fmt"
	"math/bits"
	"testing"

	"pgregory.net/rapid"

	"github.com/ptlab/ptlab/arm64"
)

// The boot-time vmalloc users of a QEMU virt boot, as /proc/vmallocinfo of
// Debian's kernels lists them: every device the machine ioremaps, at an
// address aligned as ioremap aligns it and mapped to its registers with
// device attributes (the 256 MiB ECAM with PMD blocks, no contiguous PMDs);
// a stack per thread and per CPU, THREAD_ALIGN aligned; the second percpu
// chunk right below VMALLOC_END. A machine that declares no devices and no
// threads gets none.
func TestBootVmallocUsers(t *testing.T) {
	for _, gr := range []string{"4K", "16K", "64K"} {
		for _, rel := range []string{"6.1", "6.12", "7.3"} {
			k := boot(t, "qemu-virt", func(c *Config) { c.Granule = gr; c.Kernel = rel })
			c := &PlainCPU{}
			ps := k.G.PageSize()
			byCaller := map[string]int{}
			var topEnd uint64
			for _, a := range k.VM.Areas() {
				byCaller[a.Caller]++
				if a.Caller == "pcpu_get_vm_areas" {
					topEnd = max(topEnd, a.Addr+a.Size)
				}
				if a.Caller == "kernel_clone" && a.Addr%(2*k.threadSize()) != 0 {
					t.Errorf("%s/%s: stack at %#x not THREAD_ALIGN aligned", gr, rel, a.Addr)
				}
			}
			if n := byCaller["kernel_clone"]; n != k.Cfg.BootThreads {
				t.Errorf("%s/%s: %d thread stacks, want %d", gr, rel, n, k.Cfg.BootThreads)
			}
			if n := byCaller["init_irq_stacks"]; n != len(k.MIDRs) {
				t.Errorf("%s/%s: %d IRQ stacks, want %d", gr, rel, n, len(k.MIDRs))
			}
			if n := byCaller["fork_idle"]; n != len(k.MIDRs)-1 {
				t.Errorf("%s/%s: %d idle stacks, want %d", gr, rel, n, len(k.MIDRs)-1)
			}
			if byCaller["pcpu_get_vm_areas"] != len(k.MIDRs) || topEnd > k.Layout.VmallocEnd || k.Layout.VmallocEnd-topEnd >= k.pcpuUnitSize() {
				t.Errorf("%s/%s: percpu chunk %d units ending %#x, VMALLOC_END %#x", gr, rel, byCaller["pcpu_get_vm_areas"], topEnd, k.Layout.VmallocEnd)
			}
			for _, d := range k.Cfg.Devices {
				if !d.Ioremap {
					continue
				}
				a := (*VMArea)(nil)
				for _, x := range k.VM.Areas() {
					if x.Caller == "ioremap "+d.Name {
						a = x
					}
				}
				if a == nil {
					t.Errorf("%s/%s: %s not ioremapped", gr, rel, d.Name)
					continue
				}
				off := uint64(d.Base) & (ps - 1) // ioremap returns the VA of the page plus the offset
				size := alignUp(uint64(d.Size)+off, ps)
				align := uint64(1) << min(max(uint(bits.Len64(size-1)), k.G.PageShift), ioremapMaxOrder(k))
				if a.Addr%align != 0 || a.Size != size+ps {
					t.Errorf("%s/%s: %s at %#x size %#x, want %#x-aligned, %#x", gr, rel, d.Name, a.Addr, a.Size, align, size+ps)
				}
				pa, e, ok := k.PT.Translate(c, a.Addr+off)
				if !ok || pa != uint64(d.Base) || e.Desc&arm64.PTEAttrIndxMask != arm64.AttrIndx(arm64.MTDeviceNGnRE) {
					t.Errorf("%s/%s: %s %#x -> %#x %v desc %#x", gr, rel, d.Name, a.Addr, pa, ok, e.Desc)
				}
				if size >= k.G.Size(arm64.LevelPMD) && (e.Level != arm64.LevelPMD || arm64.DescCont(e.Desc)) {
					t.Errorf("%s/%s: %s mapped at level %d cont %v, want PMD blocks", gr, rel, d.Name, e.Level, arm64.DescCont(e.Desc))
				}
			}
		}
	}
	k := boot(t, "bbml2-server", nil)
	if n := len(k.VM.Areas()); n != 0 {
		t.Errorf("bbml2-server declares no boot-time vmalloc users, has %d areas", n)
	}
}

// ioremapMaxOrder is IOREMAP_MAX_ORDER (arch/arm64/include/asm/memory.h).
func ioremapMaxOrder(k *Kernel) uint {
	if k.G.PageShift == arm64.PageShift4K {
		return k.G.Shift(arm64.LevelPUD)
	}
	return k.G.Shift(arm64.LevelPMD)
}

// Any machine's boot-time vmalloc users: areas disjoint and inside
// [VMALLOC_START, VMALLOC_END), clear of the image; every device register
// page reachable through its ioremap; every mapped stack page backed by
// memory the area owns. Random granule, release, CPUs, threads and devices.
func TestBootVmallocUsersProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		gr := rapid.SampledFrom([]string{"4K", "16K", "64K"}).Draw(rt, "granule")
		rel := rapid.SampledFrom([]string{"6.1", "6.12", "6.18", "7.3"}).Draw(rt, "release")
		cfg, err := Machine("qemu-virt")
		if err != nil {
			rt.Fatal(err)
		}
		cfg.Granule, cfg.Kernel = gr, rel
		cfg.RAM = []RAMRegion{{Base: 0x40000000, Size: 512 << 20}}
		cfg.CPUs = []CPUGroup{{Model: "cortex-a72", Count: rapid.IntRange(1, 8).Draw(rt, "cpus")}}
		cfg.BootThreads = rapid.IntRange(0, 200).Draw(rt, "threads")
		cfg.Devices = nil
		for i, n := 0, rapid.IntRange(0, 6).Draw(rt, "devices"); i < n; i++ {
			cfg.Devices = append(cfg.Devices, Device{Name: fmt.Sprintf("dev%d", i),
				Base:    Size(0x09000000 + uint64(i)<<24 + uint64(rapid.IntRange(0, 15).Draw(rt, "off"))<<12),
				Size:    Size(uint64(1) << rapid.IntRange(12, 29).Draw(rt, "order")),
				Ioremap: true, Irqchip: rapid.Bool().Draw(rt, "irqchip")})
		}
		k, err := Boot(cfg)
		if err != nil {
			rt.Fatal(err)
		}
		c := &PlainCPU{}
		var prevEnd uint64
		im0, im1 := k.Image.VA, k.Image.VA+k.Image.End
		for _, a := range k.VM.Areas() {
			if a.Addr < prevEnd {
				rt.Fatalf("area %#x (%s) overlaps the previous one ending %#x", a.Addr, a.Caller, prevEnd)
			}
			prevEnd = a.Addr + a.Size
			if a.Addr < k.Layout.VmallocStart || prevEnd > k.Layout.VmallocEnd || (a.Addr < im1 && prevEnd > im0) {
				rt.Fatalf("area %#x-%#x (%s) outside the vmalloc range or on the image", a.Addr, prevEnd, a.Caller)
			}
			for i := 0; i < a.NrPages; i++ {
				pa, _, ok := k.PT.Translate(c, a.Addr+uint64(i)<<k.G.PageShift)
				if !ok || pa != a.PagePA(i) {
					rt.Fatalf("%s page %d at %#x -> %#x %v, owns %#x", a.Caller, i, a.Addr, pa, ok, a.PagePA(i))
				}
			}
		}
		for _, d := range cfg.Devices {
			found := false
			for _, a := range k.VM.Areas() {
				if a.Caller == "ioremap "+d.Name {
					off := uint64(d.Base) & (k.G.PageSize() - 1)
					for _, o := range []uint64{0, uint64(d.Size) - 1} {
						pa, _, ok := k.PT.Translate(c, a.Addr+off+o)
						if !ok || pa != uint64(d.Base)+o {
							rt.Fatalf("%s: %#x -> %#x %v, want %#x", d.Name, a.Addr+off+o, pa, ok, uint64(d.Base)+o)
						}
					}
					found = true
				}
			}
			if !found {
				rt.Fatalf("%s not ioremapped", d.Name)
			}
		}
	})
}
