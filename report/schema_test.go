package report_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"testing"

	"github.com/ptlab/ptlab/report"
	"github.com/ptlab/ptlab/workload"
)

// validate checks v against the subset of JSON Schema that report.Schema
// uses: type, properties, required, items, additionalProperties. Objects
// without additionalProperties may not carry fields the schema does not
// describe.
func validate(s map[string]any, v any, path string) []string {
	var errs []string
	typeOK := func(t string) bool {
		switch t {
		case "object":
			_, ok := v.(map[string]any)
			return ok
		case "array":
			_, ok := v.([]any)
			return ok
		case "string":
			_, ok := v.(string)
			return ok
		case "boolean":
			_, ok := v.(bool)
			return ok
		case "number":
			_, ok := v.(float64)
			return ok
		case "integer":
			f, ok := v.(float64)
			return ok && f == float64(int64(f))
		case "null":
			return v == nil
		}
		return false
	}
	if t, ok := s["type"]; ok {
		var ts []string
		switch t := t.(type) {
		case string:
			ts = []string{t}
		case []any:
			for _, x := range t {
				ts = append(ts, x.(string))
			}
		}
		ok := false
		for _, x := range ts {
			ok = ok || typeOK(x)
		}
		if !ok {
			return []string{fmt.Sprintf("%s: %T is not %v", path, v, ts)}
		}
	}
	switch v := v.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := v[r.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s: missing %s", path, r))
			}
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, validate(ps, v[k], path+"."+k)...)
			} else if ap, ok := s["additionalProperties"].(map[string]any); ok {
				errs = append(errs, validate(ap, v[k], path+"."+k)...)
			} else {
				errs = append(errs, fmt.Sprintf("%s: field %s not in the schema", path, k))
			}
		}
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, x := range v {
				errs = append(errs, validate(items, x, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	}
	return errs
}

// The --json output of a real comparison (with the TLB cost model's rows)
// validates against the published schema, and the schema has no field
// without a description.
func TestJSONMatchesSchema(t *testing.T) {
	s, _ := workload.DefaultScenario()
	s.Config = workload.NewConfigOverride([]byte("ram: [{base: 0x80000000, size: 2G}]"), "test.yaml")
	s.Work.Duration = workload.Duration(2 * 60e9)
	s.Presets = []string{"mainline", "collapse"}
	obs, err := workload.ScenarioObservers(s)
	if err != nil {
		t.Fatal(err)
	}
	var res []*workload.Result
	for _, p := range s.Presets {
		r, err := workload.RunObserved(s, p, nil, nil, obs...)
		if err != nil {
			t.Fatal(err)
		}
		res = append(res, r)
	}
	if len(res[0].ObservedColumns) == 0 {
		t.Fatal("no observer columns: the TLB cost rows are not exercised")
	}
	// The observers' rows are explained like every other.
	if m := report.MissingExplanations(res); len(m) != 0 {
		t.Errorf("without explanation: %v", m)
	}
	var buf bytes.Buffer
	if err := report.WriteJSON(&buf, report.BuildJSON(s, 0, res, report.ComputeVerdict(res), false)); err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(buf.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(report.Schema())
	var schema map[string]any
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	for _, e := range validate(schema, v, "$") {
		t.Error(e)
	}
	var undocumented func(s map[string]any, path string)
	undocumented = func(s map[string]any, path string) {
		if path != "$" && s["description"] == nil {
			t.Errorf("schema %s has no description", path)
		}
		if p, ok := s["properties"].(map[string]any); ok {
			for k, x := range p {
				undocumented(x.(map[string]any), path+"."+k)
			}
		}
		if it, ok := s["items"].(map[string]any); ok {
			if p, ok := it["properties"].(map[string]any); ok {
				for k, x := range p {
					undocumented(x.(map[string]any), path+"[]."+k)
				}
			}
		}
	}
	undocumented(schema, "$")
}
