// Package check evaluates ptlab's invariants (DESIGN.md) on a modelled
// kernel: W^X across aliases, what executable memory holds, no stale
// permission in a TLB, break-before-make, table-page lifetime, accounting.
// Each check returns an error that wraps ErrViolation and names the address.
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
	return Perm{
		Mapped: true,
		Write:  e.Desc&arm64.PTERdonly == 0,
		Exec:   e.Desc&arm64.PTEPXN == 0 && !e.TablePXN,
		PA:     pa,
		Desc:   e.Desc,
		Level:  e.Level,
	}
}

// Exemption says whether a page may break W^X across aliases (e.g. a
// documented kernel gap a test wants to see separately).
type Exemption func(a *kernel.VMArea) bool

// WX checks W^X across aliases for every execmem page: a page executable
// through its vmalloc mapping must not be writable through that mapping nor
// through its linear alias, and — when it is in a temporarily writable
// window — it is not executable.
func WX(k *kernel.Kernel, d pgtable.Door, exempt Exemption) error {
	ps := k.G.PageSize()
	for _, a := range k.VM.Areas() {
		if a.Owner != physmem.OwnerExecmem || (exempt != nil && exempt(a)) {
			continue
		}
		for i := 0; i < a.NrPages; i++ {
			va := a.Addr + uint64(i)*ps
			p := Permission(k, d, va)
			if !p.Exec {
				continue
			}
			if p.Write {
				return fmt.Errorf("%w: W^X: %#x (%s) is writable and executable", ErrViolation, va, a.Caller)
			}
			if lp := Permission(k, d, k.Lin(p.PA)); lp.Mapped && lp.Write {
				return fmt.Errorf("%w: W^X across aliases: %#x (%s) is executable while its linear alias %#x is writable", ErrViolation, va, a.Caller, k.Lin(p.PA))
			}
		}
	}
	return nil
}

// ExecContent checks that every executable execmem page holds trap fill or
// the text of a live object: freed text is refilled before it can run again.
func ExecContent(k *kernel.Kernel, d pgtable.Door) error {
	ps := k.G.PageSize()
	for _, a := range k.VM.Areas() {
		if a.Owner != physmem.OwnerExecmem {
			continue
		}
		for i := 0; i < a.NrPages; i++ {
			va := a.Addr + uint64(i)*ps
			if !Permission(k, d, va).Exec {
				continue
			}
			c, _ := k.Content(d, va)
			if !k.Exec.Live(c) {
				return fmt.Errorf("%w: executable page %#x (%s) holds dead text of object %d", ErrViolation, va, a.Caller, c)
			}
		}
	}
	return nil
}

// Accounting checks physmem's own consistency (free + owned = total) and
// that every page-table page physmem counts is one the tables know.
func Accounting(k *kernel.Kernel) error {
	if err := k.Mem.Check(); err != nil {
		return fmt.Errorf("%w: physmem: %w", ErrViolation, err)
	}
	if n, t := k.Mem.OwnedPages(physmem.OwnerPageTable), k.PT.TotalTablePages(); n != uint64(t) {
		return fmt.Errorf("%w: physmem counts %d page-table pages, the tables %d", ErrViolation, n, t)
	}
	return nil
}
