package report

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/ptlab/ptlab/workload"
)

// SchemaID names the layout of "ptlab compare --json"; it changes when a
// field changes meaning or goes away (new metrics only add keys).
const SchemaID = "https://github.com/ptlab/ptlab/schema/compare-v1.json"

// JSONReport is what "ptlab compare --json" prints.
type JSONReport struct {
	Schema   string       `json:"$schema"`
	Scenario string       `json:"scenario"`
	Seed     uint64       `json:"seed"`
	Duration string       `json:"duration"`
	Modules  int          `json:"modules"`
	Metrics  []MetricInfo `json:"metrics"`
	Presets  []PresetJSON `json:"presets"`
	Verdict  *Verdict     `json:"verdict"`
	Check    any          `json:"check,omitempty"`
}

// MetricInfo is a Metric's description, for scripts.
type MetricInfo struct {
	Key     string `json:"key"`
	Label   string `json:"label"`
	Group   string `json:"group"`
	Unit    Unit   `json:"unit"`
	Better  string `json:"better"`
	Series  bool   `json:"series"`
	Explain string `json:"explain"`
}

// PresetJSON is one preset's run.
type PresetJSON struct {
	Preset  string             `json:"preset"`
	Machine string             `json:"machine"`
	Values  map[string]float64 `json:"values"`
	Series  []SeriesPoint      `json:"series"`
	Refused int                `json:"refused"`
	Failed  []string           `json:"failed"`
}

// SeriesPoint is the metrics at one time of the run.
type SeriesPoint struct {
	TSeconds float64            `json:"t_seconds"`
	Values   map[string]float64 `json:"values"`
}

// MetricInfos describes every registered metric.
func MetricInfos(results []*workload.Result) []MetricInfo {
	return metricInfos(results, MetricsFor(results))
}

func metricInfos(results []*workload.Result, ms []Metric) []MetricInfo {
	sizes := leafSizes(results)
	var out []MetricInfo
	for _, m := range ms {
		out = append(out, MetricInfo{Key: m.Key, Label: strings.TrimSpace(m.LabelFor(sizes)), Group: m.Group, Unit: m.Unit,
			Better: m.Better.String(), Series: m.Sample != nil, Explain: m.Explain})
	}
	return out
}

// BuildJSON assembles the --json report; with timed, the values also hold
// the volatile rows (wall_ns).
func BuildJSON(s *workload.Scenario, modules int, results []*workload.Result, v *Verdict, timed bool) *JSONReport {
	rep := &JSONReport{Schema: SchemaID, Scenario: s.Name, Seed: s.Seed, Duration: time.Duration(s.Work.Duration).String(),
		Modules: modules, Metrics: MetricInfos(results), Presets: []PresetJSON{}, Verdict: v}
	ms := MetricsFor(results)
	if timed {
		ms = MetricsTimed(results)
		rep.Metrics = metricInfos(results, ms)
	}
	for _, r := range results {
		p := PresetJSON{Preset: r.Preset, Machine: Machine(r.Config), Values: map[string]float64{}, Series: []SeriesPoint{},
			Refused: r.Refused, Failed: append([]string{}, r.Failed...)}
		for i := range ms {
			p.Values[ms[i].Key] = ms[i].Value(r)
		}
		for i := range r.Series {
			sp := SeriesPoint{TSeconds: r.Series[i].At.Seconds(), Values: map[string]float64{}}
			for j := range ms {
				if ms[j].Sample != nil {
					sp.Values[ms[j].Key] = ms[j].Sample(&r.Series[i])
				}
			}
			p.Series = append(p.Series, sp)
		}
		rep.Presets = append(rep.Presets, p)
	}
	return rep
}

