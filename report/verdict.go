package report

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/ptlab/ptlab/kernel"
	"github.com/ptlab/ptlab/workload"
)

// Baseline is the preset the verdict compares the others with.
const Baseline = "mainline"

// Change is one metric's move from the baseline to a preset.
type Change struct {
	Key      string  `json:"key"`
	Label    string  `json:"label"`
	From     float64 `json:"from"`
	To       float64 `json:"to"`
	Relative Ratio   `json:"relative"` // (To-From)/From; ±Inf when From is 0
	Better   bool    `json:"better"`
}

// PresetVerdict is what one preset does against the baseline.
type PresetVerdict struct {
	Preset    string   `json:"preset"`
	Against   string   `json:"against"`
	Recovers  []Change `json:"recovers"` // metrics that moved the good way, in table order
	Costs     []Change `json:"costs"`    // metrics that moved the bad way, in table order
	Relaxes   []string `json:"relaxes"`  // kernel invariants the policy gives up
	Refused   int      `json:"refused"`
	Sentences []string `json:"sentences"`
}

// Ratio is a relative change; infinite ones (from zero) encode as null.
type Ratio float64

func (r Ratio) MarshalJSON() ([]byte, error) {
	if math.IsInf(float64(r), 0) || math.IsNaN(float64(r)) {
		return []byte("null"), nil
	}
	return []byte(strconv.FormatFloat(float64(r), 'g', 6, 64)), nil
}

// Verdict is the comparison said in sentences, computed from the numbers.
type Verdict struct {
	Baseline  string          `json:"baseline"`
	Presets   []PresetVerdict `json:"presets"`
	Summary   []string        `json:"summary"` // who is best at what
	Sentences []string        `json:"sentences"`
}

// significant is the smallest relative change the verdict mentions.
const significant = 0.01

// Relaxed lists the invariants the kernel keeps that a policy gives up,
// derived from its knobs.
func Relaxed(p kernel.Policy) []string {
	var out []string
	if p.Alias == kernel.AliasNoExecmemSplit {
		out = append(out, "the linear alias of a ROX-cache page no longer follows its vmalloc mapping's write permission (change_memory_common mirrors every set_memory_ro/rw onto the alias under rodata_full): writes through page_address() of module memory made writable would fault")
	}
	if p.Collapse == kernel.CollapseRFCv1 {
		out = append(out, "a folded PTE table is freed under pgtable_split_lock only, while the pageattr walk and ptdump read tables without it: a table can be freed under a lockless walker (ptlab check --preset rfc-v1)")
	}
	return out
}

