package workload

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/tlb"
)

// CostConfig configures the TLB cost model a scenario's comparison runs
// (package tlb): which CPU models, how many accesses to simulate per sample
// interval, and the access streams that stand for the kernel's work.
type CostConfig struct {
	Off bool `json:"off,omitempty" yaml:"off,omitempty"`
	// CPUs are tlb model keys (n1, a76, v2, ampereone); default all.
	CPUs []string `json:"cpus,omitempty" yaml:"cpus,omitempty"`
	// Window is the number of accesses simulated per CPU model and sample
	// interval, against the table shape of that moment; default 1000 (the
	// TLBs stay warm from one interval to the next, so the run's averages
	// rest on every window together).
	Window int `json:"window,omitempty" yaml:"window,omitempty"`
	// Streams replace the default streams (DefaultCostStreams).
	Streams []StreamConfig `json:"streams,omitempty" yaml:"streams,omitempty"`
}

// StreamConfig is one access stream.
type StreamConfig struct {
	Name string `json:"name" yaml:"name"`
	// Over is what the stream touches: "modules" (loaded module text),
	// "bpf" (live BPF JIT images), "linear" (the linear map of RAM).
	Over string `json:"over" yaml:"over"`
	// Pattern: code, uniform, zipf, pagecache (tlb.Pattern).
	Pattern string `json:"pattern" yaml:"pattern"`
	// Rate is the accesses per second (per core) the stream stands for.
	Rate float64 `json:"rate" yaml:"rate"`
	// RunLines is the mean run of sequential 64-byte lines (code, pagecache).
	RunLines float64 `json:"run_lines,omitempty" yaml:"run_lines,omitempty"`
	// ZipfS is the Zipf exponent (zipf, pagecache), > 1.
	ZipfS float64 `json:"zipf_s,omitempty" yaml:"zipf_s,omitempty"`
	// Hot are module-name prefixes whose text is fetched HotWeight times as
	// often per byte as the rest (modules).
	Hot       []string `json:"hot,omitempty" yaml:"hot,omitempty"`
	HotWeight float64  `json:"hot_weight,omitempty" yaml:"hot_weight,omitempty"`
	// Fraction of RAM the stream covers, from its start (linear; default 1).
	Fraction float64 `json:"fraction,omitempty" yaml:"fraction,omitempty"`
}

// hotModules are the networking and storage drivers and the crypto and
// checksum helpers they call: on a server, kernel time in module text goes
// mostly to the packet and block I/O paths.
var hotModules = []string{"nf_", "nft_", "nfnetlink", "ip_tables", "ip6_tables", "x_tables", "xt_", "ip6table", "iptable",
	"tun", "bridge", "8021q", "bonding", "mlx5", "mlx4", "igb", "ixgbe", "i40e", "ice", "hns3", "hclge", "hinic", "bnxt",
	"virtio", "nvme", "xfs", "ext4", "dm_", "scsi", "sd_mod", "mpt3sas", "qla2xxx", "hisi_sas", "libsas", "libcrc32c", "crc32",
	"crct10dif", "ghash", "sha", "aes", "polyval"}

// DefaultCostStreams are the streams of the default comparison. The rates
// are assumptions for one busy server core (a few hundred million
// translations per second; which share goes to module text, BPF and the
// linear map varies with the workload) — set your own in the scenario.
func DefaultCostStreams() []StreamConfig {
	return []StreamConfig{
		{Name: "module text", Over: "modules", Pattern: "code", Rate: 100e6, RunLines: 8, Hot: hotModules, HotWeight: 20},
		{Name: "BPF programs", Over: "bpf", Pattern: "code", Rate: 10e6, RunLines: 8},
		{Name: "linear map, key-value (Zipf)", Over: "linear", Pattern: "zipf", Rate: 100e6, ZipfS: 1.01},
		{Name: "linear map, page cache", Over: "linear", Pattern: "pagecache", Rate: 100e6, RunLines: 64, ZipfS: 1.01, Fraction: 0.9},
	}
}

