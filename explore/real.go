package explore

import (
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/ptlab/ptlab/check"
	"github.com/ptlab/ptlab/cpu"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/pgtable"
)

// RealResult is what RunReal found.
type RealResult struct {
	Rounds     int
	Violations int              // rounds whose final state broke an invariant
	First      *check.Violation // the first of them
}

// RunReal runs the scenario in real mode rounds times, each on a fresh
// kernel: every CPU is a goroutine performing its operations with atomic
// descriptor accesses and blocking locks, at the same time as the others.
// The interleaving is whatever the Go scheduler makes of it, so only the
// final state of each round is checked: each operation's footprint as the
// serial run leaves it, the tracked translations, stale TLB entries, W^X,
// executable content, accounting and table leaks. Under the race detector
// this also proves the model itself free of data races.
func (x *Explorer) RunReal(rounds int) (*RealResult, error) {
	res := &RealResult{}
	for i := 0; i < rounds; i++ {
		s, err := x.boot(cpu.Real)
		if err != nil {
			return nil, err
		}
		mon := x.monitor(s)
		errs := make([][]error, len(s.Threads))
		var wg sync.WaitGroup
		for ci, th := range s.Threads {
			wg.Add(1)
			go func(c *cpu.CPU, ops []Op) {
				defer wg.Done()
				for _, op := range ops {
					errs[c.ID()] = append(errs[c.ID()], op.Run(s.K, c))
				}
			}(s.M.CPUs[ci], th)
		}
		wg.Wait()
		// Replay the operation boundaries to the monitor, CPU by CPU.
		for ci, c := range s.M.CPUs {
			for j := range s.Threads[ci] {
				mon.Before(c, &cpu.Event{Kind: cpu.EvOpBegin, Op: j})
				mon.After(c, &cpu.Event{Kind: cpu.EvOpBegin, Op: j})
				mon.After(c, &cpu.Event{Kind: cpu.EvOpEnd, Op: j, Err: errs[ci][j]})
			}
		}
		res.Rounds++
		if mon.Final() != nil {
			res.Violations++
			if res.First == nil {
				res.First = mon.Violation()
			}
		}
	}
	return res, nil
}

// ChurnConfig is a real-mode stress workload without a scenario: CPUs load
// and unload modules and JIT text, execute it and dump the page tables, all
// at once.
type ChurnConfig struct {
	Preset string
	CPUs   int
	Steps  int // operations per CPU
	Seed   uint64
}

// RunChurn runs a churn workload in real mode and checks the final state:
// W^X across aliases, executable content, accounting and table leaks. Each
// CPU's operations come from its own seeded random stream.
func RunChurn(cfg ChurnConfig) error {
	pol, err := kernel.Preset(cfg.Preset)
	if err != nil {
		return err
	}
	kcfg, err := machine("bbml2-server", "ampere1", cfg.CPUs)(pol)
	if err != nil {
		return err
	}
	kcfg.RAM[0].Size = 512 << 20
	k, err := kernel.Boot(kcfg)
	if err != nil {
		return err
	}
	m := cpu.NewMachine(k, cfg.CPUs, cpu.Real)
	errs := make([]error, cfg.CPUs)
	var wg sync.WaitGroup
	for _, c := range m.CPUs {
		wg.Add(1)
		go func(c *cpu.CPU) {
			defer wg.Done()
			errs[c.ID()] = churn(k, c, cfg.Steps, rand.New(rand.NewPCG(cfg.Seed, uint64(c.ID()))))
		}(c)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	var raw atomicDoor
	for _, err := range []error{check.WX(k, raw, nil), check.ExecContent(k, raw), check.Accounting(k), check.Leaks(k)} {
		if err != nil {
			return err
		}
	}
	return nil
}

func churn(k *kernel.Kernel, c *cpu.CPU, steps int, rng *rand.Rand) error {
	var mods []*kernel.Module
	var progs []*kernel.JITText
	for i := 0; i < steps; i++ {
		switch rng.IntN(6) {
		case 0, 1:
			var spec kernel.ModuleSpec
			spec.Name = fmt.Sprintf("m%d.%d", c.ID(), i)
			spec.Size[kernel.ModText] = 4<<10 + rng.Uint64N(64<<10)
			spec.Size[kernel.ModRodata] = rng.Uint64N(16 << 10)
			spec.Size[kernel.ModData] = rng.Uint64N(16 << 10)
			m, err := k.LoadModule(c, spec)
			if err != nil {
				return fmt.Errorf("cpu%d: load: %w", c.ID(), err)
			}
			mods = append(mods, m)
		case 2:
			if len(mods) > 0 {
				j := rng.IntN(len(mods))
				if err := k.UnloadModule(c, mods[j]); err != nil {
					return fmt.Errorf("cpu%d: unload: %w", c.ID(), err)
				}
				mods = append(mods[:j], mods[j+1:]...)
			}
		case 3:
			if len(progs) > 0 && rng.IntN(2) == 0 {
				j := rng.IntN(len(progs))
				if err := k.FreeJITText(c, progs[j]); err != nil {
					return fmt.Errorf("cpu%d: free bpf: %w", c.ID(), err)
				}
				progs = append(progs[:j], progs[j+1:]...)
			} else {
				p, err := k.LoadJITText(c, kernel.ExecmemBPF, 1<<10+rng.Uint64N(8<<10))
				if err != nil {
					return fmt.Errorf("cpu%d: bpf: %w", c.ID(), err)
				}
				progs = append(progs, p)
			}
		case 4:
			for _, m := range mods {
				touch(c, cpu.Exec, m.Base[kernel.ModText])
				touch(c, cpu.Read, m.Base[kernel.ModData])
			}
		case 5:
			if rng.IntN(4) == 0 {
				if err := k.PtdumpWalk(c, discard{}); err != nil {
					return fmt.Errorf("cpu%d: ptdump: %w", c.ID(), err)
				}
			}
		}
	}
	for _, m := range mods {
		if err := k.UnloadModule(c, m); err != nil {
			return err
		}
	}
	for _, p := range progs {
		if err := k.FreeJITText(c, p); err != nil {
			return err
		}
	}
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// atomicDoor reads descriptors atomically for the final checks.
type atomicDoor = pgtable.Atomic
