package kernel

import (
	"fmt"
	"os"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/ptdump"
)

// LinearRange is one range of an imported linear map: its leaf level,
// whether it is a contiguous run, and its descriptor attributes.
type LinearRange struct {
	Start, End uint64 // VA
	PA         uint64
	Level      arm64.Level
	Cont       bool
	Prot       uint64 // page-form attributes (valid or present-invalid)
}

// Imported is a machine's linear map taken from a real dump.
type Imported struct {
	Name   string
	Ranges []LinearRange
}

// ImportDump turns a parsed arm64 dump into a configuration and the linear
// map to start from: the geometry the dump shows, RAM where the linear map
// maps memory (physical addresses from the dump's PA column when it has one,
// else VA - PAGE_OFFSET + the base machine's PHYS_OFFSET), the kernel image
// where the dump's untagged read-only linear alias is. Leaf sizes and
// permissions of every range are kept.
func ImportDump(base Config, d *ptdump.Dump) (Config, *Imported, error) {
	if d.Arch != ptdump.ArchARM64 {
		return base, nil, fmt.Errorf("%w: %s: only arm64 dumps can be imported", ErrConfig, d.Name)
	}
	cfg := base
	if cfg.Kernel == "" && d.OSRelease != "" {
		// A capture names its kernel: model that release.
		cfg.Kernel = d.OSRelease
	}
	switch d.Geometry.PageSize {
	case 4 << 10, 0:
		cfg.Granule = "4K"
	case 16 << 10:
		cfg.Granule = "16K"
	case 64 << 10:
		cfg.Granule = "64K"
	}
	if d.Geometry.VABits != 0 {
		cfg.VABits = d.Geometry.VABits
		cfg.LPA2 = cfg.VABits > 48 && cfg.Granule != "64K"
	}
	g, err := cfg.Geometry()
	if err != nil {
		return base, nil, fmt.Errorf("%s: %w", d.Name, err)
	}
	v, err := cfg.Version()
	if err != nil {
		return base, nil, fmt.Errorf("%s: %w", d.Name, err)
	}
	lay := v.Layout(g, cfg.ConfigVABits)
	levels := map[string]arm64.Level{}
	for l := arm64.LastLevel; l >= g.StartLevel; l-- {
		levels[g.Name(l)] = l
	}
	physOffset := uint64(base.RAM[0].Base) &^ (memstartAlign(g) - 1)
	regs, idx := ptdump.Regions(d)
	im := &Imported{Name: d.Name}
	var ram []RAMRegion
	var alias aliasFinder
	for i := range d.Ranges {
		r := &d.Ranges[i]
		if regs[idx[i]].Kind != "linear" || r.Attrs == nil {
			continue
		}
		if r.Start < lay.PageOffset || r.End > lay.PageEnd && r.End != 0 {
			return base, nil, fmt.Errorf("%w: %s:%d: linear range %#x-%#x outside [PAGE_OFFSET, PAGE_END) of %v", ErrConfig, d.Name, r.Line, r.Start, r.End, g)
		}
		l, ok := levels[r.Level]
		if !ok || (l < arm64.LastLevel && !g.BlockAllowed(l)) {
			return base, nil, fmt.Errorf("%w: %s:%d: level %s cannot map memory in %v", ErrConfig, d.Name, r.Line, r.Level, g)
		}
		pa := r.Start - lay.PageOffset + physOffset
		if r.HasPA {
			pa = r.PA
		}
		prot := r.Attrs.Prot &^ arm64.PTETypeMask
		if r.Attrs.Flags&ptdump.AttrInvalid == 0 {
			prot |= arm64.PTETypePage
		} else {
			prot |= 2 // pte_mkinvalid keeps bit 1 of a page
		}
		if prot&arm64.PTERdonly == 0 {
			prot |= arm64.PTEWrite // RW kernel mappings carry PTE_WRITE (not printed)
		}
		im.Ranges = append(im.Ranges, LinearRange{Start: r.Start, End: r.End, PA: pa, Level: l, Cont: r.Attrs.Has(ptdump.AttrCont), Prot: prot &^ arm64.PTECont})
		if n := len(ram); n > 0 && uint64(ram[n-1].Base+ram[n-1].Size) == pa {
			ram[n-1].Size += Size(r.End - r.Start)
		} else {
			ram = append(ram, RAMRegion{Base: Size(pa), Size: Size(r.End - r.Start)})
		}
		alias.add(pa, r)
	}
	if len(im.Ranges) == 0 {
		return base, nil, fmt.Errorf("%w: %s: no mapped linear-map range", ErrConfig, d.Name)
	}
	if err := alias.image(&cfg.Image, v.Image.Rodata); err != nil {
		return base, nil, fmt.Errorf("%s: %w", d.Name, err)
	}
	cfg.RAM = ram
	cfg.Name = "imported:" + d.Name
	return cfg, im, cfg.Validate()
}

