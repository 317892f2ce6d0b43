package kernel

import (
	"fmt"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
)

// The kernel's own mappings besides the image, the linear map and vmalloc
// users: the vmemmap (struct pages of every present memory section), the
// fixmap and the PCI I/O window. Their table pages are part of every boot's
// page-table memory; on a block-mapped linear map they are half of it.

// Device is a physical MMIO range a machine's firmware describes and the
// kernel maps at boot.
type Device struct {
	Name string `json:"name" yaml:"name"`
	Base Size   `json:"base" yaml:"base"`
	Size Size   `json:"size" yaml:"size"`
	// PCIIO marks the PCI host bridge's I/O window, which
	// pci_remap_iospace maps at PCI_IO_START.
	PCIIO bool `json:"pci_io" yaml:"pci_io"`
	// Ioremap: a driver ioremaps the whole range at boot (a vmalloc-range
	// area of its own); Irqchip: the interrupt controller's driver, which
	// maps it in init_IRQ, before the initcalls.
	Ioremap bool `json:"ioremap" yaml:"ioremap"`
	Irqchip bool `json:"irqchip" yaml:"irqchip"`
}

// QEMUVirtDevices are the devices of QEMU's arm64 "virt" machine the boot
// maps (hw/arm/virt.c memmap), in the order the drivers map them: the GICv2
// distributor, CPU interface and MSI frame (irq-gic.c, irq-gic-v2m.c), the
// PL011 UART, the PL061 GPIO, the four capability windows of a virtio-pci
// device's BAR in the high PCIe MMIO window (virtio_pci_modern), the PL031
// RTC, the high PCIe ECAM (pci_ecam_create), and the PCIe host bridge's 64K
// I/O window at 0x3eff0000 (pci_remap_iospace).
var QEMUVirtDevices = []Device{
	{Name: "gic-dist", Base: 0x08000000, Size: 0x10000, Ioremap: true, Irqchip: true},
	{Name: "gic-cpu", Base: 0x08010000, Size: 0x10000, Ioremap: true, Irqchip: true},
	{Name: "gic-v2m", Base: 0x08020000, Size: 0x1000, Ioremap: true, Irqchip: true},
	{Name: "pl011", Base: 0x09000000, Size: 0x1000, Ioremap: true},
	{Name: "pl061", Base: 0x09030000, Size: 0x1000, Ioremap: true},
	{Name: "virtio-pci-common", Base: 0x8000000000, Size: 0x1000, Ioremap: true},
	{Name: "virtio-pci-isr", Base: 0x8000001000, Size: 0x1000, Ioremap: true},
	{Name: "virtio-pci-device", Base: 0x8000002000, Size: 0x1000, Ioremap: true},
	{Name: "virtio-pci-notify", Base: 0x8000003000, Size: 0x1000, Ioremap: true},
	{Name: "pl031", Base: 0x09010000, Size: 0x1000, Ioremap: true},
	{Name: "pcie-ecam", Base: 0x4010000000, Size: 0x10000000, Ioremap: true},
	{Name: "pcie-pio", Base: 0x3eff0000, Size: 0x10000, PCIIO: true},
}

// structPageSize is sizeof(struct page): the configured one (a capture's
// VMCOREINFO SIZE(page)) or 64.
func (k *Kernel) structPageSize() uint64 {
	if k.Cfg.StructPageSize != 0 {
		return uint64(k.Cfg.StructPageSize)
	}
	return arm64.StructPageSize
}

// sectionSize is 1 << SECTION_SIZE_BITS (arch/arm64/include/asm/sparsemem.h):
// 512M with 64K pages, 128M otherwise.
func (k *Kernel) sectionSize() uint64 {
	if k.G.PageShift == arm64.PageShift64K {
		return 512 << 20
	}
	return 128 << 20
}

// vmemmapVA is the address of the struct page of pa (pfn_to_page: vmemmap is
// VMEMMAP_START less the struct pages below memstart_addr).
func (k *Kernel) vmemmapVA(pa uint64) uint64 {
	return k.Layout.VmemmapStart + ((pa-k.PhysOffset)>>k.G.PageShift)*k.structPageSize()
}

