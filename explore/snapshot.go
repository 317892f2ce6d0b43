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
