package workload

import (
	"bytes"
	"fmt"
	"time"

	"github.com/ptlab/ptlab/kernel"
)

// Sample is the state of the kernel at one point of the timeline.
type Sample struct {
	At       time.Duration        `json:"at"`
	Metrics  kernel.Metrics       `json:"metrics"`
	Cache    kernel.CacheStats    `json:"cache"`
	Collapse kernel.CollapseStats `json:"collapse"`
	Observed []float64            `json:"observed,omitempty"` // one value per Result.ObservedColumns
}

// Result is one preset's run of a scenario.
type Result struct {
	Preset   string               `json:"preset"`
	Final    kernel.Metrics       `json:"final"`
	Cache    kernel.CacheStats    `json:"cache"`
	Collapse kernel.CollapseStats `json:"collapse"`
	Series   []Sample             `json:"series,omitempty"`
	Events   int                  `json:"events"`
	Failed   []string             `json:"failed,omitempty"` // the first MaxFailed operations the kernel refused (e.g. -ENOMEM)
	Refused  int                  `json:"refused"`          // every refused operation, listed or not
	// Config is the machine and policy the run booted, after the scenario's
	// overrides and an import.
	Config kernel.Config `json:"config"`
	WallNS int64         `json:"wall_ns"`
	// PageUpdates is the number of page descriptors rewritten by pageattr.
	PageUpdates uint64 `json:"page_updates"`
	// Dump is the kernel_page_tables dump of the final state, when the
	// scenario asked for it (Scenario.CaptureDump).
	Dump []byte `json:"-"`
	// What the run's observers reported (see Observer).
	ObservedColumns []Column  `json:"observed_columns,omitempty"`
	ObservedFinal   []float64 `json:"observed_final,omitempty"`
	ObservedNotes   []string  `json:"observed_notes,omitempty"`
}

// MaxFailed bounds the refused operations a Result lists (Refused counts all).
const MaxFailed = 100

// Progress receives the number of events done so far and the total.
type Progress func(done, total int)

// Run replays the scenario under one preset on a freshly booted kernel:
// the module set loads at t=0, then the timeline's churn, sampling metrics
// every SampleEvery and once at the end.
func Run(s *Scenario, preset string, mods []kernel.ModuleSpec, progress Progress) (*Result, error) {
	return RunObserved(s, preset, mods, progress)
}

// RunObserved is Run with observers watching (ScenarioObservers gives the
// scenario's).
func RunObserved(s *Scenario, preset string, mods []kernel.ModuleSpec, progress Progress, obs ...Observer) (*Result, error) {
	if s.Replay != nil { // a recorded history (replay.go); observers do not watch it yet
		r, _, err := RunReplay(s, preset, progress)
		return r, err
	}
	return runOn(s, preset, mods, progress, nil, obs...)
}

// RunHooks let a caller above this package (the checker's `compare
// --check`) put its own CPU under the timeline and look at the kernel after
// every event, which may stop the run by returning an error.
type RunHooks struct {
	CPU   func(k *kernel.Kernel) kernel.CPU
	After func(k *kernel.Kernel, e Event) error
}

// RunHooked is Run on the hooks' CPU. A recorded history (Replay) is not
// run under hooks yet: that is refused rather than silently replaced by the
// scenario's generated timeline.
func RunHooked(s *Scenario, preset string, mods []kernel.ModuleSpec, progress Progress, h *RunHooks) (*Result, error) {
	if s.Replay != nil {
		return nil, fmt.Errorf("%w: a recorded trace cannot run under hooks (compare --check with --trace) yet", ErrScenario)
	}
	return runOn(s, preset, mods, progress, h)
}