// aliasFinder looks for the kernel image's linear alias in a dump: the
// longest run of adjacent valid read-only untagged (MEM/NORMAL) linear ranges,
// which is [_stext, __init_begin) after mark_linear_text_alias_ro
// (arch/arm64/mm/mmu.c). Module and BPF aliases made read-only are tagged on
// MTE systems and far shorter than the image elsewhere.
type aliasFinder struct {
	start, end       uint64 // PA of the current run
	bestStart, bestE uint64
}

func (a *aliasFinder) add(pa uint64, r *ptdump.Range) {
	ro := r.Valid() && r.Attrs.Has(ptdump.AttrReadOnly) && r.Attrs.Mem == "MEM/NORMAL"
	if !ro {
		return
	}
	if a.end != pa || a.end == 0 {
		a.start = pa
	}
	a.end = pa + (r.End - r.Start)
	if a.end-a.start > a.bestE-a.bestStart {
		a.bestStart, a.bestE = a.start, a.end
	}
}

// image places the model's kernel image on the dump's alias: _text at the
// 2 MiB boundary below _stext (the image is loaded 2 MiB aligned), and text
// plus rodata sized so that __init_begin falls where the alias ends, so none
// of the dump's read-only alias is left to the page allocator.
func (a *aliasFinder) image(im *Image, releaseRodata Size) error {
	if a.bestE == 0 {
		return nil // no alias printed (rodata=off): keep the configured image
	}
	text := a.bestStart &^ (2<<20 - 1)
	n := a.bestE - text
	if n%segmentAlign != 0 {
		return fmt.Errorf("%w: the kernel alias [%#x, %#x) does not end on a %d KiB segment boundary", ErrConfig, a.bestStart, a.bestE, segmentAlign>>10)
	}
	im.PhysBase = Size(text)
	// Split the alias between text and rodata as the configured image
	// does, else as the release's own image does (a quarter rodata when
	// neither says); only their sum is visible in a dump.
	rodata := uint64(im.Rodata)
	if rodata == 0 {
		rodata = uint64(releaseRodata)
	}
	if rodata == 0 {
		rodata = n / 4
	}
	rodata = max(min(rodata, n/2)&^(segmentAlign-1), segmentAlign)
	im.Rodata, im.Text = Size(rodata), Size(n-rodata)
	return nil
}

// ImportFile parses a dump file and imports it on top of base.
func ImportFile(base Config, path string) (Config, *Imported, error) {
	f, err := os.Open(path)
	if err != nil {
		return base, nil, err
	}
	defer f.Close()
	d, err := ptdump.Parse(f, path, ptdump.ParseOptions{})
	if err != nil {
		return base, nil, err
	}
	return ImportDump(base, d)
}

// BootImported boots like Boot but builds the linear map from im instead of
// map_mem's rules: every range at the leaf size and with the attributes the
// dump shows. The boot-time repaint and alias remap are skipped — the dump
// already shows their outcome.
func BootImported(cfg Config, im *Imported) (*Kernel, error) {
	if im == nil {
		return Boot(cfg)
	}
	cfg.imported = im
	return Boot(cfg)
}

// mapImported maps the imported linear map: PUD ranges whole, PMD ranges in
// PMD (or CONT_PMD) steps so no larger leaf appears, PTE ranges without
// blocks; contiguous runs only where the dump printed CON.
func (k *Kernel) mapImported(c CPU) error {
	for _, r := range k.Cfg.imported.Ranges {
		flags := pgtable.NoExecMappings
		if !r.Cont {
			flags |= pgtable.NoContMappings
		}
		step := r.End - r.Start
		switch {
		case r.Level == arm64.LastLevel:
			flags |= pgtable.NoBlockMappings
		case r.Level == arm64.LevelPMD && r.Cont:
			step = k.G.ContSize(arm64.LevelPMD)
		case r.Level == arm64.LevelPMD:
			step = k.G.Size(arm64.LevelPMD)
		}
		for va := r.Start; va < r.End || (r.End == 0 && va != 0); va += step {
			n := min(step, r.End-va)
			if err := k.PT.Map(c, va, r.PA+(va-r.Start), n, k.Feat.Prot(r.Prot), flags); err != nil {
				return fmt.Errorf("import %#x-%#x: %w", r.Start, r.End, err)
			}
		}
	}
	k.LinearMapRequiresBBML2 = !k.forcePTEMapping() && k.CanSetDirectMap()
	return nil
}