// CostColumns are the metrics the cost model reports per CPU model; the
// report rows and CSV columns are generated from them.
var costColumns = []struct {
	key, label string
	digits     int
	explain    string
}{
	{"itlb_l1_mpka", "iTLB L1 misses /1k", 2, "Instruction fetches (module text, BPF) that miss the CPU model's L1 instruction TLB, per 1,000 fetches, averaged over the run: fewer base pages under kernel text means fewer misses."},
	{"itlb_l2_mpka", "iTLB L2 misses /1k", 3, "Instruction fetches that also miss the unified L2 TLB and need a page-table walk, per 1,000 fetches."},
	{"dtlb_l1_mpka", "dTLB L1 misses /1k", 2, "Data accesses to the linear map (the key-value and page-cache streams) that miss the L1 data TLB, per 1,000 accesses."},
	{"dtlb_l2_mpka", "dTLB L2 misses /1k", 3, "Data accesses that also miss the L2 TLB and walk the tables, per 1,000 accesses: what splitting the linear map costs the workload."},
	{"walks_per_s", "walks /s", -1, "Page-table walks per second at the streams' access rates (misses of the L2 TLB, scaled from the simulated window)."},
	{"reads_per_s", "descriptor reads /s", -1, "Descriptor loads the walks make per second (walk caches hold upper levels, so a walk reads fewer than the level count)."},
	{"walk_cycles_per_s", "walk cycles /s", -1, "CPU cycles per second spent walking page tables, at the measured cycles per walk: the time cost of smaller leaves."},
	{"tlbi_refills", "TLBI refills (total)", 0, "L2 TLB translations the kernel's TLB invalidations removed over the run, each refilled by a walk (a vmalle1is removes them all)."},
	{"tlbi_refill_cycles_per_s", "TLBI refill cycles /s", -1, "Cycles per second spent refilling translations the kernel's TLB invalidations removed: the cost of broadcast TLBIs to the running workload."},
}

type costModel struct {
	tb      *tlb.TLB
	sim     *tlb.Sim
	streams []*tlb.Stream
	last    []float64 // values of the last simulated window
	vals    []float64 // this sample's values
	sum     []float64 // sums over samples, for the averages
	refills uint64    // since the last sample
	total   uint64    // over the run
	cycles  float64   // refill cycles over the run
	// mean cycles per walk, for pricing refills
	walkCost float64
}

// CostObserver runs the TLB cost model over a run (an Observer).
type CostObserver struct {
	cfg     CostConfig
	seed    uint64
	models  []*tlb.Model
	per     []*costModel // per model; models with identical parameters share one
	uniq    []*costModel
	conf    []StreamConfig
	pats    []tlb.Pattern // conf's patterns, parsed
	cols    []Column
	mu      sync.Mutex
	prevAt  time.Duration
	samples int
	dur     time.Duration
	ranges  [][]tlb.Range // per stream
	scratch [][]tlb.Range // per stream: the next ranges, built without allocating
	// invalidations since the last sample
	flushAll             bool
	weights              map[*kernel.Module]float64 // module text weight, by loaded module
	lastLevel, allLevels []tlb.Span
}

// ScenarioObservers are the observers of a scenario's comparison: the TLB
// cost model unless the scenario turns it off.
func ScenarioObservers(s *Scenario) ([]Observer, error) {
	if s.Cost.Off {
		return nil, nil
	}
	o, err := NewCostObserver(s.Cost, s.Seed)
	if err != nil {
		return nil, err
	}
	return []Observer{o}, nil
}

