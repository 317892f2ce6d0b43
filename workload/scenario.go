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
	"io"
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
	Name    string `json:"name" yaml:"name"`
	Seed    uint64 `json:"seed" yaml:"seed"`
	Machine string `json:"machine" yaml:"machine"`
	// Config overrides fields of the machine, decoded over it exactly as
	// "sim --config" decodes a file (kernel.DecodeConfig); its policy
	// fields override every preset's knobs.
	Config  *ConfigOverride `json:"config,omitempty" yaml:"config,omitempty"`
	Presets []string        `json:"presets" yaml:"presets"`
	// Policies defines policies by name from the existing knobs, on top
	// of a preset ("base", default mainline); presets may name them.
	Policies map[string]PolicyDef `json:"policies,omitempty" yaml:"policies,omitempty"`
	// Import names a kernel_page_tables dump whose linear map (leaf sizes,
	// permissions, RAM) replaces the machine's boot-time one.
	Import string   `json:"import,omitempty" yaml:"import,omitempty"`
	Work   Workload `json:"workload" yaml:"workload"`
	// Cost configures the TLB cost model (workload/cost.go).
	Cost CostConfig `json:"cost,omitempty" yaml:"cost,omitempty"`

	// CaptureDump keeps each run's final kernel_page_tables dump in
	// Result.Dump (compare --html shows heat maps and diffs of them).
	CaptureDump bool `json:"-" yaml:"-"`

	extra []*ConfigOverride // compare --config, --kernel
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

// Limits of a scenario: beyond them a run would take hours or gigabytes
// for nothing a real machine shows.
const (
	// MaxSamples bounds the time series (duration / sample_every + 1).
	MaxSamples = 100_000
	// MaxJITSize bounds one JIT image: BPF programs are limited to 1M
	// instructions (BPF_COMPLEXITY_LIMIT_INSNS), a few MiB of arm64 code.
	MaxJITSize = 64 << 20
	// MaxEvents bounds the events of a timeline.
	MaxEvents = 10_000_000
)

func (s *Scenario) validate() error {
	if s.Machine == "" {
		s.Machine = "bbml2-server"
	}
	if _, err := kernel.Machine(s.Machine); err != nil {
		return fmt.Errorf("%w: machine: %w", ErrScenario, err)
	}
	for name, def := range s.Policies {
		if _, ok := kernel.Presets[name]; ok {
			return fmt.Errorf("%w: policies.%s: a preset of that name exists", ErrScenario, name)
		}
		if _, err := def.policy(name); err != nil {
			return fmt.Errorf("%w: policies.%s: %w", ErrScenario, name, err)
		}
	}
	if len(s.Presets) == 0 {
		s.Presets = kernel.PresetNames()
	}
	for _, p := range s.Presets {
		if _, err := s.Policy(p); err != nil {
			return fmt.Errorf("%w: presets: %w", ErrScenario, err)
		}
	}
	if s.Config != nil {
		base, err := kernel.Machine(s.Machine)
		if err != nil {
			return fmt.Errorf("%w: machine: %w", ErrScenario, err)
		}
		if _, err := s.Config.over(base); err != nil {
			return fmt.Errorf("%w: config: %w", ErrScenario, err)
		}
	}
	w := &s.Work
	if w.Duration < 0 || time.Duration(w.Duration) > 24*365*time.Hour {
		return fmt.Errorf("%w: workload.duration %v: want 0 to 8760h", ErrScenario, time.Duration(w.Duration))
	}
	hours := time.Duration(w.Duration).Hours()
	events := 0.0
	for _, r := range []struct {
		name string
		r    Rate
	}{{"module_reload", w.ModuleReload}, {"bpf", w.BPF}, {"ftrace", w.Ftrace}, {"kprobes", w.Kprobes}} {
		if r.r.PerHour < 0 || math.IsNaN(r.r.PerHour) || math.IsInf(r.r.PerHour, 0) || r.r.PerHour > 1e7 {
			return fmt.Errorf("%w: workload.%s.per_hour %v: want 0 to 1e7", ErrScenario, r.name, r.r.PerHour)
		}
		if r.r.Lifetime < 0 {
			return fmt.Errorf("%w: workload.%s.lifetime %v: negative", ErrScenario, r.name, time.Duration(r.r.Lifetime))
		}
		events += 2 * r.r.PerHour * hours
	}
	if events > MaxEvents {
		return fmt.Errorf("%w: workload: about %.0f events (rates × duration); at most %d", ErrScenario, events, MaxEvents)
	}
	if w.SampleEvery < 0 {
		return fmt.Errorf("%w: workload.sample_every %v: negative", ErrScenario, time.Duration(w.SampleEvery))
	}
	if w.SampleEvery == 0 {
		w.SampleEvery = Duration(time.Minute)
	}
	if n := time.Duration(w.Duration) / time.Duration(w.SampleEvery); n > MaxSamples {
		return fmt.Errorf("%w: workload.sample_every %v: %d samples over %v; at most %d (sample_every >= %v)", ErrScenario,
			time.Duration(w.SampleEvery), n, time.Duration(w.Duration), MaxSamples, time.Duration(w.Duration)/MaxSamples+1)
	}
	if w.BPFSize.Median == 0 {
		w.BPFSize = SizeDist{Median: 4 << 10, Sigma: 1, Min: 256, Max: 512 << 10}
	}
	if w.BPFSize.Min == 0 {
		w.BPFSize.Min = 64
	}
	if w.BPFSize.Max == 0 {
		w.BPFSize.Max = max(w.BPFSize.Median, 512<<10)
	}
	if w.BPFSize.Sigma < 0 || math.IsNaN(w.BPFSize.Sigma) || w.BPFSize.Sigma > 10 {
		return fmt.Errorf("%w: workload.bpf_size.sigma %v: want 0 to 10", ErrScenario, w.BPFSize.Sigma)
	}
	for _, f := range []struct {
		name string
		v    kernel.Size
	}{{"median", w.BPFSize.Median}, {"min", w.BPFSize.Min}, {"max", w.BPFSize.Max}} {
		if f.v > MaxJITSize {
			return fmt.Errorf("%w: workload.bpf_size.%s %d: a JIT image is at most %d MiB (BPF_COMPLEXITY_LIMIT_INSNS)", ErrScenario, f.name, f.v, MaxJITSize>>20)
		}
	}
	if w.BPFSize.Max < w.BPFSize.Min {
		return fmt.Errorf("%w: workload.bpf_size.max %d below min %d", ErrScenario, w.BPFSize.Max, w.BPFSize.Min)
	}
	if w.Modules == "" {
		w.Modules = "server"
	}
	return nil
}

