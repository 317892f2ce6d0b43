package cpu

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/ptlab/ptlab/arm64"
)

// AccessKind is what an access does at a VA.
type AccessKind uint8

const (
	Read  AccessKind = iota // a data load
	Write                   // a data store
	Exec                    // an instruction fetch
)

func (a AccessKind) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Exec:
		return "exec"
	}
	return fmt.Sprintf("access(%d)", uint8(a))
}

// Faults an access can take, as the hardware reports them (EL1 data or
// instruction aborts), and the walker reading a freed table page.
var (
	ErrTranslation = errors.New("translation fault")
	ErrPermission  = errors.New("permission fault")
	ErrTLBConflict = errors.New("TLB conflict abort")
	ErrStaleWalk   = errors.New("walk through a page that is no longer a table")
)

// Access performs an access of kind at va as the CPU's MMU would: a TLB hit
// is used as is (a stale entry included); on a miss the walker starts from
// the deepest walk-cache entry covering va (or the root), reads descriptors
// through the door, caches every table descriptor it follows and the leaf it
// finds. It returns the PA, or a translation fault (no valid leaf), a
// permission fault (a write to a read-only leaf, an instruction fetch from a
// PXN leaf or under PXNTable) or a TLB conflict abort (on a CPU without
// BBML2_NOABORT, two entries of different sizes for va).
func (c *CPU) Access(kind AccessKind, va uint64) (uint64, error) {
	ev := &c.accEv
	c.Path.Clear()
	*ev = Event{Kind: EvAccess, VA: va, Acc: kind}
	c.before(ev)
	pa, err := c.access(kind, va)
	ev.Val, ev.Err = pa, err
	c.after(ev)
	return pa, err
}

func (c *CPU) access(kind AccessKind, va uint64) (uint64, error) {
	e, hit, conflict := c.TLB.Lookup(va)
	if conflict && !c.BBML2 {
		return 0, fmt.Errorf("cpu%d: %v at %#x: %w", c.id, kind, va, ErrTLBConflict)
	}
	if !hit {
		var err error
		if c.m.Mode == Real {
			c.walkMu.Lock()
		}
		c.walking.Store(true)
		e, err = c.walk(va)
		c.walking.Store(false)
		if err == nil {
			if other, bad := c.TLB.fill(e, c.BBML2); bad {
				err = fmt.Errorf("%w: new %#x-byte entry at %#x overlaps the %#x-byte entry at %#x",
					ErrTLBConflict, e.Size, e.VA, other.Size, other.VA)
			}
		}
		if c.m.Mode == Real {
			c.walkMu.Unlock()
		}
		if err != nil {
			return 0, fmt.Errorf("cpu%d: %v at %#x: %w", c.id, kind, va, err)
		}
	}
	if (kind == Write && !e.Write) || (kind == Exec && !e.Exec) {
		return 0, fmt.Errorf("cpu%d: %v at %#x (descriptor %#016x): %w", c.id, kind, va, e.Desc, ErrPermission)
	}
	return e.Translate(va), nil
}

// walk is the hardware table walk for va.
func (c *CPU) walk(va uint64) (Entry, error) {
	m := c.m
	g := &m.g
	l, tpa, pxn := g.StartLevel, m.root, false
	if w, ok := c.TLB.walkLookup(va); ok {
		l, tpa, pxn = w.Level+1, w.Table, w.PXN
	}
	for {
		idx := g.Index(va, l)
		dpa := tpa + uint64(idx)*8
		ev := &c.walkEv
		*ev = Event{Kind: EvWalk, PA: dpa, Level: m.levelOf(dpa)}
		c.Path.enter(m, dpa, ev.Level)
		c.before(ev)
		c.relevel(ev)
		tbl, err := m.pt.Table(tpa)
		if err != nil {
			ev.Err = err
			c.after(ev)
			return Entry{}, fmt.Errorf("%w: %#x at level %d", ErrStaleWalk, tpa, l)
		}
		v := atomic.LoadUint64(&tbl[idx])
		ev.Val = v
		c.Path.follow(m, dpa, ev.Level, v)
		c.after(ev)
		if g.IsTable(v, l) {
			child := g.OutputAddress(v)
			pxn = pxn || v&arm64.TablePXN != 0
			sz := g.Size(l)
			c.TLB.addWalk(WalkEntry{VA: va &^ (sz - 1), Size: sz, Level: l, Table: child, PXN: pxn})
			tpa, l = child, l+1
			continue
		}
		if !arm64.DescValid(v) || (l < arm64.LastLevel && !g.BlockAllowed(l)) {
			return Entry{}, ErrTranslation
		}
		size := g.Size(l)
		leafVA := va &^ (size - 1)
		leafPA := g.OutputAddress(v) &^ (size - 1)
		if arm64.DescCont(v) {
			// One entry for the run, as the TLB may cache it, translated
			// from this descriptor's output address.
			cs := g.ContSize(l)
			base := va &^ (cs - 1)
			leafPA -= leafVA - base
			leafVA, size = base, cs
		}
		return Entry{VA: leafVA, Size: size, PA: leafPA, Desc: v, Level: l,
			Write: v&arm64.PTERdonly == 0, Exec: v&arm64.PTEPXN == 0 && !pxn}, nil
	}
}