// vmemmapPopulate is sparse_init's vmemmap_populate for every present
// section: with 4K pages vmemmap_populate_hugepages, one PMD block
// (PROT_SECT_NORMAL) per PMD-sized stretch of struct pages, each from a
// PMD-sized allocation; with 16K and 64K pages vmemmap_populate_basepages,
// a page at a time. The tables get no PXNTable (not NO_EXEC_MAPPINGS).
func (k *Kernel) vmemmapPopulate(c CPU) error {
	ps, sec := k.G.PageSize(), k.sectionSize()
	prot := k.Feat.Prot(arm64.PageKernel)
	huge := k.G.PageShift == arm64.PageShift4K
	pmd := k.G.Size(2)
	var done uint64 // vmemmap mapped up to here (sections share blocks)
	for _, r := range k.Mem.Regions() {
		for s := r.Base &^ (sec - 1); s < r.End(); s += sec {
			start, end := k.vmemmapVA(s), k.vmemmapVA(s+sec)
			start &^= ps - 1
			end = alignUp(end, ps)
			if huge {
				start &^= pmd - 1
				end = alignUp(end, pmd)
			}
			start = max(start, done)
			step := ps
			order := 0
			if huge {
				step, order = pmd, int(k.G.Shift(2)-k.G.PageShift)
			}
			for va := start; va < end; va += step {
				k.shared(SharedPages)
				pa, err := k.Mem.Alloc(order, physmem.OwnerReserved)
				if err != nil {
					return fmt.Errorf("vmemmap_populate %#x: %w", va, ErrNoMem)
				}
				flags := pgtable.NoContMappings
				if !huge {
					flags |= pgtable.NoBlockMappings
				}
				if err := k.PT.Map(c, va, pa, step, prot, flags); err != nil {
					return fmt.Errorf("vmemmap_populate %#x: %w", va, err)
				}
			}
			done = max(done, end)
		}
	}
	return nil
}

// earlyFixmapInit is early_fixmap_init: the fixmap's tables (bm_pud, bm_pmd
// and NR_BM_PTE_TABLES bm_pte pages, static in the image's bss) are hooked
// up for the whole [FIXADDR_TOT_START, FIXADDR_TOP) span before any slot is
// used. The model creates the same tables by mapping the span with pages
// and unmapping it (Unmap keeps table pages, as the kernel keeps these),
// hooked up with the table type alone (pgtable.BareTables): the
// __p?d_populate calls there pass no UXN/PXN table attributes. The span's
// size is the release's (fixmap.go).
//
// Before the fixmap could span several PMDs (6.1, Version.LegacyLayout) there
// was one bm_pte, for the early-ioremap slots (FIX_BTMAP, which must share a
// PMD), and the FDT was mapped with section blocks.
func (k *Kernel) earlyFixmapInit(c CPU) error {
	l := k.Layout
	start, end := l.FixaddrStart&^(k.G.PageSize()-1), l.FixaddrTop
	if k.V.LegacyLayout {
		pmd := k.G.Size(2)
		end = min(end, (start+pmd)&^(pmd-1))
	}
	if start >= end {
		return nil
	}
	if err := k.PT.Map(c, start, 0, end-start, 0, pgtable.NoBlockMappings|pgtable.NoContMappings|pgtable.BareTables); err != nil {
		return fmt.Errorf("early_fixmap_init: %w", err)
	}
	if err := k.PT.Unmap(c, start, end); err != nil {
		return fmt.Errorf("early_fixmap_init: %w", err)
	}
	return nil
}

// pciRemapIOSpace is pci_remap_iospace for the machine's PCI I/O window:
// ioremap_page_range of it at PCI_IO_START with device memory attributes
// (contiguous runs where aligned, as vmap_range makes them).
func (k *Kernel) pciRemapIOSpace(c CPU) error {
	off := uint64(0)
	for _, d := range k.Cfg.Devices {
		if !d.PCIIO {
			continue
		}
		size := alignUp(uint64(d.Size), k.G.PageSize())
		va := k.Layout.PCIIOStart + off
		if va+size > k.Layout.PCIIOEnd {
			return fmt.Errorf("%w: PCI I/O window %s of %#x bytes exceeds the PCI I/O space", ErrConfig, d.Name, size)
		}
		if err := k.PT.Map(c, va, uint64(d.Base), size, k.Feat.Prot(arm64.ProtDeviceNGnRE), pgtable.NoBlockMappings); err != nil {
			return fmt.Errorf("pci_remap_iospace %s: %w", d.Name, err)
		}
		off += size
	}
	return nil
}
