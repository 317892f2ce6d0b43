package explore

import (
	"sync"

	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
)

// savedPool keeps objects idle between runs, each with the state it is
// restored to before its next run: the common part of kernelPool and
// setupPool. An object is added once, after it was made and saved; put
// returns it after a run; drain lets the idle ones go.
type savedPool[T comparable, S any] struct {
	mu    sync.Mutex
	idle  []T
	saved map[T]S
}

// take pops an idle object and its saved state.
func (p *savedPool[T, S]) take() (t T, s S, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.idle)
	if n == 0 {
		return t, s, false
	}
	t = p.idle[n-1]
	p.idle = p.idle[:n-1]
	return t, p.saved[t], true
}

// add records a new object's saved state (the object is in use).
func (p *savedPool[T, S]) add(t T, s S) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.saved == nil {
		p.saved = map[T]S{}
	}
	p.saved[t] = s
}

// put hands an object back after its run has ended (every CPU finished).
func (p *savedPool[T, S]) put(t T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.saved[t]; ok {
		p.idle = append(p.idle, t)
	}
}

// drain lets the idle objects go (a finished search keeps none).
func (p *savedPool[T, S]) drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.idle {
		delete(p.saved, t)
	}
	p.idle = nil
}

// kernelPool keeps booted kernels for the explorer's runs: a kernel is
// booted once (per worker that needs one at the same time), snapshotted, and
// restored from its snapshot before every further run instead of booting
// anew (kernel.Snapshot; booting was most of a run's cost). The scenario's
// Build still runs per run, on the restored kernel, so its threads hold no
// object of an earlier run.
type kernelPool struct {
	savedPool[*kernel.Kernel, *kernel.Snapshot]
	// fresh boots every run (tests compare both ways).
	fresh bool
}

// get returns a kernel in its just-booted state. Real-mode runs (CPUs as
// goroutines) always boot a fresh one.
func (p *kernelPool) get(cfg kernel.Config, mode cpu.Mode) (*kernel.Kernel, error) {
	if p.fresh || mode != cpu.Cooperative {
		return kernel.Boot(cfg)
	}
	if k, snap, ok := p.take(); ok {
		if err := k.Restore(snap); err != nil {
			return nil, err
		}
		return k, nil
	}
	k, err := kernel.Boot(cfg)
	if err != nil {
		return nil, err
	}
	p.add(k, k.Snapshot())
	return k, nil
}

// setupPool keeps built scenarios of a Reuse scenario: a kernel booted and
// built once (per worker that needs one at the same time), snapshotted after
// the Build with its CPUs' state (TLBs and walk caches the Build warmed),
// and restored to that before every further run, which then starts at its
// first scheduled step. The Build is deterministic (every run's monitor
// starts from the serial run's check.Start), so a restored setup is the one
// a new Build would make.
type setupPool struct {
	savedPool[*Setup, *builtSetup]
}

// builtSetup is a built scenario's state after the Build.
type builtSetup struct {
	snap *kernel.Snapshot
	cpus *cpu.MachineState
}

// get returns a setup in its just-built state.
func (p *setupPool) get(x *Explorer) (*Setup, error) {
	if s, b, ok := p.take(); ok {
		if err := s.K.Restore(b.snap); err != nil {
			return nil, err
		}
		s.M.RestoreState(b.cpus)
		return s, nil
	}
	k, err := kernel.Boot(x.kcfg)
	if err != nil {
		return nil, err
	}
	k.Mutations = x.cfg.Mutations
	s := &Setup{K: k, M: cpu.NewMachine(k, x.cfg.Scenario.CPUs, cpu.Cooperative)}
	if err := x.buildOn(s); err != nil {
		return nil, err
	}
	p.add(s, &builtSetup{snap: k.Snapshot(), cpus: s.M.SaveState()})
	return s, nil
}
