package check

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/pgtable"
	"github.com/ptlab/ptlab/physmem"
)

// Every invariant names what proves it fires (a mutant or a test), and the
// registry prints.
func TestRegistryComplete(t *testing.T) {
	seen := map[Kind]bool{}
	for _, inv := range Registry {
		if seen[inv.Kind] {
			t.Errorf("%s twice", inv.Kind)
		}
		seen[inv.Kind] = true
		if inv.When != Harness && len(inv.Mutants)+len(inv.Tests) == 0 {
			t.Errorf("%s: nothing proves it fires", inv.Kind)
		}
	}
	var buf bytes.Buffer
	if err := WriteRegistry(&buf); err != nil || !strings.Contains(buf.String(), string(KindWX)) {
		t.Errorf("%v %q", err, buf.String())
	}
	if _, ok := Lookup(KindTableLeak); !ok {
		t.Error("lookup")
	}
	if _, ok := Lookup("nope"); ok {
		t.Error("lookup of an unknown kind")
	}
}

// Final records what the whole-state checks find (it used to return the
// violation without recording it, so the explorer never reported a leak).
func TestFinalRecordsLeak(t *testing.T) {
	k := bootSmall(t, "n1-server", "mainline")
	m := cpu.NewMachine(k, 1, cpu.Cooperative)
	lin := linearVA(k)
	mo := monitorFor(k, m, lin+4*k.G.Size(arm64.LevelPMD), nil)
	if _, ok, err := k.PT.UnhookTable(pgtable.Atomic{}, lin, 2); err != nil || !ok {
		t.Fatal(ok, err)
	}
	err := mo.Final()
	var v *Violation
	if !errors.As(err, &v) || v.Kind != KindTableLeak || mo.Violation() != v || mo.Err() == nil {
		t.Fatalf("Final: %v, recorded %v", err, mo.Violation())
	}
	if v.Step != -1 || v.CPU != -1 {
		t.Errorf("step %d cpu %d", v.Step, v.CPU)
	}
	// A second call keeps the first violation.
	if mo.Final() != error(v) {
		t.Error("Final forgot its violation")
	}
}

func TestLeaksTableTwice(t *testing.T) {
	k := bootSmall(t, "n1-server", "mainline")
	lin := linearVA(k)
	// Point the next PMD entry at the same PTE table.
	up := upperEntry(t, k, lin)
	up2 := upperEntry(t, k, lin+k.G.Size(arm64.LevelPMD))
	tbl, _ := k.PT.Table(up2 &^ (k.G.PageSize() - 1))
	d := pgtable.Atomic{}.Load(up, descPtr(k, up))
	pgtable.Atomic{}.Store(up2, &tbl[(up2&(k.G.PageSize()-1))/8], d)
	var v *Violation
	if err := Leaks(k); !errors.As(err, &v) || v.Kind != KindTableTwice {
		t.Errorf("%v", err)
	}
}

// upperEntry is the address of the PMD entry that maps va.
func upperEntry(t *testing.T, k *kernel.Kernel, va uint64) uint64 {
	t.Helper()
	mo := NewMonitor(k, cpu.NewMachine(k, 1, cpu.Cooperative), []Range{{Start: va, End: va + 1}}, [][]OpInfo{nil}, nil)
	if mo.groups[0].up[3] == 0 {
		t.Fatalf("no PMD entry for %#x", va)
	}
	return mo.groups[0].up[3]
}

// A store that makes an executable page's alias writable is caught at the
// store (W^X at every step), not when the operation ends.
func TestMonitorWXPerStep(t *testing.T) {
	k := bootSmall(t, "bbml2-server", "rox-cache")
	m := cpu.NewMachine(k, 1, cpu.Cooperative)
	c := m.CPUs[0]
	p := sealedText(t, k, c, k.Exec.NewObject())
	pa, _, _ := k.PT.Translate(pgtable.Atomic{}, p)
	lin := k.Lin(pa)
	mo := monitorFor(k, m, p, []Range{{Start: lin, End: lin + k.G.PageSize()}})
	mo2 := NewMonitor(k, m, []Range{{Start: p, End: p + 1}, {Start: lin, End: lin + 1}}, [][]OpInfo{{{Name: "op", Footprint: []Range{{Start: lin, End: lin + k.G.PageSize()}}}}}, mo.Oracle())
	c.Hook = mo2
	c.Mark(cpu.EvOpBegin, 0, nil)
	if err := k.PT.Protect(c, lin, lin+k.G.PageSize(), arm64.PTEWrite, arm64.PTERdonly); err != nil {
		t.Fatal(err)
	}
	var v *Violation
	if !errors.As(mo2.Err(), &v) || v.Kind != KindWX || v.Step < 0 {
		t.Fatalf("writable alias of text: %v", mo2.Err())
	}
}