// NewCostObserver checks cfg and prepares the models.
func NewCostObserver(cfg CostConfig, seed uint64) (*CostObserver, error) {
	o := &CostObserver{cfg: cfg, seed: seed}
	if o.cfg.Window <= 0 {
		o.cfg.Window = 1000
	}
	if o.cfg.Window > 10_000_000 {
		return nil, fmt.Errorf("%w: cost window %d above 10,000,000 accesses", ErrScenario, o.cfg.Window)
	}
	if len(cfg.CPUs) == 0 {
		o.models = tlb.Models()
	}
	for _, n := range cfg.CPUs {
		m, err := tlb.LookupModel(n)
		if err != nil {
			return nil, fmt.Errorf("%w: cost: %w", ErrScenario, err)
		}
		o.models = append(o.models, m)
	}
	o.conf = cfg.Streams
	if len(o.conf) == 0 {
		o.conf = DefaultCostStreams()
	}
	for _, sc := range o.conf {
		p, err := tlb.ParsePattern(sc.Pattern)
		if err != nil {
			return nil, fmt.Errorf("%w: cost stream %q: %w", ErrScenario, sc.Name, err)
		}
		o.pats = append(o.pats, p)
		switch sc.Over {
		case "modules", "bpf", "linear":
		default:
			return nil, fmt.Errorf("%w: cost stream %q: over %q (modules, bpf, linear)", ErrScenario, sc.Name, sc.Over)
		}
		bad := func(v, lo, hi float64) bool { return math.IsNaN(v) || v < lo || v > hi }
		switch {
		case bad(sc.Rate, 0, 1e12):
			return nil, fmt.Errorf("%w: cost stream %q: rate %v (0 to 1e12 per second)", ErrScenario, sc.Name, sc.Rate)
		case bad(sc.RunLines, 0, 1<<20):
			return nil, fmt.Errorf("%w: cost stream %q: run_lines %v (0 to 2^20)", ErrScenario, sc.Name, sc.RunLines)
		case bad(sc.ZipfS, 0, 10):
			return nil, fmt.Errorf("%w: cost stream %q: zipf_s %v (above 1, at most 10)", ErrScenario, sc.Name, sc.ZipfS)
		case bad(sc.HotWeight, 0, 1e6):
			return nil, fmt.Errorf("%w: cost stream %q: hot_weight %v", ErrScenario, sc.Name, sc.HotWeight)
		case bad(sc.Fraction, 0, 1):
			return nil, fmt.Errorf("%w: cost stream %q: fraction %v (0 to 1)", ErrScenario, sc.Name, sc.Fraction)
		}
	}
	for _, m := range o.models {
		for _, c := range costColumns {
			o.cols = append(o.cols, Column{Key: m.Key + "_" + c.key, Group: m.Name, Label: c.label, Digits: c.digits,
				Explain: m.Name + ": " + c.explain, Better: "lower"})
		}
	}
	o.ranges = make([][]tlb.Range, len(o.conf))
	o.scratch = make([][]tlb.Range, len(o.conf))
	return o, nil
}

func (o *CostObserver) Columns() []Column { return o.cols }

func (o *CostObserver) Start(v *View) error {
	o.per, o.uniq = nil, nil
	n := len(costColumns)
	for mi, m := range o.models {
		if j := sameHardware(o.models[:mi], m); j >= 0 {
			// Identical TLB parameters (N1's are the A76's): one simulation.
			o.per = append(o.per, o.per[j])
			continue
		}
		cm := &costModel{tb: tlb.New(m, v.Kernel.PT), sum: make([]float64, n), last: make([]float64, n), vals: make([]float64, n)}
		for i, sc := range o.conf {
			p := o.pats[i]
			k := tlb.Data
			if sc.Over != "linear" {
				k = tlb.Instr
			}
			cm.streams = append(cm.streams, &tlb.Stream{Name: sc.Name, Kind: k, Pattern: p, Rate: sc.Rate, RunLines: sc.RunLines, ZipfS: sc.ZipfS})
		}
		cm.sim = tlb.NewSim(cm.tb, o.seed^uint64(len(o.uniq)+1)*0x51ed27, cm.streams...)
		o.per = append(o.per, cm)
		o.uniq = append(o.uniq, cm)
	}
	o.prevAt, o.samples, o.dur = 0, 0, 0
	o.weights = map[*kernel.Module]float64{}
	return nil
}

// sameHardware returns the index of a model in ms whose TLB parameters equal
// m's, or -1.
func sameHardware(ms []*tlb.Model, m *tlb.Model) int {
	strip := func(x *tlb.Model) tlb.Model {
		c := *x
		c.Key, c.Name, c.Sources, c.Assumed = "", "", nil, nil
		return c
	}
	for i, x := range ms {
		if reflect.DeepEqual(strip(x), strip(m)) {
			return i
		}
	}
	return -1
}

