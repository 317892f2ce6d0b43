package explore

import (
	"errors"
	"fmt"

	"github.com/ptlab/ptlab/check"
	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/workload"
)

// Checked is a run of a scenario under one preset with the invariants
// evaluated throughout.
type Checked struct {
	Preset string
	Events int
	Steps  int              // door calls checked
	Err    *check.Violation // the first violation, or nil
	Result *workload.Result
}

// errStop ends a checked run at its first violation.
var errStop = errors.New("explore: stopped at a violation")

// RunChecked replays the scenario under preset on one simulated CPU (package
// cpu: a TLB, every descriptor access through the door) with the checker's
// monitor as its hook. Per door call: use after free, lost updates, table
// pages freed under the walk cache, break-before-make; after every event of
// the timeline: W^X across aliases and executable content of all execmem
// memory and physmem accounting; at the end also table leaks. It stops at the
// first violation.
func RunChecked(s *workload.Scenario, preset string, mods []kernel.ModuleSpec, progress workload.Progress) (*Checked, error) {
	out := &Checked{Preset: preset}
	var mon *check.Monitor
	var c *cpu.CPU
	h := &workload.RunHooks{
		CPU: func(k *kernel.Kernel) kernel.CPU {
			m := cpu.NewMachine(k, 1, cpu.Cooperative)
			c = m.CPUs[0]
			mon = check.NewMonitor(k, m, nil, [][]check.OpInfo{nil}, check.NewEmptyOracle())
			c.Hook = stepCounter{mon, &out.Steps}
			return c
		},
		After: func(k *kernel.Kernel, e workload.Event) error {
			out.Events++
			if err := mon.Err(); err != nil {
				return errStop
			}
			if err := mon.CheckState(); err != nil {
				return errStop
			}
			return nil
		},
	}
	r, err := workload.RunHooked(s, preset, mods, progress, h)
	if err != nil && !errors.Is(err, errStop) {
		return nil, fmt.Errorf("preset %s: %w", preset, err)
	}
	out.Result = r
	out.Err = mon.Violation()
	if err == nil && mon.Final() != nil {
		out.Err = mon.Violation() // Final records what it finds
	}
	return out, nil
}

// stepCounter counts the door calls it passes to the monitor.
type stepCounter struct {
	mon *check.Monitor
	n   *int
}

func (s stepCounter) Before(c *cpu.CPU, ev *cpu.Event) {
	s.mon.Step = *s.n
	s.mon.Before(c, ev)
}

func (s stepCounter) After(c *cpu.CPU, ev *cpu.Event) {
	s.mon.After(c, ev)
	*s.n++
}
