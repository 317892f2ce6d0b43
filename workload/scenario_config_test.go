package workload

import (
	"strings"
	"testing"

	"github.com/ptlab/ptlab/kernel"
)

// A scenario's config: is decoded over the machine as sim --config does:
// booleans turn off as well as on, and every field applies (kpti, bti, lpa2,
// config_va_bits, image, policy knobs); policies: defines a new preset from
// the knobs.
func TestScenarioConfigOverride(t *testing.T) {
	s, err := ParseScenario([]byte(`
machine: bbml2-server
config:
  kpti: true
  bti: true
  tlbi_range: false
  granule: 16K
  va_bits: 48
  config_va_bits: 52
  image: {text: 30M}
  policy: {clean_whole_area: true}
policies:
  mine: {base: rox-cache, alias: page-order}
presets: [mainline, mine]
`), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := s.MachineConfig("mine")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.KPTI || !cfg.BTI || cfg.TLBIRange || cfg.Granule != "16K" || cfg.ConfigVABits != 52 || cfg.Image.Text != 30<<20 {
		t.Errorf("override not applied: %+v", cfg)
	}
	p := cfg.Policy
	if p.Name != "mine" || !p.ROXCache || p.Alias != kernel.AliasPageOrder || !p.CleanWholeArea {
		t.Errorf("policy %+v", p)
	}
	main, _ := s.MachineConfig("mainline")
	if main.Policy.ROXCache || !main.Policy.CleanWholeArea {
		t.Errorf("mainline with the override's policy knobs: %+v", main.Policy)
	}
	for text, want := range map[string]string{
		"config: {kpti: 3}\n":                           "config:",
		"policies: {mine: {alias: sideways}}\n":         "policies.mine",
		"policies: {mainline: {}}\n":                    "policies.mainline: a preset of that name exists",
		"workload: {bpf: {lifetime: -1m}}\n":            "workload.bpf.lifetime",
		"workload: {duration: 1h, sample_every: 1ms}\n": "workload.sample_every",
	} {
		if _, err := ParseScenario([]byte(text), "bad.yaml"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", text, err, want)
		}
	}
}

// Refused operations are all counted; the list keeps the first MaxFailed.
func TestRefusedNotCapped(t *testing.T) {
	s, err := ParseScenario([]byte(`
machine: qemu-virt
presets: [mainline]
workload:
  modules: none
  duration: 10m
  bpf: {per_hour: 1500}
  bpf_size: {median: 32M, sigma: 0, min: 32M, max: 32M}
`), "refuse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(s, "mainline", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Refused <= MaxFailed || len(r.Failed) != MaxFailed {
		t.Errorf("refused %d, listed %d", r.Refused, len(r.Failed))
	}
}