// An operation that fails only in the interleaving, and accounting that
// does not add up, are reported at the operation's end.
func TestMonitorOpFailed(t *testing.T) {
	k := bootSmall(t, "n1-server", "mainline")
	m := cpu.NewMachine(k, 1, cpu.Cooperative)
	c := m.CPUs[0]
	mo := monitorFor(k, m, linearVA(k), nil)
	c.Hook = mo
	c.Mark(cpu.EvOpBegin, 0, nil)
	c.Mark(cpu.EvOpEnd, 0, errors.New("boom"))
	var v *Violation
	if !errors.As(mo.Err(), &v) || v.Kind != KindOpFailed {
		t.Fatalf("%v", mo.Err())
	}
}

func TestAccountingFinal(t *testing.T) {
	k := bootSmall(t, "n1-server", "mainline")
	// A page-table page physmem counts that no table knows.
	if _, err := k.Mem.Alloc(0, physmem.OwnerPageTable); err != nil {
		t.Fatal(err)
	}
	var v *Violation
	if err := Accounting(k); !errors.As(err, &v) || v.Kind != KindAccounting {
		t.Fatalf("%v", err)
	}
	m := cpu.NewMachine(k, 1, cpu.Cooperative)
	mo := monitorFor(k, m, linearVA(k), nil)
	c := m.CPUs[0]
	c.Hook = mo
	c.Mark(cpu.EvOpBegin, 0, nil)
	c.Mark(cpu.EvOpEnd, 0, nil)
	if !errors.As(mo.Err(), &v) || v.Kind != KindAccounting || v.Step < 0 {
		t.Fatalf("at the operation's end: %v", mo.Err())
	}
}

// Executable text of a retired object is found, at the end and over an
// operation's footprint.
func TestExecContentFindsDeadText(t *testing.T) {
	k := bootSmall(t, "bbml2-server", "rox-cache")
	c := &kernel.PlainCPU{}
	o := k.Exec.NewObject()
	p := sealedText(t, k, c, o)
	if err := ExecContent(k, pgtable.Atomic{}); err != nil {
		t.Fatal(err)
	}
	k.Exec.Retire(o)
	var v *Violation
	if err := ExecContent(k, pgtable.Atomic{}); !errors.As(err, &v) || v.Kind != KindExecContent || v.Addr != p {
		t.Fatalf("%v", err)
	}
	if err := execContent(k, doorTranslator(k, pgtable.Atomic{}), []Range{{Start: p + 16<<10, End: p + 32<<10}}); err != nil {
		t.Errorf("outside the range: %v", err)
	}
}

// Accesses that fault with a TLB conflict or through a freed table are
// reported as such.
func TestMonitorAccessFaults(t *testing.T) {
	k := bootSmall(t, "n1-server", "mainline")
	m := cpu.NewMachine(k, 1, cpu.Cooperative)
	c := m.CPUs[0]
	mo := monitorFor(k, m, linearVA(k), nil)
	mo.After(c, &cpu.Event{Kind: cpu.EvAccess, VA: 0x1000, Err: cpu.ErrTLBConflict})
	var v *Violation
	if !errors.As(mo.Err(), &v) || v.Kind != KindTLBConflict {
		t.Fatalf("%v", mo.Err())
	}
	mo = monitorFor(k, m, linearVA(k), nil)
	mo.After(c, &cpu.Event{Kind: cpu.EvAccess, VA: 0x1000, Err: cpu.ErrStaleWalk})
	if !errors.As(mo.Err(), &v) || v.Kind != KindUseAfterFree {
		t.Fatalf("%v", mo.Err())
	}
}

// Loads and stores outside any live table page are a use after free.
func TestMonitorUseAfterFree(t *testing.T) {
	k := bootSmall(t, "n1-server", "mainline")
	m := cpu.NewMachine(k, 1, cpu.Cooperative)
	c := m.CPUs[0]
	for _, kind := range []cpu.EventKind{cpu.EvLoad, cpu.EvStore} {
		mo := monitorFor(k, m, linearVA(k), nil)
		mo.After(c, &cpu.Event{Kind: kind, PA: 0x1234000, Level: cpu.LevelUnknown})
		var v *Violation
		if !errors.As(mo.Err(), &v) || v.Kind != KindUseAfterFree || v.Addr != 0x1234000 {
			t.Errorf("%v: %v", kind, mo.Err())
		}
	}
}

// A free page whose linear alias stayed read-only is reported at the end.
func TestMonitorDirectMap(t *testing.T) {
	k := bootSmall(t, "bbml2-server", "rox-cache")
	m := cpu.NewMachine(k, 1, cpu.Cooperative)
	c := m.CPUs[0]
	a, err := k.Vmalloc(c, k.G.PageSize())
	if err != nil {
		t.Fatal(err)
	}
	pa := a.PagePA(0)
	mo := monitorFor(k, m, a.Addr, []Range{{Start: a.Addr, End: a.Addr + k.G.PageSize()}})
	mo.Before(c, &cpu.Event{Kind: cpu.EvOpBegin, Op: 0}) // the area is the operation's footprint
	if err := k.SetDirectMapInvalidNoflush(c, pa); err != nil {
		t.Fatal(err)
	}
	if err := k.Vfree(c, a.Addr); err != nil {
		t.Fatal(err)
	}
	var v *Violation
	if err := mo.Final(); !errors.As(err, &v) || v.Kind != KindDirectMap {
		t.Fatalf("%v", err)
	}
}

