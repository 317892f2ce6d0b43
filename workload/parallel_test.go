package workload

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ptlab/ptlab/kernel"
)

// Presets run in parallel give the same results, byte for byte once
// serialised (wall time aside), as the same presets run one after another;
// progress reaches the total of all presets' events.
func TestRunPresetsParallelMatchesSerial(t *testing.T) {
	s, _ := DefaultScenario()
	s.Config = NewConfigOverride([]byte("ram: [{base: 0x80000000, size: 4G}]"), "test.yaml")
	s.Work.Duration = Duration(10 * time.Minute)
	s.Work.BPF.PerHour = 3600
	mods := synthModules(30)
	encode := func(rs []*Result) []byte {
		for _, r := range rs {
			r.WallNS = 0
		}
		b, err := json.Marshal(rs)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	serial, err := RunPresets(s, s.Presets, mods, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	var last, total int
	par, err := RunPresets(s, s.Presets, mods, 3, func(d, n int) { last, total = d, n })
	if err != nil {
		t.Fatal(err)
	}
	if a, b := encode(serial), encode(par); !bytes.Equal(a, b) {
		t.Fatalf("parallel results differ from serial (%d vs %d bytes)", len(b), len(a))
	}
	for i, r := range par {
		if r.Preset != s.Presets[i] {
			t.Errorf("result %d is %s, want %s", i, r.Preset, s.Presets[i])
		}
	}
	if want := len(s.Presets) * par[0].Events; last != want || total != want {
		t.Errorf("progress ended at %d/%d, want %d/%d", last, total, want, want)
	}
}

// With failing presets the error is the first failing one's in preset
// order, whatever order the goroutines finished in.
func TestRunPresetsFirstErrorInOrder(t *testing.T) {
	s, _ := DefaultScenario()
	s.Work.Duration = Duration(time.Minute)
	for _, jobs := range []int{1, 4} {
		_, err := RunPresets(s, []string{"mainline", "nope-a", "rox-cache", "nope-b"}, synthModules(2), jobs, nil)
		if err == nil || !strings.Contains(err.Error(), "preset nope-a") || !errors.Is(err, kernel.ErrConfig) {
			t.Errorf("jobs %d: %v", jobs, err)
		}
	}
}
