package explore

import (
	"testing"
	"time"

	"github.com/ptlab/ptlab/check"
	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/workload"
)

// A short timeline under every preset is checked throughout; a bug that
// leaves dead text executable is caught after the event that causes it.
func TestRunChecked(t *testing.T) {
	s, err := workload.DefaultScenario()
	if err != nil {
		t.Fatal(err)
	}
	s.Work.Modules = "none"
	s.Work.Duration = workload.Duration(10 * time.Minute)
	s.Work.BPF.PerHour = 600
	s.Work.Kprobes.PerHour = 0 // mainline's pre-6.18 kprobe page breaks W^X across aliases (see README)
	for _, p := range kernel.PresetNames() {
		r, err := RunChecked(s, p, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Err != nil || r.Steps == 0 || r.Events == 0 {
			t.Errorf("%s: %v (%d events, %d steps)", p, r.Err, r.Events, r.Steps)
		}
	}
}

// With kprobe pages under mainline the check finds what pre-6.18 arm64 did:
// alloc_insn_page mapped the page ROX through vmalloc and left its linear
// alias writable (arch/arm64/kernel/probes/kprobes.c gained set_memory_rox
// in the BBML2 series).
func TestRunCheckedFindsKprobeAlias(t *testing.T) {
	s, err := workload.DefaultScenario()
	if err != nil {
		t.Fatal(err)
	}
	s.Work.Modules = "none"
	s.Work.Duration = workload.Duration(30 * time.Minute)
	s.Work.Kprobes.PerHour = 60
	r, err := RunChecked(s, "mainline", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Err == nil || r.Err.Kind != check.KindWX {
		t.Fatalf("got %v", r.Err)
	}
}