func runOn(s *Scenario, preset string, mods []kernel.ModuleSpec, progress Progress, h *RunHooks, obs ...Observer) (*Result, error) {
	start := time.Now()
	cfg, err := s.MachineConfig(preset)
	if err != nil {
		return nil, err
	}
	var im *kernel.Imported
	if s.Import != "" {
		if cfg, im, err = kernel.ImportFile(cfg, s.Import); err != nil {
			return nil, err
		}
	}
	k, err := kernel.BootImported(cfg, im)
	if err != nil {
		return nil, err
	}
	var c kernel.CPU = kernel.NewPlainCPU(0)
	var ob *observed
	if h != nil {
		c = h.CPU(k)
	} else if len(obs) > 0 {
		oc := &observingCPU{PlainCPU: kernel.NewPlainCPU(0), obs: obs}
		ob, c = newObserved(obs), oc
		if err := ob.start(k, oc); err != nil {
			return nil, err
		}
	}
	r := &Result{Preset: preset, Config: cfg}
	loaded := make([]*kernel.Module, len(mods))
	jit := map[int]*kernel.JITText{}
	ev := s.Timeline(len(mods))
	r.Events = len(ev)
	every := time.Duration(s.Work.SampleEvery)
	next := time.Duration(0)
	sample := func(at time.Duration) error {
		m, err := k.Metrics(c)
		if err != nil {
			return err
		}
		r.Series = append(r.Series, Sample{At: at, Metrics: m, Cache: k.Exec.CacheStats(), Collapse: k.Stats.Collapse})
		if ob != nil {
			if r.Series[len(r.Series)-1].Observed, err = ob.sample(at, loaded, jit); err != nil {
				return err
			}
		}
		return nil
	}
	fail := func(e Event, err error) {
		r.Refused++
		if len(r.Failed) < MaxFailed {
			r.Failed = append(r.Failed, fmt.Sprintf("%v at %v: %v", e.Kind, e.At, err))
		}
	}
	for i, e := range ev {
		for next < e.At {
			if err := sample(next); err != nil {
				return nil, err
			}
			next += every
		}
		if ob != nil {
			ob.cpu.at = e.At
		}
		switch e.Kind {
		case EvLoadModule:
			if loaded[e.Module] == nil {
				m, err := k.LoadModule(c, mods[e.Module])
				if err != nil {
					fail(e, err)
				}
				loaded[e.Module] = m
			}
		case EvUnloadModule:
			if m := loaded[e.Module]; m != nil {
				if err := k.UnloadModule(c, m); err != nil {
					return nil, fmt.Errorf("%s: %w", mods[e.Module].Name, err)
				}
				loaded[e.Module] = nil
			}
		case EvBPFLoad, EvFtraceAlloc, EvKprobeAlloc:
			t := map[EventKind]kernel.ExecmemType{EvBPFLoad: kernel.ExecmemBPF, EvFtraceAlloc: kernel.ExecmemFtrace, EvKprobeAlloc: kernel.ExecmemKprobes}[e.Kind]
			j, err := k.LoadJITText(c, t, e.Size)
			if err != nil {
				fail(e, err)
				continue
			}
			jit[e.Object] = j
		case EvBPFFree, EvFtraceFree, EvKprobeFree:
			if j := jit[e.Object]; j != nil {
				if err := k.FreeJITText(c, j); err != nil {
					return nil, err
				}
				delete(jit, e.Object)
			}
		}
		if h != nil {
			if err := h.After(k, e); err != nil {
				return nil, err
			}
		}
		if progress != nil && (i%64 == 0 || i == len(ev)-1) {
			progress(i+1, len(ev))
		}
	}
	end := time.Duration(s.Work.Duration)
	for next < end {
		if err := sample(next); err != nil {
			return nil, err
		}
		next += every
	}
	if err := sample(end); err != nil {
		return nil, err
	}
	last := r.Series[len(r.Series)-1]
	r.Final, r.Cache, r.Collapse = last.Metrics, last.Cache, last.Collapse
	r.PageUpdates = k.Stats.PageUpdates.Load()
	if s.CaptureDump {
		var buf bytes.Buffer
		if err := k.PtdumpWalk(c, &buf); err != nil {
			return nil, err
		}
		r.Dump = buf.Bytes()
	}
	if ob != nil {
		ob.finish(r)
	}
	r.WallNS = time.Since(start).Nanoseconds()
	return r, nil
}
