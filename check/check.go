// Package check evaluates ptlab's invariants (DESIGN.md) on a modelled
// kernel: W^X across aliases, what executable memory holds, no stale
// permission in a TLB, break-before-make, table-page lifetime, accounting.
// Each check returns a *Violation (which wraps ErrViolation) of a Kind
// listed in Registry, naming the address.
package check

import (
	"errors"
	"fmt"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
)

// ErrViolation is wrapped by every invariant failure.
var ErrViolation = errors.New("invariant violated")

// Perm is the effective permission of a VA: a valid leaf's bits combined
// with the hierarchical PXNTable of the tables above it.
type Perm struct {
	Mapped, Write, Exec bool
	PA                  uint64
	Desc                uint64
	Level               arm64.Level
}

// Permission translates va and reports what the kernel may do through it.
func Permission(k *kernel.Kernel, d pgtable.Door, va uint64) Perm {
	pa, e, ok := k.PT.Translate(d, va)
	if !ok {
		return Perm{}
	}
	w, x := access(e.Desc, e.TablePXN)
	return Perm{Mapped: true, Write: w, Exec: x, PA: pa, Desc: e.Desc, Level: e.Level}
}

// access is the permission formula, the one place the checker derives what
// a valid leaf allows: writable unless AP[2] (PTE_RDONLY) is set, executable
// at EL1 unless PXN is set on the leaf or PXNTable on a table above it.
func access(desc uint64, tablePXN bool) (write, exec bool) {
	return desc&arm64.PTERdonly == 0, desc&arm64.PTEPXN == 0 && !tablePXN
}

// translator is how the W^X rule reads a translation (through a door, or
// the monitor's raw view).
type translator func(va uint64) Translation

func doorTranslator(k *kernel.Kernel, d pgtable.Door) translator {
	return func(va uint64) Translation {
		p := Permission(k, d, va)
		return Translation{PA: p.PA, Valid: p.Mapped, Write: p.Write, Exec: p.Exec}
	}
}

// wxPage is the W^X rule for one page, the one place it is written: va
// translating as t must not be executable and writable, nor executable while
// its linear alias is writable. It returns the violation's message, or "".
func wxPage(k *kernel.Kernel, va uint64, t Translation, tr translator) string {
	if !t.Valid || !t.Exec {
		return ""
	}
	if t.Write {
		return fmt.Sprintf("%#x is writable and executable", va)
	}
	lin := k.Lin(t.PA &^ (k.G.PageSize() - 1))
	if lin == va&^(k.G.PageSize()-1) || !k.Layout.IsLinear(lin) {
		return ""
	}
	if lt := tr(lin); lt.Valid && lt.Write {
		return fmt.Sprintf("%#x is executable while its linear alias %#x is writable", va, lin)
	}
	return ""
}

// Exemption says whether a page may break W^X across aliases (e.g. a
// documented kernel gap a test wants to see separately).
type Exemption func(a *kernel.VMArea) bool

// WX checks W^X across aliases for every execmem page: a page executable
// through its vmalloc mapping must not be writable through that mapping nor
// through its linear alias, and — when it is in a temporarily writable
// window — it is not executable.
func WX(k *kernel.Kernel, d pgtable.Door, exempt Exemption) error {
	return wxAll(k, doorTranslator(k, d), exempt, nil)
}

// wxAll is WX reading translations through tr.
// skip, when set, names the pages the caller has already checked.
func wxAll(k *kernel.Kernel, tr translator, exempt Exemption, skip func(va uint64) bool) error {
	ps := k.G.PageSize()
	for _, a := range k.VM.Areas() {
		if a.Owner != physmem.OwnerExecmem || (exempt != nil && exempt(a)) {
			continue
		}
		for i := 0; i < a.NrPages; i++ {
			va := a.Addr + uint64(i)*ps
			if skip != nil && skip(va) {
				continue
			}
			if msg := wxPage(k, va, tr(va), tr); msg != "" {
				return &Violation{Kind: KindWX, Addr: va, CPU: -1, Step: -1, Msg: msg + " (" + a.Caller + ")"}
			}
		}
	}
	return nil
}

// ExecContent checks that every executable execmem page holds trap fill or
// the text of a live object: freed text is refilled before it can run again.
func ExecContent(k *kernel.Kernel, d pgtable.Door) error {
	return execContent(k, doorTranslator(k, d), nil)
}

// execContent is ExecContent over the pages inside ranges (all when nil):
// at an operation's end the monitor checks the operation's footprint, since
// another CPU may be between handing an object back and refilling it.
func execContent(k *kernel.Kernel, tr translator, ranges []Range) error {
	ps := k.G.PageSize()
	in := func(va uint64) bool {
		if ranges == nil {
			return true
		}
		for _, r := range ranges {
			if va >= r.Start && va < r.End {
				return true
			}
		}
		return false
	}
	for _, a := range k.VM.Areas() {
		if a.Owner != physmem.OwnerExecmem || !overlaps(ranges, a.Addr, a.Addr+uint64(a.NrPages)*ps) {
			continue
		}
		for i := 0; i < a.NrPages; i++ {
			va := a.Addr + uint64(i)*ps
			if !in(va) {
				continue
			}
			t := tr(va)
			if !t.Exec {
				continue
			}
			c := k.Mem.Private(t.PA &^ (ps - 1))
			if !k.Exec.Live(c) {
				return &Violation{Kind: KindExecContent, Addr: va, CPU: -1, Step: -1,
					Msg: fmt.Sprintf("executable page %#x (%s) holds dead text of object %d", va, a.Caller, c)}
			}
		}
	}
	return nil
}

// overlaps says whether [lo, hi) meets one of ranges (nil: everything).
// Footprints are few and usually far from most areas, whose pages then
// need no look.
func overlaps(ranges []Range, lo, hi uint64) bool {
	if ranges == nil {
		return true
	}
	for _, r := range ranges {
		if r.Start < hi && lo < r.End {
			return true
		}
	}
	return false
}

// Accounting checks physmem's own consistency (free + owned = total) and
// that every page-table page physmem counts is one the tables know.
func Accounting(k *kernel.Kernel) error {
	if err := k.Mem.Check(); err != nil {
		return &Violation{Kind: KindAccounting, CPU: -1, Step: -1, Msg: "physmem: " + err.Error()}
	}
	if n, t := k.Mem.OwnedPages(physmem.OwnerPageTable), k.PT.TotalTablePages(); n != uint64(t) {
		return &Violation{Kind: KindAccounting, CPU: -1, Step: -1, Msg: fmt.Sprintf("physmem counts %d page-table pages, the tables %d", n, t)}
	}
	return nil
}
