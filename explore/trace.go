package explore

import (
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/ptlab/ptlab/cpu"
)

// TraceStep is one step of a traced run.
type TraceStep struct {
	Step    int
	CPU     int
	Op      string    // the scenario operation the CPU is running ("" between operations)
	Ev      cpu.Event // the door call, with the values it read or wrote
	Func    string    // the kernel (and table) function that made it
	Switch  bool      // a context switch happened just before it
	Preempt bool      // ... away from a CPU that could have gone on
	evp     *cpu.Event
}

type tracer struct {
	steps []TraceStep
	pcs   [32]uintptr
}

func (t *tracer) before(r *run, c *cpu.CPU, ev *cpu.Event) {
	id := c.ID()
	st := TraceStep{Step: len(r.sched) - 1, CPU: id, Ev: *ev, evp: ev}
	if k := r.mon.CurrentOp(id); k >= 0 {
		st.Op = r.threads[id][k].Name
	} else if ev.Kind == cpu.EvOpBegin {
		st.Op = r.threads[id][ev.Op].Name
	}
	if n := len(t.steps); n > 0 && t.steps[n-1].CPU != id {
		st.Switch = true
		prev := t.steps[n-1].CPU
		st.Preempt = !r.done[prev] && r.pending[prev] != nil && r.m.CPUs[prev].Enabled(r.pending[prev])
	}
	st.Func = t.caller()
	t.steps = append(t.steps, st)
}

func (t *tracer) after(_ *run, c *cpu.CPU, ev *cpu.Event) {
	for i := len(t.steps) - 1; i >= 0; i-- {
		if st := &t.steps[i]; st.CPU == c.ID() && st.evp == ev {
			ev2 := *ev
			st.Ev = ev2
			return
		}
	}
}

// caller names the modelled kernel function behind a door call: the
// innermost kernel function, and the table function it called if any.
func (t *tracer) caller() string {
	n := runtime.Callers(3, t.pcs[:])
	frames := runtime.CallersFrames(t.pcs[:n])
	var table, kern string
walk:
	for {
		f, more := frames.Next()
		name := f.Function
		switch {
		case strings.Contains(name, "/pgtable."):
			if table == "" {
				table = shortFunc(name)
			}
		case strings.Contains(name, "/kernel."), strings.Contains(name, "/ptdump."):
			if k := shortFunc(name); !helperFuncs[k] {
				kern = k
			}
		}
		if kern != "" || !more {
			break walk
		}
	}
	switch {
	case kern != "" && table != "":
		return kern + " → " + table
	case kern != "":
		return kern
	}
	return table
}

// helperFuncs are kernel-package wrappers that name no kernel function;
// the trace shows their caller instead.
var helperFuncs = map[string]bool{"lockSplit": true, "unlockSplit": true, "tlbi": true, "foldTable": true}

// shortFunc turns "github.com/ptlab/ptlab/kernel.(*Kernel).updateRangeProt"
// into "updateRangeProt" and pgtable methods into "pgtable.protectLevel".
func shortFunc(name string) string {
	name = name[strings.LastIndex(name, "/")+1:]
	pkg, rest, _ := strings.Cut(name, ".")
	if i := strings.LastIndex(rest, ")."); i >= 0 {
		rest = rest[i+2:]
	}
	rest = strings.TrimSuffix(rest, "-fm")
	if pkg == "kernel" {
		return rest
	}
	return pkg + "." + rest
}

func (r *run) traceSteps() []TraceStep {
	if r.tr == nil {
		return nil
	}
	return r.tr.steps
}

// WriteTrace prints a traced run: one line per step that changes state or
// synchronises (stores, table allocs and frees, locks, TLBIs, accesses,
// operation boundaries), loads folded into one line per run of loads, and a
// marker at every context switch. upto limits the steps printed (-1: all).
func WriteTrace(w io.Writer, steps []TraceStep, upto int) error {
	fmt.Fprintf(w, "%6s  %-3s  %-28s %-10s %-46s %s\n", "step", "cpu", "operation", "event", "function", "descriptor / detail")
	for i := 0; i < len(steps); i++ {
		st := &steps[i]
		if upto >= 0 && st.Step > upto {
			break
		}
		if st.Switch {
			how := "switch"
			if st.Preempt {
				how = "preemption"
			}
			fmt.Fprintf(w, "%6s  --- %s to CPU%d\n", "", how, st.CPU)
		}
		if st.Ev.Kind == cpu.EvLoad || st.Ev.Kind == cpu.EvWalk {
			j := i
			for j+1 < len(steps) && steps[j+1].CPU == st.CPU && steps[j+1].Ev.Kind == st.Ev.Kind && !steps[j+1].Switch &&
				steps[j+1].Func == st.Func && (upto < 0 || steps[j+1].Step <= upto) {
				j++
			}
			if j > i {
				last := &steps[j]
				fmt.Fprintf(w, "%6d  %-3d  %-28s %-10s %-46s %d %ss %#x..%#x, last %#016x\n", st.Step, st.CPU, trunc(st.Op, 28),
					st.Ev.Kind.String()+"s", trunc(st.Func, 46), j-i+1, st.Ev.Kind, st.Ev.PA, last.Ev.PA, last.Ev.Val)
				i = j
				continue
			}
		}
		fmt.Fprintf(w, "%6d  %-3d  %-28s %-10s %-46s %s\n", st.Step, st.CPU, trunc(st.Op, 28), st.Ev.Kind, trunc(st.Func, 46), detail(&st.Ev))
	}
	return nil
}

func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func levelName(ev *cpu.Event) string {
	if ev.Level == cpu.LevelUnknown {
		return "freed"
	}
	return fmt.Sprintf("L%d", ev.Level)
}

func detail(ev *cpu.Event) string {
	switch ev.Kind {
	case cpu.EvLoad, cpu.EvWalk:
		return fmt.Sprintf("%#x (%s) = %#016x", ev.PA, levelName(ev), ev.Val)
	case cpu.EvStore:
		return fmt.Sprintf("%#x (%s) %#016x → %#016x", ev.PA, levelName(ev), ev.Old, ev.Val)
	case cpu.EvTableAlloc:
		return fmt.Sprintf("level %d table", ev.Level)
	case cpu.EvTableFree:
		return fmt.Sprintf("table page %#x (level %d)", ev.PA, ev.Level)
	case cpu.EvLock, cpu.EvUnlock:
		return ev.Mutex.Name
	case cpu.EvDownRead, cpu.EvUpRead, cpu.EvDownWrite, cpu.EvUpWrite:
		return ev.Sem.Name
	case cpu.EvTLBI:
		if ev.TLBI.End > ev.TLBI.Start {
			return fmt.Sprintf("%v [%#x, %#x)", ev.TLBI.Kind, ev.TLBI.Start, ev.TLBI.End)
		}
		return ev.TLBI.Kind.String()
	case cpu.EvAccess:
		if ev.Err != nil {
			return fmt.Sprintf("%v %#x: %v", ev.Acc, ev.VA, ev.Err)
		}
		return fmt.Sprintf("%v %#x → PA %#x", ev.Acc, ev.VA, ev.Val)
	case cpu.EvOpEnd:
		if ev.Err != nil {
			return fmt.Sprintf("returns %v", ev.Err)
		}
		return "returns 0"
	}
	return ""
}
