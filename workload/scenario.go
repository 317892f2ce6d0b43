// Package workload describes what runs on a modelled kernel: scenarios
// (machine, policies, a seeded workload of module loads, module churn, BPF
// programs, ftrace and kprobe trampolines), the real module sets they load,
// and the runner that replays a scenario on a kernel and samples metrics.
package workload

import (
	"bytes"
	"cmp"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ptlab/ptlab/kernel"
	"gopkg.in/yaml.v3"
)

// ErrScenario reports a scenario that cannot run.
var ErrScenario = errors.New("workload: bad scenario")

// Duration is a time.Duration written as "1h", "90s" in scenario files.
type Duration time.Duration

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%w: duration %q", ErrScenario, b)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Rate is a Poisson process: Count events per hour; each object lives an
// exponentially distributed time with mean Lifetime (0: until the end).
type Rate struct {
	PerHour  float64  `json:"per_hour" yaml:"per_hour"`
	Lifetime Duration `json:"lifetime" yaml:"lifetime"`
}

// SizeDist is a log-normal size distribution, clamped to [Min, Max].
type SizeDist struct {
	Median kernel.Size `json:"median" yaml:"median"`
	Sigma  float64     `json:"sigma" yaml:"sigma"`
	Min    kernel.Size `json:"min" yaml:"min"`
	Max    kernel.Size `json:"max" yaml:"max"`
}

// Workload is what happens after boot.
type Workload struct {
	// Modules names the module set loaded at t=0: "server" (the realistic
	// server set), "all" (every module of the package), "none", or a
	// comma-separated list of module names.
	Modules      string   `json:"modules" yaml:"modules"`
	Duration     Duration `json:"duration" yaml:"duration"`
	ModuleReload Rate     `json:"module_reload" yaml:"module_reload"` // unload + reload of a loaded module
	BPF          Rate     `json:"bpf" yaml:"bpf"`                     // JIT'ed programs attached
	BPFSize      SizeDist `json:"bpf_size" yaml:"bpf_size"`
	Ftrace       Rate     `json:"ftrace" yaml:"ftrace"`   // ftrace trampolines (one page)
	Kprobes      Rate     `json:"kprobes" yaml:"kprobes"` // kprobe instruction pages
	SampleEvery  Duration `json:"sample_every" yaml:"sample_every"`
}

// Scenario is a machine, the policies to compare on it, and a workload.
type Scenario struct {
	Name    string         `json:"name" yaml:"name"`
	Seed    uint64         `json:"seed" yaml:"seed"`
	Machine string         `json:"machine" yaml:"machine"`
	Config  *kernel.Config `json:"config,omitempty" yaml:"config,omitempty"` // overrides on top of the machine
	Presets []string       `json:"presets" yaml:"presets"`
	// Import names a kernel_page_tables dump whose linear map (leaf sizes,
	// permissions, RAM) replaces the machine's boot-time one.
	Import string   `json:"import,omitempty" yaml:"import,omitempty"`
	Work   Workload `json:"workload" yaml:"workload"`
	// Cost configures the TLB cost model (workload/cost.go).
	Cost CostConfig `json:"cost,omitempty" yaml:"cost,omitempty"`
}

//go:embed default.yaml
var defaultScenario []byte

// DefaultScenario is the embedded default: a 16 GiB BBML2 server, the real
// server module set, an hour of typical churn, every preset.
func DefaultScenario() (*Scenario, error) { return ParseScenario(defaultScenario, "default.yaml") }

// LoadScenario reads a scenario file (YAML, or JSON by extension).
func LoadScenario(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseScenario(b, path)
}