func changeText(m *Metric, sizes [5]string, c Change) string {
	from, to := Format(m, c.From), Format(m, c.To)
	if from == "-" {
		from = "0"
	}
	if to == "-" {
		to = "0"
	}
	rel := ""
	switch {
	case math.IsInf(float64(c.Relative), 0):
	case c.Relative == -1:
		rel = " (all of it)"
	default:
		rel = fmt.Sprintf(" (%+.0f%%)", 100*c.Relative)
	}
	return fmt.Sprintf("%s %s → %s%s", m.LabelFor(sizes), from, to, rel)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// listText joins up to max items and says how many more there are.
func listText(items []string, max int) string {
	if len(items) > max {
		items = append(items[:max:max], fmt.Sprintf("%d more", len(items)-max))
	}
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

// ComputeVerdict compares every preset with the baseline (mainline, or the
// first result) on every metric that has a better direction, and says which
// preset does best on each.
func ComputeVerdict(results []*workload.Result) *Verdict {
	v := &Verdict{Presets: []PresetVerdict{}, Summary: []string{}, Sentences: []string{}}
	if len(results) == 0 {
		return v
	}
	base := results[0]
	for _, r := range results {
		if r.Preset == Baseline {
			base = r
		}
	}
	v.Baseline = base.Preset
	sizes := leafSizes(results)
	ms := MetricsFor(results)
	byKey := map[string]*Metric{}
	for i := range ms {
		byKey[ms[i].Key] = &ms[i]
	}
	for _, r := range results {
		if r == base {
			continue
		}
		pv := PresetVerdict{Preset: r.Preset, Against: base.Preset, Recovers: []Change{}, Costs: []Change{}, Relaxes: append([]string{}, Relaxed(r.Config.Policy)...), Refused: r.Refused, Sentences: []string{}}
		for i := range ms {
			m := &ms[i]
			if m.Better == Neutral || m.Volatile {
				continue
			}
			from, to := m.Value(base), m.Value(r)
			if from == to {
				continue
			}
			rel := math.Inf(1)
			if from != 0 {
				rel = (to - from) / math.Abs(from)
			} else if to < 0 {
				rel = math.Inf(-1)
			}
			if math.Abs(rel) < significant {
				continue
			}
			c := Change{Key: m.Key, Label: m.LabelFor(sizes), From: from, To: to, Relative: Ratio(rel), Better: (to < from) == (m.Better == Lower)}
			if c.Better {
				pv.Recovers = append(pv.Recovers, c)
			} else {
				pv.Costs = append(pv.Costs, c)
			}
		}
		// Rows repeated per qualifier (one per CPU model) are said once,
		// for the first qualifier, with how many others moved the same way.
		qualified := map[string]int{} // label -> rows with that label
		for i := range ms {
			if ms[i].Qualifier != "" {
				qualified[ms[i].Label]++
			}
		}
		texts := func(cs []Change) []string {
			var out []string
			said := map[string]bool{}
			for _, c := range cs {
				m := byKey[c.Key]
				if m.Qualifier == "" {
					out = append(out, changeText(m, sizes, c))
					continue
				}
				if said[m.Label] {
					continue
				}
				said[m.Label] = true
				same := 0
				for _, d := range cs {
					same += btoi(byKey[d.Key].Qualifier != "" && byKey[d.Key].Label == m.Label)
				}
				t := changeText(m, sizes, c)
				if n := qualified[m.Label]; n > 1 {
					t += fmt.Sprintf(" [%d of %d alike]", same, n)
				}
				out = append(out, t)
			}
			return out
		}
		s := fmt.Sprintf("%s against %s: ", r.Preset, base.Preset)
		switch {
		case len(pv.Recovers) == 0 && len(pv.Costs) == 0:
			s += "no measurable difference."
		case len(pv.Recovers) == 0:
			s += "recovers nothing; "
		default:
			s += "recovers " + listText(texts(pv.Recovers), 12) + "; "
		}
		if len(pv.Costs) > 0 {
			s += "costs " + listText(texts(pv.Costs), 12) + "."
		} else if len(pv.Recovers) > 0 {
			s += "costs nothing measured."
		}
		pv.Sentences = append(pv.Sentences, s)
		if pv.Refused > 0 {
			pv.Sentences = append(pv.Sentences, fmt.Sprintf("%s refused %d operations of the workload (%s did %d): its numbers cover less work.", r.Preset, pv.Refused, base.Preset, base.Refused))
		}
		if len(pv.Relaxes) == 0 {
			pv.Sentences = append(pv.Sentences, fmt.Sprintf("%s keeps every invariant mainline keeps.", r.Preset))
		} else {
			pv.Sentences = append(pv.Sentences, fmt.Sprintf("%s relaxes: %s.", r.Preset, strings.Join(pv.Relaxes, "; ")))
		}
		v.Presets = append(v.Presets, pv)
		v.Sentences = append(v.Sentences, pv.Sentences...)
	}
	// Who is best on each metric where the presets differ.
	best := map[string][]string{}
	var bestOrder []string
	for i := range ms {
		m := &ms[i]
		if m.Better == Neutral || m.Volatile {
			continue
		}
		vals := make([]float64, len(results))
		lo, hi := math.Inf(1), math.Inf(-1)
		for j, r := range results {
			vals[j] = m.Value(r)
			lo, hi = math.Min(lo, vals[j]), math.Max(hi, vals[j])
		}
		if lo == hi {
			continue
		}
		target := lo
		if m.Better == Higher {
			target = hi
		}
		var who []string
		baseBest := false
		for j, r := range results {
			if vals[j] == target {
				who = append(who, r.Preset)
				baseBest = baseBest || r == base
			}
		}
		if target == 0 && baseBest {
			continue // "doing nothing does none of it": not worth a line
		}
		key := strings.Join(who, ", ")
		if _, ok := best[key]; !ok {
			bestOrder = append(bestOrder, key)
		}
		val := Format(m, target)
		if val == "-" {
			val = "0"
		}
		best[key] = append(best[key], fmt.Sprintf("%s (%s)", m.LabelFor(sizes), val))
	}
	for _, who := range bestOrder {
		v.Summary = append(v.Summary, fmt.Sprintf("Best %s: %s.", listText(best[who], 5), who))
	}
	v.Sentences = append(v.Sentences, v.Summary...)
	return v
}

// WriteVerdict prints the verdict as paragraphs.
func WriteVerdict(w io.Writer, v *Verdict) error {
	if len(v.Sentences) == 0 {
		return nil
	}
	ew := &errWriter{w: w}
	ew.printf("\nVerdict (each preset against %s; computed from the numbers above):\n", v.Baseline)
	for _, p := range v.Presets {
		ew.printf("\n")
		for _, s := range p.Sentences {
			ew.printf("%s\n", wrap(s, 100, "  "))
		}
	}
	if len(v.Summary) > 0 {
		ew.printf("\n")
		for _, s := range v.Summary {
			ew.printf("%s\n", wrap(s, 100, "  "))
		}
	}
	return ew.err
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, a ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, a...)
	}
}

// wrap breaks s into lines of at most width columns, continuation lines
// indented.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	col := 0
	for i, word := range strings.Fields(s) {
		if i > 0 {
			if col+1+len([]rune(word)) > width {
				b.WriteString("\n" + indent)
				col = len(indent)
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(word)
		col += len([]rune(word))
	}
	return b.String()
}