// ConfigOverride is a scenario's config: section, kept as text so it is
// decoded over the machine by the same code as a --config file.
type ConfigOverride struct {
	text []byte
	json bool
}

// NewConfigOverride makes an override from YAML (or JSON, when name ends in
// .json) text, as "compare --config" reads it from a file.
func NewConfigOverride(text []byte, name string) *ConfigOverride {
	return &ConfigOverride{text: text, json: strings.EqualFold(filepath.Ext(name), ".json")}
}

func (o *ConfigOverride) UnmarshalYAML(n *yaml.Node) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	o.text, o.json = b, false
	return nil
}

func (o *ConfigOverride) UnmarshalJSON(b []byte) error {
	o.text, o.json = append([]byte(nil), b...), true
	return nil
}

func (o ConfigOverride) MarshalJSON() ([]byte, error) {
	if o.json {
		return o.text, nil
	}
	var v any
	if err := yaml.Unmarshal(o.text, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func (o *ConfigOverride) over(base kernel.Config) (kernel.Config, error) {
	name := "config.yaml"
	if o.json {
		name = "config.json"
	}
	c, err := kernel.DecodeConfig(o.text, name, base)
	if err != nil {
		// The name is made up; say only what is wrong.
		return c, errors.New(strings.TrimPrefix(err.Error(), name+": "))
	}
	return c, nil
}

// PolicyDef is a scenario-defined policy: a preset's knobs ("base",
// default mainline) with the fields given replacing them.
type PolicyDef struct {
	text []byte
	json bool
}

func (p *PolicyDef) UnmarshalYAML(n *yaml.Node) error {
	b, err := yaml.Marshal(n)
	p.text, p.json = b, false
	return err
}

func (p *PolicyDef) UnmarshalJSON(b []byte) error {
	p.text, p.json = append([]byte(nil), b...), true
	return nil
}

func (p PolicyDef) MarshalJSON() ([]byte, error) {
	if p.json {
		return p.text, nil
	}
	var v any
	if err := yaml.Unmarshal(p.text, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

type policyDefFields struct {
	Base          string `json:"base" yaml:"base"`
	kernel.Policy `yaml:",inline"`
}

// policy decodes the definition over its base preset.
func (p *PolicyDef) policy(name string) (kernel.Policy, error) {
	var f policyDefFields
	decode := func() error {
		if p.json {
			dec := json.NewDecoder(bytes.NewReader(p.text))
			dec.DisallowUnknownFields()
			return dec.Decode(&f)
		}
		dec := yaml.NewDecoder(bytes.NewReader(p.text))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return nil
	}
	if err := decode(); err != nil {
		return kernel.Policy{}, err
	}
	if f.Base == "" {
		f.Base = "mainline"
	}
	base, err := kernel.Preset(f.Base)
	if err != nil {
		return base, fmt.Errorf("base: %w", err)
	}
	f.Policy = base
	if err := decode(); err != nil {
		return kernel.Policy{}, err
	}
	f.Policy.Name = name
	cfg := kernel.Config{Policy: f.Policy}
	if err := cfg.ValidatePolicy(); err != nil {
		return f.Policy, err
	}
	return f.Policy, nil
}

// Policy returns a preset or a policy the scenario defines.
func (s *Scenario) Policy(name string) (kernel.Policy, error) {
	if def, ok := s.Policies[name]; ok {
		return def.policy(name)
	}
	return kernel.Preset(name)
}

// MachineConfig is the kernel configuration the scenario runs with a
// preset: the machine, the policy, then the config: override decoded over
// both (kernel.DecodeConfig, as sim --config).
func (s *Scenario) MachineConfig(preset string) (kernel.Config, error) {
	cfg, err := kernel.Machine(s.Machine)
	if err != nil {
		return cfg, err
	}
	if cfg.Policy, err = s.Policy(preset); err != nil {
		return cfg, err
	}
	for _, o := range append([]*ConfigOverride{s.Config}, s.extra...) {
		if o == nil {
			continue
		}
		if cfg, err = o.over(cfg); err != nil {
			return cfg, fmt.Errorf("%w: config: %w", ErrScenario, err)
		}
	}
	return cfg, cfg.Validate()
}

// Override adds a configuration decoded after the scenario's own config:
// (compare --config, --kernel).
func (s *Scenario) Override(o *ConfigOverride) { s.extra = append(s.extra, o) }

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