// WriteJSON prints the report indented.
func WriteJSON(w io.Writer, rep *JSONReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// JSONFieldDocs explains every field of the --json output by its path
// ("presets[].values" is the object of metric values keyed by metric key).
var JSONFieldDocs = map[string]string{
	"$schema":                       "identifier of this layout (SchemaID); the JSON Schema is printed by \"ptlab explain --schema\"",
	"scenario":                      "the scenario's name",
	"seed":                          "the scenario's seed: the same seed and input give byte-identical results",
	"duration":                      "simulated time the workload ran (Go duration syntax)",
	"modules":                       "number of modules in the set loaded at boot",
	"metrics":                       "one entry per row of the comparison, in table order",
	"metrics[].key":                 "stable name of the metric: the key in values objects and the CSV column",
	"metrics[].label":               "the row's label in the text table",
	"metrics[].group":               "the group the row belongs to (charted together in --html)",
	"metrics[].unit":                "bytes, count, pages, ns, cycles or percent",
	"metrics[].better":              "lower, higher or neutral: which direction the verdict counts as an improvement",
	"metrics[].series":              "true when the metric is sampled over time (presets[].series and the CSV carry it)",
	"metrics[].explain":             "what the metric is and why it matters",
	"presets":                       "one entry per preset run, in the order run",
	"presets[].preset":              "the policy preset (or scenario-defined policy)",
	"presets[].machine":             "the machine as booted: name, RAM, CPUs, granule, VA bits, boot options",
	"presets[].values":              "the value of every metric at the end of the run, keyed by metrics[].key",
	"presets[].series":              "the sampled metrics over time, one point per sample_every",
	"presets[].series[].t_seconds":  "simulated time of the sample in seconds",
	"presets[].series[].values":     "the sampled metrics at that time, keyed by metrics[].key",
	"presets[].refused":             "operations the kernel refused, all of them",
	"presets[].failed":              "the first refused operations with their errors (at most 100)",
	"verdict":                       "the comparison in sentences, computed from the values",
	"verdict.baseline":              "the preset the others are compared with (mainline when it ran)",
	"verdict.presets":               "one entry per preset other than the baseline",
	"verdict.presets[].preset":      "the preset",
	"verdict.presets[].against":     "the baseline it is compared with",
	"verdict.presets[].recovers":    "metrics that moved the good way by at least 1%, in table order",
	"verdict.presets[].costs":       "metrics that moved the bad way by at least 1%, in table order",
	"verdict.presets[].relaxes":     "kernel invariants the policy gives up, from its knobs",
	"verdict.presets[].refused":     "operations the preset's kernel refused",
	"verdict.presets[].sentences":   "the preset's verdict in sentences",
	"verdict.summary":               "which preset is best on each metric where they differ",
	"verdict.sentences":             "every sentence of the verdict in order",
	"change.key":                    "the metric's key",
	"change.label":                  "the metric's label",
	"change.from":                   "the baseline's value",
	"change.to":                     "the preset's value",
	"change.relative":               "(to - from) / from; null in JSON when from is 0 (infinite)",
	"change.better":                 "true when the move is an improvement",
	"check":                         "the concurrency checker's result when compare --check ran",
	"presets[].values.<metric key>": "see metrics[]: every registered metric appears here",
}

// jsonPaths lists the field paths of a type's JSON encoding; Change's
// fields appear once under "change." since two lists hold them.
func jsonPaths(t reflect.Type, prefix string, out map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice:
		jsonPaths(t.Elem(), prefix+"[]", out)
		return
	case reflect.Struct:
	default:
		return
	}
	if t == reflect.TypeOf(Change{}) {
		prefix = "change"
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		p := name
		if prefix != "" {
			p = prefix + "." + name
		}
		out[p] = true
		jsonPaths(f.Type, p, out)
	}
}

// JSONPaths lists every field path of the --json output (metric keys
// aside).
func JSONPaths() []string {
	m := map[string]bool{}
	jsonPaths(reflect.TypeOf(JSONReport{}), "", m)
	var out []string
	for p := range m {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Schema is a JSON Schema (draft 2020-12) of the --json output, with every
// field's description and every metric key under values.
func Schema() map[string]any {
	values := map[string]any{}
	for _, m := range MetricsFor(nil) {
		values[m.Key] = map[string]any{"type": "number", "description": fmt.Sprintf("%s (%s; %s is better). %s", strings.TrimSpace(m.Label), m.Unit, m.Better, m.Explain)}
	}
	valuesSchema := map[string]any{"type": "object", "properties": values, "additionalProperties": map[string]any{"type": "number"}}
	var build func(t reflect.Type, path string) map[string]any
	build = func(t reflect.Type, path string) map[string]any {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		doc := JSONFieldDocs[path]
		var s map[string]any
		switch {
		case t.Kind() == reflect.Map:
			s = map[string]any{}
			for k, v := range valuesSchema {
				s[k] = v
			}
		case t.Kind() == reflect.Slice:
			s = map[string]any{"type": "array", "items": build(t.Elem(), path+"[]")}
		case t.Kind() == reflect.Struct:
			props := map[string]any{}
			var req []string
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
				if name == "-" || !f.IsExported() {
					continue
				}
				p := name
				if t == reflect.TypeOf(Change{}) {
					p = "change." + name
				} else if path != "" {
					p = path + "." + name
				}
				props[name] = build(f.Type, p)
				if !strings.Contains(opts, "omitempty") {
					req = append(req, name)
				}
			}
			s = map[string]any{"type": "object", "properties": props, "required": req}
		case t.Kind() == reflect.String:
			s = map[string]any{"type": "string"}
		case t.Kind() == reflect.Bool:
			s = map[string]any{"type": "boolean"}
		case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
			s = map[string]any{"type": "integer"}
		case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
			s = map[string]any{"type": []string{"number", "null"}}
		default:
			s = map[string]any{}
		}
		if doc != "" {
			s["description"] = doc
		}
		return s
	}
	root := build(reflect.TypeOf(JSONReport{}), "")
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["$id"] = SchemaID
	root["title"] = "ptlab compare --json"
	return root
}
