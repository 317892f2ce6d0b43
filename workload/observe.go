package workload

import (
	"maps"
	"slices"
	"time"

	"github.com/ptlab/ptlab/kernel"
)

// Observer watches a run from outside the kernel: it is told the time, every
// TLB invalidation the kernel broadcasts, and at each sample point it may
// look at the tables and the loaded objects (read only). What it reports is
// described by typed columns, so reports and CSV files list them without
// knowing the observer.
type Observer interface {
	// Columns are the metrics the observer reports, in a fixed order.
	Columns() []Column
	// Start is called once, after boot and before the first event.
	Start(v *View) error
	// TLBI is called for every TLB invalidation broadcast, at simulated time at.
	TLBI(at time.Duration, op kernel.TLBIOp)
	// Sample writes one value per column for the interval ending at v.At.
	Sample(v *View, out []float64) error
	// Final writes the run's summary value per column (a time average or a
	// total, as the column says).
	Final(out []float64)
	// Notes are lines any output of the values must show: what is assumed,
	// what is scaled.
	Notes() []string
}

// Column describes one observed metric.
type Column struct {
	Key   string `json:"key"`   // CSV column and JSON name, e.g. "n1_dtlb_l2_mpka"
	Group string `json:"group"` // what it belongs to, e.g. "Neoverse N1"
	Label string `json:"label"` // report row label, e.g. "dTLB L2 misses /1k"
	Unit  string `json:"unit,omitempty"`
	// Digits after the decimal point in text output (-1: an SI-scaled value).
	Digits int `json:"digits"`
	// Explain says what the value is (ptlab explain, the HTML report's
	// hover text); Better is "lower", "higher" or "" (neither), the
	// direction the comparison's verdict counts as an improvement.
	Explain string `json:"explain"`
	Better  string `json:"better,omitempty"`
}

// View is what an observer sees at a sample point.
type View struct {
	At      time.Duration
	Kernel  *kernel.Kernel    // read only
	Modules []*kernel.Module  // loaded modules
	JIT     []*kernel.JITText // live JIT'ed text (BPF, ftrace, kprobes)
	// Stores and TLBIs count descriptor stores and invalidation broadcasts
	// since the previous sample point: zero means the shape did not change.
	Stores, TLBIs uint64
	Index         int // sample number
}

// observingCPU is the plain CPU of a run, counting descriptor stores and
// passing every TLBI to the observers. It keeps pgtable's single-threaded
// fast paths (it embeds the plain CPU's direct door).
type observingCPU struct {
	*kernel.PlainCPU
	obs           []Observer
	at            time.Duration
	stores, tlbis uint64
}

func (c *observingCPU) Store(_ uint64, p *uint64, v uint64) {
	c.stores++
	*p = v
}

func (c *observingCPU) TLBI(op kernel.TLBIOp) {
	c.tlbis++
	for _, o := range c.obs {
		o.TLBI(c.at, op)
	}
}

// observed is the observers' side of one run: columns, values per sample,
// the final summary.
type observed struct {
	obs    []Observer
	cols   []Column
	offs   []int
	view   View
	cpu    *observingCPU
	sorted []*kernel.Module
}

func newObserved(obs []Observer) *observed {
	o := &observed{obs: obs}
	for _, ob := range obs {
		o.offs = append(o.offs, len(o.cols))
		o.cols = append(o.cols, ob.Columns()...)
	}
	return o
}

func (o *observed) start(k *kernel.Kernel, c *observingCPU) error {
	o.cpu = c
	o.view = View{Kernel: k}
	for _, ob := range o.obs {
		if err := ob.Start(&o.view); err != nil {
			return err
		}
	}
	return nil
}

// sample fills the values of every observer at time at.
func (o *observed) sample(at time.Duration, loaded []*kernel.Module, jit map[int]*kernel.JITText) ([]float64, error) {
	v := &o.view
	v.At = at
	v.Modules = v.Modules[:0]
	for _, m := range loaded {
		if m != nil {
			v.Modules = append(v.Modules, m)
		}
	}
	// Map order is random: list JIT text by object number for determinism.
	v.JIT = v.JIT[:0]
	for _, i := range slices.Sorted(maps.Keys(jit)) {
		v.JIT = append(v.JIT, jit[i])
	}
	v.Stores, v.TLBIs = o.cpu.stores, o.cpu.tlbis
	o.cpu.stores, o.cpu.tlbis = 0, 0
	out := make([]float64, len(o.cols))
	for i, ob := range o.obs {
		if err := ob.Sample(v, out[o.offs[i]:o.offs[i]+len(ob.Columns())]); err != nil {
			return nil, err
		}
	}
	v.Index++
	return out, nil
}

func (o *observed) finish(r *Result) {
	r.ObservedColumns = o.cols
	r.ObservedFinal = make([]float64, len(o.cols))
	for i, ob := range o.obs {
		ob.Final(r.ObservedFinal[o.offs[i] : o.offs[i]+len(ob.Columns())])
		r.ObservedNotes = append(r.ObservedNotes, ob.Notes()...)
	}
}
