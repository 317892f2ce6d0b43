package explore

import (
	"sync"

	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
)

// kernelPool keeps booted kernels for the explorer's runs: a kernel is
// booted once (per worker that needs one at the same time), snapshotted, and
// restored from its snapshot before every further run instead of booting
// anew (kernel.Snapshot; booting was most of a run's cost). The scenario's
// Build still runs per run, on the restored kernel, so its threads hold no
// object of an earlier run.
type kernelPool struct {
	mu    sync.Mutex
	idle  []*kernel.Kernel
	snaps map[*kernel.Kernel]*kernel.Snapshot
	// fresh boots every run (tests compare both ways).
	fresh bool
}

// get returns a kernel in its just-booted state. Real-mode runs (CPUs as
// goroutines) always boot a fresh one.
func (p *kernelPool) get(cfg kernel.Config, mode cpu.Mode) (*kernel.Kernel, error) {
	p.mu.Lock()
	if p.fresh || mode != cpu.Cooperative {
		p.mu.Unlock()
		return kernel.Boot(cfg)
	}
	if n := len(p.idle); n > 0 {
		k := p.idle[n-1]
		p.idle = p.idle[:n-1]
		snap := p.snaps[k]
		p.mu.Unlock()
		if err := k.Restore(snap); err != nil {
			return nil, err
		}
		return k, nil
	}
	p.mu.Unlock()
	k, err := kernel.Boot(cfg)
	if err != nil {
		return nil, err
	}
	snap := k.Snapshot()
	p.mu.Lock()
	if p.snaps == nil {
		p.snaps = map[*kernel.Kernel]*kernel.Snapshot{}
	}
	p.snaps[k] = snap
	p.mu.Unlock()
	return k, nil
}

// put hands a kernel back after its run has ended (every CPU finished).
func (p *kernelPool) put(k *kernel.Kernel) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.snaps[k]; ok {
		p.idle = append(p.idle, k)
	}
}

// drain lets the idle kernels go (a finished search keeps none).
func (p *kernelPool) drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range p.idle {
		delete(p.snaps, k)
	}
	p.idle = nil
}

// setupPool keeps built scenarios of a Reuse scenario: a kernel booted and
// built once (per worker that needs one at the same time), snapshotted after
// the Build with its CPUs' state (TLBs and walk caches the Build warmed),
// and restored to that before every further run, which then starts at its
// first scheduled step. The Build is deterministic (every run's monitor
// starts from the serial run's check.Start), so a restored setup is the one
// a new Build would make.
type setupPool struct {
	mu    sync.Mutex
	idle  []*builtSetup
	built map[*Setup]*builtSetup
}

// builtSetup is one built scenario and its state after the Build.
type builtSetup struct {
	s    *Setup
	snap *kernel.Snapshot
	cpus *cpu.MachineState
}

// get returns a setup in its just-built state.
func (p *setupPool) get(x *Explorer) (*Setup, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		b := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if err := b.s.K.Restore(b.snap); err != nil {
			return nil, err
		}
		b.s.M.RestoreState(b.cpus)
		return b.s, nil
	}
	p.mu.Unlock()
	k, err := kernel.Boot(x.kcfg)
	if err != nil {
		return nil, err
	}
	k.Mutations = x.cfg.Mutations
	s := &Setup{K: k, M: cpu.NewMachine(k, x.cfg.Scenario.CPUs, cpu.Cooperative)}
	if err := x.buildOn(s); err != nil {
		return nil, err
	}
	b := &builtSetup{s: s, snap: k.Snapshot(), cpus: s.M.SaveState()}
	p.mu.Lock()
	if p.built == nil {
		p.built = map[*Setup]*builtSetup{}
	}
	p.built[s] = b
	p.mu.Unlock()
	return s, nil
}

// put hands a setup back after its run has ended (every CPU finished).
func (p *setupPool) put(s *Setup) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b, ok := p.built[s]; ok {
		p.idle = append(p.idle, b)
	}
}

// drain lets the idle setups go.
func (p *setupPool) drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.idle {
		delete(p.built, b.s)
	}
	p.idle = nil
}
