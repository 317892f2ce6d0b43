package kernel

import (
	"math/bits"
	"testing"

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