// TLBI records an invalidation. No access is simulated between two sample
// points, so the TLBs see the interval's invalidations as one batch at the
// next sample (InvalidateBatch); the translations they remove are counted
// as refills: each is a walk when next used, and a full invalidation costs
// the whole TLB's contents.
func (o *CostObserver) TLBI(_ time.Duration, op kernel.TLBIOp) {
	switch op.Kind {
	case kernel.TLBIVMALLE1IS:
		o.flushAll = true
	case kernel.TLBIVAAE1IS:
		o.allLevels = addSpan(o.allLevels, tlb.Span{Start: op.Start, End: op.End})
	default:
		o.lastLevel = addSpan(o.lastLevel, tlb.Span{Start: op.Start, End: op.End})
	}
}

// addSpan appends s to spans, or widens the last span when s starts inside
// it or right at its end (page-by-page flushes of one range): the batch
// removes what overlaps the union of the spans, so the union is all that
// counts. Only spans within one 2^56-byte block are merged (the TLB takes
// VAs modulo 2^56), and none reaching the top of the address space (End 0).
func addSpan(spans []tlb.Span, s tlb.Span) []tlb.Span {
	if n := len(spans); n > 0 && s.Start < s.End {
		l := &spans[n-1]
		if l.Start < l.End && l.Start <= s.Start && s.Start <= l.End {
			end := max(l.End, s.End)
			if l.Start>>56 == (end-1)>>56 {
				l.End = end
				return spans
			}
		}
	}
	return append(spans, s)
}

// applyTLBIs applies the interval's invalidations to every model.
func (o *CostObserver) applyTLBIs() {
	for _, cm := range o.uniq {
		if o.flushAll {
			cm.refills += uint64(cm.tb.Flush())
		} else {
			cm.refills += uint64(cm.tb.InvalidateBatch(o.lastLevel, o.allLevels))
		}
	}
	o.flushAll, o.lastLevel, o.allLevels = false, o.lastLevel[:0], o.allLevels[:0]
}

