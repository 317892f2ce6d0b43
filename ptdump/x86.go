package ptdump

// x86 dumps (arch/x86/mm/dump_pagetables.c): a range line is
//
//	0xSTART-0xEND   SIZE ATTRS... level
//
// where printk_prot prints USR, RW/ro, PWT, PCD, PSE, PAT, GLB and NX/x for a
// present entry, and only blanks for a non-present one, then the lower-case
// level name. ptlab reads x86 dumps for analysis; it does not model x86.

// x86AttrToken decodes the x86-only columns (the shared ones, USR RW ro NX x,
// are handled by attrToken).
func x86AttrToken(t string) (Attr, tokKind) {
	switch t {
	case "PWT":
		return AttrPWT, tokFlag
	case "PCD":
		return AttrPCD, tokFlag
	case "PSE":
		return AttrPSE, tokFlag
	case "PAT":
		return AttrPAT, tokFlag
	case "GLB":
		return AttrGlobal, tokFlag
	}
	return 0, tokUnknown
}

// x86Geometry is x86-64 4-level paging (pgd 512G, pud 1G, pmd 2M, pte 4K), or
// 5-level paging (pgd 256T, p4d 512G) when a range lies in the part of the
// address space only 5-level paging makes canonical, or a p4d line appears.
func x86Geometry(d *Dump) DumpGeometry {
	five := false
	for i := range d.Ranges {
		r := &d.Ranges[i]
		if r.Level == "p4d" || (r.Start >= 1<<47 && r.Start < 0xffff800000000000) {
			five = true
			break
		}
	}
	g := DumpGeometry{Arch: ArchX86, PageSize: 4096, VABits: 48,
		Basis: "x86-64 4-level paging (no range outside the 48-bit canonical halves)"}
	if five {
		g.VABits = 57
		g.Basis = "x86-64 5-level paging (ranges beyond the 48-bit canonical halves)"
		g.Levels = append(g.Levels, LevelShape{Name: "pgd", Size: 1 << 48})
		g.Levels = append(g.Levels, LevelShape{Name: "p4d", Size: 1 << 39})
	} else {
		g.Levels = append(g.Levels, LevelShape{Name: "pgd", Size: 1 << 39})
	}
	g.Levels = append(g.Levels,
		LevelShape{Name: "pud", Size: 1 << 30},
		LevelShape{Name: "pmd", Size: 1 << 21},
		LevelShape{Name: "pte", Size: 1 << 12})
	return g
}
