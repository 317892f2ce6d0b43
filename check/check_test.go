package check

import (
	"errors"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/arm64"
	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/pgtable"
)

func bootSmall(t testing.TB, machine, preset string) *kernel.Kernel {
	t.Helper()
	cfg, err := kernel.Machine(machine)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RAM = []kernel.RAMRegion{{Base: cfg.RAM[0].Base, Size: 128 << 20}}
	cfg.CPUs = cfg.CPUs[:1]
	cfg.CPUs[0].Count = 2
	if cfg.Policy, err = kernel.Preset(preset); err != nil {
		t.Fatal(err)
	}
	k, err := kernel.Boot(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sealedText allocates 16 KiB of module text in the ROX cache, writes
// object's text into it when object is non-zero, and makes it ROX again:
// the sealed text the W^X and text checks look at.
func sealedText(t testing.TB, k *kernel.Kernel, c kernel.CPU, object uint64) uint64 {
	t.Helper()
	p, err := k.ExecmemAllocRW(c, kernel.ExecmemModuleText, 16<<10)
	if err != nil {
		t.Fatal(err)
	}
	if object != 0 {
		if err := k.WriteText(p, 16<<10, object); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.ExecmemRestoreROX(c, p, 16<<10); err != nil {
		t.Fatal(err)
	}
	return p
}

func linearVA(k *kernel.Kernel) uint64 {
	r := k.Mem.Regions()[0]
	return k.Lin(r.Base + r.Size - 8<<20)
}

func TestViolationWrapsAndCarriesAddress(t *testing.T) {
	var err error = &Violation{Kind: "lost update", Addr: 0xffff000001e00000, CPU: 0, Step: 7, Msg: "x"}
	if !errors.Is(err, ErrViolation) {
		t.Error("not an ErrViolation")
	}
	var v *Violation
	if !errors.As(err, &v) || v.Addr != 0xffff000001e00000 {
		t.Error("address lost")
	}
	if !strings.Contains(err.Error(), "0xffff000001e00000") {
		t.Errorf("message lacks the address: %s", err)
	}
}

func TestLeaksAndDanglingTables(t *testing.T) {
	k := bootSmall(t, "n1-server", "mainline")
	if err := Leaks(k); err != nil {
		t.Fatalf("fresh boot: %v", err)
	}
	if err := Accounting(k); err != nil {
		t.Fatal(err)
	}
	lin := linearVA(k)
	tpa, ok, err := k.PT.UnhookTable(pgtable.Atomic{}, lin, arm64.LevelPMD)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	var v *Violation
	if err := Leaks(k); !errors.As(err, &v) || v.Kind != "table leak" {
		t.Errorf("an unhooked, unfreed table: %v", err)
	}
	// Free a table that is still hooked: a dangling pointer.
	lin2 := lin + k.G.Size(arm64.LevelPMD)
	e, err := k.PT.Lookup(pgtable.Atomic{}, lin2)
	if err != nil || e.Level != arm64.LastLevel {
		t.Fatal(e, err)
	}
	_ = k.PT.FreeTable(pgtable.Atomic{}, tpa)
	if err := k.PT.FreeTable(pgtable.Atomic{}, e.DescPA&^(k.G.PageSize()-1)); err != nil {
		t.Fatal(err)
	}
	if err := Leaks(k); !errors.As(err, &v) || v.Kind != "dangling table" {
		t.Errorf("a freed table still referenced: %v", err)
	}
}

func TestWXFindsWritableAlias(t *testing.T) {
	k := bootSmall(t, "bbml2-server", "rox-cache")
	c := &kernel.PlainCPU{}
	p := sealedText(t, k, c, 0)
	var raw pgtable.Atomic
	if err := WX(k, raw, nil); err != nil {
		t.Fatalf("sealed text: %v", err)
	}
	pa, _, _ := k.PT.Translate(raw, p)
	lin := k.Lin(pa)
	if err := k.PT.Protect(raw, lin, lin+k.G.PageSize(), arm64.PTEWrite, arm64.PTERdonly); err != nil {
		t.Fatal(err)
	}
	err := WX(k, raw, nil)
	if !errors.Is(err, ErrViolation) || !strings.Contains(err.Error(), "linear alias") {
		t.Errorf("writable alias of executable text: %v", err)
	}
	if err := WX(k, raw, func(*kernel.VMArea) bool { return true }); err != nil {
		t.Errorf("exempted: %v", err)
	}
}

// monitorFor builds a monitor over one CPU machine tracking the 2M
// region around va, with one operation whose footprint is fp.
func monitorFor(k *kernel.Kernel, m *cpu.Machine, va uint64, fp []Range) *Monitor {
	ops := make([][]OpInfo, len(m.CPUs))
	for i := range ops {
		ops[i] = []OpInfo{{Name: "op", Footprint: fp}}
	}
	// Record an (empty) oracle, then check against it.
	rec := NewMonitor(k, m, nil, ops, nil)
	return NewMonitor(k, m, []Range{{Start: va, End: va + 1}}, ops, rec.Oracle())
}

// A store that changes a translation no operation is changing is caught;
// one inside an operation's footprint may change permissions, not the PA.
func TestMonitorTranslationEquivalence(t *testing.T) {
	k := bootSmall(t, "n1-server", "mainline")
	m := cpu.NewMachine(k, 1, cpu.Cooperative)
	c := m.CPUs[0]
	lin := linearVA(k)
	ps := k.G.PageSize()
	mo := monitorFor(k, m, lin, []Range{{Start: lin, End: lin + ps}})
	c.Hook = mo
	c.Mark(cpu.EvOpBegin, 0, nil)
	if err := k.PT.Protect(c, lin, lin+ps, arm64.PTERdonly, arm64.PTEWrite); err != nil {
		t.Fatal(err)
	}
	if err := mo.Err(); err != nil {
		t.Fatalf("permission change inside the footprint: %v", err)
	}
	e, _ := k.PT.Lookup(pgtable.Atomic{}, lin)
	c.Store(e.DescPA, descPtr(k, e.DescPA), k.G.MkLeaf(k.PA(lin)+ps, arm64.PageKernelRO, arm64.LastLevel))
	var v *Violation
	if !errors.As(mo.Err(), &v) || v.Kind != "translation changed" || v.Addr != lin {
		t.Errorf("PA change inside the footprint: %v", mo.Err())
	}
	// Outside the footprint even a permission change is a violation.
	mo = monitorFor(k, m, lin, nil)
	c.Hook = mo
	if err := k.PT.Protect(c, lin+ps, lin+2*ps, arm64.PTERdonly, arm64.PTEWrite); err != nil {
		t.Fatal(err)
	}
	if !errors.As(mo.Err(), &v) || v.Addr != lin+ps {
		t.Errorf("permission change outside any footprint: %v", mo.Err())
	}
}

func descPtr(k *kernel.Kernel, dpa uint64) *uint64 {
	tbl, _ := k.PT.Table(dpa &^ (k.G.PageSize() - 1))
	return &tbl[(dpa&(k.G.PageSize()-1))/8]
}

// A walker that stores into a table unhooked behind its back loses the
// update; freeing a table a walk cache points to is caught at the free.
func TestMonitorLostUpdateAndWalkCache(t *testing.T) {
	k := bootSmall(t, "n1-server", "mainline")
	m := cpu.NewMachine(k, 2, cpu.Cooperative)
	c0, c1 := m.CPUs[0], m.CPUs[1]
	lin := linearVA(k)
	mo := monitorFor(k, m, lin+k.G.Size(arm64.LevelPMD), nil) // track another region: only the path checks matter
	c0.Hook = mo
	e, err := k.PT.Lookup(c0, lin)
	if err != nil {
		t.Fatal(err)
	}
	tpa, ok, err := k.PT.UnhookTable(pgtable.Atomic{}, lin, arm64.LevelPMD)
	if err != nil || !ok {
		t.Fatal(err)
	}
	c0.Store(e.DescPA, descPtr(k, e.DescPA), e.Desc)
	var v *Violation
	if !errors.As(mo.Err(), &v) || v.Kind != "lost update" || v.Addr != lin {
		t.Errorf("store into an unhooked table: %v", mo.Err())
	}

	mo = monitorFor(k, m, lin+k.G.Size(arm64.LevelPMD), nil)
	c0.Hook = mo
	other := lin + 2*k.G.Size(arm64.LevelPMD)
	if _, err := c1.Access(cpu.Read, other); err != nil {
		t.Fatal(err)
	}
	t2, ok, err := k.PT.UnhookTable(pgtable.Atomic{}, other, arm64.LevelPMD)
	if err != nil || !ok {
		t.Fatal(err)
	}
	if err := k.PT.FreeTable(c0, t2); err != nil {
		t.Fatal(err)
	}
	if !errors.As(mo.Err(), &v) || v.Kind != "table freed under walk cache" || v.Addr != t2 {
		t.Errorf("free under a walk cache: %v", mo.Err())
	}
	_ = k.PT.FreeTable(pgtable.Atomic{}, tpa)
}