func hot(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// streamRanges computes what each stream draws from at this moment; it
// reports whether anything changed since the last call.
func (o *CostObserver) streamRanges(v *View) bool {
	changed := false
	k := v.Kernel
	for i, sc := range o.conf {
		rs := o.scratch[i][:0]
		switch sc.Over {
		case "modules":
			for _, m := range v.Modules {
				if sz := m.Spec.Size[kernel.ModText]; sz > 0 && m.Base[kernel.ModText] != 0 {
					w, ok := o.weights[m]
					if !ok {
						w = 1.0
						if hot(m.Spec.Name, sc.Hot) && sc.HotWeight > 0 {
							w = sc.HotWeight
						}
						o.weights[m] = w
					}
					rs = append(rs, tlb.Range{Start: m.Base[kernel.ModText], Size: sz, Weight: w})
				}
			}
		case "bpf":
			for _, j := range v.JIT {
				if j.Type == kernel.ExecmemBPF {
					rs = append(rs, tlb.Range{Start: j.Addr, Size: j.Size, Weight: 1})
				}
			}
		case "linear":
			frac := sc.Fraction
			if frac <= 0 || frac > 1 {
				frac = 1
			}
			regs := k.Mem.Regions()
			var total uint64
			for _, r := range regs {
				total += r.Size
			}
			want := uint64(float64(total) * frac)
			for _, r := range regs {
				sz := min(r.Size, want)
				if sz == 0 {
					break
				}
				rs = append(rs, tlb.Range{Start: k.Lin(r.Base), Size: sz, Weight: 1})
				want -= sz
			}
		}
		if !sameRanges(rs, o.ranges[i]) {
			changed = true
			o.ranges[i], rs = rs, o.ranges[i]
		}
		o.scratch[i] = rs
	}
	return changed
}

func sameRanges(a, b []tlb.Range) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Sample simulates a window of accesses per model against the tables of this
// moment (unless nothing changed since the last window: then the last
// window's rates stand) and scales the per-access costs by the streams'
// rates.
func (o *CostObserver) Sample(v *View, out []float64) error {
	interval := (v.At - o.prevAt).Seconds()
	o.prevAt = v.At
	changed := o.streamRanges(v) || v.Stores > 0 || v.TLBIs > 0 || o.samples == 0
	o.applyTLBIs()
	// One model after the other: a window takes tens of microseconds, of
	// which a goroutine per model would spend a good share waking threads;
	// a comparison runs its presets in parallel instead (RunPresets).
	for _, cm := range o.uniq {
		if changed {
			for i, st := range cm.streams {
				st.SetRanges(o.ranges[i])
			}
			cm.sim.Reseed(uint64(v.Index))
			if o.samples == 0 {
				cm.sim.Window(o.cfg.Window) // warm the cold TLB
			}
			o.measure(cm, cm.sim.Window(o.cfg.Window))
		}
	}
	for _, cm := range o.uniq {
		vals := cm.vals
		copy(vals, cm.last)
		vals[7] = float64(cm.refills)
		refillCycles := float64(cm.refills) * cm.walkCost
		vals[8] = 0
		if interval > 0 {
			vals[8] = refillCycles / interval
		}
		cm.total += cm.refills
		cm.cycles += refillCycles
		cm.refills = 0
		if o.samples > 0 {
			for i := range vals {
				cm.sum[i] += vals[i]
			}
		}
	}
	for mi, cm := range o.per {
		copy(out[mi*len(costColumns):(mi+1)*len(costColumns)], cm.vals)
	}
	o.samples++
	o.dur = v.At
	return nil
}

// measure turns a window's counts into per-1000 and per-second values.
func (o *CostObserver) measure(cm *costModel, c [2]tlb.Counts) {
	d, in := c[tlb.Data], c[tlb.Instr]
	per1k := func(n, of uint64) float64 {
		if of == 0 {
			return 0
		}
		return 1000 * float64(n) / float64(of)
	}
	perSec := func(k tlb.Kind, f func(tlb.Counts) float64) float64 {
		if c[k].Accesses == 0 {
			return 0
		}
		return f(c[k]) / float64(c[k].Accesses) * cm.sim.Rate(k)
	}
	cm.last[0], cm.last[1] = per1k(in.L1Misses, in.Accesses), per1k(in.L2Misses, in.Accesses)
	cm.last[2], cm.last[3] = per1k(d.L1Misses, d.Accesses), per1k(d.L2Misses, d.Accesses)
	walks := func(c tlb.Counts) float64 { return float64(c.L2Misses) }
	reads := func(c tlb.Counts) float64 { return float64(c.Reads) }
	cyc := func(c tlb.Counts) float64 { return c.Cycles }
	cm.last[4] = perSec(tlb.Data, walks) + perSec(tlb.Instr, walks)
	cm.last[5] = perSec(tlb.Data, reads) + perSec(tlb.Instr, reads)
	cm.last[6] = perSec(tlb.Data, cyc) + perSec(tlb.Instr, cyc)
	if n := d.L2Misses + in.L2Misses; n > 0 {
		cm.walkCost = (d.Cycles + in.Cycles) / float64(n)
	}
}

// Final: time averages of the per-interval rates, the run's total of TLBI
// refills, and their cycles per second over the run.
func (o *CostObserver) Final(out []float64) {
	for mi, cm := range o.per {
		vals := out[mi*len(costColumns) : (mi+1)*len(costColumns)]
		n := float64(o.samples - 1)
		for i := range vals {
			if n > 0 {
				vals[i] = cm.sum[i] / n
			}
		}
		vals[7] = float64(cm.total)
		if s := o.dur.Seconds(); s > 0 {
			vals[8] = cm.cycles / s
		}
	}
}

func (o *CostObserver) Notes() []string {
	notes := []string{fmt.Sprintf("TLB cost: %d accesses simulated per CPU model and sample interval against the table shape of that moment, scaled to the streams' rates (per core):", o.cfg.Window)}
	for _, sc := range o.conf {
		notes = append(notes, fmt.Sprintf("  %s: %s over %s, %s/s", sc.Name, sc.Pattern, sc.Over, SI(sc.Rate)))
	}
	notes = append(notes, "  values: time averages over the run; TLBI refills: L2 TLB translations the run's invalidations removed, priced at the window's mean cycles per walk")
	for _, m := range o.models {
		notes = append(notes, fmt.Sprintf("  %s assumed: %s", m.Name, strings.Join(m.Assumed, "; ")))
	}
	return notes
}

// SI formats a rate with an SI prefix: 1.5G, 230M, 12k.
func SI(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e12:
		return fmt.Sprintf("%.3gT", v/1e12)
	case a >= 1e9:
		return fmt.Sprintf("%.3gG", v/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.3g", v)
}