// ParseScenario parses a scenario; name is used in error messages and
// picks JSON by its extension.
func ParseScenario(b []byte, name string) (*Scenario, error) {
	s := &Scenario{}
	if strings.EqualFold(filepath.Ext(name), ".json") {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(s); err != nil {
			return nil, fmt.Errorf("%s: %w: %v", name, ErrScenario, err)
		}
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(s); err != nil {
			return nil, fmt.Errorf("%s: %w: %v", name, ErrScenario, err)
		}
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

func (s *Scenario) validate() error {
	if s.Machine == "" {
		s.Machine = "bbml2-server"
	}
	if _, err := kernel.Machine(s.Machine); err != nil {
		return fmt.Errorf("%w: %w", ErrScenario, err)
	}
	if len(s.Presets) == 0 {
		s.Presets = kernel.PresetNames()
	}
	for _, p := range s.Presets {
		if _, err := kernel.Preset(p); err != nil {
			return fmt.Errorf("%w: %w", ErrScenario, err)
		}
	}
	w := &s.Work
	for _, r := range []Rate{w.ModuleReload, w.BPF, w.Ftrace, w.Kprobes} {
		if r.PerHour < 0 || r.Lifetime < 0 || math.IsNaN(r.PerHour) || r.PerHour > 1e7 {
			return fmt.Errorf("%w: rate %v per hour", ErrScenario, r.PerHour)
		}
	}
	if w.Duration < 0 || time.Duration(w.Duration) > 24*365*time.Hour {
		return fmt.Errorf("%w: duration %v", ErrScenario, time.Duration(w.Duration))
	}
	if w.SampleEvery <= 0 {
		w.SampleEvery = Duration(time.Minute)
	}
	if w.BPFSize.Median == 0 {
		w.BPFSize = SizeDist{Median: 4 << 10, Sigma: 1, Min: 256, Max: 512 << 10}
	}
	if w.BPFSize.Min == 0 {
		w.BPFSize.Min = 64
	}
	if w.BPFSize.Max < w.BPFSize.Min {
		return fmt.Errorf("%w: bpf_size max %d below min %d", ErrScenario, w.BPFSize.Max, w.BPFSize.Min)
	}
	if w.Modules == "" {
		w.Modules = "server"
	}
	return nil
}

// MachineConfig is the kernel configuration the scenario runs with a preset.
func (s *Scenario) MachineConfig(preset string) (kernel.Config, error) {
	cfg, err := kernel.Machine(s.Machine)
	if err != nil {
		return cfg, err
	}
	if s.Config != nil {
		over := *s.Config
		if over.RAM != nil {
			cfg.RAM = over.RAM
		}
		if over.CPUs != nil {
			cfg.CPUs = over.CPUs
		}
		if over.Rodata != "" {
			cfg.Rodata = over.Rodata
		}
		if over.Granule != "" {
			cfg.Granule = over.Granule
		}
		if over.VABits != 0 {
			cfg.VABits = over.VABits
		}
		if over.KFENCE != "" {
			cfg.KFENCE = over.KFENCE
		}
		cfg.DebugPagealloc = cfg.DebugPagealloc || over.DebugPagealloc
		cfg.TLBIRange = cfg.TLBIRange || over.TLBIRange
		if over.KASLRSeed != 0 {
			cfg.KASLRSeed = over.KASLRSeed
		}
	}
	if cfg.Policy, err = kernel.Preset(preset); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// EventKind is what happens at one point of the timeline.
type EventKind uint8

const (
	EvLoadModule EventKind = iota
	EvUnloadModule
	EvBPFLoad
	EvBPFFree
	EvFtraceAlloc
	EvFtraceFree
	EvKprobeAlloc
	EvKprobeFree
)

var eventNames = []string{"load", "unload", "bpf-load", "bpf-free", "ftrace-alloc", "ftrace-free", "kprobe-alloc", "kprobe-free"}

func (k EventKind) String() string { return eventNames[k] }

// Event is one step of a timeline. Module events name an index into the
// module set; JIT events name an object created by an earlier event.
type Event struct {
	At     time.Duration
	Kind   EventKind
	Module int    // module index (load/unload)
	Object int    // JIT object number (alloc/free)
	Size   uint64 // JIT image size
}

// Timeline generates the scenario's events for a module set of n modules,
// deterministically from the seed: the set loads at t=0 in order, then
// Poisson processes of reloads, BPF programs, ftrace trampolines and kprobe
// pages, each JIT object freed after its lifetime if that falls in the run.
func (s *Scenario) Timeline(n int) []Event {
	rng := rand.New(rand.NewPCG(s.Seed, 0x70746c6162))
	var ev []Event
	for i := 0; i < n; i++ {
		ev = append(ev, Event{At: 0, Kind: EvLoadModule, Module: i})
	}
	end := time.Duration(s.Work.Duration)
	poisson := func(r Rate, f func(at time.Duration)) {
		if r.PerHour <= 0 {
			return
		}
		mean := float64(time.Hour) / r.PerHour
		for t := time.Duration(rng.ExpFloat64() * mean); t < end; t += time.Duration(rng.ExpFloat64() * mean) {
			f(t)
		}
	}
	if n > 0 {
		poisson(s.Work.ModuleReload, func(at time.Duration) {
			m := rng.IntN(n)
			ev = append(ev, Event{At: at, Kind: EvUnloadModule, Module: m}, Event{At: at, Kind: EvLoadModule, Module: m})
		})
	}
	obj := 0
	jit := func(r Rate, alloc, free EventKind, size func() uint64) {
		poisson(r, func(at time.Duration) {
			obj++
			ev = append(ev, Event{At: at, Kind: alloc, Object: obj, Size: size()})
			if r.Lifetime > 0 {
				if life := time.Duration(rng.ExpFloat64() * float64(r.Lifetime)); at+life < end {
					ev = append(ev, Event{At: at + life, Kind: free, Object: obj})
				}
			}
		})
	}
	bs := s.Work.BPFSize
	jit(s.Work.BPF, EvBPFLoad, EvBPFFree, func() uint64 {
		v := float64(bs.Median) * math.Exp(bs.Sigma*rng.NormFloat64())
		return uint64(min(max(v, float64(bs.Min)), float64(bs.Max)))
	})
	page := func() uint64 { return 4096 }
	jit(s.Work.Ftrace, EvFtraceAlloc, EvFtraceFree, page)
	jit(s.Work.Kprobes, EvKprobeAlloc, EvKprobeFree, page)
	return sortByTime(ev)
}

// sortByTime orders events by time, keeping generation order among equal
// times (a stable sort), in O(n log n): an unstable sort of positions by
// (time, position). sort.SliceStable's in-place merging is O(n log² n) and
// was a seventh of a run with 72k BPF programs an hour.
func sortByTime(ev []Event) []Event {
	idx := make([]int32, len(ev))
	for i := range idx {
		idx[i] = int32(i)
	}
	slices.SortFunc(idx, func(a, b int32) int {
		if c := cmp.Compare(ev[a].At, ev[b].At); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	out := make([]Event, len(ev))
	for i, j := range idx {
		out[i] = ev[j]
	}
	return out
}
