package workload

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ptlab/ptlab/kernel"
)

func TestDefaultScenario(t *testing.T) {
	s, err := DefaultScenario()
	if err != nil {
		t.Fatal(err)
	}
	if s.Machine != "bbml2-server" || time.Duration(s.Work.Duration) != time.Hour || len(s.Presets) != 5 || s.Work.Modules != "server" {
		t.Errorf("%+v", s)
	}
	cfg, err := s.MachineConfig("collapse")
	if err != nil || cfg.RAM[0].Size != 16<<30 || cfg.Policy.Collapse != kernel.CollapseGeneral {
		t.Errorf("config %+v %v", cfg, err)
	}
}

func TestScenarioErrors(t *testing.T) {
	for name, body := range map[string]string{
		"bad.yaml":    "machine: nowhere\n",
		"preset.yaml": "presets: [mainline, magic]\n",
		"field.yaml":  "workload:\n  modules: server\n  speed: 3\n",
		"dur.yaml":    "workload:\n  duration: forever\n",
		"rate.yaml":   "workload:\n  bpf: {per_hour: -1}\n",
		"x.json":      `{"seed": "one"}`,
	} {
		if _, err := ParseScenario([]byte(body), name); !errors.Is(err, ErrScenario) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The same seed gives the same timeline; a different seed a different one;
// events are in time order and every free follows its allocation.
func TestTimelineDeterministic(t *testing.T) {
	s, _ := DefaultScenario()
	a, b := s.Timeline(150), s.Timeline(150)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("timeline not deterministic")
	}
	s.Seed = 2
	if reflect.DeepEqual(a, s.Timeline(150)) {
		t.Fatal("seed has no effect")
	}
	seen := map[int]bool{}
	for i, e := range a {
		if i > 0 && e.At < a[i-1].At {
			t.Fatal("not sorted")
		}
		switch e.Kind {
		case EvBPFLoad, EvFtraceAlloc, EvKprobeAlloc:
			seen[e.Object] = true
		case EvBPFFree, EvFtraceFree, EvKprobeFree:
			if !seen[e.Object] {
				t.Fatalf("free of object %d before its allocation", e.Object)
			}
		}
	}
	// 360 BPF programs per hour: the count is Poisson, within a few sigma.
	n := 0
	for _, e := range a {
		if e.Kind == EvBPFLoad {
			n++
		}
	}
	if n < 300 || n > 420 {
		t.Errorf("%d BPF loads in an hour at 360/h", n)
	}
}

func synthModules(n int) []kernel.ModuleSpec {
	var mods []kernel.ModuleSpec
	for i := 0; i < n; i++ {
		var m kernel.ModuleSpec
		m.Name = "synth"
		m.Size[kernel.ModText] = uint64(8+i*13%200) << 10
		m.Size[kernel.ModRodata] = uint64(4+i%40) << 10
		m.Size[kernel.ModData] = uint64(4+i%16) << 10
		m.Size[kernel.ModInitText] = 4 << 10
		mods = append(mods, m)
	}
	return mods
}

// Every preset runs the same timeline to the end; the ROX cache presets
// hold module text in chunks; collapse leaves fewer PTE-mapped bytes in the
// linear map than rox-cache; runs are deterministic.
func TestRunPresets(t *testing.T) {
	s, _ := DefaultScenario()
	s.Config = NewConfigOverride([]byte("ram: [{base: 0x80000000, size: 4G}]"), "test.yaml")
	s.Work.Duration = Duration(10 * time.Minute)
	mods := synthModules(40)
	res := map[string]*Result{}
	for _, p := range s.Presets {
		r, err := Run(s, p, mods, nil)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(r.Failed) != 0 {
			t.Errorf("%s: failed operations %v", p, r.Failed)
		}
		if len(r.Series) != 11 {
			t.Errorf("%s: %d samples, want 11", p, len(r.Series))
		}
		res[p] = r
	}
	if res["mainline"].Cache.Chunks != 0 || res["rox-cache"].Cache.Chunks == 0 {
		t.Errorf("chunks: mainline %d, rox-cache %d", res["mainline"].Cache.Chunks, res["rox-cache"].Cache.Chunks)
	}
	pte := func(p string) uint64 { return res[p].Final.Regions[0].LeafBytes[4] }
	if pte("collapse") >= pte("rox-cache") {
		t.Errorf("linear map 4K bytes: collapse %d, rox-cache %d", pte("collapse"), pte("rox-cache"))
	}
	again, _ := Run(s, "collapse", mods, nil)
	again.WallNS, res["collapse"].WallNS = 0, 0
	if !reflect.DeepEqual(again.Final, res["collapse"].Final) {
		t.Error("run not deterministic")
	}
}

// The example scenarios in examples/ parse.
func TestExampleScenarios(t *testing.T) {
	for _, f := range []string{"load-only.yaml", "all-modules.yaml", "n1-server.yaml", "n1-1tib.yaml"} {
		if _, err := LoadScenario("../examples/" + f); err != nil {
			t.Error(err)
		}
	}
}