// An access that reaches another PA than intended, or succeeds where the
// page does not allow it (a stale TLB entry), is caught at the access.
func TestMonitorAccessChecks(t *testing.T) {
	k := bootSmall(t, "n1-server", "mainline")
	m := cpu.NewMachine(k, 1, cpu.Cooperative)
	c := m.CPUs[0]
	lin := linearVA(k)
	mo := monitorFor(k, m, lin, nil)
	mo.After(c, &cpu.Event{Kind: cpu.EvAccess, VA: lin, Acc: cpu.Read, Val: k.PA(lin) + 0x10000})
	var v *Violation
	if !errors.As(mo.Err(), &v) || v.Kind != KindTranslation {
		t.Fatalf("wrong PA: %v", mo.Err())
	}
	if err := k.PT.Protect(pgtable.Atomic{}, lin, lin+k.G.PageSize(), arm64.PTERdonly, arm64.PTEWrite); err != nil {
		t.Fatal(err)
	}
	mo = monitorFor(k, m, lin, nil)
	mo.After(c, &cpu.Event{Kind: cpu.EvAccess, VA: lin, Acc: cpu.Write, Val: k.PA(lin)})
	if !errors.As(mo.Err(), &v) || v.Kind != KindStaleTLB {
		t.Fatalf("write to a read-only page: %v", mo.Err())
	}
}

// An operation that ends with its footprint not as it leaves it alone lost
// an update.
func TestMonitorOpEndLostUpdate(t *testing.T) {
	k := bootSmall(t, "n1-server", "mainline")
	m := cpu.NewMachine(k, 1, cpu.Cooperative)
	c := m.CPUs[0]
	lin := linearVA(k)
	ps := k.G.PageSize()
	ops := [][]OpInfo{{{Name: "set_ro", Footprint: []Range{{Start: lin, End: lin + ps}}}}}
	rec := NewMonitor(k, m, nil, ops, nil)
	c.Hook = rec
	c.Mark(cpu.EvOpBegin, 0, nil)
	if err := k.PT.Protect(c, lin, lin+ps, arm64.PTERdonly, arm64.PTEWrite); err != nil {
		t.Fatal(err)
	}
	c.Mark(cpu.EvOpEnd, 0, nil)
	// Undo it, then replay the operation as one whose update was lost.
	if err := k.PT.Protect(pgtable.Atomic{}, lin, lin+ps, arm64.PTEWrite, arm64.PTERdonly); err != nil {
		t.Fatal(err)
	}
	mo := NewMonitor(k, m, []Range{{Start: lin, End: lin + 1}}, ops, rec.Oracle())
	c.Hook = mo
	c.Mark(cpu.EvOpBegin, 0, nil)
	c.Mark(cpu.EvOpEnd, 0, nil)
	var v *Violation
	if !errors.As(mo.Err(), &v) || v.Kind != KindLostUpdate || v.Addr != lin {
		t.Fatalf("%v", mo.Err())
	}
}

// A TLB entry more permissive than the tables when everything is done is a
// stale entry.
func TestFinalStaleTLB(t *testing.T) {
	k := bootSmall(t, "n1-server", "mainline")
	m := cpu.NewMachine(k, 1, cpu.Cooperative)
	c := m.CPUs[0]
	lin := linearVA(k)
	if _, err := c.Access(cpu.Write, lin); err != nil {
		t.Fatal(err)
	}
	if err := k.PT.Protect(pgtable.Atomic{}, lin, lin+k.G.PageSize(), arm64.PTERdonly, arm64.PTEWrite); err != nil {
		t.Fatal(err) // no TLBI: the writable entry stays
	}
	mo := monitorFor(k, m, lin, nil)
	var v *Violation
	if err := mo.Final(); !errors.As(err, &v) || v.Kind != KindStaleTLB || v.Addr != lin {
		t.Fatalf("%v", err)
	}
}

// A foreign error from a whole-state check is still recorded, as an
// accounting violation, and physmem's own inconsistency is one.
func TestReportForeignError(t *testing.T) {
	k := bootSmall(t, "n1-server", "mainline")
	m := cpu.NewMachine(k, 1, cpu.Cooperative)
	mo := monitorFor(k, m, linearVA(k), nil)
	mo.reportErr(errors.New("boom"), 0)
	var v *Violation
	if !errors.As(mo.Err(), &v) || v.Kind != KindAccounting || !strings.Contains(v.Msg, "boom") {
		t.Fatalf("%v", mo.Err())
	}
}
